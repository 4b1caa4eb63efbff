// FeatureExtraction.swift: every tissue tile embedded once by a frozen encoder, written as CLAM's
// feature bags (h5_files/SLIDE.h5: features + coords with the patch attributes; pt_files/SLIDE.pt).
// Tiles are decoded by worker threads while the encoder runs on the batch before.

import Foundation

/// What to extract from: a folder of `ROW_COL` tiles (the reference layout), or a slide file with
/// its patch coordinates.
public enum ExtractionSource: Sendable {
    case tileFolder(String)
    case slide(String)

    public var id: String {
        switch self {
        case .tileFolder(let f): return (f as NSString).lastPathComponent
        case .slide(let p): return WholeSlideImage.slideID(p)
        }
    }

    /// The sources named by paths: a slide file; a folder of slide files; a folder of tiles; a
    /// folder of tile folders (the reference layout's root).
    public static func find(_ paths: [String]) throws -> [ExtractionSource] {
        let fm = FileManager.default
        var out: [ExtractionSource] = []
        func isDir(_ p: String) -> Bool { var d: ObjCBool = false; return fm.fileExists(atPath: p, isDirectory: &d) && d.boolValue }
        func hasTiles(_ p: String) -> Bool {
            ((try? fm.contentsOfDirectory(atPath: p)) ?? []).contains { SlideDataset.imageExtensions.contains(($0 as NSString).pathExtension.lowercased()) }
        }
        for p in paths {
            guard fm.fileExists(atPath: p) else { throw CoreError.file(path: p, "no such slide, tile folder or folder of them") }
            if !isDir(p) { out.append(.slide(p)); continue }
            if hasTiles(p) { out.append(.tileFolder(p)); continue }
            let names = try fm.contentsOfDirectory(atPath: p).sorted().filter { !$0.hasPrefix(".") }
            let slides = names.filter { SlideDataset.slideExtensions.contains(($0 as NSString).pathExtension.lowercased()) }
            let folders = names.map { (p as NSString).appendingPathComponent($0) }.filter { isDir($0) && hasTiles($0) }
            guard !slides.isEmpty || !folders.isEmpty else {
                throw CoreError.file(path: p, "holds no slide files and no folders of tiles")
            }
            out += slides.map { .slide((p as NSString).appendingPathComponent($0)) } + folders.map { .tileFolder($0) }
        }
        return out
    }
}

public enum FeatureExtraction {
    /// Encoders by name, in evaluation mode, with the normalisation their weights expect:
    /// resnet18/34/50 and wide_resnet50_2 (pooled features), resnet50_trunc (CLAM's: layer3 then
    /// pooling, 1024-D). `weights`: a torchvision .pth or safetensors state dict (keys it has no
    /// layer for, `fc.*` and a truncated model's later layers, are left out).
    public static func encoder(_ name: String, weights: String? = nil) throws -> ResNet {
        let model: ResNet
        switch name {
        case "resnet18": model = try resnet18(embedder: true)
        case "resnet34": model = try resnet34(embedder: true)
        case "resnet50": model = try resnet50(embedder: true)
        case "resnet50_trunc": model = try resnet50(embedder: true, truncate: 3)
        case "wide_resnet50_2": model = try wideResnet50_2(embedder: true)
        default:
            throw CoreError.invalidArgument(op: "extract", "unknown encoder \"\(name)\" (resnet18, resnet34, resnet50, resnet50_trunc, wide_resnet50_2)")
        }
        if let path = weights {
            let keys = Set(model.stateDict().map(\.0))
            let all = try loadTensors(path)
            let relevant = all.filter { keys.contains($0.key) }
            guard !relevant.isEmpty else { throw CoreError.file(path: path, "no tensor in it has a name of \(name)'s (conv1.weight, layer1.0.conv1.weight, ...)") }
            try model.loadStateDict(relevant, strict: true)
        }
        model.eval()
        return model
    }

    /// A safetensors or PyTorch file's tensors, by content.
    static func loadTensors(_ path: String) throws -> [String: AnyTensor] {
        switch TorchFile.format(of: path) {
        case .zip, .legacy: return Dictionary(try TorchFile.read(path).flattenedTensors().map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
        default: return try SafeTensors.read(path).dictionary
        }
    }

    /// The tiles of a source: each tile's level-0 (x, y) and how to read it, with the patch
    /// attributes that go into the feature file.
    public struct Tiles {
        public let coords: [Point]
        public let attributes: [String: H5Attribute]
        let read: (Int) throws -> Tensor
    }

    /// A source's tiles. A tile folder's `ROW_COL` tiles sit at `(col x S, row x S)` for S their
    /// width; a slide's come from `patches/SLIDE.h5` when given (CLAM's or smil's), else from
    /// tiling it (`size` pixels at level 0, CLAM's tcga preset).
    public static func tiles(_ source: ExtractionSource, patches: String? = nil, size: Int = 256) throws -> Tiles {
        switch source {
        case .tileFolder(let folder):
            var found = try SlideDataset.tileFiles(in: folder)
            let first = found[0]
            let side = try ImageIO.read(first.path).shape[2]
            found.sort { ($0.row, $0.col) < ($1.row, $1.col) }
            let attrs: [String: H5Attribute] = ["patch_size": .int(side), "patch_level": .int(0), "downsample": .floats([1, 1]),
                                                "name": .string(source.id)]
            return Tiles(coords: found.map { Point($0.col * side, $0.row * side) }, attributes: attrs) { i in
                let t = try ImageIO.read(found[i].path)
                guard t.shape == [3, side, side] else {
                    throw CoreError.file(path: found[i].path, "tile of shape \(shapeString(t.shape)) differs from the folder's first, \(shapeString([3, side, side]))")
                }
                return t
            }
        case .slide(let path):
            let slide = try WholeSlideImage(path)
            let coords: [Point], geometry: TileGeometry, attrs: [String: H5Attribute]
            let h5 = patches.map { ($0 as NSString).appendingPathComponent("\(source.id).h5") }
            if let h5, FileManager.default.fileExists(atPath: h5) {
                let file = try PatchFile.read(h5)
                geometry = try file.geometry(on: slide, path: h5)
                coords = file.points
                attrs = file.attributes
            } else {
                geometry = try TileGeometry(slide: slide, size: size)
                coords = Tiling.coordinates(try Tissue.segment(slide), geometry: geometry, slideSize: slide.dimensions)
                attrs = PatchFile.attributes(slide: slide, geometry: geometry, savePath: patches ?? "")
            }
            guard !coords.isEmpty else { throw CoreError.file(path: path, "no tissue tiles to extract") }
            return Tiles(coords: coords, attributes: attrs) { i in try Tiling.readTile(slide, at: coords[i], geometry: geometry).tensor }
        }
    }

    /// Embeds every tile: batches of `batchSize` decoded by up to `workers` threads ahead of the
    /// encoder, normalised, run without autograd. `progress(done, total)` after each batch.
    public static func extract(_ tiles: Tiles, encoder: Module, normalization: TileNormalization? = .imagenet, batchSize: Int = 64,
                               workers: Int = 2, progress: (Int, Int) -> Void = { _, _ in }) throws -> Tensor {
        try Require.positive(batchSize, "batch", op: "extract")
        let n = tiles.coords.count
        let batches = (n + batchSize - 1) / batchSize
        final class Slot: @unchecked Sendable { var result: Result<Tensor, Error>?; let done = DispatchSemaphore(value: 0) }
        let queue = DispatchQueue(label: "smil.extract", attributes: .concurrent)
        var slots: [Int: Slot] = [:]
        let read = tiles.read
        func schedule(_ b: Int) {
            guard b < batches, slots[b] == nil else { return }
            let slot = Slot()
            slots[b] = slot
            let range = (b * batchSize)..<min(n, (b + 1) * batchSize)
            let work = {
                slot.result = Result {
                    var images: [Tensor] = []
                    for i in range { try Interrupt.check(); images.append(try read(i)) }
                    var batch = try Tensor.stack(images)
                    if let norm = normalization { batch = try norm.apply(batch) }
                    return batch
                }
                slot.done.signal()
            }
            if workers == 0 { work() } else { queue.async(execute: work) }
        }
        let wasTraining = encoder.training
        encoder.eval()
        defer { encoder.train(wasTraining) }
        var outputs: [Tensor] = []
        try GradMode.noGrad {
            for b in 0..<batches {
                for ahead in b...(b + max(0, workers)) { schedule(ahead) }
                let slot = slots.removeValue(forKey: b)!
                slot.done.wait()
                let features = try encoder(try slot.result!.get())
                guard features.rank == 2, features.shape[0] == min(n, (b + 1) * batchSize) - b * batchSize else {
                    throw CoreError.shapeMismatch(op: "extract", "the encoder must return [N, D] for N tiles, got \(shapeString(features.shape))")
                }
                outputs.append(features)
                progress(min(n, (b + 1) * batchSize), n)
                try Interrupt.check()
            }
        }
        // Wait for any decoding still running before returning (its closures reference `tiles`).
        for slot in slots.values { slot.done.wait() }
        return try Tensor.cat(outputs, dim: 0)
    }

    /// CLAM's layout: `dir/h5_files/ID.h5` (features float32 [N, D], coords int64 [N, 2] with the
    /// patch attributes) and `dir/pt_files/ID.pt` (torch.save of the features), each atomically.
    public static func write(features: Tensor, coords: [Point], attributes: [String: H5Attribute], to dir: String, id: String) throws {
        let fm = FileManager.default
        for sub in ["h5_files", "pt_files"] { try fm.createDirectory(atPath: (dir as NSString).appendingPathComponent(sub), withIntermediateDirectories: true) }
        try TorchFile.write(.tensor(.float(features)), to: (dir as NSString).appendingPathComponent("pt_files/\(id).pt"))
        try H5Writing.replace((dir as NSString).appendingPathComponent("h5_files/\(id).h5")) { file in
            try file.write("features", features, chunkRows: 1024)
            try file.write("coords", try IntTensor(coords.flatMap { [$0.x, $0.y] }, shape: [coords.count, 2]), chunkRows: 1024)
            for (k, v) in attributes.sorted(by: { $0.key < $1.key }) { try file.setAttribute(k, v, on: "coords") }
        }
    }

    /// Whether a source's bag is already written (both files), so a rerun skips it.
    public static func isDone(_ id: String, in dir: String) -> Bool {
        FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("h5_files/\(id).h5"))
            && FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("pt_files/\(id).pt"))
    }
}
