// GoldenTests.swift: smil against tensors written by real PyTorch 2.15 / torchvision 0.29
// (../shared/golden, made as its README says). Outputs within 1e-4 relative, gradients 1e-3.

import XCTest
import Core
import TestSupport

final class GoldenLayerTests: XCTestCase {
    func testConv2dMatchesPyTorch() throws {
        let g = try golden("layers.safetensors")
        var x = try g.float("conv.x"); x.requiresGrad = true
        let conv = try Conv2d(4, 6, kernelSize: 3, stride: 2, padding: 1)
        try conv.loadStateDict(["weight": .float(g.float("conv.weight")), "bias": .float(g.float("conv.bias"))])
        let y = try conv(x)
        try assertMatchesGolden(y, g, "conv.y", tolerance: 1e-4)
        try y.mul(g.float("conv.r")).sum().backward()
        try assertMatchesGolden(x.grad!, g, "conv.grad.x", tolerance: 1e-3)
        try assertMatchesGolden(conv.weight.grad!, g, "conv.grad.weight", tolerance: 1e-3)
        try assertMatchesGolden(conv.bias!.grad!, g, "conv.grad.bias", tolerance: 1e-3)
    }

    func testBatchNormTrainEvalAndRunningStatistics() throws {
        let g = try golden("layers.safetensors")
        var x = try g.float("bn.x"); x.requiresGrad = true
        let bn = try BatchNorm2d(4)
        bn.weight.value.assignForTests(try g.float("bn.weight"))
        bn.bias.value.assignForTests(try g.float("bn.bias"))
        let y = try bn(x)
        try assertMatchesGolden(y, g, "bn.y_train", tolerance: 1e-4)
        try y.mul(g.float("bn.r")).sum().backward()
        try assertMatchesGolden(x.grad!, g, "bn.grad.x", tolerance: 1e-3)
        try assertMatchesGolden(bn.weight.grad!, g, "bn.grad.weight", tolerance: 1e-3)
        try assertMatchesGolden(bn.bias.grad!, g, "bn.grad.bias", tolerance: 1e-3)
        try assertMatchesGolden(bn.runningStatistics.mean, g, "bn.running_mean", tolerance: 1e-4)
        try assertMatchesGolden(bn.runningStatistics.variance, g, "bn.running_var", tolerance: 1e-4)
        bn.eval()
        try assertMatchesGolden(try bn(x.detached()), g, "bn.y_eval", tolerance: 1e-4)
        let tracked = bn.stateDict().first { $0.0 == "num_batches_tracked" }!.1
        guard case .int(let t) = tracked else { return XCTFail("num_batches_tracked is not int64") }
        XCTAssertEqual(t.scalars, [1])
    }

    func testMaxPoolMatchesPyTorch() throws {
        let g = try golden("layers.safetensors")
        var x = try g.float("maxpool.x"); x.requiresGrad = true
        let y = try MaxPool2d(3, stride: 2, padding: 1)(x)
        try assertMatchesGolden(y, g, "maxpool.y", tolerance: 1e-6)
        try y.mul(g.float("maxpool.r")).sum().backward()
        try assertMatchesGolden(x.grad!, g, "maxpool.grad.x", tolerance: 1e-5)
    }

    func testWeightedCrossEntropyMatchesPyTorch() throws {
        let g = try golden("layers.safetensors")
        var x = try g.float("ce.x"); x.requiresGrad = true
        let linear = try Linear(7, 4)
        try linear.loadStateDict(["weight": .float(g.float("ce.linear.weight")), "bias": .float(g.float("ce.linear.bias"))])
        let loss = try Loss.crossEntropy(linear(x), g.int("ce.labels"), weight: g.float("ce.class_weight"))
        XCTAssertEqual(Double(try loss.item()), Double(try g.float("ce.loss").item()), accuracy: 1e-5)
        try loss.backward()
        try assertMatchesGolden(x.grad!, g, "ce.grad.x", tolerance: 1e-4)
        try assertMatchesGolden(linear.weight.grad!, g, "ce.grad.linear.weight", tolerance: 1e-4)
    }

    /// Steps a [3, 4] parameter three times with the recorded gradients and compares each result.
    private func checkOptimizer(_ prefix: String, _ make: (Parameter) throws -> Optimizer) throws {
        let g = try golden("layers.safetensors")
        let p = Parameter(try g.float("\(prefix).p0"))
        let opt = try make(p)
        for k in 1...3 {
            p.grad = try g.float("\(prefix).g\(k)")
            try opt.step()
            try assertMatchesGolden(p.value, g, "\(prefix).p\(k)", tolerance: 1e-5)
        }
    }

    func testAdamMatchesTorchOptim() throws {
        try checkOptimizer("adam") { try Adam([$0], lr: 2e-3, weightDecay: 1e-2) }
    }

    func testAdamWMatchesTorchOptim() throws {
        try checkOptimizer("adamw") { try AdamW([$0], lr: 2e-3, weightDecay: 1e-2) }
    }

    func testSGDNesterovMatchesTorchOptim() throws {
        try checkOptimizer("sgd") { try SGD([$0], lr: 0.1, momentum: 0.9, weightDecay: 1e-3, nesterov: true) }
    }
}

final class GoldenResNetTests: XCTestCase {
    func testResNet18MatchesTorchvision() throws {
        let weights = try golden("resnet18_weights.safetensors")
        let io = try golden("resnet18_io.safetensors")
        let model = try resnet18(embedder: true)
        // The torchvision state_dict loads unchanged, strictly.
        try model.loadStateDict(weights.dictionary, strict: true)
        XCTAssertEqual(Set(model.stateDict().map(\.0)), Set(weights.tensors.map(\.name)))

        let input = try io.float("input")
        model.eval()
        let outEval = try GradMode.noGrad { try model(input) }
        try assertMatchesGolden(outEval, io, "out_eval", tolerance: 1e-4)

        model.train()
        var x = input
        x.requiresGrad = true
        let outTrain = try model(x)
        try assertMatchesGolden(outTrain, io, "out_train", tolerance: 1e-4)
        try outTrain.mul(io.float("r")).sum().backward()
        try assertMatchesGolden(x.grad!, io, "grad.input", tolerance: 1e-3)
        let params = Dictionary(uniqueKeysWithValues: model.namedParameters())
        for (name, _) in io.tensors where name.hasPrefix("grad.") && name != "grad.input" {
            let key = String(name.dropFirst("grad.".count))
            guard let p = params[key], let grad = p.grad else { XCTFail("no gradient for \(key)"); continue }
            try assertMatchesGolden(grad, io, name, tolerance: 1e-3)
        }
        let state = Dictionary(uniqueKeysWithValues: model.stateDict())
        var checked = 0
        for (name, _) in io.tensors where name.hasPrefix("after.") {
            let key = String(name.dropFirst("after.".count))
            guard let t = state[key] else { XCTFail("no buffer \(key)"); continue }
            try assertMatchesGolden(t.asFloat, io, name, tolerance: 1e-4)
            checked += 1
        }
        XCTAssertEqual(checked, 40, "every BatchNorm's running mean and variance")
    }
}

extension Tensor {
    /// Test helper: overwrite values in place.
    mutating func assignForTests(_ other: Tensor) {
        precondition(other.shape == shape)
        for i in 0..<count { self[flat: i] = other[flat: i] }
    }
}

/// The rule every golden comparison goes through (TestSupport's `assertMatchesGolden`).
final class GoldenConditioningTests: XCTestCase {
    func testSpreadAboveTheToleranceGetsTheLooseBoundAndNothingElseDoes() throws {
        XCTAssertEqual(goldenBound(spread: nil, tolerance: 1e-3), 1e-3, "no spread: the tight tolerance")
        XCTAssertEqual(goldenBound(spread: 5.5e-5, tolerance: 1e-4), 1e-4, "well conditioned: the tight tolerance")
        XCTAssertEqual(goldenBound(spread: 2.02e-2, tolerance: 1e-3), 6.06e-2, accuracy: 1e-12, "3 x spread above 5e-2")
        XCTAssertEqual(goldenBound(spread: 1.29e-2, tolerance: 1e-4), 5e-2, "at least 5e-2")
        let file = SafeTensors(metadata: ["spread": #"{"a": 0.02, "b": 1e-6}"#])
        XCTAssertEqual(try goldenSpread(file), ["a": 0.02, "b": 1e-6])
        XCTAssertEqual(try goldenSpread(SafeTensors()), [:])
        XCTAssertThrowsError(try goldenSpread(SafeTensors(metadata: ["spread": #"{"a": -1}"#])))
        XCTAssertThrowsError(try goldenSpread(SafeTensors(metadata: ["spread": "[1]"])))
    }

    /// The SparseConvMIL step's file marks exactly its two ill-conditioned tensors, and the loose
    /// bound still catches a gradient with the wrong sign or none at all.
    func testSparseConvMILStepSpread() throws {
        let step = try golden("sparseconvmil_step.safetensors")
        let spread = try goldenSpread(step)
        let loose = spread.filter { goldenBound(spread: $0.value, tolerance: 1e-3) > 1e-3 }.keys.sorted()
        XCTAssertEqual(loose, ["after.tile_embedder.conv1.weight", "grad.tile_embedder.conv1.weight"])
        let g = try step.float("grad.tile_embedder.conv1.weight")
        let bound = goldenBound(spread: spread["grad.tile_embedder.conv1.weight"], tolerance: 1e-3)
        XCTAssertGreaterThan(relativeError(g.scaled(by: -1), g), bound, "a mis-signed gradient fails")
        XCTAssertGreaterThan(relativeError(try Tensor.zeros(g.shape), g), bound, "a missing gradient fails")
    }
}
