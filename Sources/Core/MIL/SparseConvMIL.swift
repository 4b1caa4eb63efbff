// SparseConvMIL.swift: Lerousseau et al.'s model — tile embeddings placed on a sparse map at their
// tiles' positions, a submanifold sparse CNN, per-slide pooling, a classifier (method.md).

import Foundation

/// How tile coordinates are rotated during training.
public enum MapRotation: String {
    /// No rotation.
    case none
    /// A uniformly random angle, as the reference implementation.
    case random
    /// One of the eight symmetries of the square (right-angle rotations and flips), which keep
    /// the tile lattice intact.
    case d4
}

/// SparseConvMIL: `tile_embedder` maps tiles `[N, 3, H, W]` to `[N, D]`; the embeddings are placed
/// on a sparse map (coordinates / downsample, augmented in training, truncated, shifted to start
/// at 0, collisions averaged); `sparse_cnn` maps the map to `[B, C]`; `wsi_embedding_classifier`
/// maps that to logits.
public final class SparseConvMIL: Module {
    public let tileEmbedder: Module
    public let sparseCNN: SparseSequential
    public let classifier: Module
    public var downsample: Float
    public var rotation: MapRotation
    public var flip, resize: Bool

    public init(embedder: Module, sparseCNN: SparseSequential, classifier: Module, downsample: Float = 10,
                rotation: MapRotation = .random, flip: Bool = true, resize: Bool = true) throws {
        guard sparseCNN.pools else {
            throw CoreError.invalidArgument(op: "SparseConvMIL", "sparse_cnn must end with a global pooling layer (SparseGlobalAvgPool or SparseGlobalMaxPool)")
        }
        guard downsample > 0 else { throw CoreError.invalidArgument(op: "SparseConvMIL", "downsample must be positive, got \(downsample)") }
        tileEmbedder = embedder
        self.sparseCNN = sparseCNN
        self.classifier = classifier
        self.downsample = downsample
        self.rotation = rotation
        self.flip = flip
        self.resize = resize
        super.init()
        registerChild("tile_embedder", embedder)
        registerChild("sparse_cnn", sparseCNN)
        registerChild("wsi_embedding_classifier", classifier)
    }

    /// Logits `[B, classes]` for tiles `[B, K, 3, H, W]` at tile coordinates `[B, K, 2]` (row, col).
    public func forward(tiles: Tensor, coords: Tensor) throws -> Tensor {
        try forward(tiles: tiles, mapCoordinates: mapCoordinates(coords))
    }

    /// Logits for tiles placed at the given integer map positions `[B, K, 2]` (no augmentation).
    public func forward(tiles: Tensor, mapCoordinates: IntTensor) throws -> Tensor {
        guard tiles.rank == 5 || tiles.rank == 3 else {
            throw CoreError.shapeMismatch(op: "SparseConvMIL", "expected tiles [B, K, 3, H, W] or feature bags [B, K, D], got \(shapeString(tiles.shape))")
        }
        let (b, k) = (tiles.shape[0], tiles.shape[1])
        guard mapCoordinates.shape == [b, k, 2] else {
            throw CoreError.shapeMismatch(op: "SparseConvMIL", "coordinates of shape \(shapeString(mapCoordinates.shape)) do not match tiles \(shapeString(tiles.shape)) (expected [\(b), \(k), 2])")
        }
        let flat = try tiles.reshaped([b * k] + Array(tiles.shape[2...]))
        let embeddings = try tileEmbedder(flat)
        guard embeddings.rank == 2, embeddings.shape[0] == b * k else {
            throw CoreError.shapeMismatch(op: "SparseConvMIL", "the tile embedder must return [N, D], got \(shapeString(embeddings.shape))")
        }
        var sites = [Int](repeating: 0, count: b * k * 3)
        for s in 0..<b { for t in 0..<k {
            let i = s * k + t
            sites[3 * i] = mapCoordinates.scalars[2 * i]
            sites[3 * i + 1] = mapCoordinates.scalars[2 * i + 1]
            sites[3 * i + 2] = s
        } }
        let map = try InputLayer(mode: .mean)(try IntTensor(sites, shape: [b * k, 3]), embeddings)
        return try classifier(sparseCNN.pooled(map))
    }

    /// Logits for bags of different sizes concatenated (`lengths` rows each): one sparse map holds
    /// them all, each bag its own batch index, its positions placed (and augmented) on their own.
    public func forward(bags: Tensor, coords: Tensor, lengths: [Int]) throws -> Tensor {
        try checkBags(bags, coords, lengths, op: "SparseConvMIL")
        let total = bags.shape[0]
        let embeddings = try tileEmbedder(bags)
        guard embeddings.rank == 2, embeddings.shape[0] == total else {
            throw CoreError.shapeMismatch(op: "SparseConvMIL", "the tile embedder must return [N, D], got \(shapeString(embeddings.shape))")
        }
        var sites = [Int](repeating: 0, count: total * 3)
        var start = 0
        for (b, n) in lengths.enumerated() {
            let positions = try mapCoordinates(try coords.slice(dim: 0, start: start, end: start + n).reshaped([1, n, 2]))
            for t in 0..<n {
                sites[3 * (start + t)] = positions.scalars[2 * t]
                sites[3 * (start + t) + 1] = positions.scalars[2 * t + 1]
                sites[3 * (start + t) + 2] = b
            }
            start += n
        }
        let map = try InputLayer(mode: .mean)(try IntTensor(sites, shape: [total, 3]), embeddings)
        return try classifier(sparseCNN.pooled(map))
    }

    /// Tile coordinates `[B, K, 2]` to map positions: divided by `downsample`, augmented per slide
    /// in training (method.md: random offset t in [0, extent), then rotation, flips and scaling),
    /// truncated toward zero and shifted so each slide's minimum row and column are 0.
    public func mapCoordinates(_ coords: Tensor) throws -> IntTensor {
        guard coords.rank == 3, coords.shape[2] == 2 else {
            throw CoreError.shapeMismatch(op: "SparseConvMIL", "expected coordinates [B, K, 2] (row, col), got \(shapeString(coords.shape))")
        }
        let (b, k) = (coords.shape[0], coords.shape[1])
        var out = [Int](repeating: 0, count: b * k * 2)
        for s in 0..<b {
            var pts = (0..<k).map { t in (Double(coords[flat: (s * k + t) * 2]) / Double(downsample),
                                          Double(coords[flat: (s * k + t) * 2 + 1]) / Double(downsample)) }
            if training { pts = augment(pts) }
            let trunc = pts.map { (Int($0.0.rounded(.towardZero)), Int($0.1.rounded(.towardZero))) }
            let minR = trunc.map(\.0).min() ?? 0, minC = trunc.map(\.1).min() ?? 0
            for (t, p) in trunc.enumerated() {
                out[(s * k + t) * 2] = p.0 - minR
                out[(s * k + t) * 2 + 1] = p.1 - minC
            }
        }
        return try IntTensor(out, shape: [b, k, 2])
    }

    /// One slide's coordinate augmentation: (p - t) * M with M = R F S (row vectors).
    func augment(_ pts: [(Double, Double)]) -> [(Double, Double)] {
        var rng = RandomGenerator.global
        defer { RandomGenerator.global = rng }
        func extent(_ v: [Double]) -> Int { max(1, Int(((v.max() ?? 0) - (v.min() ?? 0)).rounded(.towardZero))) }
        let t0 = Double(rng.nextInt(0, extent(pts.map(\.0)))), t1 = Double(rng.nextInt(0, extent(pts.map(\.1))))
        var m = (1.0, 0.0, 0.0, 1.0)   // (m00, m01, m10, m11)
        func times(_ a: (Double, Double, Double, Double), _ b: (Double, Double, Double, Double)) -> (Double, Double, Double, Double) {
            (a.0 * b.0 + a.1 * b.2, a.0 * b.1 + a.1 * b.3, a.2 * b.0 + a.3 * b.2, a.2 * b.1 + a.3 * b.3)
        }
        switch rotation {
        case .none: break
        case .random:
            let theta = (rng.nextUniform() * 2 - 1) * Double.pi
            m = times(m, (cos(theta), -sin(theta), sin(theta), cos(theta)))
        case .d4:
            let quarter = rng.nextInt(0, 4)
            let r: [(Double, Double, Double, Double)] = [(1, 0, 0, 1), (0, -1, 1, 0), (-1, 0, 0, -1), (0, 1, -1, 0)]
            m = times(m, r[quarter])
        }
        if flip || rotation == .d4 {
            let f0: Double = rng.nextInt(0, 2) == 0 ? 1 : -1
            let f1: Double = rotation == .d4 ? 1 : (rng.nextInt(0, 2) == 0 ? 1 : -1)
            m = times(m, (f0, 0, 0, f1))
        }
        if resize && rotation != .d4 {
            m = times(m, (0.7 + 0.6 * rng.nextUniform(), 0, 0, 0.7 + 0.6 * rng.nextUniform()))
        }
        return pts.map { p in
            let (x, y) = (p.0 - t0, p.1 - t1)
            return (x * m.0 + y * m.2, x * m.1 + y * m.3)
        }
    }

    public override var typeName: String { "SparseConvMIL" }
}

/// The reference model: a torchvision ResNet embedder (fc removed), submanifold convolutions of
/// `channels` with ReLUs, per-slide average pooling, and Linear(C, hidden) -> ReLU -> Linear(hidden,
/// classes).
///
/// On feature bags, `features` gives their dimension D: the embedder is then nil (the features go
/// straight onto the map) or any module on `[N, D]`, such as a `Linear(D, 128)` projection.
public func sparseConvMIL(classes: Int, embedder: Module? = nil, embedderName: String = "resnet18",
                          channels: [Int] = [32, 32], filter: Int = 3, downsample: Float = 10, hidden: Int = 32,
                          features: Int? = nil) throws -> SparseConvMIL {
    let tile: Module
    let dim: Int
    if let d = features {
        try Require.positive(d, "features", op: "sparseconvmil")
        tile = embedder ?? Identity()
        dim = (embedder as? Linear)?.outFeatures ?? ((embedder as? Sequential)?.children.last(where: { $0.module is Linear })?.module as? Linear)?.outFeatures ?? d
    } else if let e = embedder {
        tile = e
        dim = (e as? ResNet)?.featureDimension ?? (e as? Linear)?.outFeatures ?? 512
    } else {
        let builders: [String: () throws -> ResNet] = ["resnet18": { try resnet18(embedder: true) }, "resnet34": { try resnet34(embedder: true) },
                                                       "resnet50": { try resnet50(embedder: true) }, "wide_resnet50_2": { try wideResnet50_2(embedder: true) }]
        guard let make = builders[embedderName] else {
            throw CoreError.invalidArgument(op: "sparseconvmil", "unknown embedder \"\(embedderName)\" (known: \(builders.keys.sorted().joined(separator: ", ")))")
        }
        let r = try make()
        tile = r
        dim = r.featureDimension
    }
    var layers: [Module] = []
    var c = dim
    for out in channels {
        layers.append(try SubmanifoldConv2d(c, out, filter: filter))
        layers.append(SparseReLU())
        c = out
    }
    layers.append(SparseGlobalAvgPool())
    let head = Sequential([try Linear(c, hidden), ReLU(), try Linear(hidden, classes)])
    return try SparseConvMIL(embedder: tile, sparseCNN: SparseSequential(layers), classifier: head, downsample: downsample)
}
