// Baselines.swift: order-blind MIL poolings sharing SparseConvMIL's embedder and classifier slots
// — mean, max, log-sum-exp and attention (plain and gated, Ilse et al. 2018) — so that only the
// pooling differs in comparisons.

import Foundation

/// A model from tiles `[B, K, 3, H, W]` at coordinates `[B, K, 2]` to logits `[B, classes]`.
public protocol MILModel: Module {
    /// Logits `[B, classes]` for tiles `[B, K, 3, H, W]` (or feature bags `[B, K, D]`) at
    /// coordinates `[B, K, 2]` (row, col in tile units).
    func forward(tiles: Tensor, coords: Tensor) throws -> Tensor
    /// Logits for bags of different sizes concatenated: features `[N1 + ... + NB, D]` (or tiles),
    /// coordinates `[N1 + ... + NB, 2]`, `lengths` `[N1, ..., NB]`.
    func forward(bags: Tensor, coords: Tensor, lengths: [Int]) throws -> Tensor
}

extension MILModel {
    /// Logits for a loader's batch, stacked or concatenated.
    public func forward(_ batch: SlideBatch) throws -> Tensor {
        if let lengths = batch.lengths { return try forward(bags: batch.tiles, coords: batch.coords, lengths: lengths) }
        return try forward(tiles: batch.tiles, coords: batch.coords)
    }
}

/// Checks concatenated bags against their lengths.
func checkBags(_ bags: Tensor, _ coords: Tensor, _ lengths: [Int], op: String) throws {
    let total = lengths.reduce(0, +)
    guard !lengths.isEmpty, lengths.allSatisfy({ $0 > 0 }), bags.rank >= 2, bags.shape[0] == total, coords.shape == [total, 2] else {
        throw CoreError.shapeMismatch(op: op, "bags \(shapeString(bags.shape)) and coordinates \(shapeString(coords.shape)) do not fit lengths \(lengths) (expected \(total) rows each, every bag non-empty)")
    }
}

extension SparseConvMIL: MILModel {}

/// Embeds every tile, pools each slide's `[K, D]` embeddings to `[D]`, classifies.
public final class PooledMIL: Module, MILModel {
    public enum Pooling: Equatable {
        case mean
        case max
        /// (1/r) log sum_k exp(r x_k)
        case logSumExp(r: Float)
        /// a_k = softmax_k(w^T tanh(V x_k)), or with gating softmax_k(w^T (tanh(V x_k) * sigmoid(U x_k)))
        case attention(hidden: Int, gated: Bool)
    }

    public let pooling: Pooling
    public let tileEmbedder: Module
    public let classifier: Module
    let attentionV, attentionU, attentionW: Linear?

    public init(embedder: Module, classifier: Module, pooling: Pooling, dimension: Int) throws {
        self.pooling = pooling
        tileEmbedder = embedder
        self.classifier = classifier
        if case .attention(let hidden, let gated) = pooling {
            attentionV = try Linear(dimension, hidden)
            attentionU = gated ? try Linear(dimension, hidden) : nil
            attentionW = try Linear(hidden, 1)
        } else {
            attentionV = nil; attentionU = nil; attentionW = nil
        }
        super.init()
        registerChild("tile_embedder", embedder)
        if let v = attentionV {
            let attention = Module()
            attention.registerChild("V", v)
            if let u = attentionU { attention.registerChild("U", u) }
            attention.registerChild("w", attentionW!)
            registerChild("attention", attention)
        }
        registerChild("wsi_embedding_classifier", classifier)
    }

    public override var typeName: String {
        switch pooling {
        case .mean: return "MeanMIL"
        case .max: return "MaxMIL"
        case .logSumExp: return "LSEMIL"
        case .attention(_, let gated): return gated ? "GatedAttentionMIL" : "AttentionMIL"
        }
    }

    public func forward(tiles: Tensor, coords: Tensor) throws -> Tensor {
        guard tiles.rank == 5 || tiles.rank == 3 else {
            throw CoreError.shapeMismatch(op: typeName, "expected tiles [B, K, 3, H, W] or feature bags [B, K, D], got \(shapeString(tiles.shape))")
        }
        let (b, k) = (tiles.shape[0], tiles.shape[1])
        let e = try tileEmbedder(tiles.reshaped([b * k] + Array(tiles.shape[2...])))
        return try classifier(pool(try e.reshaped([b, k, -1])))
    }

    public func forward(bags: Tensor, coords: Tensor, lengths: [Int]) throws -> Tensor {
        try checkBags(bags, coords, lengths, op: typeName)
        let e = try tileEmbedder(bags)
        var pooled: [Tensor] = []
        var start = 0
        for n in lengths {
            pooled.append(try pool(try e.slice(dim: 0, start: start, end: start + n).reshaped([1, n, -1])))
            start += n
        }
        return try classifier(try Tensor.cat(pooled, dim: 0))
    }

    /// `[B, K, D]` embeddings to `[B, D]`.
    func pool(_ x: Tensor) throws -> Tensor {
        let bag: Tensor
        switch pooling {
        case .mean: bag = try x.mean(dims: [1])
        case .max: bag = try x.max(dim: 1).values
        case .logSumExp(let r):
            // Stable: m + (1/r) log sum exp(r (x - m)), m the per-slide max.
            let m = try x.detached().max(dim: 1, keepDims: true).values
            bag = try x.sub(m).scaled(by: r).exp().sum(dims: [1]).log().scaled(by: 1 / r).add(try m.squeezed(1))
        case .attention:
            var h = try attentionV!(x).tanh()
            if let u = attentionU { h = try h.mul(try u(x).sigmoid()) }
            let a = try attentionW!(h).softmax(dim: 1)          // [B, K, 1]
            bag = try x.mul(a).sum(dims: [1])
        }
        return bag
    }
}

/// The reference classifier head: Linear(D, hidden) -> ReLU -> Linear(hidden, classes).
public func milHead(_ dimension: Int, hidden: Int, classes: Int) throws -> Sequential {
    Sequential([try Linear(dimension, hidden), ReLU(), try Linear(hidden, classes)])
}
