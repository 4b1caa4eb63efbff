// GoldenTests.swift: smil against tensors written by real PyTorch 2.15 / torchvision 0.29
// (../shared/golden, made as its README says). Outputs within 1e-4 relative, gradients 1e-3.

import XCTest
import Core
import TestSupport

final class GoldenLayerTests: XCTestCase {
    func testConv2dMatchesPyTorch() throws {
        let g = try golden("layers.safetensors")
        var x = try g.float("conv.x"); x.requiresGrad = true
        let conv = Conv2d(4, 6, kernelSize: 3, stride: 2, padding: 1)
        try conv.loadStateDict(["weight": .float(g.float("conv.weight")), "bias": .float(g.float("conv.bias"))])
        let y = try conv(x)
        assertClose(y, try g.float("conv.y"), tolerance: 1e-4, "conv.y")
        try y.mul(g.float("conv.r")).sum().backward()
        assertClose(x.grad!, try g.float("conv.grad.x"), tolerance: 1e-3, "conv.grad.x")
        assertClose(conv.weight.grad!, try g.float("conv.grad.weight"), tolerance: 1e-3, "conv.grad.weight")
        assertClose(conv.bias!.grad!, try g.float("conv.grad.bias"), tolerance: 1e-3, "conv.grad.bias")
    }

    func testBatchNormTrainEvalAndRunningStatistics() throws {
        let g = try golden("layers.safetensors")
        var x = try g.float("bn.x"); x.requiresGrad = true
        let bn = BatchNorm2d(4)
        bn.weight.value.assignForTests(try g.float("bn.weight"))
        bn.bias.value.assignForTests(try g.float("bn.bias"))
        let y = try bn(x)
        assertClose(y, try g.float("bn.y_train"), tolerance: 1e-4, "bn.y_train")
        try y.mul(g.float("bn.r")).sum().backward()
        assertClose(x.grad!, try g.float("bn.grad.x"), tolerance: 1e-3, "bn.grad.x")
        assertClose(bn.weight.grad!, try g.float("bn.grad.weight"), tolerance: 1e-3, "bn.grad.weight")
        assertClose(bn.bias.grad!, try g.float("bn.grad.bias"), tolerance: 1e-3, "bn.grad.bias")
        assertClose(bn.runningStatistics.mean, try g.float("bn.running_mean"), tolerance: 1e-4, "running_mean")
        assertClose(bn.runningStatistics.variance, try g.float("bn.running_var"), tolerance: 1e-4, "running_var")
        bn.eval()
        assertClose(try bn(x.detached()), try g.float("bn.y_eval"), tolerance: 1e-4, "bn.y_eval")
        let tracked = bn.stateDict().first { $0.0 == "num_batches_tracked" }!.1
        guard case .int(let t) = tracked else { return XCTFail("num_batches_tracked is not int64") }
        XCTAssertEqual(t.scalars, [1])
    }

    func testMaxPoolMatchesPyTorch() throws {
        let g = try golden("layers.safetensors")
        var x = try g.float("maxpool.x"); x.requiresGrad = true
        let y = try MaxPool2d(3, stride: 2, padding: 1)(x)
        assertClose(y, try g.float("maxpool.y"), tolerance: 1e-6, "maxpool.y")
        try y.mul(g.float("maxpool.r")).sum().backward()
        assertClose(x.grad!, try g.float("maxpool.grad.x"), tolerance: 1e-5, "maxpool.grad.x")
    }

    func testWeightedCrossEntropyMatchesPyTorch() throws {
        let g = try golden("layers.safetensors")
        var x = try g.float("ce.x"); x.requiresGrad = true
        let linear = Linear(7, 4)
        try linear.loadStateDict(["weight": .float(g.float("ce.linear.weight")), "bias": .float(g.float("ce.linear.bias"))])
        let loss = try Loss.crossEntropy(linear(x), g.int("ce.labels"), weight: g.float("ce.class_weight"))
        XCTAssertEqual(Double(try loss.item()), Double(try g.float("ce.loss").item()), accuracy: 1e-5)
        try loss.backward()
        assertClose(x.grad!, try g.float("ce.grad.x"), tolerance: 1e-4, "ce.grad.x")
        assertClose(linear.weight.grad!, try g.float("ce.grad.linear.weight"), tolerance: 1e-4, "ce.grad.linear.weight")
    }

    /// Steps a [3, 4] parameter three times with the recorded gradients and compares each result.
    private func checkOptimizer(_ prefix: String, _ make: (Parameter) throws -> Optimizer) throws {
        let g = try golden("layers.safetensors")
        let p = Parameter(try g.float("\(prefix).p0"))
        let opt = try make(p)
        for k in 1...3 {
            p.grad = try g.float("\(prefix).g\(k)")
            try opt.step()
            assertClose(p.value, try g.float("\(prefix).p\(k)"), tolerance: 1e-5, "\(prefix).p\(k)")
        }
    }

    func testAdamMatchesTorchOptim() throws {
        try checkOptimizer("adam") { Adam([$0], lr: 2e-3, weightDecay: 1e-2) }
    }

    func testAdamWMatchesTorchOptim() throws {
        try checkOptimizer("adamw") { AdamW([$0], lr: 2e-3, weightDecay: 1e-2) }
    }

    func testSGDNesterovMatchesTorchOptim() throws {
        try checkOptimizer("sgd") { try SGD([$0], lr: 0.1, momentum: 0.9, weightDecay: 1e-3, nesterov: true) }
    }
}

final class GoldenResNetTests: XCTestCase {
    func testResNet18MatchesTorchvision() throws {
        let weights = try golden("resnet18_weights.safetensors")
        let io = try golden("resnet18_io.safetensors")
        let model = resnet18(embedder: true)
        // The torchvision state_dict loads unchanged, strictly.
        try model.loadStateDict(weights.dictionary, strict: true)
        XCTAssertEqual(Set(model.stateDict().map(\.0)), Set(weights.tensors.map(\.name)))

        let input = try io.float("input")
        model.eval()
        let outEval = try GradMode.noGrad { try model(input) }
        assertClose(outEval, try io.float("out_eval"), tolerance: 1e-4, "out_eval")

        model.train()
        var x = input
        x.requiresGrad = true
        let outTrain = try model(x)
        assertClose(outTrain, try io.float("out_train"), tolerance: 1e-4, "out_train")
        try outTrain.mul(io.float("r")).sum().backward()
        assertClose(x.grad!, try io.float("grad.input"), tolerance: 1e-3, "grad.input")
        let params = Dictionary(uniqueKeysWithValues: model.namedParameters())
        for (name, _) in io.tensors where name.hasPrefix("grad.") && name != "grad.input" {
            let key = String(name.dropFirst("grad.".count))
            guard let p = params[key], let grad = p.grad else { XCTFail("no gradient for \(key)"); continue }
            assertClose(grad, try io.float(name), tolerance: 1e-3, name)
        }
        let state = Dictionary(uniqueKeysWithValues: model.stateDict())
        var checked = 0
        for (name, _) in io.tensors where name.hasPrefix("after.") {
            let key = String(name.dropFirst("after.".count))
            guard let t = state[key] else { XCTFail("no buffer \(key)"); continue }
            assertClose(t.asFloat, try io.float(name), tolerance: 1e-4, name)
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
