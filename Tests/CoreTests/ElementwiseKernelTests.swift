// ElementwiseKernelTests.swift: the general tensor operations' kernels (CKernels/elementwise.c)
// against plain reference loops on odd, broadcast and empty shapes; their portable and AVX2 copies
// bit for bit; results on 1, 2 and 3 threads bit for bit; exp, tanh and sigmoid within a few ulp of
// double-precision libm; and gradient checks through the broadcast paths.

import XCTest
import Foundation
import CKernels
@testable import Core
import TestSupport

final class ElementwiseKernelTests: XCTestCase {
    func random(_ shape: [Int], seed: UInt64, scale: Float = 3) throws -> Tensor {
        RandomGenerator.seed(seed)
        return try Tensor.randn(shape).scaled(by: scale)
    }

    /// Odd sizes around the vector widths and the thread pieces, and an empty one.
    let sizes = [0, 1, 7, 8, 9, 33, 1000, (1 << 16) + 3, 200_001]

    /// Distance in units of the last place of `reference` (rounded to float).
    func ulps(_ x: Float, _ reference: Double) -> Double {
        let r = Float(reference)
        if x == r || (x.isNaN && r.isNaN) { return 0 }
        if !x.isFinite || !r.isFinite { return .infinity }
        return Swift.abs(Double(x) - reference) / Double(r.ulp == 0 ? Float.leastNonzeroMagnitude : r.ulp)
    }

    func testExpTanhSigmoidAreWithinAFewUlpOfDoublePrecision() throws {
        // A sweep over every range the polynomials handle differently, the edges and specials.
        var xs: [Float] = stride(from: -110.0, through: 95.0, by: 0.00731).map { Float($0) }
        xs += [0, -0.0, 1e-30, -1e-30, 0.625, -0.625, 0.62499, 9, -9, 9.0001, 88.72, 88.73, -87.3, -103.9, -104, .infinity, -.infinity, .nan]
        let x = Tensor(xs)
        let e = x.exp(), t = x.tanh(), s = x.sigmoid()
        var worst = (exp: 0.0, tanh: 0.0, sigmoid: 0.0)
        for (i, v) in xs.enumerated() {
            let d = Double(v)
            let re = Foundation.exp(d), rt = Foundation.tanh(d), rs = 1 / (1 + Foundation.exp(-d))
            // Results in the subnormals are checked in absolute terms (a few subnormal steps).
            if Swift.abs(re) < Double(Float.leastNormalMagnitude) {
                XCTAssertLessThanOrEqual(Swift.abs(Double(e[flat: i]) - re), 4 * Double(Float.leastNonzeroMagnitude), "exp(\(v))")
            } else {
                worst.exp = Swift.max(worst.exp, ulps(e[flat: i], re))
            }
            worst.tanh = Swift.max(worst.tanh, ulps(t[flat: i], rt))
            if rs >= Double(Float.leastNormalMagnitude) { worst.sigmoid = Swift.max(worst.sigmoid, ulps(s[flat: i], rs)) }
        }
        XCTAssertLessThanOrEqual(worst.exp, 1, "exp")  // measured 0.95
        XCTAssertLessThanOrEqual(worst.tanh, 1.5, "tanh")  // measured 1.14
        XCTAssertLessThanOrEqual(worst.sigmoid, 2.5, "sigmoid")  // measured 2.17
        XCTAssertTrue(e[flat: xs.count - 1].isNaN && t[flat: xs.count - 1].isNaN && s[flat: xs.count - 1].isNaN)
        XCTAssertEqual(e[flat: xs.count - 3], .infinity)
        XCTAssertEqual(e[flat: xs.count - 2], 0)
        XCTAssertEqual(t[flat: xs.count - 3], 1)
        XCTAssertEqual(t[flat: xs.count - 2], -1)
    }

    func testUnaryOperationsMatchReferenceLoops() throws {
        for n in sizes {
            let x = try random([n], seed: UInt64(n) + 1)
            let v = x.scalars
            func check(_ y: Tensor, _ f: (Float) -> Float, _ name: String) {
                XCTAssertEqual(y.shape, [n])
                for i in 0..<n where !(y[flat: i] == f(v[i]) || (y[flat: i].isNaN && f(v[i]).isNaN)) {
                    XCTFail("\(name)(\(v[i])) = \(y[flat: i]), expected \(f(v[i])) (n \(n), i \(i))")
                    return
                }
            }
            check(x.negated(), { -$0 }, "neg")
            check(x.abs(), { Swift.abs($0) }, "abs")
            check(x.relu(), { $0 > 0 ? $0 : 0 }, "relu")
            check(x.adding(0.3), { $0 + 0.3 }, "add")
            check(x.scaled(by: -1.7), { $0 * -1.7 }, "mul")
            check(x.clamped(min: -0.5, max: 1.25), { Swift.min(Swift.max($0, -0.5), 1.25) }, "clamp")
            check(x.abs().sqrt(), { Swift.abs($0).squareRoot() }, "sqrt")
            check(x.abs().log(), { Foundation.log(Swift.abs($0)) }, "log")
        }
    }

    /// Reference broadcasting: each output element from its operands' own indices.
    func referenceBinary(_ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float) throws -> Tensor {
        let shape = try broadcastShapes(a.shape, b.shape, op: "test")
        let n = shape.reduce(1, *)
        var out = [Float](repeating: 0, count: n)
        let sa = broadcastStrides(a.shape, to: shape), sb = broadcastStrides(b.shape, to: shape)
        for i in 0..<n {
            var rest = i, ia = 0, ib = 0
            for d in shape.indices.reversed() {
                let k = rest % shape[d]
                rest /= shape[d]
                ia += k * sa[d]; ib += k * sb[d]
            }
            out[i] = f(a[flat: ia], b[flat: ib])
        }
        return try Tensor(out, shape: shape)
    }

    func testBinaryOperationsBroadcastLikeReferenceLoops() throws {
        let pairs: [([Int], [Int])] = [([7, 9], [7, 9]), ([3, 1, 5], [4, 1]), ([2, 3, 4], [3, 1]), ([5, 1], [1, 6]), ([2, 3, 4, 5], [1, 3, 1, 1]),
                                       ([300, 257], [257]), ([1], [4, 3]), ([], [2, 2]), ([2, 2], []), ([0, 3], [3]), ([4, 0], [4, 1]),
                                       ([3, 1, 70_000], [1, 2, 1]), ([2, 1, 3, 1], [1, 4, 1, 5])]
        for (k, (sa, sb)) in pairs.enumerated() {
            let a = try random(sa, seed: UInt64(2 * k + 1)), b = try random(sb, seed: UInt64(2 * k + 2)).abs().adding(0.1)
            let cases: [(String, Tensor, (Float, Float) -> Float)] = [
                ("add", try a.add(b), { $0 + $1 }), ("sub", try a.sub(b), { $0 - $1 }), ("mul", try a.mul(b), { $0 * $1 }),
                ("div", try a.div(b), { $0 / $1 }), ("maximum", try a.maximum(b), { Swift.max($0, $1) })]
            for (name, got, f) in cases {
                let want = try referenceBinary(a, b, f)
                XCTAssertEqual(got.shape, want.shape, "\(name) \(sa) \(sb)")
                XCTAssertEqual(got.scalars, want.scalars, "\(name) \(sa) \(sb)")
            }
            let w = try Tensor.where(try referenceBinary(a, b) { $0 > $1 ? 1 : 0 }, a, b)
            XCTAssertEqual(w.scalars, try referenceBinary(a, b) { $0 > $1 ? $0 : $1 }.scalars, "where \(sa) \(sb)")
        }
        XCTAssertThrowsError(try Tensor.zeros([3, 2]).add(Tensor.zeros([4, 2]))) { XCTAssertTrue("\($0)".contains("cannot be broadcast"), "\($0)") }
    }

    func testSumsMatchDoublePrecisionReferences() throws {
        let x = try random([5, 7, 9, 11], seed: 40)
        func reference(_ dims: Set<Int>) -> [Double] {
            let keep = x.shape.indices.filter { !dims.contains($0) }
            let outShape = keep.map { x.shape[$0] }
            var out = [Double](repeating: 0, count: outShape.reduce(1, *))
            for i in 0..<x.count {
                var rest = i, index = [Int](repeating: 0, count: 4)
                for d in (0..<4).reversed() { index[d] = rest % x.shape[d]; rest /= x.shape[d] }
                var o = 0
                for d in keep { o = o * x.shape[d] + index[d] }
                out[o] += Double(x[flat: i])
            }
            return out
        }
        for dims in [[0], [1], [3], [0, 1], [1, 2], [0, 2], [1, 3], [0, 1, 2, 3], [0, 3], [2, 3]] {
            let got = try x.sum(dims: dims)
            let want = reference(Set(dims))
            XCTAssertEqual(got.count, want.count)
            for i in 0..<want.count { XCTAssertEqual(Double(got[flat: i]), want[i], accuracy: 1e-5 * Swift.max(1, Swift.abs(want[i])), "dims \(dims) at \(i)") }
        }
        // Long runs in both layouts, and the empty cases.
        let long = try random([3, 100_003], seed: 41), tall = try random([70_001, 5], seed: 42)
        XCTAssertEqual(Double(try long.sum(dims: [1])[flat: 2]), (0..<100_003).reduce(0.0) { $0 + Double(long[flat: 2 * 100_003 + $1]) }, accuracy: 1e-3)
        XCTAssertEqual(Double(try tall.sum(dims: [0])[flat: 4]), (0..<70_001).reduce(0.0) { $0 + Double(tall[flat: $1 * 5 + 4]) }, accuracy: 1e-3)
        XCTAssertEqual(try Tensor.zeros([0, 3]).sum(dims: [0]).scalars, [0, 0, 0])
        XCTAssertEqual(try Tensor.zeros([0, 3]).sum().item(), 0)
        XCTAssertEqual(try Tensor.zeros([3, 0]).sum(dims: [1]).scalars, [0, 0, 0])
    }

    func testSoftmaxMatchesReferenceAlongEveryDimension() throws {
        let x = try random([3, 5, 67], seed: 50)
        for dim in 0..<3 {
            for log in [false, true] {
                let got = log ? try x.logSoftmax(dim: dim) : try x.softmax(dim: dim)
                let (outer, size, inner) = splitAround(x.shape, dim)
                for o in 0..<outer {
                    for j in 0..<inner {
                        let values = (0..<size).map { Double(x[flat: (o * size + $0) * inner + j]) }
                        let m = values.max()!
                        let z = values.reduce(0) { $0 + Foundation.exp($1 - m) }
                        for s in 0..<size {
                            let want = log ? values[s] - m - Foundation.log(z) : Foundation.exp(values[s] - m) / z
                            XCTAssertEqual(Double(got[flat: (o * size + s) * inner + j]), want, accuracy: 1e-6 * Swift.max(1, Swift.abs(want)),
                                           "dim \(dim) log \(log)")
                        }
                    }
                }
            }
        }
        // Every column of a wide block (split into pieces over the threads) sums to 1.
        let wide = try random([16, 5000], seed: 51)
        let s = try wide.softmax(dim: 0).sum(dims: [0])
        for j in 0..<5000 { XCTAssertEqual(s[flat: j], 1, accuracy: 1e-6) }
        XCTAssertEqual(try Tensor.zeros([0, 4]).softmax(dim: 1).shape, [0, 4])
        XCTAssertEqual(try Tensor([-.infinity, 0]).softmax(dim: 0).scalars, [0, 1])
    }

    func testPermutationsMatchIndexArithmetic() throws {
        let x = try random([3, 17, 5, 40], seed: 60)
        for dims in [[0, 1, 2, 3], [3, 2, 1, 0], [0, 3, 1, 2], [2, 0, 3, 1], [1, 0, 2, 3], [0, 1, 3, 2], [3, 0, 1, 2]] {
            let got = try x.permuted(dims)
            let outShape = dims.map { x.shape[$0] }
            XCTAssertEqual(got.shape, outShape)
            let strides = contiguousStrides(x.shape)
            for i in 0..<got.count {
                var rest = i, src = 0
                for d in (0..<4).reversed() { src += (rest % outShape[d]) * strides[dims[d]]; rest /= outShape[d] }
                if got[flat: i] != x[flat: src] { XCTFail("permute \(dims) at \(i)"); break }
            }
        }
        XCTAssertEqual(try Tensor.zeros([0, 3]).transposed(0, 1).shape, [3, 0])
    }

    /// Permutations of large tensors are pending views: sums, maps and further permutations read
    /// them in place, anything else copies them out once; either way the values are the copy's.
    func testPendingPermutationsGiveTheValuesOfACopy() throws {
        let x = try random([6, 50, 30], seed: 61)
        func copy(_ t: Tensor, _ dims: [Int]) -> [Float] {
            let outShape = dims.map { t.shape[$0] }, strides = contiguousStrides(t.shape)
            return (0..<t.count).map { i in
                var rest = i, src = 0
                for d in dims.indices.reversed() { src += (rest % outShape[d]) * strides[dims[d]]; rest /= outShape[d] }
                return t[flat: src]
            }
        }
        let t = try x.permuted([2, 0, 1])
        XCTAssertTrue(t.storage.isPending, "a large permutation starts as a view")
        // A permutation of a view composes with it; one that undoes it gives the source's storage.
        let back = try t.permuted([1, 2, 0])
        XCTAssertTrue(back.storage === x.storage)
        let tt = try t.transposed(0, 2)
        XCTAssertTrue(tt.storage.isPending)
        XCTAssertEqual(tt.scalars, copy(x, [1, 0, 2]))
        // Sums over any dimensions of a view, read through its source.
        let dense = try Tensor(copy(x, [2, 0, 1]), shape: [30, 6, 50])
        for dims in [[0], [1], [2], [0, 1], [0, 2], [1, 2], [0, 1, 2]] {
            let fresh = try x.permuted([2, 0, 1])
            let got = try fresh.sum(dims: dims), want = try dense.sum(dims: dims)
            XCTAssertEqual(got.shape, want.shape, "\(dims)")
            for k in 0..<want.count { XCTAssertEqual(got[flat: k], want[flat: k], accuracy: 1e-4, "sum \(dims)") }
        }
        // Maps and same-layout combinations stay views and read back the copy's values.
        let e = try x.permuted([2, 0, 1]).exp()
        XCTAssertTrue(e.storage.isPending)
        XCTAssertEqual(e.scalars, dense.exp().scalars)
        let both = try x.permuted([2, 0, 1]).mul(x.permuted([2, 0, 1]))
        XCTAssertTrue(both.storage.isPending)
        XCTAssertEqual(both.scalars, try dense.mul(dense).scalars)
        // A reshaped view is no longer read in place, and reads back correctly.
        let flat = try x.permuted([2, 0, 1]).reshaped([30, 300])
        XCTAssertNil(flat.pendingView)
        XCTAssertEqual(try flat.sum(dims: [1]).scalars.map { ($0 * 100).rounded() }, try dense.reshaped([30, 300]).sum(dims: [1]).scalars.map { ($0 * 100).rounded() })
        // Writing the source afterwards leaves the view as it was (copy on write).
        var source = try random([64, 80], seed: 62)
        let view = try source.transposed(0, 1)
        let before = copy(source, [1, 0])
        source.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] = -1 } }
        XCTAssertEqual(view.scalars, before)
        // Gradients flow through views.
        var leaf = try random([40, 130], seed: 63)
        leaf.requiresGrad = true
        let w = try random([130, 40], seed: 64)
        try leaf.transposed(0, 1).mul(w).exp().sum().backward()
        // d/dx sum(exp(x^T w)) = (w exp(x^T w))^T
        let want = try w.mul(leaf.detached().transposed(0, 1).mul(w).exp()).transposed(0, 1)
        for k in 0..<want.count { XCTAssertEqual(leaf.grad![flat: k], want[flat: k], accuracy: 1e-4 * Swift.max(1, Swift.abs(want[flat: k]))) }
    }

    /// The same result, bit for bit, whatever the thread count and whichever copy of the loops runs.
    func testResultsAreIdenticalOnOneTwoThreeThreadsAndPortableLoops() throws {
        let a = try random([300, 1001], seed: 70), b = try random([1001], seed: 71), c = try random([8, 70, 300], seed: 72)
        let long = try random([3, 5003], seed: 73)
        func results() throws -> [[Float]] {
            [try a.mul(b).scalars, a.exp().scalars, a.tanh().scalars, a.sigmoid().scalars, try a.sum(dims: [0]).scalars, try a.sum(dims: [1]).scalars,
             [try a.sum().item()], try c.softmax(dim: 1).scalars, try c.logSoftmax(dim: 2).scalars, try c.sum(dims: [0, 2]).scalars,
             try c.permuted([2, 0, 1]).scalars, try a.div(b).scalars, a.relu().scalars, try long.softmax(dim: 1).scalars,
             try long.logSoftmax(dim: 1).scalars, try a.max(dim: 1).values.scalars, try c.min(dim: 1).values.scalars,
             try Tensor.compare(a, b, .gt).scalars, try Tensor.where(Tensor.compare(a, b, .le), a, b).scalars, a.gelu().scalars,
             try a.binary(SMIL_GELU_BACKWARD, a, name: "gelu").scalars, try a.sort(dim: 1).values.scalars]
        }
        let saved = Parallel.threads
        defer { Parallel.threads = saved; smil_elementwise_set_level(-1) }
        Parallel.threads = 1
        let one = try results()
        for t in [2, 3] {
            Parallel.threads = t
            XCTAssertTrue(try results() == one, "\(t) threads")
        }
        // Each copy of the loops this processor runs (portable, AVX2, AVX-512) gives the same bits.
        for level in 0..<smil_elementwise_processor_level() {
            smil_elementwise_set_level(level)
            XCTAssertEqual(smil_elementwise_level(), level)
            let other = try results()
            for (i, (p, o)) in zip(other, one).enumerated() {
                XCTAssertTrue(p.elementsEqual(o) { $0.bitPattern == $1.bitPattern }, "result \(i): the loops of level \(level) differ from level \(smil_elementwise_processor_level())")
            }
        }
        print("elementwise loops compared: levels 0...\(smil_elementwise_processor_level()) (0 portable, 1 AVX2, 2 AVX-512)")
    }

    func testGradientsThroughBroadcastAndMergedDimensions() throws {
        let a = try random([2, 3, 4], seed: 80, scale: 1), b = try random([1, 3, 1], seed: 81, scale: 1)
        let p = try random([1, 3, 1], seed: 82, scale: 1).abs().adding(0.5)
        try assertGradientsMatch([a, b]) { try $0[0].mul($0[1]) }
        try assertGradientsMatch([a, p]) { try $0[0].div($0[1]) }
        try assertGradientsMatch([a, b]) { try $0[0].maximum($0[1]) }
        try assertGradientsMatch([try random([4, 1], seed: 83, scale: 1), try random([1, 5], seed: 84, scale: 1)]) { try $0[0].sub($0[1]) }
        try assertGradientsMatch([a]) { try $0[0].sum(dims: [0, 2]) }
        try assertGradientsMatch([a]) { try $0[0].sum(dims: [1, 2], keepDims: true) }
        try assertGradientsMatch([a]) { try $0[0].softmax(dim: 0) }
        try assertGradientsMatch([a]) { try $0[0].permuted([1, 2, 0]) }
    }
}
