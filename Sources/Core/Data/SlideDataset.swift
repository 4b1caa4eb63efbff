// SlideDataset.swift: whole slide images in the reference layout — one folder of ROW_COL tiles per
// slide and a slide_id,label CSV — sampled K tiles per slide, with replacement (method.md).

import Foundation

/// One slide: its tiles' grid positions and files (or its slide file and tile coordinates), and
/// its class.
public struct Slide {
    public let id: String
    public let label: String
    public let classIndex: Int
    /// Tile files, in the reference layout (empty for a slide file).
    public let tiles: [(row: Int, col: Int, path: String)]
    /// The scanner file and its tissue tiles, for a dataset of slide files.
    public let wholeSlide: WholeSlideTiles?
    /// The feature bag, for a dataset of CLAM feature files.
    public let bag: FeatureBag?

    init(id: String, label: String, classIndex: Int, tiles: [(row: Int, col: Int, path: String)], wholeSlide: WholeSlideTiles? = nil,
         bag: FeatureBag? = nil) {
        self.id = id
        self.label = label
        self.classIndex = classIndex
        self.tiles = tiles
        self.wholeSlide = wholeSlide
        self.bag = bag
    }

    /// How many tiles the slide offers.
    public var tileCount: Int { bag?.count ?? wholeSlide?.coords.count ?? tiles.count }
}

/// A slide file's tissue tiles: level-0 coordinates and how to read them. The file is opened on
/// first use and shared by the loader's workers (OpenSlide reads are thread-safe).
public final class WholeSlideTiles: @unchecked Sendable {
    public let path: String
    public let coords: [Point]
    public let geometry: TileGeometry
    let lock = NSLock()
    var opened: WholeSlideImage?

    public init(path: String, coords: [Point], geometry: TileGeometry, slide: WholeSlideImage? = nil) {
        self.path = path
        self.coords = coords
        self.geometry = geometry
        opened = slide
    }

    public func slide() throws -> WholeSlideImage {
        try lock.withLock {
            if let s = opened { return s }
            let s = try WholeSlideImage(path)
            opened = s
            return s
        }
    }

    /// Tile `i` as `[3, S, S]` and its grid position in tile units.
    func read(_ i: Int) throws -> (image: Tensor, row: Int, col: Int) {
        let p = coords[i]
        let (row, col) = Tiling.gridPosition(p, geometry: geometry)
        return (try Tiling.readTile(try slide(), at: p, geometry: geometry).tensor, row, col)
    }
}

/// How a dataset of slide files finds its tiles: CLAM patch files in `patches` (read when there,
/// written there when not), or its own tiling cached under the user's cache folder.
public struct SlideTilingOptions: Sendable {
    public var patches: String? = nil
    public var size = 256
    public var level: Int? = nil
    public var mpp: Double? = nil
    public var tissue = TissueParameters()
    public var test: ContourTest = .fourPoint

    public init() {}

    /// The cache folder for tilings without a patches folder: under XDG_CACHE_HOME (or
    /// ~/.cache)/smil/patches, one folder per slide folder and tiling.
    func cacheFolder(root: String) -> String {
        let env = ProcessInfo.processInfo.environment
        let base = env["XDG_CACHE_HOME"] ?? ((env["HOME"] ?? NSTemporaryDirectory()) as NSString).appendingPathComponent(".cache")
        let key = "\((root as NSString).standardizingPath)|\(size)|\(level ?? -1)|\(mpp ?? -1)|\(tissue)|\(test.rawValue)"
        var hash: UInt64 = 0xcbf29ce484222325
        for b in key.utf8 { hash = (hash ^ UInt64(b)) &* 0x100000001b3 }
        return (base as NSString).appendingPathComponent("smil/patches/\(String(hash, radix: 16))")
    }
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
    /// Feature bags: at most this many tiles per bag (a fixed seeded subset), or nil.
    public var maxTiles: Int?
    /// Feature bags: this many tiles drawn afresh each epoch, or nil for all.
    public var sampleTiles: Int?

    /// Whether the items are feature bags (`[N, D]` features) rather than images.
    public var isFeatureBags: Bool { slides.first?.bag != nil }

    static let imageExtensions: Set<String> = ["png", "jpg", "jpeg", "bmp"]
    /// File extensions OpenSlide reads, for a folder of slide files.
    public static let slideExtensions: Set<String> = ["svs", "tif", "tiff", "ndpi", "vms", "vmu", "scn", "mrxs", "svslide", "bif"]

    /// Reads the layout. `labels` defaults to `root/labels.csv`; a header line is recognised
    /// (first field `slide_id`, `slide` or `id`, or a `label` second field naming no folder).
    ///
    /// A folder of slide files (.svs, .tiff, .ndpi, ...) instead of tile folders is read through
    /// OpenSlide: each slide's tissue tiles come from its CLAM patch file in `slideTiling.patches`,
    /// or from segmenting and tiling it (CLAM's recipe, cached), and tiles are read from the file
    /// as they are sampled. Labels name slides by file name without extension.
    public init(root: String, labels: String? = nil, tilesPerSlide: Int = 5, tileSize: Int? = nil,
                augmentation: TileAugmentation? = nil, slideTiling: SlideTilingOptions = SlideTilingOptions()) throws {
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
        let entries = try fm.contentsOfDirectory(atPath: root)
        let slideFiles = Dictionary(entries.filter { Self.slideExtensions.contains(($0 as NSString).pathExtension.lowercased()) }
            .map { (($0 as NSString).deletingPathExtension, (root as NSString).appendingPathComponent($0)) }, uniquingKeysWith: { a, _ in a })
        let folders = Set(entries.filter {
            var d: ObjCBool = false
            return !$0.hasPrefix(".") && !Self.slideExtensions.contains(($0 as NSString).pathExtension.lowercased()) &&
                fm.fileExists(atPath: (root as NSString).appendingPathComponent($0), isDirectory: &d) && d.boolValue
        })
        let (labelOf, order) = try Self.readLabels(csvPath, known: folders.union(slideFiles.keys))
        let wholeSlides = !slideFiles.isEmpty && order.allSatisfy { slideFiles[$0] != nil }
        if !wholeSlides {
            if let missing = order.first(where: { !folders.contains($0) }) {
                throw CoreError.file(path: csvPath, "slide \"\(missing)\" has a label but no folder (or slide file) in \(root)")
            }
            if let unlabelled = folders.sorted().first(where: { labelOf[$0] == nil }) {
                throw CoreError.file(path: (root as NSString).appendingPathComponent(unlabelled), "slide folder has no label in \(csvPath)")
            }
        }
        classes = Array(Set(labelOf.values)).sorted()
        guard classes.count >= 2 else {
            throw CoreError.file(path: csvPath, "at least two distinct labels are needed, found \(classes.count) (\(classes.joined(separator: ", ")))")
        }
        var slides: [Slide] = []
        for id in order {
            let classIndex = classes.firstIndex(of: labelOf[id]!)!
            if wholeSlides {
                let tiles = try Self.wholeSlideTiles(slideFiles[id]!, options: slideTiling, root: root)
                slides.append(Slide(id: id, label: labelOf[id]!, classIndex: classIndex, tiles: [], wholeSlide: tiles))
                continue
            }
            let tiles = try Self.tileFiles(in: (root as NSString).appendingPathComponent(id))
            slides.append(Slide(id: id, label: labelOf[id]!, classIndex: classIndex, tiles: tiles))
        }
        self.slides = slides
    }

    public var count: Int { slides.count }

    /// A slide folder's `ROW_COL` tiles (PNG, JPEG, BMP), sorted by name; a file of another name is
    /// an error naming it, a folder without tiles too.
    public static func tileFiles(in folder: String) throws -> [(row: Int, col: Int, path: String)] {
        var tiles: [(row: Int, col: Int, path: String)] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: folder).sorted() {
            let ext = (name as NSString).pathExtension.lowercased()
            guard imageExtensions.contains(ext) else { continue }
            let stem = (name as NSString).deletingPathExtension.split(separator: "_")
            guard stem.count == 2, let r = Int(stem[0]), let c = Int(stem[1]) else {
                throw CoreError.file(path: (folder as NSString).appendingPathComponent(name), "tile name is not ROW_COL.\(ext)")
            }
            tiles.append((r, c, (folder as NSString).appendingPathComponent(name)))
        }
        guard !tiles.isEmpty else { throw CoreError.file(path: folder, "slide folder has no tiles (ROW_COL.png|jpg|jpeg|bmp)") }
        return tiles
    }

    /// Reads `slide_id,label` lines (a header recognised: first field `slide_id`, `slide` or `id`,
    /// or a `label` second field naming no slide; CLAM's `case_id,slide_id,label` by its header).
    static func readLabels(_ csvPath: String, known: Set<String>) throws -> (labels: [String: String], order: [String]) {
        guard let text = try? String(contentsOfFile: csvPath, encoding: .utf8) else {
            throw CoreError.file(path: csvPath, "cannot read the labels file")
        }
        var labelOf: [String: String] = [:], order: [String] = []
        var (idColumn, labelColumn) = (0, 1)
        for (n, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            if fields.allSatisfy({ $0.isEmpty }) { continue }
            if n == 0 {
                let lower = fields.map { $0.lowercased() }
                if let i = lower.firstIndex(of: "slide_id"), let j = lower.firstIndex(of: "label"), !known.contains(fields[0]) {
                    (idColumn, labelColumn) = (i, j)
                    continue
                }
                if !known.contains(fields[0]) && (["slide_id", "slide", "id", "slide_name"].contains(lower[0]) || (lower.count > 1 && lower[1] == "label")) { continue }
            }
            guard fields.count > max(idColumn, labelColumn), !fields[idColumn].isEmpty, !fields[labelColumn].isEmpty else {
                throw CoreError.file(path: csvPath, "line \(n + 1): expected slide_id,label, got \"\(line)\"")
            }
            let (id, label) = (fields[idColumn], fields[labelColumn])
            if labelOf[id] != nil { throw CoreError.file(path: csvPath, "line \(n + 1): slide \"\(id)\" is listed twice") }
            labelOf[id] = label
            order.append(id)
        }
        return (labelOf, order)
    }

    /// A slide file's tissue tiles: from its CLAM patch file when there is one, else tiled here and
    /// saved as one (in the patches folder, or the cache).
    static func wholeSlideTiles(_ path: String, options o: SlideTilingOptions, root: String) throws -> WholeSlideTiles {
        let id = WholeSlideImage.slideID(path)
        let folder = o.patches ?? o.cacheFolder(root: root)
        // A cached tiling is named by the file's size and time too, so a replaced slide is tiled again.
        var name = id
        if o.patches == nil, let a = try? FileManager.default.attributesOfItem(atPath: path) {
            name += "-\((a[.size] as? NSNumber)?.int64Value ?? 0)-\(Int(((a[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0) * 1000))"
        }
        let h5 = (folder as NSString).appendingPathComponent("\(name).h5")
        let slide = try WholeSlideImage(path)
        let coords: [Point], geometry: TileGeometry
        if FileManager.default.fileExists(atPath: h5) {
            let file = try PatchFile.read(h5)
            geometry = try file.geometry(on: slide, path: h5)
            coords = file.points
        } else {
            geometry = try TileGeometry(slide: slide, size: o.size, level: o.level, mpp: o.mpp)
            let seg = try Tissue.segment(slide, o.tissue)
            coords = Tiling.coordinates(seg, geometry: geometry, slideSize: slide.dimensions, test: o.test)
            if !coords.isEmpty {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                try PatchFile(coords: try IntTensor(coords.flatMap { [$0.x, $0.y] }, shape: [coords.count, 2]),
                              attributes: PatchFile.attributes(slide: slide, geometry: geometry, savePath: folder)).write(to: h5)
            }
        }
        guard !coords.isEmpty else {
            throw CoreError.file(path: path, "no tissue tiles found (tile_coords gives none); remove the slide from the labels or change the segmentation parameters")
        }
        return WholeSlideTiles(path: path, coords: coords, geometry: geometry, slide: slide)
    }

    /// Samples slide `index` with `rng`: K tiles with replacement, decoded, cropped, augmented.
    public func sample(_ index: Int, rng: inout RandomGenerator) throws -> SlideSample {
        guard slides.indices.contains(index) else {
            throw CoreError.invalidArgument(op: "SlideDataset", "slide index \(index) out of range (\(slides.count) slides)")
        }
        guard tilesPerSlide > 0 else {
            throw CoreError.invalidArgument(op: "SlideDataset", "tiles_per_slide must be positive, got \(tilesPerSlide)")
        }
        let slide = slides[index]
        if let bag = slide.bag { return try bagSample(slide, bag, rng: &rng) }
        var tiles: [Tensor] = [], coords: [Float] = []
        for _ in 0..<tilesPerSlide {
            try Interrupt.check()
            var image: Tensor, t: (row: Int, col: Int, path: String)
            if let ws = slide.wholeSlide {
                let tile = try ws.read(rng.nextInt(0, ws.coords.count))
                (image, t) = (tile.image, (tile.row, tile.col, ws.path))
            } else {
                t = slide.tiles[rng.nextInt(0, slide.tiles.count)]
                image = try ImageIO.read(t.path)
            }
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
        d.maxTiles = maxTiles
        d.sampleTiles = sampleTiles
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
