// Tensor+Reduction.swift: sums, means, extrema, softmax — along one or several dimensions.

import Foundation

/// Splits `shape` around `dim` into (outer, size, inner) element counts.
@inline(__always) func splitAround(_ shape: [Int], _ dim: Int) -> (outer: Int, size: Int, inner: Int) {
    (shape[..<dim].reduce(1, *), shape[dim], shape[(dim + 1)...].reduce(1, *))
}

extension Tensor {
    /// Sums over one dimension (no autograd); accumulates in double precision.
    private func sumAlong(_ dim: Int) -> Tensor {
        let (outer, size, inner) = splitAround(shape, dim)
        var outShape = shape
        outShape[dim] = 1
        let out = Tensor(uninitializedShape: outShape)
        let src = storage.pointer, dst = out.storage.pointer
        Parallel.forRanges(outer, grain: Swift.max(1, elementwiseGrain / Swift.max(1, size * inner))) { r in
            var acc = [Double](repeating: 0, count: inner)
            for o in r {
                for j in 0..<inner { acc[j] = 0 }
                for s in 0..<size {
                    let row = src + (o * size + s) * inner
                    for j in 0..<inner { acc[j] += Double(row[j]) }
                }
                for j in 0..<inner { dst[o * inner + j] = Float(acc[j]) }
            }
        }
        return out
    }

    /// Sums over `dims` (all when nil), keeping them as size 1 when `keepDims`.
    public func sum(dims: [Int]? = nil, keepDims: Bool = false) throws -> Tensor {
        let reduce = try Set((dims ?? Array(0..<rank)).map { try normalizeDim($0, rank: rank, op: "sum") })
        var r = detached()
        for d in reduce.sorted(by: >) where rank > 0 { r = r.sumAlong(d) }
        let keptShape = shape.enumerated().map { reduce.contains($0.offset) ? 1 : $0.element }
        let outShape = keepDims ? keptShape : shape.enumerated().filter { !reduce.contains($0.offset) }.map { $0.element }
        let inShape = shape
        return r.withShape(outShape).recorded("sum", [self]) { g in
            [try g.withShape(keptShape).zipped(Tensor(repeating: 0, shape: inShape), op: "sum") { a, _ in a }]
        }
    }

    /// Sum of all elements as a rank-0 tensor.
    public func sum() -> Tensor { try! sum(dims: nil) }

    /// Mean over `dims` (all when nil).
    public func mean(dims: [Int]? = nil, keepDims: Bool = false) throws -> Tensor {
        let reduce = try Set((dims ?? Array(0..<rank)).map { try normalizeDim($0, rank: rank, op: "mean") })
        let n = rank == 0 ? 1 : reduce.reduce(1) { $0 * shape[$1] }
        // Over no elements the mean is 0 / 0, NaN, as in PyTorch.
        return try sum(dims: dims, keepDims: keepDims).scaled(by: 1 / Float(n))
    }

    /// Mean of all elements as a rank-0 tensor.
    public func mean() -> Tensor { try! mean(dims: nil) }

    /// Largest (or smallest) values along `dim` with their indices; the gradient goes to the first
    /// extreme element.
    private func extreme(dim: Int, keepDims: Bool, largest: Bool, op: String) throws -> (values: Tensor, indices: IntTensor) {
        let d = try normalizeDim(dim, rank: rank, op: op)
        guard rank > 0 else { return (self, IntTensor(repeating: 0, shape: [])) }
        let (outer, size, inner) = splitAround(shape, d)
        guard size > 0 else { throw CoreError.invalidArgument(op: op, "cannot reduce an empty dimension \(d)") }
        var keptShape = shape
        keptShape[d] = 1
        let values = Tensor(uninitializedShape: keptShape)
        var idx = [Int](repeating: 0, count: outer * inner)
        let src = storage.pointer, dst = values.storage.pointer
        for o in 0..<outer {
            for j in 0..<inner {
                var best = src[o * size * inner + j], bi = 0
                for s in 1..<Swift.max(size, 1) {
                    let v = src[(o * size + s) * inner + j]
                    if (largest ? v > best : v < best) || (v.isNaN && !best.isNaN) { best = v; bi = s }
                }
                dst[o * inner + j] = best
                idx[o * inner + j] = bi
            }
        }
        let outShape = keepDims ? keptShape : shape.enumerated().filter { $0.offset != d }.map { $0.element }
        let inShape = shape
        let v = values.withShape(outShape).recorded(op, [self]) { g in
            let gx = Tensor(repeating: 0, shape: inShape)
            let gp = g.storage.pointer, gxp = gx.storage.pointer
            for o in 0..<outer { for j in 0..<inner { gxp[(o * size + idx[o * inner + j]) * inner + j] += gp[o * inner + j] } }
            return [gx]
        }
        return (v, try IntTensor(idx, shape: outShape))
    }

    /// Largest values along `dim` and their indices.
    public func max(dim: Int, keepDims: Bool = false) throws -> (values: Tensor, indices: IntTensor) {
        try extreme(dim: dim, keepDims: keepDims, largest: true, op: "max")
    }

    /// Smallest values along `dim` and their indices.
    public func min(dim: Int, keepDims: Bool = false) throws -> (values: Tensor, indices: IntTensor) {
        try extreme(dim: dim, keepDims: keepDims, largest: false, op: "min")
    }

    /// The largest element (rank 0), differentiable.
    public func max() throws -> Tensor { try reshaped([count]).max(dim: 0).values }
    /// The smallest element (rank 0), differentiable.
    public func min() throws -> Tensor { try reshaped([count]).min(dim: 0).values }

    /// Index of the largest element along `dim`, or of the flattened tensor when `dim` is nil.
    public func argmax(dim: Int? = nil, keepDims: Bool = false) throws -> IntTensor {
        guard let dim = dim else { return try detached().withShape([count]).max(dim: 0).indices }
        return try detached().max(dim: dim, keepDims: keepDims).indices
    }

    /// Softmax along `dim`, computed stably.
    public func softmax(dim: Int) throws -> Tensor {
        let d = try normalizeDim(dim, rank: rank, op: "softmax")
        // A scalar is its own one-element dimension (PyTorch: softmax of a scalar is 1).
        if rank == 0 { return try reshaped([1]).softmax(dim: 0).reshaped([]) }
        let out = softmaxKernel(dim: d, log: false)
        let y = out.detached()
        return out.recorded("softmax", [self]) { g in
            // dx = y * (g - sum(g * y, dim))
            let gy = try g.mul(y)
            let s = try gy.sum(dims: [d], keepDims: true)
            return [try y.mul(try g.sub(s))]
        }
    }

    /// Log-softmax along `dim`, computed stably.
    public func logSoftmax(dim: Int) throws -> Tensor {
        let d = try normalizeDim(dim, rank: rank, op: "log_softmax")
        if rank == 0 { return try reshaped([1]).logSoftmax(dim: 0).reshaped([]) }
        let out = softmaxKernel(dim: d, log: true)
        let y = out.detached()
        return out.recorded("log_softmax", [self]) { g in
            // dx = g - exp(y) * sum(g, dim)
            let s = try g.sum(dims: [d], keepDims: true)
            return [try g.sub(try y.exp().mul(s))]
        }
    }

    private func softmaxKernel(dim: Int, log: Bool) -> Tensor {
        guard rank > 0 else { return Tensor(repeating: log ? 0 : 1, shape: shape) }
        let (outer, size, inner) = splitAround(shape, dim)
        let out = Tensor(uninitializedShape: shape)
        let src = storage.pointer, dst = out.storage.pointer
        for o in 0..<outer {
            for j in 0..<inner {
                let base = o * size * inner + j
                var m = -Float.infinity
                for s in 0..<size { m = Swift.max(m, src[base + s * inner]) }
                var z: Double = 0
                for s in 0..<size { z += Double(Foundation.exp(src[base + s * inner] - m)) }
                if log {
                    let lz = Float(Foundation.log(z))
                    for s in 0..<size { dst[base + s * inner] = src[base + s * inner] - m - lz }
                } else {
                    for s in 0..<size { dst[base + s * inner] = Float(Double(Foundation.exp(src[base + s * inner] - m)) / z) }
                }
            }
        }
        return out
    }
}
