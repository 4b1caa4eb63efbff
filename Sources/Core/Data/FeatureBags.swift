// FeatureBags.swift: CLAM's feature bags as a dataset — `h5_files/SLIDE.h5` (features [N, D],
// coords [N, 2]) or `pt_files/SLIDE.pt` with coordinates from the patch files — read a bag at a
// time as the loader asks, capped or subsampled per epoch, coordinates in tile units.

import Foundation

/// One slide's bag on disk: where its features and coordinates are, and the tile stride that turns
/// level-0 coordinates into map positions.
public final class FeatureBag: @unchecked Sendable {
    public let featuresPath: String
    /// The patch file holding `coords` when the features file has none (CLAM's pt_files).
    public let coordsPath: String?
    /// Level-0 pixels between neighbouring tiles.
    public let stride: Int
    /// Tiles and feature dimension, read when the dataset was built.
    public let count: Int
    public let dimension: Int

    init(featuresPath: String, coordsPath: String?, stride: Int, count: Int, dimension: Int) {
        self.featuresPath = featuresPath
        self.coordsPath = coordsPath
        self.stride = stride
        self.count = count
        self.dimension = dimension
    }

    /// Reads a bag: its features `[N, D]` and level-0 coordinates `[N, 2]` (x, y), checked.
    public static func read(features path: String, coords coordsPath: String?) throws -> (features: Tensor, coords: IntTensor, attributes: [String: H5Attribute]) {
        var features: Tensor
        var coords: IntTensor? = nil
        var attrs: [String: H5Attribute] = [:]
        if path.hasSuffix(".pt") || path.hasSuffix(".pth") {
            guard case .tensor(let t) = try TorchFile.read(path) else {
                throw CoreError.file(path: path, "holds no tensor (CLAM's pt_files hold torch.save(features))")
            }
            features = t.asFloat
        } else {
            let file = try HDF5File(path)
            guard file.has("features") else { throw CoreError.file(path: path, "no features dataset (a CLAM feature bag has features [N, D] and coords [N, 2])") }
            features = try file.readFloats("features")
            if file.has("coords") {
                coords = try file.readInts("coords")
                attrs = try file.attributes(of: "coords")
            }
        }
        if coords == nil {
            guard let c = coordsPath else {
                throw CoreError.file(path: path, "no coords dataset, and no patch file to take them from (give patches: the folder of CLAM's patch .h5 files)")
            }
            let patches = try PatchFile.read(c)
            coords = patches.coords
            attrs = patches.attributes
        }
        if features.rank == 3 && features.shape[0] == 1 { features = try features.reshaped(Array(features.shape[1...])) }
        guard features.rank == 2 else { throw CoreError.file(path: path, "features must be [N, D], got \(shapeString(features.shape))") }
        guard features.shape[0] > 0 else { throw CoreError.file(path: path, "the bag is empty (0 tiles)") }
        guard let c = coords, c.rank == 2, c.shape[1] == 2 else { throw CoreError.file(path: path, "coords must be [N, 2]") }
        guard c.shape[0] == features.shape[0] else {
            throw CoreError.file(path: path, "\(features.shape[0]) feature rows but \(c.shape[0]) coordinates")
        }
        return (features, c, attrs)
    }

    /// Level-0 pixels between tiles: from the patch attributes (patch_size at patch_level, or
    /// step_size), else the greatest common divisor of the coordinates' offsets.
    public static func tileStride(_ attrs: [String: H5Attribute], coords: IntTensor) -> Int {
        var downsample = 1.0
        switch attrs["downsample"] {
        case .floats(let d)?: downsample = d.first ?? 1
        case .float(let d)?: downsample = d
        case .ints(let d)?: downsample = Double(d.first ?? 1)
        default: break
        }
        if case .int(let step)? = attrs["step_size"], step > 0 { return step * max(1, Int(downsample)) }
        if case .int(let size)? = attrs["patch_size"], size > 0 { return size * max(1, Int(downsample)) }
        func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? abs(a) : gcd(b, a % b) }
        let n = coords.shape[0]
        var x0 = Int.max, y0 = Int.max
        for i in 0..<n { x0 = min(x0, coords.scalars[2 * i]); y0 = min(y0, coords.scalars[2 * i + 1]) }
        var g = 0
        for i in 0..<n {
            g = gcd(g, coords.scalars[2 * i] - x0)
            g = gcd(g, coords.scalars[2 * i + 1] - y0)
        }
        return max(1, g)
    }

    /// Map positions (row, col) in tile units: offsets from the bag's top-left tile over the stride.
    static func positions(_ coords: IntTensor, stride: Int) -> [Float] {
        let n = coords.shape[0]
        var x0 = Int.max, y0 = Int.max
        for i in 0..<n { x0 = min(x0, coords.scalars[2 * i]); y0 = min(y0, coords.scalars[2 * i + 1]) }
        var out = [Float](repeating: 0, count: 2 * n)
        for i in 0..<n {
            out[2 * i] = Float((Double(coords.scalars[2 * i + 1] - y0) / Double(stride)).rounded())
            out[2 * i + 1] = Float((Double(coords.scalars[2 * i] - x0) / Double(stride)).rounded())
        }
        return out
    }
}

extension SlideDataset {
    /// Feature bags in CLAM's layout under `root`: `h5_files/*.h5` (or `*.h5` in root itself), or
    /// `pt_files/*.pt` with coordinates from `patches/SLIDE.h5`; labels as for slides (CLAM's
    /// `case_id,slide_id,label` too). `maxTiles` caps every bag to a fixed seeded subset;
    /// `sample` draws that many distinct tiles afresh each epoch (all of a smaller bag).
    public static func features(root: String, labels: String? = nil, maxTiles: Int? = nil, sample: Int? = nil,
                                patches: String? = nil) throws -> SlideDataset {
        if let m = maxTiles { try Require.positive(m, "max_tiles", op: "FeatureDataset") }
        if let s = sample { try Require.positive(s, "sample", op: "FeatureDataset") }
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
            throw CoreError.file(path: root, "no such folder of feature bags")
        }
        func files(_ folder: String, _ ext: String) -> [String: String] {
            let names = (try? fm.contentsOfDirectory(atPath: folder)) ?? []
            return Dictionary(names.filter { ($0 as NSString).pathExtension.lowercased() == ext }.map {
                (($0 as NSString).deletingPathExtension, (folder as NSString).appendingPathComponent($0))
            }, uniquingKeysWith: { a, _ in a })
        }
        var bags = files((root as NSString).appendingPathComponent("h5_files"), "h5")
        if bags.isEmpty { bags = files(root, "h5") }
        var ptFiles = false
        if bags.isEmpty {
            bags = files((root as NSString).appendingPathComponent("pt_files"), "pt")
            ptFiles = true
        }
        guard !bags.isEmpty else {
            throw CoreError.file(path: root, "no feature bags (h5_files/*.h5, *.h5 or pt_files/*.pt)")
        }
        let csvPath = labels ?? (root as NSString).appendingPathComponent("labels.csv")
        let (labelOf, order) = try readLabels(csvPath, known: Set(bags.keys))
        if let missing = order.first(where: { bags[$0] == nil }) {
            throw CoreError.file(path: csvPath, "slide \"\(missing)\" has a label but no feature bag in \(root)")
        }
        let classes = Array(Set(labelOf.values)).sorted()
        guard classes.count >= 2 else {
            throw CoreError.file(path: csvPath, "at least two distinct labels are needed, found \(classes.count) (\(classes.joined(separator: ", ")))")
        }
        var slides: [Slide] = []
        var dimension: (Int, String)? = nil
        for id in order {
            let path = bags[id]!
            let coordsPath: String? = ptFiles || patches != nil ? ((patches ?? (root as NSString).appendingPathComponent("patches")) as NSString).appendingPathComponent("\(id).h5") : nil
            let (features, coords, attrs) = try FeatureBag.read(features: path, coords: coordsPath)
            if let (d, first) = dimension, d != features.shape[1] {
                throw CoreError.file(path: path, "features are \(features.shape[1])-D but \(first)'s are \(d)-D: bags of one dataset must come from one encoder")
            }
            dimension = dimension ?? (features.shape[1], path)
            let bag = FeatureBag(featuresPath: path, coordsPath: coordsPath, stride: FeatureBag.tileStride(attrs, coords: coords),
                                 count: features.shape[0], dimension: features.shape[1])
            slides.append(Slide(id: id, label: labelOf[id]!, classIndex: classes.firstIndex(of: labelOf[id]!)!, tiles: [], bag: bag))
        }
        let ds = SlideDataset(root: root, classes: classes, slides: slides, tilesPerSlide: 1, tileSize: nil, augmentation: nil)
        ds.maxTiles = maxTiles
        ds.sampleTiles = sample
        return ds
    }

    /// One bag as a sample: features `[N', D]` and positions `[N', 2]`, N' after the cap or the
    /// per-epoch draw.
    func bagSample(_ slide: Slide, _ bag: FeatureBag, rng: inout RandomGenerator) throws -> SlideSample {
        try Interrupt.check()
        let (features, coords, _) = try FeatureBag.read(features: bag.featuresPath, coords: bag.coordsPath)
        let positions = FeatureBag.positions(coords, stride: bag.stride)
        let n = features.shape[0], d = features.shape[1]
        var keep: [Int]? = nil
        if let m = maxTiles, n > m {
            // A fixed subset per slide: seeded by the slide id, the same every epoch.
            var fixed = RandomGenerator(seed: slide.id.utf8.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 })
            var all = Array(0..<n)
            all.shuffle(using: &fixed)
            keep = Array(all.prefix(m)).sorted()
        }
        if let k = sampleTiles {
            var pool = keep ?? Array(0..<n)
            if pool.count > k {
                pool.shuffle(using: &rng)
                keep = Array(pool.prefix(k)).sorted()
            }
        }
        guard let rows = keep else {
            return SlideSample(tiles: features, coords: try Tensor(positions, shape: [n, 2]), label: slide.classIndex, slideID: slide.id)
        }
        var f = [Float](repeating: 0, count: rows.count * d), p = [Float](repeating: 0, count: rows.count * 2)
        features.withUnsafeBufferPointer { src in
            for (j, i) in rows.enumerated() {
                for c in 0..<d { f[j * d + c] = src[i * d + c] }
                p[2 * j] = positions[2 * i]; p[2 * j + 1] = positions[2 * i + 1]
            }
        }
        return SlideSample(tiles: try Tensor(f, shape: [rows.count, d]), coords: try Tensor(p, shape: [rows.count, 2]),
                           label: slide.classIndex, slideID: slide.id)
    }
}
