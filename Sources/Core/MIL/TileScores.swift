// TileScores.swift: where a MIL model looks — one score per tile and class, for heatmaps.

import Foundation

public enum TileScoreMethod: String, Sendable {
    /// The model's own per-tile quantity: attention weights for attention pooling; the classifier
    /// applied to each tile's embedding (mean, max, log-sum-exp) or to each map site's sparse-CNN
    /// output (SparseConvMIL). For mean pooling that is exact up to the classifier's
    /// non-linearity: the slide's logits are the classifier of the mean of what is scored here.
    case model
    /// Gradient x input: d logit_c / d features, times the features, summed over the feature
    /// dimension (each class's backward pass on the bag).
    case gradient
}

extension MILModel {
    /// Scores of one bag's tiles, `[N, C]` (attention: `[N, 1]`), for features (or tiles) `[N, ...]`
    /// at coordinates `[N, 2]` in tile units; evaluation mode, the model's mode restored after.
    public func tileScores(_ x: Tensor, coords: Tensor, method: TileScoreMethod = .model) throws -> Tensor {
        guard x.rank >= 2, coords.shape == [x.shape[0], 2], x.shape[0] > 0 else {
            throw CoreError.shapeMismatch(op: "tile_scores", "expected tiles or features [N, ...] and coordinates [N, 2], got \(shapeString(x.shape)) and \(shapeString(coords.shape))")
        }
        let wasTraining = training
        eval()
        defer { train(wasTraining) }
        let n = x.shape[0]
        let bagCoords = try coords.reshaped([1, n, 2])
        switch method {
        case .gradient:
            // One forward and backward per class (the graph is freed by each backward).
            let classes = try GradMode.noGrad { try forward(tiles: try x.reshaped([1] + x.shape), coords: bagCoords) }.shape[1]
            var columns: [Tensor] = []
            for c in 0..<classes {
                var input = x.detached()
                input.requiresGrad = true
                let logits = try forward(tiles: try input.reshaped([1] + x.shape), coords: bagCoords)
                try logits.slice(dim: 1, start: c, end: c + 1).sum().backward()
                guard let g = input.grad else { throw CoreError.autograd("tile_scores: no gradient reached the features") }
                columns.append(try g.mul(x.detached()).reshaped([n, -1]).sum(dims: [1], keepDims: true))
            }
            return try Tensor.cat(columns, dim: 1)
        case .model:
            return try GradMode.noGrad {
                if let s = self as? SparseConvMIL { return try s.siteScores(x, coords: bagCoords) }
                if let p = self as? PooledMIL { return try p.tileScores(x) }
                if let c = self as? CLAMSB { return try c.attentionScores(x) }
                throw CoreError.invalidArgument(op: "tile_scores", "\(typeName) has no per-tile scores of its own; use method: \"gradient\"")
            }
        }
    }
}

extension SparseConvMIL {
    /// The classifier on every map site's sparse-CNN output, read back for each tile's site.
    func siteScores(_ x: Tensor, coords: Tensor) throws -> Tensor {
        let n = x.shape[0]
        let embeddings = try tileEmbedder(x)
        let positions = try mapCoordinates(coords)
        var sites = [Int](repeating: 0, count: n * 3)
        for i in 0..<n { sites[3 * i] = positions.scalars[2 * i]; sites[3 * i + 1] = positions.scalars[2 * i + 1] }
        let map = try InputLayer(mode: .mean)(try IntTensor(sites, shape: [n, 3]), embeddings)
        let out = try sparseCNN.forward(map)
        let perSite = try classifier(out.features)
        let index = (0..<n).map { out.sites.index(row: sites[3 * $0], col: sites[3 * $0 + 1], batch: 0) }
        return try perSite.gather(dim: 0, index)
    }
}

extension PooledMIL {
    func tileScores(_ x: Tensor) throws -> Tensor {
        let e = try tileEmbedder(x)
        if case .attention = pooling {
            let e3 = try e.reshaped([1, e.shape[0], -1])
            var h = try attentionV!(e3).tanh()
            if let u = attentionU { h = try h.mul(try u(e3).sigmoid()) }
            return try attentionW!(h).softmax(dim: 1).reshaped([e.shape[0], 1])
        }
        return try classifier(e)
    }
}
