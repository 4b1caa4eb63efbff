// TensorOpsTests.swift: var/std, logsumexp, norm, GELU, layer_norm, masked_fill, expand, gather, scatter_add,
// sort/argsort/topk, split/chunk — hand-computed cases, finite-difference gradients, and the values
// the installed PyTorch computes on the same inputs (skipped, with the reason, where there is none).

import XCTest
import Foundation
@testable import Core
import TestSupport

final class TensorOpsTests: XCTestCase {
    /// Inputs both sides can make exactly: 3 sin(0.37 i), rounded to float32.
    func wave(_ shape: [Int], phase: Double = 0) throws -> Tensor {
        let n = shape.reduce(1, *)
        return try Tensor((0..<n).map { Float(Foundation.sin(Double($0) * 0.37 + phase) * 3) }, shape: shape)
    }

    func testHandComputedCases() throws {
        let x = try Tensor([1, 5, 3, 4, 2, 6], shape: [2, 3])
        XCTAssertEqual(try x.variance().item(), 3.5)
        XCTAssertEqual(try x.standardDeviation(dims: [1]).scalars, [2, 2])
        XCTAssertEqual(try x.variance(correction: 0).item(), 17.5 / 6, accuracy: 1e-6)
        XCTAssertEqual(try x.logsumexp(dims: [1])[flat: 0], Float(5 + Foundation.log(1 + Foundation.exp(-4.0) + Foundation.exp(-2.0))), accuracy: 1e-6)
        XCTAssertEqual(try Tensor([-.infinity, -.infinity]).logsumexp(dims: [0]).item(), -.infinity)
        XCTAssertEqual(try x.norm().item(), Float(91.0.squareRoot()), accuracy: 1e-5)
        XCTAssertEqual(try x.norm(p: 1, dims: [0]).scalars, [5, 7, 9])
        XCTAssertEqual(try x.norm(p: .infinity).item(), 6)
        XCTAssertEqual(Tensor([0, 1, -1]).gelu().scalars.map { ($0 * 1e4).rounded() / 1e4 }, [0, 0.8413, -0.1587])
        XCTAssertEqual(try x.maskedFill(Tensor.compare(x, Tensor(scalar: 3), .gt), -1).scalars, [1, -1, 3, -1, 2, -1])
        XCTAssertEqual(try Tensor([1, 2]).reshaped([2, 1]).expanded(to: [2, 3]).scalars, [1, 1, 1, 2, 2, 2])
        XCTAssertEqual(try x.gather(dim: 1, index: IntTensor([2, 0, 1, 1], shape: [2, 2])).scalars, [3, 1, 2, 2])
        // scatter_add: repeated targets add up; source entries beyond the index's shape are unused.
        let src = try Tensor([10, 20, 30, 40, 50, 60], shape: [2, 3])
        XCTAssertEqual(try x.scatterAdd(dim: 1, index: IntTensor([2, 2, 0, -1], shape: [2, 2]), source: src).scalars, [1, 5, 33, 44, 2, 56])
        XCTAssertEqual(try Tensor.zeros([3]).scatterAdd(dim: 0, index: IntTensor([0, 0, 2], shape: [3]), source: Tensor([1, 2, 3])).scalars, [3, 0, 3])
        XCTAssertEqual(try x.scatterAdd(dim: 0, index: IntTensor([1, 0, 1], shape: [1, 3]), source: src).scalars, [1, 25, 3, 14, 2, 36])
        let (v, i) = try x.sort(dim: 1)
        XCTAssertEqual(v.scalars, [1, 3, 5, 2, 4, 6])
        XCTAssertEqual(i.scalars, [0, 2, 1, 1, 0, 2])
        let (tv, ti) = try x.topk(2, dim: 1)
        XCTAssertEqual(tv.scalars, [5, 3, 6, 4])
        XCTAssertEqual(ti.scalars, [1, 2, 2, 0])
        // Stable, NaN as the largest.
        XCTAssertEqual(try Tensor([2, .nan, 1, 2]).sort().indices.scalars, [2, 0, 3, 1])
        XCTAssertEqual(try Tensor([2, .nan, 1, 2]).sort(descending: true).indices.scalars, [1, 0, 3, 2])
        XCTAssertEqual(try x.split(2, dim: 1).map(\.shape), [[2, 2], [2, 1]])
        XCTAssertEqual(try Tensor((0..<7).map(Float.init)).chunk(3).map(\.scalars), [[0, 1, 2], [3, 4, 5], [6]])
        let ln = try x.layerNorm([3])
        XCTAssertEqual(ln.scalars.map { ($0 * 1e4).rounded() / 1e4 }, [-1.2247, 1.2247, 0, 0, -1.2247, 1.2247])
    }

    /// scatter_add's blocked path (index and source of one shape, the tensor's outside dim), split
    /// by columns or by outer slices, against the general path (a source one row longer, which
    /// the index leaves unused) and on 1, 2 and 3 threads: the same bits every time.
    func testScatterAddBlockedMatchesGeneralOnAnyThreadCount() throws {
        for shape in [[1, 50, 128], [3, 50, 100], [8, 20, 16], [5, 7, 1]] {
            let base = try wave(shape), rows = shape[1] - 3
            let source = try wave([shape[0], rows, shape[2]], phase: 0.4)
            let values = (0..<(shape[0] * rows * shape[2])).map { ($0 * 7919 % 97) % (2 * shape[1]) - shape[1] }
            let index = try IntTensor(values, shape: [shape[0], rows, shape[2]])
            let longer = try Tensor.cat([source, try wave([shape[0], 1, shape[2]], phase: 2)], dim: 1)
            let general = try base.scatterAdd(dim: 1, index: index, source: longer).scalars
            let saved = Parallel.threads
            defer { Parallel.threads = saved }
            for threads in [1, 2, 3] {
                Parallel.threads = threads
                XCTAssertEqual(try base.scatterAdd(dim: 1, index: index, source: source).scalars, general, "\(shape) on \(threads) threads")
            }
        }
        try assertGradientsMatch([try wave([2, 4, 3]), try wave([2, 5, 3], phase: 0.3)]) {
            try $0[0].scatterAdd(dim: 1, index: IntTensor((0..<30).map { $0 * 5 % 4 - ($0 % 3 == 0 ? 4 : 0) }, shape: [2, 5, 3]), source: $0[1])
        }
    }

    /// Long rows (insertion runs merged), ties, signed zeros and NaN, along an inner dimension too,
    /// against a stable reference sort; topk by selection (k <= 16) and by sorting.
    func testSortAndTopkOfLongRowsMatchAStableReference() throws {
        var values: [Float] = try wave([3, 1000]).scalars.map { ($0 * 4).rounded() / 4 }   // many ties
        values[5] = -0.0; values[6] = 0; values[7] = .nan; values[1500] = .nan; values[1501] = -.infinity
        let x = try Tensor(values, shape: [3, 1000])
        for descending in [false, true] {
            let (v, i) = try x.sort(dim: 1, descending: descending)
            for row in 0..<3 {
                let keys = (0..<1000).map { values[row * 1000 + $0] }
                let want = (0..<1000).sorted { a, b in
                    let (p, q) = (keys[a], keys[b])
                    if p.isNaN || q.isNaN { return p.isNaN == q.isNaN ? a < b : (descending ? p.isNaN : q.isNaN) }
                    if p == q { return a < b }
                    return descending ? p > q : p < q
                }
                XCTAssertEqual(Array(i.scalars[(row * 1000)..<(row * 1000 + 1000)]), want, "row \(row) descending \(descending)")
                let got: [Float] = (0..<1000).map { v[flat: row * 1000 + $0] }
                var same = true
                for (a, g) in zip(want, got) where keys[a].bitPattern != g.bitPattern { same = false }
                XCTAssertTrue(same, "values follow the indices")
            }
            for k in [1, 5, 16, 17, 1000] {
                let (tv, ti) = try x.topk(k, dim: 1, largest: descending)
                XCTAssertEqual(tv.shape, [3, k])
                for row in 0..<3 { XCTAssertEqual(Array(ti.scalars[(row * k)..<(row * k + k)]), Array(i.scalars[(row * 1000)..<(row * 1000 + k)]), "k \(k)") }
            }
        }
        // Along a dimension that is not the last: the same as sorting the transposed rows.
        let t = try x.transposed(0, 1)
        let (down, across) = (try t.sort(dim: 0).indices.scalars, try x.sort(dim: 1).indices.scalars)
        var alike = true
        for s in 0..<1000 { for r in 0..<3 where down[s * 3 + r] != across[r * 1000 + s] { alike = false } }
        XCTAssertTrue(alike, "sorting along dim 0 of the transpose")
    }

    /// GELU and its slope against double precision over the whole range, the tails included
    /// (where x Phi(x) is tiny and only an erfc taken apart from -z^2 keeps its digits).
    func testGeluAndItsSlopeAgainstDoublePrecision() throws {
        let xs: [Float] = stride(from: -13.0, through: 13.0, by: 0.00377).map { Float($0) } + [0, -0.0, 1e-20, -1e-20, 40, -40, .infinity]
        var leaf = Tensor(xs)
        leaf.requiresGrad = true
        let y = leaf.gelu()
        try y.sum().backward()
        let slope = leaf.grad!
        var worst = (value: 0.0, slope: 0.0)
        for (i, v) in xs.enumerated() where v.isFinite {
            let d = Double(v)
            let phi = 0.5 * Foundation.erfc(-d / 2.0.squareRoot())
            let want = d * phi, wantSlope = phi + d * Foundation.exp(-0.5 * d * d) / (2 * Double.pi).squareRoot()
            if Swift.abs(want) > 1e-30 { worst.value = Swift.max(worst.value, Swift.abs(Double(y[flat: i]) - want) / Swift.abs(want)) }
            else { XCTAssertLessThanOrEqual(Swift.abs(Double(y[flat: i])), 1e-29, "gelu(\(v))") }
            // The slope is a sum, Phi + x phi, that cancels near x = -0.75: its error is measured
            // against the larger of the two terms.
            let scale = Swift.max(Swift.abs(wantSlope), phi, 1e-30)
            worst.slope = Swift.max(worst.slope, Swift.abs(Double(slope[flat: i]) - wantSlope) / scale)
        }
        XCTAssertLessThanOrEqual(worst.value, 1e-6, "gelu, relative")
        XCTAssertLessThanOrEqual(worst.slope, 2e-6, "gelu's slope")
        XCTAssertEqual(y[flat: xs.count - 1], .infinity)
        XCTAssertTrue(Tensor([.nan]).gelu()[flat: 0].isNaN)
    }

    func testArgumentErrorsNameWhatIsWrong() throws {
        let x = try wave([2, 3])
        XCTAssertThrowsError(try x.expanded(to: [4, 3])) { XCTAssertTrue("\($0)".contains("cannot expand [2, 3] to [4, 3]"), "\($0)") }
        XCTAssertThrowsError(try x.gather(dim: 1, index: IntTensor([3], shape: [1, 1]))) { XCTAssertTrue("\($0)".contains("index 3 is out of bounds"), "\($0)") }
        // Along the last dimension with matching rows, the indices are checked in the gathering pass.
        XCTAssertThrowsError(try x.gather(dim: 1, index: IntTensor([0, 1, -4, 2], shape: [2, 2]))) { XCTAssertTrue("\($0)".contains("index -4 is out of bounds for dimension 1 with size 3"), "\($0)") }
        XCTAssertThrowsError(try Tensor.zeros([40000, 3]).gather(dim: 1, index: IntTensor((0..<80000).map { $0 == 70001 ? 3 : $0 % 3 }, shape: [40000, 2]))) { XCTAssertTrue("\($0)".contains("index 3 is out of bounds"), "\($0)") }
        XCTAssertThrowsError(try x.scatterAdd(dim: 0, index: IntTensor([2], shape: [1, 1]), source: x)) { XCTAssertTrue("\($0)".contains("index 2 is out of bounds for dimension 0 with size 2"), "\($0)") }
        XCTAssertThrowsError(try x.scatterAdd(dim: 0, index: IntTensor([0, 0, 0, 0], shape: [1, 4]), source: Tensor.zeros([2, 5]))) { XCTAssertTrue("\($0)".contains("larger than the tensor's [2, 3] in dimension 1"), "\($0)") }
        XCTAssertThrowsError(try x.scatterAdd(dim: 1, index: IntTensor([0, 0], shape: [1, 2]), source: Tensor.zeros([1, 1]))) { XCTAssertTrue("\($0)".contains("larger than the source's [1, 1]"), "\($0)") }
        XCTAssertThrowsError(try x.topk(4, dim: 1)) { XCTAssertTrue("\($0)".contains("k (4) is out of range"), "\($0)") }
        XCTAssertThrowsError(try x.layerNorm([2])) { XCTAssertTrue("\($0)".contains("must be the last dimensions"), "\($0)") }
        XCTAssertThrowsError(try x.norm(p: -1)) { XCTAssertTrue("\($0)".contains("p must be positive"), "\($0)") }
        XCTAssertThrowsError(try x.maskedFill(Tensor.zeros([4, 3]), 0)) { XCTAssertTrue("\($0)".contains("cannot be broadcast"), "\($0)") }
        XCTAssertThrowsError(try x.split(0)) { XCTAssertTrue("\($0)".contains("split size must be positive"), "\($0)") }
    }

    func testGradientsMatchFiniteDifferences() throws {
        let a = try wave([2, 3, 4]), w = try wave([4], phase: 1), b = try wave([4], phase: 2)
        try assertGradientsMatch([a]) { try $0[0].variance(dims: [1]) }
        try assertGradientsMatch([a]) { try $0[0].standardDeviation(dims: [0, 2], keepDims: true) }
        try assertGradientsMatch([a]) { try $0[0].logsumexp(dims: [2]) }
        try assertGradientsMatch([a]) { try $0[0].norm() }
        try assertGradientsMatch([a]) { try $0[0].norm(p: 3, dims: [1]) }
        try assertGradientsMatch([a]) { $0[0].gelu() }
        try assertGradientsMatch([a, w, b]) { try $0[0].layerNorm([4], weight: $0[1], bias: $0[2]) }
        let mask = try Tensor.compare(try wave([3, 4], phase: 0.5), Tensor(scalar: 0), .gt)
        try assertGradientsMatch([a]) { try $0[0].maskedFill(mask, 2) }
        try assertGradientsMatch([try wave([3, 1])]) { try $0[0].expanded(to: [2, 3, 4]) }
        try assertGradientsMatch([a]) { try $0[0].gather(dim: 2, index: IntTensor([3, 0, 0, 1, 2, 2], shape: [1, 2, 3])) }
        try assertGradientsMatch([a]) { try $0[0].gather(dim: 2, index: IntTensor([3, 0, -1, 1, 2, 2, 0, 0, 1, 3, 3, -4], shape: [2, 3, 2])) }
        let scatterIndex = try IntTensor([3, 0, 0, 1, 2, 2, 0, 3, 1, 3, 3, -4], shape: [2, 3, 2])
        try assertGradientsMatch([a, try wave([2, 3, 3], phase: 0.7)]) { try $0[0].scatterAdd(dim: 2, index: scatterIndex, source: $0[1]) }
        try assertGradientsMatch([a, try wave([3, 3, 4], phase: 0.2)]) { try $0[0].scatterAdd(dim: 0, index: IntTensor([1, 0, 1, 1, 0, 0, 0, 1], shape: [1, 2, 4]), source: $0[1]) }
        try assertGradientsMatch([a]) { try $0[0].sort(dim: 1, descending: true).values }
        try assertGradientsMatch([a]) { try $0[0].topk(2, dim: 2).values }
        try assertGradientsMatch([a]) { try Tensor.cat(try $0[0].chunk(2, dim: 2).reversed(), dim: 2) }
    }

    /// The same operations in the installed PyTorch, on the same inputs.
    func testValuesMatchPyTorch() throws {
        let script = """
            import math, torch
            import torch.nn.functional as F
            def wave(shape, phase=0.0):
                n = math.prod(shape)
                return torch.tensor([math.sin(i * 0.37 + phase) * 3 for i in range(n)], dtype=torch.float32).reshape(shape)
            a = wave([5, 7, 9]); w = wave([9], 1.0); b = wave([9], 2.0)
            out = {
                "var1": a.var(dim=1), "std02": a.std(dim=(0, 2), keepdim=True), "var_all0": a.var(correction=0),
                "lse2": a.logsumexp(dim=2), "lse01": a.logsumexp(dim=(0, 1)), "norm": a.norm(), "norm3": a.norm(p=3, dim=1),
                "gelu": F.gelu(a), "ln": F.layer_norm(a, [9], w, b), "ln2": F.layer_norm(a, [7, 9]),
                "sort": a.sort(dim=1, descending=True).values, "argsort": a.argsort(dim=2).float(),
                "topk": a.topk(3, dim=0).values, "topk_i": a.topk(3, dim=0).indices.float(),
                "scatter_add": a.scatter_add(1, torch.tensor([[(i * 5 + j * 3 + k) % 7 for k in range(9)] for i in range(5) for j in range(4)]).reshape(5, 4, 9), wave([5, 6, 9], 0.3)),
            }
            for k, v in out.items():
                print(k, " ".join(repr(float(x)) for x in v.flatten().tolist()))
            """
        let (status, text) = try runPeerPython(script)
        XCTAssertEqual(status, 0, text)
        var torch: [String: [Float]] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            torch[String(parts[0])] = parts.dropFirst().map { Float(Double($0)!) }
        }
        let a = try wave([5, 7, 9]), w = try wave([9], phase: 1), b = try wave([9], phase: 2)
        let ours: [String: Tensor] = [
            "var1": try a.variance(dims: [1]), "std02": try a.standardDeviation(dims: [0, 2], keepDims: true), "var_all0": try a.variance(correction: 0),
            "lse2": try a.logsumexp(dims: [2]), "lse01": try a.logsumexp(dims: [0, 1]), "norm": try a.norm(), "norm3": try a.norm(p: 3, dims: [1]),
            "gelu": a.gelu(), "ln": try a.layerNorm([9], weight: w, bias: b), "ln2": try a.layerNorm([7, 9]),
            "sort": try a.sort(dim: 1, descending: true).values, "argsort": try a.sort(dim: 2).indices.float(),
            "topk": try a.topk(3, dim: 0).values, "topk_i": try a.topk(3, dim: 0).indices.float(),
            "scatter_add": try a.scatterAdd(dim: 1, index: IntTensor((0..<5).flatMap { i in (0..<4).flatMap { j in (0..<9).map { k in (i * 5 + j * 3 + k) % 7 } } }, shape: [5, 4, 9]),
                                            source: try wave([5, 6, 9], phase: 0.3)),
        ]
        for (name, t) in ours {
            guard let want = torch[name] else { XCTFail("PyTorch printed no \(name):\n\(text)"); continue }
            XCTAssertEqual(t.count, want.count, name)
            for (k, (g, e)) in zip(t.scalars, want).enumerated() where Swift.abs(g - e) > 2e-5 * Swift.max(1, Swift.abs(e)) {
                XCTFail("\(name)[\(k)]: smil \(g), PyTorch \(e)")
                break
            }
        }
    }
}
