// TensorTests.swift: small hand-computed cases for creation, broadcasting, shapes, reductions,
// matrix products, value semantics, printing and the seeded generator.

import XCTest
@testable import Core
import TestSupport

final class TensorTests: XCTestCase {
    func t(_ v: [Float], _ s: [Int]) -> Tensor { try! Tensor(v, shape: s) }

    func testCreation() throws {
        XCTAssertEqual(try Tensor.zeros([2, 3]).scalars, [0, 0, 0, 0, 0, 0])
        XCTAssertEqual(try Tensor.full([2], 7).scalars, [7, 7])
        XCTAssertEqual(try Tensor.arange(0, 5).scalars, [0, 1, 2, 3, 4])
        XCTAssertEqual(try Tensor.arange(1, 2, step: 0.25).scalars, [1, 1.25, 1.5, 1.75])
        XCTAssertEqual(try Tensor.eye(2).scalars, [1, 0, 0, 1])
        XCTAssertThrowsError(try Tensor([1, 2, 3], shape: [2, 2])) { e in
            XCTAssertEqual("\(e)", "tensor: 3 values do not fill shape [2, 2]")
        }
    }

    func testBroadcastingArithmetic() throws {
        let a = t([1, 2, 3, 4, 5, 6], [2, 3]), row = t([10, 20, 30], [3]), col = t([100, 200], [2, 1])
        XCTAssertEqual(try (a + row).scalars, [11, 22, 33, 14, 25, 36])
        XCTAssertEqual(try (a + col).scalars, [101, 102, 103, 204, 205, 206])
        XCTAssertEqual(try (col - row).shape, [2, 3])
        XCTAssertEqual(try (col - row).scalars, [90, 80, 70, 190, 180, 170])
        XCTAssertEqual(try (a * Tensor(scalar: 2)).scalars, [2, 4, 6, 8, 10, 12])
        XCTAssertEqual(try (a / row).scalars, [0.1, 0.1, 0.1, 0.4, 0.25, 0.2])
        XCTAssertThrowsError(try a + t([1, 2], [2])) { e in
            XCTAssertTrue("\(e)".contains("shapes [2, 3] and [2] cannot be broadcast"), "\(e)")
        }
    }

    func testUnary() throws {
        let x = t([-1, 0, 2], [3])
        XCTAssertEqual(x.relu().scalars, [0, 0, 2])
        XCTAssertEqual(x.abs().scalars, [1, 0, 2])
        XCTAssertEqual(x.clamped(min: -0.5, max: 1).scalars, [-0.5, 0, 1])
        XCTAssertEqual(x.sigmoid()[flat: 1], 0.5)
        XCTAssertEqual(x.pow(2).scalars, [1, 0, 4])
        XCTAssertEqual(x.exp()[flat: 1], 1)
    }

    func testReductions() throws {
        let a = t([1, 2, 3, 4, 5, 6], [2, 3])
        XCTAssertEqual(a.sum().scalars, [21])
        XCTAssertEqual(try a.sum(dims: [0]).scalars, [5, 7, 9])
        XCTAssertEqual(try a.sum(dims: [1], keepDims: true).shape, [2, 1])
        XCTAssertEqual(try a.sum(dims: [-1]).scalars, [6, 15])
        XCTAssertEqual(try a.mean(dims: [1]).scalars, [2, 5])
        let (v, i) = try t([3, 9, 1, 7, 2, 8], [2, 3]).max(dim: 1)
        XCTAssertEqual(v.scalars, [9, 8])
        XCTAssertEqual(i.scalars, [1, 2])
        XCTAssertEqual(try t([3, 9, 1, 7, 2, 8], [2, 3]).argmax().scalars, [1])
        XCTAssertEqual(try t([3, 9, 1, 7, 2, 8], [2, 3]).min(dim: 0).values.scalars, [3, 2, 1])
        let s = try t([0, 0, 0, 1, 2, 3], [2, 3]).softmax(dim: 1)
        assertAllClose(s, t([1 / 3, 1 / 3, 1 / 3, 0.09003057, 0.24472847, 0.66524096], [2, 3]))
        let ls = try t([1, 2, 3], [3]).logSoftmax(dim: 0)
        assertAllClose(ls, t([-2.40760596, -1.40760596, -0.40760596], [3]))
    }

    func testShapes() throws {
        let a = t([1, 2, 3, 4, 5, 6], [2, 3])
        XCTAssertEqual(try a.reshaped([3, -1]).shape, [3, 2])
        XCTAssertEqual(try a.transposed().scalars, [1, 4, 2, 5, 3, 6])
        let b = try Tensor.arange(0, 24).reshaped([2, 3, 4])
        let p = try b.permuted([2, 0, 1])
        XCTAssertEqual(p.shape, [4, 2, 3])
        XCTAssertEqual(p[1, 1, 2], b[1, 2, 1])
        XCTAssertEqual(try a.slice(dim: 1, start: 1).scalars, [2, 3, 5, 6])
        XCTAssertEqual(try a.slice(dim: 1, start: 0, end: nil, step: 2).scalars, [1, 3, 4, 6])
        XCTAssertEqual(try a.slice(dim: 1, start: -1).scalars, [3, 6])
        XCTAssertEqual(try a.select(dim: 0, -1).scalars, [4, 5, 6])
        XCTAssertEqual(try Tensor.cat([a, a], dim: 1).shape, [2, 6])
        XCTAssertEqual(try Tensor.cat([a, t([7, 8, 9], [1, 3])], dim: 0).scalars, [1, 2, 3, 4, 5, 6, 7, 8, 9])
        XCTAssertEqual(try Tensor.stack([a, a], dim: 1).shape, [2, 2, 3])
        XCTAssertEqual(try a.unsqueezed(0).shape, [1, 2, 3])
        XCTAssertEqual(try a.unsqueezed(0).squeezed().shape, [2, 3])
        XCTAssertEqual(try b.flattened(start: 1).shape, [2, 12])
        XCTAssertThrowsError(try a.reshaped([4, 2])) { e in
            XCTAssertEqual("\(e)", "reshape: shape [4, 2] is invalid for input of size 6 (shape [2, 3])")
        }
        XCTAssertThrowsError(try a.select(dim: 0, 2)) { e in
            XCTAssertTrue("\(e)".contains("index 2 is out of bounds for dimension 0 with size 2"))
        }
    }

    func testMatmul() throws {
        let a = t([1, 2, 3, 4, 5, 6], [2, 3]), b = t([7, 8, 9, 10, 11, 12], [3, 2])
        XCTAssertEqual(try a.matmul(b).scalars, [58, 64, 139, 154])
        XCTAssertEqual(try t([1, 2, 3], [3]).matmul(t([4, 5, 6], [3])).scalars, [32])
        XCTAssertEqual(try a.matmul(t([1, 1, 1], [3])).scalars, [6, 15])
        let batched = try Tensor.stack([a, a.scaled(by: 2)]).matmul(b)
        XCTAssertEqual(batched.shape, [2, 2, 2])
        XCTAssertEqual(batched.scalars, [58, 64, 139, 154, 116, 128, 278, 308])
        XCTAssertThrowsError(try a.matmul(a)) { e in
            XCTAssertEqual("\(e)", "matmul: mat1 and mat2 shapes cannot be multiplied ([2, 3] @ [2, 3]: 3 != 2)")
        }
    }

    func testLayerShapeErrorsNameOpAndShapes() throws {
        XCTAssertThrowsError(try Conv2d(3, 4, kernelSize: 3)(Tensor.zeros([1, 2, 8, 8]))) { e in
            XCTAssertEqual("\(e)", "conv2d: weight of shape [4, 3, 3, 3] expects input with 3 channels, but got input of shape [1, 2, 8, 8]")
        }
        XCTAssertThrowsError(try Linear(5, 2)(Tensor.zeros([3, 4]))) { e in
            XCTAssertTrue("\(e)".hasPrefix("linear: input of shape [3, 4] does not fit weight of shape [2, 5]"), "\(e)")
        }
        XCTAssertThrowsError(try Conv2d(3, 4, kernelSize: 7)(Tensor.zeros([1, 3, 4, 4]))) { e in
            XCTAssertTrue("\(e)".contains("calculated output size (-2 x -2) is too small"), "\(e)")
        }
        XCTAssertThrowsError(try BatchNorm2d(4)(Tensor.zeros([2, 3, 4, 4]))) { e in
            XCTAssertEqual("\(e)", "batch_norm: weight has shape [4], expected [3] for input [2, 3, 4, 4]")
        }
        XCTAssertThrowsError(try resnet18()(Tensor.zeros([1, 1, 32, 32]))) { e in
            XCTAssertTrue("\(e)".contains("expected images [N, 3, H, W], got [1, 1, 32, 32]"), "\(e)")
        }
        XCTAssertEqual(try Tensor(rows: [[1, 2], [3, 4]]).shape, [2, 2])
        XCTAssertThrowsError(try Tensor(rows: [[1, 2], [3]]))
    }

    func testValueSemanticsCopyOnWrite() throws {
        let a = t([1, 2, 3], [3])
        var b = a
        b[flat: 0] = 100
        XCTAssertEqual(a.scalars, [1, 2, 3], "writing a copy must not change the original")
        XCTAssertEqual(b.scalars, [100, 2, 3])
    }

    /// Storage is 64-byte aligned, and freed activations are reused: a loop that allocates the same
    /// large tensors every step must not fault in fresh pages every step (it did with
    /// `posix_memalign`, whose split blocks fragmented glibc's heap: 16 K faults a step here).
    func testLargeStorageIsAlignedAndReused() throws {
        func minorFaults() -> Int {
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            return usage.ru_minflt
        }
        var faults: [Int] = []
        var keep: [Tensor] = []
        for step in 0..<10 {
            let before = minorFaults()
            do {
                let a = try Tensor.zeros([8 << 20]), b = try Tensor.zeros([2 << 20]), c = try Tensor.zeros([150_000])
                let d = try Tensor.zeros([8 << 20])
                for x in [a, b, c, d] {
                    x.withUnsafeBufferPointer { XCTAssertEqual(Int(bitPattern: $0.baseAddress!) % 64, 0) }
                }
                keep.append(try Tensor.zeros([25]))
            }
            if step >= 2 { faults.append(minorFaults() - before) }
        }
        // A step allocates 66 MB, 16 K pages. Over 8 steps a reused heap faults in fewer pages than
        // one step allocates (glibc may grow it once more as the small blocks settle).
        XCTAssertLessThan(faults.reduce(0, +), 16_000, "minor page faults per step after warm-up: \(faults)")
        XCTAssertEqual(keep.count, 10)
    }

    func testPrintingElidesLargeDimensions() throws {
        XCTAssertEqual(t([1, 2.5], [2]).description, "tensor([1.0000, 2.5000], shape: [2])")
        let big = try Tensor.arange(0, 100).reshaped([10, 10])
        let text = big.description
        XCTAssertTrue(text.contains("..."), text)
        XCTAssertTrue(text.hasSuffix("shape: [10, 10])"), text)
        XCTAssertFalse(text.contains("55.0000"), "middle elements are elided")
        XCTAssertTrue(text.contains("99.0000"))
        XCTAssertEqual(Tensor(scalar: 1e-6).description, "tensor(1.0000e-06, shape: [])")
    }

    func testSeededGeneratorIsReproducible() throws {
        RandomGenerator.seed(42)
        let a = try Tensor.randn([100]), u = try Tensor.rand([100])
        RandomGenerator.seed(42)
        XCTAssertEqual(try Tensor.randn([100]).scalars, a.scalars)
        XCTAssertEqual(try Tensor.rand([100]).scalars, u.scalars)
        RandomGenerator.seed(43)
        XCTAssertNotEqual(try Tensor.randn([100]).scalars, a.scalars)
        // Sanity of the distributions.
        RandomGenerator.seed(0)
        let n = try Tensor.randn([20_000])
        XCTAssertEqual(Double(try! n.mean().item()), 0, accuracy: 0.03)
        XCTAssertEqual(Double(try! n.pow(2).mean().item()), 1, accuracy: 0.05)
        let r = try Tensor.rand([20_000])
        XCTAssertTrue(r.scalars.allSatisfy { $0 >= 0 && $0 < 1 })
        let ints = try IntTensor.randint(3, 6, shape: [1000])
        XCTAssertEqual(Set(ints.scalars), [3, 4, 5])
    }

    func testWhereAndAllClose() throws {
        let c = t([1, 0, 1], [3])
        XCTAssertEqual(try Tensor.where(c, t([1, 2, 3], [3]), t([9, 9, 9], [3])).scalars, [1, 9, 3])
        XCTAssertTrue(try Tensor.allClose(t([1, 2], [2]), t([1, 2.000001], [2])))
        XCTAssertFalse(try Tensor.allClose(t([1, 2], [2]), t([1, 2.1], [2])))
    }
}
