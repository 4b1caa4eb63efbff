// ModuleTests.swift: names, state dicts, strict loading errors, initialisation and modes.

import XCTest
import Foundation
@testable import Core
import TestSupport

final class ModuleTests: XCTestCase {
    func testResNetKeyNamesAndParameterCounts() throws {
        let r18 = try resnet18()
        let keys = r18.stateDict().map(\.0)
        XCTAssertEqual(keys.first, "conv1.weight")
        XCTAssertTrue(keys.contains("layer2.0.downsample.0.weight"))
        XCTAssertTrue(keys.contains("layer4.1.bn2.num_batches_tracked"))
        XCTAssertEqual(keys.last, "fc.bias")
        XCTAssertEqual(keys.count, 122)
        // torchvision's counts.
        XCTAssertEqual(r18.numParameters(), 11_689_512)
        XCTAssertEqual(try resnet34().numParameters(), 21_797_672)
        XCTAssertEqual(try resnet50().numParameters(), 25_557_032)
        XCTAssertEqual(try wideResnet50_2().numParameters(), 68_883_240)
        XCTAssertFalse(try resnet18(embedder: true).stateDict().contains { $0.0.hasPrefix("fc.") })
    }

    func testTorchvisionInitialisation() throws {
        RandomGenerator.seed(0)
        let r = try resnet18()
        let conv = r.namedParameters().first { $0.0 == "layer3.0.conv1.weight" }!.1.value
        // kaiming_normal_(fan_out, relu): std = sqrt(2 / (256 * 9)).
        let std = Double(try! conv.pow(2).mean().item()).squareRoot()
        XCTAssertEqual(std, (2.0 / (256 * 9)).squareRoot(), accuracy: 0.002)
        let bn = r.stateDict().first { $0.0 == "layer3.0.bn1.weight" }!.1.asFloat
        XCTAssertTrue(bn.scalars.allSatisfy { $0 == 1 })
        let fc = r.namedParameters().first { $0.0 == "fc.weight" }!.1.value
        let bound = 1 / Float(512).squareRoot()
        XCTAssertTrue(fc.scalars.allSatisfy { abs($0) <= bound })
    }

    func testStrictLoadingNamesKeysAndShapes() throws {
        let m = Sequential([try Linear(3, 2), ReLU(), try Linear(2, 1)])
        var state = Dictionary(uniqueKeysWithValues: m.stateDict())
        state["0.weight"] = .float(try Tensor.zeros([2, 4]))
        XCTAssertThrowsError(try m.loadStateDict(state)) { e in
            XCTAssertEqual("\(e)", "load_state_dict: size mismatch for 0.weight: copying a param with shape [2, 4] from checkpoint, the shape in current model is [2, 3]")
        }
        state["0.weight"] = nil
        state["extra.weight"] = .float(try Tensor.zeros([1]))
        XCTAssertThrowsError(try m.loadStateDict(state)) { e in
            XCTAssertTrue("\(e)".contains("missing key(s) in state_dict: \"0.weight\""), "\(e)")
            XCTAssertTrue("\(e)".contains("unexpected key(s) in state_dict: \"extra.weight\""), "\(e)")
        }
        let (missing, unexpected) = try m.loadStateDict(state, strict: false)
        XCTAssertEqual(missing, ["0.weight"])
        XCTAssertEqual(unexpected, ["extra.weight"])
    }

    func testFailedLoadLeavesModuleUnchanged() throws {
        let m = Sequential([try Linear(3, 2), try Linear(2, 1)])
        let before = m.stateDict().map { $0.1.asFloat.scalars }
        var state = Dictionary(uniqueKeysWithValues: m.stateDict())
        state["0.weight"] = .float(try Tensor.ones([2, 3]))
        state["1.weight"] = .float(try Tensor.ones([5, 5]))
        XCTAssertThrowsError(try m.loadStateDict(state))
        XCTAssertEqual(m.stateDict().map { $0.1.asFloat.scalars }, before)
    }

    func testSaveAndLoadSafetensors() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("smil-m-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        RandomGenerator.seed(1)
        let a = try resnet18(numClasses: 3)
        try a.save(safetensors: path, metadata: ["seed": "1"])
        RandomGenerator.seed(2)
        let b = try resnet18(numClasses: 3)
        try b.load(safetensors: path)
        for ((ka, va), (kb, vb)) in zip(a.stateDict(), b.stateDict()) {
            XCTAssertEqual(ka, kb)
            XCTAssertEqual(va.asFloat.scalars, vb.asFloat.scalars, ka)
        }
        XCTAssertEqual(try SafeTensors.read(path).metadata["seed"], "1")
    }

    func testTrainEvalAndDropout() throws {
        let m = Sequential([try Linear(4, 4), try Dropout(0.5)])
        XCTAssertTrue(m.training)
        m.eval()
        XCTAssertFalse(m[1].training)
        let x = try Tensor.ones([2, 4])
        XCTAssertEqual(try m(x).scalars, try m(x).scalars, "dropout is off in eval")
        m.train()
        RandomGenerator.seed(0)
        let d = try Functional.dropout(Tensor.ones([1000]), p: 0.5, training: true)
        XCTAssertTrue(d.scalars.allSatisfy { $0 == 0 || $0 == 2 })
        let kept = d.scalars.filter { $0 != 0 }.count
        XCTAssertTrue(kept > 400 && kept < 600, "\(kept)")
    }

    func testSummaryShowsTree() throws {
        let text = Sequential([try Conv2d(3, 8, kernelSize: 3, padding: 1), try BatchNorm2d(8), ReLU()]).summary()
        XCTAssertTrue(text.contains("(0): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"), text)
        XCTAssertTrue(text.contains("(1): BatchNorm2d(8"), text)
    }

    /// torchinfo's table: resnet18 at 224 x 224 has 11,689,512 parameters, conv1 9,408 with output
    /// [1, 64, 112, 112], layer4 [1, 512, 7, 7] (torchinfo.summary(resnet18(), (1, 3, 224, 224))).
    func testModelSummaryTableMatchesTorchinfo() throws {
        let model = try resnet18()
        model.train()
        let before = model.stateDict().map { $0.1.asFloat.scalars }
        let s = try ModelSummary(model, input: [1, 3, 224, 224], depth: 1)
        XCTAssertEqual(s.totalParameters, 11_689_512)
        XCTAssertEqual(s.trainableParameters, 11_689_512)
        XCTAssertEqual(s.rows.map(\.name), ["", "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"])
        let byName = Dictionary(uniqueKeysWithValues: s.rows.map { ($0.name, $0) })
        XCTAssertEqual(byName["conv1"]?.outputShape, "[1, 64, 112, 112]")
        XCTAssertEqual(byName["conv1"]?.parameters, 9_408)
        XCTAssertEqual(byName["layer4"]?.outputShape, "[1, 512, 7, 7]")
        // A collapsed container counts everything under it.
        XCTAssertEqual(byName["layer1"]?.parameters, 147_968)
        XCTAssertEqual(byName[""]?.outputShape, "[1, 1000]")
        let text = s.description
        XCTAssertTrue(text.contains("Total params: 11,689,512"), text)
        XCTAssertTrue(text.contains("├─conv1 (Conv2d)"), text)
        XCTAssertTrue(text.contains("└─fc (Linear)"), text)
        // The summary's forward leaves the model as it was: training mode, running statistics untouched.
        XCTAssertTrue(model.training)
        XCTAssertEqual(model.stateDict().map { $0.1.asFloat.scalars }, before)
        // Without an input there is no output-shape column; deeper levels show each block's layers.
        let deep = try ModelSummary(model, depth: 3)
        XCTAssertFalse(deep.description.contains("Output shape"))
        XCTAssertTrue(deep.rows.contains { $0.name == "layer1.0.conv1" && $0.parameters == 36_864 })
        XCTAssertThrowsError(try ModelSummary(model, input: [1, 4, 32, 32]))
    }

    func testTrainingReducesLoss() throws {
        RandomGenerator.seed(0)
        let model = Sequential([try Linear(4, 16), ReLU(), try Linear(16, 2)])
        let x = try Tensor.randn([32, 4])
        let labels = IntTensor(x.scalars.enumerated().filter { $0.offset % 4 == 0 }.map { $0.element > 0 ? 1 : 0 })
        let opt = try Adam(model.allParameters(), lr: 1e-2)
        var first: Float = 0, last: Float = 0
        for step in 0..<100 {
            opt.zeroGrad()
            let loss = try Loss.crossEntropy(model(x), labels)
            try loss.backward()
            try opt.step()
            if step == 0 { first = try loss.item() }
            last = try loss.item()
        }
        XCTAssertLessThan(last, first * 0.3)
    }
}
