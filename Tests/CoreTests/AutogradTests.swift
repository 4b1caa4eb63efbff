// AutogradTests.swift: the graph's mechanics (accumulation, no-grad, freeing, errors) and a
// finite-difference check for every differentiable operation.

import XCTest
@testable import Core
import TestSupport

final class AutogradTests: XCTestCase {
    func testHandComputedGradient() throws {
        // y = sum(x * x + 3x) -> dy/dx = 2x + 3
        var x = try Tensor([1, -2, 0.5], shape: [3])
        x.requiresGrad = true
        try x.mul(x).add(x.scaled(by: 3)).sum().backward()
        XCTAssertEqual(x.grad!.scalars, [5, -1, 4])
    }

    func testGradientsAccumulateAcrossBackwardCalls() throws {
        var x = Tensor([2])
        x.requiresGrad = true
        try x.mul(x).sum().backward()
        let held = x.grad!
        try x.mul(x).sum().backward()
        XCTAssertEqual(x.grad!.scalars, [8])
        XCTAssertEqual(held.scalars, [4], "a gradient the caller holds is not changed by later accumulation")
        x.grad = nil
        XCTAssertNil(x.grad)
    }

    func testNoGradAndDetach() throws {
        var x = Tensor([1, 2])
        x.requiresGrad = true
        let y = GradMode.noGrad { x.scaled(by: 2) }
        XCTAssertFalse(y.requiresGrad)
        XCTAssertFalse(x.scaled(by: 2).detached().requiresGrad)
        XCTAssertThrowsError(try y.sum().backward()) { e in
            XCTAssertTrue("\(e)".contains("does not require grad"))
        }
    }

    func testGraphIsFreedAfterBackward() throws {
        var x = Tensor([1, 2])
        x.requiresGrad = true
        let loss = x.exp().sum()
        try loss.backward()
        XCTAssertThrowsError(try loss.backward()) { e in
            XCTAssertTrue("\(e)".contains("second time"), "\(e)")
        }
    }

    func testNonScalarBackwardNeedsGradient() throws {
        var x = Tensor([1, 2])
        x.requiresGrad = true
        let y = x.scaled(by: 3)
        XCTAssertThrowsError(try y.backward())
        XCTAssertThrowsError(try y.backward(Tensor([1, 2, 3])))
        try y.backward(Tensor([1, 10]))
        XCTAssertEqual(x.grad!.scalars, [3, 30])
    }

    // MARK: finite differences

    func r(_ shape: [Int], seed: UInt64 = 1, positive: Bool = false) throws -> Tensor {
        RandomGenerator.seed(seed)
        let t = try Tensor.randn(shape)
        return positive ? t.abs().adding(0.5) : t
    }

    func testElementwiseGradients() throws {
        let a = try r([2, 3]), b = try r([3], seed: 2), p = try r([2, 3], seed: 3, positive: true)
        try assertGradientsMatch([a, b]) { try $0[0].add($0[1]) }
        try assertGradientsMatch([a, b]) { try $0[0].sub($0[1]) }
        try assertGradientsMatch([a, b]) { try $0[0].mul($0[1]) }
        try assertGradientsMatch([a, p]) { try $0[0].div($0[1]) }
        try assertGradientsMatch([p, b]) { try $0[0].pow($0[1]) }
        try assertGradientsMatch([a, r([2, 1], seed: 4)]) { try $0[0].maximum($0[1]) }
        try assertGradientsMatch([a]) { $0[0].negated() }
        try assertGradientsMatch([a]) { $0[0].exp() }
        try assertGradientsMatch([p]) { $0[0].log() }
        try assertGradientsMatch([p]) { $0[0].sqrt() }
        try assertGradientsMatch([a]) { $0[0].abs() }
        try assertGradientsMatch([a]) { $0[0].relu() }
        try assertGradientsMatch([a]) { $0[0].sigmoid() }
        try assertGradientsMatch([a]) { $0[0].tanh() }
        try assertGradientsMatch([a]) { $0[0].clamped(min: -0.3, max: 0.4) }
        try assertGradientsMatch([p]) { $0[0].pow(1.5) }
        try assertGradientsMatch([a]) { $0[0].adding(2).scaled(by: -3) }
        try assertGradientsMatch([a, r([3], seed: 12)]) { try Tensor.where(Tensor([1, 0, 1]), $0[0], $0[1]) }
    }

    func testReductionAndShapeGradients() throws {
        let a = try r([2, 3, 4])
        try assertGradientsMatch([a]) { try $0[0].sum(dims: [1]) }
        try assertGradientsMatch([a]) { try $0[0].mean(dims: [0, 2], keepDims: true) }
        try assertGradientsMatch([a]) { try $0[0].max(dim: 2).values }
        try assertGradientsMatch([a]) { try $0[0].min(dim: 0).values }
        try assertGradientsMatch([a]) { try $0[0].softmax(dim: 1) }
        try assertGradientsMatch([a]) { try $0[0].logSoftmax(dim: -1) }
        try assertGradientsMatch([a]) { try $0[0].reshaped([6, 4]) }
        try assertGradientsMatch([a]) { try $0[0].permuted([2, 0, 1]) }
        try assertGradientsMatch([a]) { try $0[0].transposed(0, 2) }
        try assertGradientsMatch([a]) { try $0[0].slice(dim: 2, start: 1, end: 4, step: 2) }
        try assertGradientsMatch([a]) { try $0[0].select(dim: 1, 2) }
        try assertGradientsMatch([a]) { try $0[0].gather(dim: 0, [1, 1, 0]) }
        try assertGradientsMatch([a, r([2, 1, 4], seed: 5)]) { try Tensor.cat([$0[0], $0[1]], dim: 1) }
        try assertGradientsMatch([a, r([2, 3, 4], seed: 6)]) { try Tensor.stack([$0[0], $0[1]], dim: 3) }
        try assertGradientsMatch([a, r([4, 2], seed: 7)]) { try $0[0].matmul($0[1]) }
        try assertGradientsMatch([r([3]), r([3, 2], seed: 8)]) { try $0[0].matmul($0[1]) }
    }

    func testLayerGradients() throws {
        let x = try r([2, 3, 7, 6]), w = try r([4, 3, 3, 3], seed: 2), b = try r([4], seed: 3)
        try assertGradientsMatch([x, w, b]) { try Functional.conv2d($0[0], weight: $0[1], bias: $0[2], stride: 2, padding: 1) }
        try assertGradientsMatch([x, w]) { try Functional.conv2d($0[0], weight: $0[1], bias: nil, padding: 2, dilation: 2) }
        try assertGradientsMatch([x, r([5, 3, 1, 1], seed: 4)]) { try Functional.conv2d($0[0], weight: $0[1], bias: nil) }
        // Strided 1x1 (ResNet's downsample) runs as a subsample, then a 1x1 convolution; odd rows.
        try assertGradientsMatch([x, r([5, 3, 1, 1], seed: 4), r([5], seed: 9)]) {
            try Functional.conv2d($0[0], weight: $0[1], bias: $0[2], stride: 2)
        }
        try assertGradientsMatch([x, r([3], seed: 5), r([3], seed: 6)]) {
            var rm = try Tensor.zeros([3]), rv = try Tensor.ones([3])
            return try Functional.batchNorm2d($0[0], weight: $0[1], bias: $0[2], runningMean: &rm, runningVar: &rv, training: true)
        }
        try assertGradientsMatch([x, r([3], seed: 5), r([3], seed: 6)]) {
            var rm = try Tensor.full([3], 0.1), rv = try Tensor.full([3], 2)
            return try Functional.batchNorm2d($0[0], weight: $0[1], bias: $0[2], runningMean: &rm, runningVar: &rv, training: false, relu: true)
        }
        // Max pooling: distinct values 0.1 apart, so the +-eps probes never change the argmax.
        var order = Array(0..<x.count)
        var rng = RandomGenerator(seed: 9)
        order.shuffle(using: &rng)
        let spread = try Tensor(order.map { Float($0) * 0.1 }, shape: x.shape)
        try assertGradientsMatch([spread]) { try Functional.maxPool2d($0[0], kernel: 3, stride: 2, padding: 1) }
        try assertGradientsMatch([x]) { try Functional.adaptiveAvgPool2d($0[0], outHeight: 3, outWidth: 4) }
        try assertGradientsMatch([r([5, 7]), r([4, 7], seed: 2), r([4], seed: 3)]) {
            try Functional.linear($0[0], weight: $0[1], bias: $0[2])
        }
    }

    func testConvolutionsAddIntoHeldGradientSums() throws {
        let cases: [(String, [Int], [Int], Int, Int, Int)] = [
            ("7x7 stride 2 (windowed)", [2, 3, 13, 12], [4, 3, 7, 7], 2, 3, 1),
            ("3x3 dilated (windowed)", [1, 3, 9, 8], [4, 3, 3, 3], 1, 2, 2),
            ("3x3 stride 2, 40 channels (im2col, phase planes)", [1, 40, 7, 6], [3, 40, 3, 3], 2, 1, 1),
            ("3x3 stride 1 (Winograd)", [2, 4, 7, 9], [5, 4, 3, 3], 1, 1, 1),
            ("1x1 (GEMM)", [2, 5, 6, 7], [3, 5, 1, 1], 1, 0, 1),
            ("1x1, 16 outputs (row kernel)", [1, 16, 5, 9], [16, 16, 1, 1], 1, 0, 1),
            ("1x1 stride 2 (windowed, every other column)", [2, 3, 7, 6], [5, 3, 1, 1], 2, 0, 1),
            ("1x1 stride 2, rows of 16 (added on the row kernel's stores)", [2, 3, 7, 32], [5, 3, 1, 1], 2, 0, 1),
            ("1x1 stride 2, 330 channels (subsample node)", [1, 330, 5, 4], [2, 330, 1, 1], 2, 0, 1)]
        for (name, xs, ws, stride, padding, dilation) in cases {
            let w = try r(ws, seed: 3)
            try assertAddsIntoHeldSums(r(xs), name) { try Functional.conv2d($0, weight: w, bias: nil, stride: stride, padding: padding, dilation: dilation) }
        }
    }

    func testInterruptedBackwardGivesTakenGradBack() throws {
        // The convolution takes x's grad to add into; then a freed node throws before x's turn.
        var x = try r([1, 2, 6, 6])
        x.requiresGrad = true
        let w = try r([3, 2, 3, 3], seed: 2)
        try Functional.conv2d(x, weight: w, bias: nil, padding: 1).sum().backward()
        let once = try Tensor(x.grad!.scalars, shape: x.shape)
        var v = Tensor([1, 2])
        v.requiresGrad = true
        let freed = v.exp().sum()
        try freed.backward()
        // Post-order puts x (reached first through x.sum()) after the freed node.
        let loss = try x.sum().add(freed).add(Functional.conv2d(x, weight: w, bias: nil, padding: 1).sum())
        XCTAssertThrowsError(try loss.backward()) { XCTAssertTrue("\($0)".contains("second time"), "\($0)") }
        let grad = try XCTUnwrap(x.grad, "the grad the convolution took is given back")
        assertAllClose(grad, once.scaled(by: 2), rtol: 1e-5, atol: 1e-5, "with the convolution's gradient added, as PyTorch leaves it")
    }

    func testLossGradients() throws {
        let logits = try r([5, 4]), labels = IntTensor([0, 3, 1, 1, 2])
        try assertGradientsMatch([logits]) { try Loss.crossEntropy($0[0], labels) }
        try assertGradientsMatch([logits]) { try Loss.crossEntropy($0[0], labels, weight: Tensor([1, 2, 0.5, 3])) }
        try assertGradientsMatch([logits, r([5, 4], seed: 2).sigmoid()]) { try Loss.bceWithLogits($0[0], $0[1]) }
        try assertGradientsMatch([logits, r([5, 4], seed: 3)]) { try Loss.mse($0[0], $0[1]) }
    }

    func testHandComputedLosses() throws {
        // Two samples, uniform logits: CE = log(3) whatever the labels.
        let ce = try Loss.crossEntropy(Tensor.zeros([2, 3]), IntTensor([0, 2]))
        XCTAssertEqual(try ce.item(), Float(Foundation.log(3.0)), accuracy: 1e-6)
        // BCE at logit 0 is log(2).
        XCTAssertEqual(try Loss.bceWithLogits(Tensor([0]), Tensor([1])).item(), Float(Foundation.log(2.0)), accuracy: 1e-6)
        XCTAssertEqual(try Loss.mse(Tensor([1, 2]), Tensor([3, 2])).item(), 2)
        XCTAssertThrowsError(try Loss.crossEntropy(Tensor.zeros([2, 3]), IntTensor([0, 3]))) { e in
            XCTAssertTrue("\(e)".contains("label 3 of sample 1 is out of range for 3 classes"))
        }
    }
}
