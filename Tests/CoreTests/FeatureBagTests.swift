// FeatureBagTests.swift: CLAM feature bags — extraction against PyTorch, the dataset and its
// batches, models on concatenated bags, and bad bag files.

import XCTest
import Foundation
@testable import Core
import TestSupport

final class FeatureBagTests: XCTestCase {
    var folder = ""

    override func setUpWithError() throws {
        folder = NSTemporaryDirectory() + "smil-bags-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: folder) }

    /// resnet18 features of real tiles, from torchvision's state dict file, against torchvision's
    /// model with the same weights and normalisation, within 1e-4.
    func testExtractionMatchesPyTorch() throws {
        let weights = try sharedFile("golden/torch/resnet18_state_dict.pth")
        let samples = try sharedFile("sample_data/TCGA-A6-5656-01Z-00-DX1.8a8ebf52-8217-4288-8886-7eefa6cdfdca")
        // Four real tiles, shrunk to 128 pixels, in a tile folder.
        let tilesFolder = folder + "/slide-a"
        try FileManager.default.createDirectory(atPath: tilesFolder, withIntermediateDirectories: true)
        for (i, name) in try FileManager.default.contentsOfDirectory(atPath: samples).sorted().prefix(4).enumerated() {
            let image = try RGBImage(ImageIO.read(samples + "/" + name)).resized(width: 128, height: 128)
            try ImageIO.writePNG(image, to: tilesFolder + "/\(i / 2)_\(i % 2).png")
        }
        let encoder = try FeatureExtraction.encoder("resnet18", weights: weights)
        let tiles = try FeatureExtraction.tiles(.tileFolder(tilesFolder))
        XCTAssertEqual(tiles.coords, [Point(0, 0), Point(128, 0), Point(0, 128), Point(128, 128)])
        let features = try FeatureExtraction.extract(tiles, encoder: encoder, batchSize: 3, workers: 2)
        XCTAssertEqual(features.shape, [4, 512])
        try FeatureExtraction.write(features: features, coords: tiles.coords, attributes: tiles.attributes, to: folder + "/out", id: "slide-a")
        XCTAssertTrue(FeatureExtraction.isDone("slide-a", in: folder + "/out"))
        let script = """
        import sys, glob, numpy as np, torch, torchvision, h5py
        from PIL import Image
        folder, weights, out = sys.argv[1], sys.argv[2], sys.argv[3]
        model = torchvision.models.resnet18()
        model.load_state_dict(torch.load(weights, weights_only=True))
        model.fc = torch.nn.Identity()
        model.eval()
        names = ["0_0.png", "0_1.png", "1_0.png", "1_1.png"]
        x = torch.stack([torch.from_numpy(np.asarray(Image.open(folder + "/" + n).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1) for n in names])
        x = torchvision.transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])(x)
        with torch.no_grad():
            ref = model(x)
        f = h5py.File(out + "/h5_files/slide-a.h5", "r")
        mine = torch.from_numpy(f["features"][:])
        pt = torch.load(out + "/pt_files/slide-a.pt", weights_only=True)
        err = (mine - ref).norm() / ref.norm()
        print("RESULT", float(err), float((pt - mine).abs().max()), f["coords"][:].tolist(), int(f["coords"].attrs["patch_size"]))
        """
        let (status, output) = try runPeerPython(script, [tilesFolder, weights, folder + "/out"])
        XCTAssertEqual(status, 0, output)
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("RESULT") }) else {
            if output.contains("No module named") { throw XCTSkip("skipped: the peers' Python lacks a module: \(output)") }
            return XCTFail(output)
        }
        let fields = line.split(separator: " ")
        XCTAssertLessThan(Double(fields[1])!, 1e-4, "relative error against torchvision: \(line)")
        XCTAssertEqual(Double(fields[2])!, 0, "the pt file holds the h5's features")
        XCTAssertTrue(line.hasSuffix("[[0, 0], [128, 0], [0, 128], [128, 128]] 128"), String(line))
    }

    func testResNet50TruncIsCLAMs1024DEncoder() throws {
        let model = try FeatureExtraction.encoder("resnet50_trunc")
        XCTAssertEqual(model.featureDimension, 1024)
        XCTAssertFalse(model.stateDict().contains { $0.0.hasPrefix("layer4.") })
        XCTAssertFalse(model.training)
        let y = try GradMode.noGrad { try model(try Tensor.rand([2, 3, 64, 64])) }
        XCTAssertEqual(y.shape, [2, 1024])
        XCTAssertThrowsError(try FeatureExtraction.encoder("vit_giant")) { XCTAssertTrue("\($0)".contains("resnet50_trunc"), "\($0)") }
        XCTAssertThrowsError(try ResNet(block: .basic, layers: [2, 2, 2, 2], truncate: 3)) { XCTAssertTrue("\($0)".contains("embedder"), "\($0)") }
    }

    func testDatasetBatchesAndModelsOnConcatenatedBags() throws {
        try SyntheticBags.write(to: folder, kind: .arrangement, bagsPerClass: 3, tiles: 40, dimension: 8, seed: 5)
        let data = try SlideDataset.features(root: folder)
        XCTAssertTrue(data.isFeatureBags)
        XCTAssertEqual(data.count, 6)
        XCTAssertEqual(data.classes, ["blocks", "checkerboard"])
        var rng = RandomGenerator(seed: 0)
        let s = try data.sample(0, rng: &rng)
        XCTAssertEqual(s.tiles.shape[1], 8)
        XCTAssertEqual(s.coords.shape, [s.tiles.shape[0], 2])
        // Positions in tile units from the top-left tile: 256-pixel tiles, offsets 0, 1, 2, ...
        XCTAssertEqual(s.coords.scalars.min(), 0)
        XCTAssertTrue(s.coords.scalars.allSatisfy { $0 == $0.rounded() && $0 < 20 })

        // max_tiles: a fixed subset; sample: a fresh draw each epoch.
        data.maxTiles = 10
        var r1 = RandomGenerator(seed: 1), r2 = RandomGenerator(seed: 2)
        let a = try data.sample(0, rng: &r1), b = try data.sample(0, rng: &r2)
        XCTAssertEqual(a.tiles.shape[0], 10)
        XCTAssertEqual(a.tiles.scalars, b.tiles.scalars)
        data.maxTiles = nil
        data.sampleTiles = 10
        let c = try data.sample(0, rng: &r1), d = try data.sample(0, rng: &r2)
        XCTAssertEqual(c.tiles.shape[0], 10)
        XCTAssertNotEqual(c.tiles.scalars, d.tiles.scalars)
        data.sampleTiles = nil

        // Bags of different sizes in one batch are concatenated, with their lengths.
        let loader = try DataLoader(data, batchSize: 3, shuffle: false, workers: 1)
        let it = loader.makeIterator()
        let batch = try XCTUnwrap(try it.nextBatch())
        let lengths = try XCTUnwrap(batch.lengths)
        XCTAssertEqual(lengths.count, 3)
        XCTAssertEqual(batch.tiles.shape, [lengths.reduce(0, +), 8])

        // A model on the concatenation gives each bag what it gives the bag alone (eval mode).
        let models: [MILModel] = [
            try sparseConvMIL(classes: 2, channels: [8], downsample: 1, hidden: 8, features: 8),
            try PooledMIL(embedder: try Linear(8, 6), classifier: try Linear(6, 2), pooling: .attention(hidden: 4, gated: true), dimension: 6),
            try PooledMIL(embedder: Identity(), classifier: try Linear(8, 2), pooling: .mean, dimension: 8),
        ]
        for model in models {
            model.eval()
            let together = try model.forward(batch)
            var start = 0
            for (i, n) in lengths.enumerated() {
                let alone = try model.forward(tiles: try batch.tiles.slice(dim: 0, start: start, end: start + n).reshaped([1, n, 8]),
                                              coords: try batch.coords.slice(dim: 0, start: start, end: start + n).reshaped([1, n, 2]))
                assertClose(try together.slice(dim: 0, start: i, end: i + 1), alone, tolerance: 1e-5, "\(model.typeName) bag \(i)")
                start += n
            }
        }
        // Training on concatenated bags runs and fits the three batches' labels.
        let model = try sparseConvMIL(classes: 2, channels: [8, 8], downsample: 1, hidden: 8, features: 8)
        let opt = try Adam(model.allParameters(), lr: 1e-2)
        var first = 0.0, last = 0.0
        for epoch in 0..<15 {
            let m = try Trainer.trainEpoch(model, loader, opt)
            if epoch == 0 { first = m.loss }
            last = m.loss
        }
        XCTAssertLessThan(last, first)
    }

    func testBadBagsNameTheFile() throws {
        let h5 = folder + "/h5_files"
        try FileManager.default.createDirectory(atPath: h5, withIntermediateDirectories: true)
        func bag(_ name: String, features: Tensor?, coords: IntTensor?) throws {
            try H5Writing.replace(h5 + "/\(name).h5") { f in
                if let x = features { try f.write("features", x) }
                if let c = coords { try f.write("coords", c) }
            }
        }
        let good = try Tensor.rand([3, 4]), goodCoords = try IntTensor([0, 0, 256, 0, 0, 256], shape: [3, 2])
        try bag("a", features: good, coords: goodCoords)
        try bag("b", features: good, coords: goodCoords)
        try "a,x\nb,y\n".write(toFile: folder + "/labels.csv", atomically: true, encoding: .utf8)
        XCTAssertEqual(try SlideDataset.features(root: folder).count, 2)

        func assertError(_ contains: String, line: UInt = #line) {
            XCTAssertThrowsError(try SlideDataset.features(root: folder), line: line) { XCTAssertTrue("\($0)".contains(contains), "\($0)", line: line) }
        }
        try bag("b", features: nil, coords: goodCoords)
        assertError("b.h5: no features dataset")
        try bag("b", features: good, coords: try IntTensor([0, 0, 256, 0], shape: [2, 2]))
        assertError("b.h5: 3 feature rows but 2 coordinates")
        try bag("b", features: try Tensor.rand([3, 5]), coords: goodCoords)
        assertError("features are 5-D but")
        try bag("b", features: try Tensor.zeros([0, 4]), coords: try IntTensor([], shape: [0, 2]))
        assertError("b.h5: the bag is empty")
        try bag("b", features: good, coords: nil)
        assertError("b.h5: no coords dataset")
        try bag("b", features: good, coords: goodCoords)
        try "a,x\nb,y\nc,y\n".write(toFile: folder + "/labels.csv", atomically: true, encoding: .utf8)
        assertError("slide \"c\" has a label but no feature bag")
    }

    /// CLAM-SB's logits and training loss (bag and instance terms, subtyping on and off) against
    /// the same computation in PyTorch with the same weights, CLAM's module layout.
    func testCLAMSBMatchesPyTorch() throws {
        RandomGenerator.seed(3)
        let features = try Tensor.randn([20, 16])
        for subtyping in [false, true] {
            let model = try CLAMSB(features: 16, hidden: 12, attention: 8, classes: 3, dropout: 0.25, kSample: 4, bagWeight: 0.7, subtyping: subtyping)
            model.eval()
            let batch = SlideBatch(tiles: features, coords: try Tensor.zeros([20, 2]), labels: IntTensor([1]), slideIDs: ["a"], lengths: [20])
            let (logits, loss) = try model.trainingLoss(batch)
            let path = folder + "/clam-\(subtyping).pt"
            var entries: [(TorchValue, TorchValue)] = model.stateDict().map { (.string($0.0), .tensor($0.1)) }
            entries.append((.string("features"), .tensor(.float(features))))
            try TorchFile.write(.dict(entries), to: path)
            let script = """
            import sys, torch, torch.nn as nn, torch.nn.functional as F
            d = torch.load(sys.argv[1], weights_only=True)
            subtyping = sys.argv[2] == "true"
            class Gated(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.attention_a = nn.Sequential(nn.Linear(12, 8), nn.Tanh(), nn.Dropout(0.25))
                    self.attention_b = nn.Sequential(nn.Linear(12, 8), nn.Sigmoid(), nn.Dropout(0.25))
                    self.attention_c = nn.Linear(8, 1)
                def forward(self, x):
                    return self.attention_c(self.attention_a(x) * self.attention_b(x)), x
            class ClamSB(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.attention_net = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Dropout(0.25), Gated())
                    self.classifiers = nn.Linear(12, 3)
                    self.instance_classifiers = nn.ModuleList([nn.Linear(12, 2) for _ in range(3)])
            m = ClamSB()
            m.load_state_dict({k: v for k, v in d.items() if k != "features"})
            m.eval()
            a, h = m.attention_net(d["features"])
            a = F.softmax(a.t(), dim=1)
            logits = m.classifiers(a @ h)
            label, k = 1, 4
            total = 0.0
            top = torch.topk(a, k)[1][-1]
            bottom = torch.topk(-a, k, dim=1)[1][-1]
            for c in range(3):
                if c == label:
                    x = torch.cat([h[top], h[bottom]])
                    t = torch.cat([torch.ones(k, dtype=torch.long), torch.zeros(k, dtype=torch.long)])
                elif subtyping:
                    x = h[top]
                    t = torch.zeros(k, dtype=torch.long)
                else:
                    continue
                total = total + F.cross_entropy(m.instance_classifiers[c](x), t)
            if subtyping:
                total = total / 3
            loss = 0.7 * F.cross_entropy(logits, torch.tensor([label])) + 0.3 * total
            print("RESULT", " ".join(f"{v:.7f}" for v in logits.flatten().tolist()), f"{loss.item():.7f}")
            """
            let (status, output) = try runPeerPython(script, [path, subtyping ? "true" : "false"])
            XCTAssertEqual(status, 0, output)
            guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("RESULT") }) else { return XCTFail(output) }
            let values = line.split(separator: " ").dropFirst().map { Float($0)! }
            for c in 0..<3 { XCTAssertEqual(logits[flat: c], values[c], accuracy: 1e-5, "logit \(c), subtyping \(subtyping)") }
            XCTAssertEqual(try loss.item(), values[3], accuracy: 1e-5, "loss, subtyping \(subtyping)")
        }
    }
}
