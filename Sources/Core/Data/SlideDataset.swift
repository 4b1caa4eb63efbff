// SlideDataset.swift: whole slide images in the reference layout — one folder of ROW_COL tiles per
// slide and a slide_id,label CSV — sampled K tiles per slide, with replacement (method.md).

import Foundation

/// One slide: its tiles' grid positions and files, and its class.
public struct Slide {
    public let id: String
    public let label: String
    public let classIndex: Int
    public let tiles: [(row: Int, col: Int, path: String)]
}

/// One sampled slide: tiles `[K, 3, S, S]`, coordinates `[K, 2]` (row, col), class index.
public struct SlideSample {
    public let tiles: Tensor
    public let coords: Tensor
    public let label: Int
    public let slideID: String
}

public final class SlideDataset {
    public let root: String
    /// Label names, sorted; a slide's class is the index of its label here.
    public let classes: [String]
    public let slides: [Slide]
    public var tilesPerSlide: Int
    /// Tiles are cropped to tile_size x tile_size (randomly with augmentation, else centred).
    public var tileSize: Int?
    public var augmentation: TileAugmentation?
    /// Per-channel (mean, std) applied to every tile after augmentation, in training and in
    /// evaluation alike: what a pretrained embedder expects (`TileNormalization.imagenet`).
    public var normalization: TileNormalization?

    static let imageExtensions: Set<String> = ["png", "jpg", "jpeg", "bmp"]

    /// Reads the layout. `labels` defaults to `root/labels.csv`; a header line is recognised
    /// (first field `slide_id`, `slide` or `id`, or a `label` second field naming no folder).
    public init(root: String, labels: String? = nil, tilesPerSlide: Int = 5, tileSize: Int? = nil,
                augmentation: TileAugmentation? = nil) throws {
        self.root = root
        self.tilesPerSlide = tilesPerSlide
        self.tileSize = tileSize
        self.augmentation = augmentation
        guard tilesPerSlide > 0 else { throw CoreError.invalidArgument(op: "SlideDataset", "tiles_per_slide must be positive, got \(tilesPerSlide)") }
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
            throw CoreError.file(path: root, "no such folder of slides")
        }
        let csvPath = labels ?? (root as NSString).appendingPathComponent("labels.csv")
        guard let text = try? String(contentsOfFile: csvPath, encoding: .utf8) else {
            throw CoreError.file(path: csvPath, "cannot read the labels file")
        }
        let folders = Set(try fm.contentsOfDirectory(atPath: root).filter {
            var d: ObjCBool = false
            return fm.fileExists(atPath: (root as NSString).appendingPathComponent($0), isDirectory: &d) && d.boolValue
        })
        var labelOf: [String: String] = [:], order: [String] = []
        for (n, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            if fields.allSatisfy({ $0.isEmpty }) { continue }
            guard fields.count >= 2, !fields[0].isEmpty, !fields[1].isEmpty else {
                throw CoreError.file(path: csvPath, "line \(n + 1): expected slide_id,label, got \"\(line)\"")
            }
            if n == 0 && !folders.contains(fields[0]) &&
                (["slide_id", "slide", "id", "slide_name"].contains(fields[0].lowercased()) || fields[1].lowercased() == "label") { continue }
            if labelOf[fields[0]] != nil { throw CoreError.file(path: csvPath, "line \(n + 1): slide \"\(fields[0])\" is listed twice") }
            labelOf[fields[0]] = fields[1]
            order.append(fields[0])
        }
        if let missing = order.first(where: { !folders.contains($0) }) {
            throw CoreError.file(path: csvPath, "slide \"\(missing)\" has a label but no folder in \(root)")
        }
        if let unlabelled = folders.sorted().first(where: { labelOf[$0] == nil }) {
            throw CoreError.file(path: (root as NSString).appendingPathComponent(unlabelled), "slide folder has no label in \(csvPath)")
        }
        classes = Array(Set(labelOf.values)).sorted()
        guard classes.count >= 2 else {
            throw CoreError.file(path: csvPath, "at least two distinct labels are needed, found \(classes.count) (\(classes.joined(separator: ", ")))")
        }
        var slides: [Slide] = []
        for id in order {
            let folder = (root as NSString).appendingPathComponent(id)
            var tiles: [(Int, Int, String)] = []
            for name in try fm.contentsOfDirectory(atPath: folder).sorted() {
                let ext = (name as NSString).pathExtension.lowercased()
                guard Self.imageExtensions.contains(ext) else { continue }
                let stem = (name as NSString).deletingPathExtension.split(separator: "_")
                guard stem.count == 2, let r = Int(stem[0]), let c = Int(stem[1]) else {
                    throw CoreError.file(path: (folder as NSString).appendingPathComponent(name), "tile name is not ROW_COL.\(ext)")
                }
                tiles.append((r, c, (folder as NSString).appendingPathComponent(name)))
            }
            guard !tiles.isEmpty else { throw CoreError.file(path: folder, "slide folder has no tiles (ROW_COL.png|jpg|jpeg|bmp)") }
            slides.append(Slide(id: id, label: labelOf[id]!, classIndex: classes.firstIndex(of: labelOf[id]!)!, tiles: tiles.map { ($0.0, $0.1, $0.2) }))
        }
        self.slides = slides
    }

    public var count: Int { slides.count }

    /// Samples slide `index` with `rng`: K tiles with replacement, decoded, cropped, augmented.
    public func sample(_ index: Int, rng: inout RandomGenerator) throws -> SlideSample {
        guard slides.indices.contains(index) else {
            throw CoreError.invalidArgument(op: "SlideDataset", "slide index \(index) out of range (\(slides.count) slides)")
        }
        guard tilesPerSlide > 0 else {
            throw CoreError.invalidArgument(op: "SlideDataset", "tiles_per_slide must be positive, got \(tilesPerSlide)")
        }
        let slide = slides[index]
        var tiles: [Tensor] = [], coords: [Float] = []
        for _ in 0..<tilesPerSlide {
            try Interrupt.check()
            let t = slide.tiles[rng.nextInt(0, slide.tiles.count)]
            var image = try ImageIO.read(t.path)
            if let s = tileSize { image = try crop(image, to: s, random: augmentation != nil, rng: &rng, path: t.path) }
            if let a = augmentation { image = a.apply(image, rng: &rng) }
            if let n = normalization { image = try n.apply(image) }
            if let first = tiles.first, first.shape != image.shape {
                throw CoreError.file(path: t.path, "tile of shape \(shapeString(image.shape)) differs from \(shapeString(first.shape)); set tile_size to crop them alike")
            }
            tiles.append(image)
            coords += [Float(t.row), Float(t.col)]
        }
        return SlideSample(tiles: try Tensor.stack(tiles), coords: try Tensor(coords, shape: [tilesPerSlide, 2]),
                           label: slide.classIndex, slideID: slide.id)
    }

    func crop(_ image: Tensor, to s: Int, random: Bool, rng: inout RandomGenerator, path: String) throws -> Tensor {
        let h = image.shape[1], w = image.shape[2]
        guard h >= s, w >= s else { throw CoreError.file(path: path, "tile of \(h) x \(w) pixels is smaller than tile_size \(s)") }
        let y0 = random ? rng.nextInt(0, h - s + 1) : (h - s) / 2, x0 = random ? rng.nextInt(0, w - s + 1) : (w - s) / 2
        return try image.slice(dim: 1, start: y0, end: y0 + s).slice(dim: 2, start: x0, end: x0 + s)
    }

    /// Class counts, by class index.
    public var classCounts: [Int] {
        var c = [Int](repeating: 0, count: classes.count)
        for s in slides { c[s.classIndex] += 1 }
        return c
    }

    /// A dataset over a subset of the slides (same settings).
    public func subset(_ indices: [Int]) -> SlideDataset {
        let d = SlideDataset(root: root, classes: classes, slides: indices.map { slides[$0] }, tilesPerSlide: tilesPerSlide,
                             tileSize: tileSize, augmentation: augmentation)
        d.normalization = normalization
        return d
    }

    init(root: String, classes: [String], slides: [Slide], tilesPerSlide: Int, tileSize: Int?, augmentation: TileAugmentation?) {
        self.root = root
        self.classes = classes
        self.slides = slides
        self.tilesPerSlide = tilesPerSlide
        self.tileSize = tileSize
        self.augmentation = augmentation
    }

    /// Stratified, seeded split into parts of the given fractions (the last takes the rest).
    public func split(_ fractions: [Double], stratify: Bool = true) -> [SlideDataset] {
        var parts = [[Int]](repeating: [], count: fractions.count)
        let groups: [[Int]] = stratify ? classes.indices.map { c in slides.indices.filter { slides[$0].classIndex == c } } : [Array(slides.indices)]
        for var g in groups {
            g.shuffle(using: &RandomGenerator.global)
            var start = 0
            let total = fractions.reduce(0, +)
            for (i, f) in fractions.enumerated() {
                let n = i == fractions.count - 1 ? g.count - start : Int((Double(g.count) * f / total).rounded())
                let end = min(g.count, start + max(0, n))
                parts[i] += g[start..<end]
                start = end
            }
        }
        return parts.map { subset($0.sorted()) }
    }

    /// k folds: fold i's (train, validation) datasets, stratified and seeded.
    public func folds(_ k: Int) -> [(train: SlideDataset, validation: SlideDataset)] {
        var assignment = [Int](repeating: 0, count: slides.count)
        for c in classes.indices {
            var members = slides.indices.filter { slides[$0].classIndex == c }
            members.shuffle(using: &RandomGenerator.global)
            for (i, m) in members.enumerated() { assignment[m] = i % k }
        }
        return (0..<k).map { f in
            (subset(slides.indices.filter { assignment[$0] != f }), subset(slides.indices.filter { assignment[$0] == f }))
        }
    }
}

/// Per-channel normalisation of `[3, H, W]` tiles in [0, 1]: `(x - mean) / std`.
public struct TileNormalization: Equatable, Sendable {
    public var mean: [Float]
    public var std: [Float]

    /// torchvision's ImageNet statistics, which its pretrained weights (and CLAM's encoders) expect.
    public static let imagenet = TileNormalization(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])

    public init(mean: [Float], std: [Float]) {
        self.mean = mean
        self.std = std
    }

    /// Checks three means and three positive, finite deviations.
    public func validated() throws -> TileNormalization {
        guard mean.count == 3, std.count == 3, mean.allSatisfy(\.isFinite), std.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw CoreError.invalidArgument(op: "normalize", "needs three finite means and three positive deviations, got mean \(mean), std \(std)")
        }
        return self
    }

    /// `(x - mean[c]) / std[c]` for every channel `c` of a `[3, H, W]` image or a `[N, 3, H, W]`
    /// batch (torchvision's `transforms.Normalize`). A tensor that requires grad is normalised
    /// through the differentiable operations, so gradients reach it; otherwise in one pass.
    public func apply(_ image: Tensor) throws -> Tensor {
        guard (image.rank == 3 && image.shape[0] == 3) || (image.rank == 4 && image.shape[1] == 3) else {
            throw CoreError.shapeMismatch(op: "normalize", "expects [3, H, W] images or [N, 3, H, W] batches, got \(shapeString(image.shape))")
        }
        if image.requiresGrad {
            let m = try Tensor(mean, shape: [3, 1, 1]), s = try Tensor(std, shape: [3, 1, 1])
            return try (image - m) / s
        }
        // Subtract then divide, as torchvision does, for the same roundings.
        var out = image
        let plane = image.shape[image.rank - 1] * image.shape[image.rank - 2]
        out.withUnsafeMutableBufferPointer { p in
            for n in 0..<(image.rank == 4 ? image.shape[0] : 1) {
                for c in 0..<3 {
                    let base = (n * 3 + c) * plane
                    let (m, s) = (mean[c], std[c])
                    for i in base..<(base + plane) { p[i] = (p[i] - m) / s }
                }
            }
        }
        return out
    }
}
