// Tensor+Reduction.swift: sums, means, extrema, softmax — along one or several dimensions.

import CKernels
import Foundation

/// Splits `shape` around `dim` into (outer, size, inner) element counts.
@inline(__always) func splitAround(_ shape: [Int], _ dim: Int) -> (outer: Int, size: Int, inner: Int) {
    (shape[..<dim].reduce(1, *), shape[dim], shape[(dim + 1)...].reduce(1, *))
}

extension Tensor {
    /// Sums over one dimension (no autograd), in double precision. Rows are added in pieces of a
    /// size fixed by the shape and the pieces' sums then in order, so the result does not depend
    /// on the thread count.
    private func sumAlong(_ dim: Int) -> Tensor {
        let (outer, size, inner) = splitAround(shape, dim)
        var outShape = shape
        outShape[dim] = 1
        let out = Tensor(uninitializedShape: outShape)
        let src = storage.pointer, dst = out.storage.pointer
        if inner == 1 {
            // Each output is the sum of a contiguous run.
            if outer == 1 { dst[0] = Float(Tensor.total(src, count: size)); return out }
            Parallel.forRangesInShares(outer, grain: Swift.max(1, elementwiseGrain / Swift.max(1, size))) { r in
                smil_sum_rows(r.count, size, src + r.lowerBound * size, dst + r.lowerBound)
            }
            return out
        }
        let rowsPerPiece = Swift.max(1, elementwiseGrain / inner)
        if outer >= 2 || size <= rowsPerPiece {
            Parallel.forRangesInShares(outer, grain: Swift.max(1, elementwiseGrain / Swift.max(1, size * inner))) { r in
                var acc = [Double](repeating: 0, count: inner)
                acc.withUnsafeMutableBufferPointer { acc in
                    for o in r {
                        acc.update(repeating: 0)
                        smil_add_rows(size, inner, src + o * size * inner, acc.baseAddress!)
                        smil_narrow(inner, acc.baseAddress!, 1, dst + o * inner)
                    }
                }
            }
            return out
        }
        // One output row from many input rows: partial sums of fixed pieces of rows, then added
        // in order.
        let pieces = (size + rowsPerPiece - 1) / rowsPerPiece
        var partial = [Double](repeating: 0, count: pieces * inner)
        partial.withUnsafeMutableBufferPointer { partial in
            let base = partial.baseAddress!
            Parallel.forEachInShares(pieces) { p in
                let first = p * rowsPerPiece, rows = Swift.min(size, first + rowsPerPiece) - first
                smil_add_rows(rows, inner, src + first * inner, base + p * inner)
            }
            for p in 1..<Swift.max(pieces, 1) { for j in 0..<inner { base[j] += base[p * inner + j] } }
            smil_narrow(inner, base, 1, dst)
        }
        return out
    }

    /// The sum of `count` floats in double: pieces of a fixed size over the threads, their sums
    /// added in order.
    static func total(_ src: UnsafePointer<Float>, count: Int) -> Double {
        let grain = 1 << 16
        if count <= grain { return smil_sum(count, src) }
        let pieces = (count + grain - 1) / grain
        var partial = [Double](repeating: 0, count: pieces)
        partial.withUnsafeMutableBufferPointer { partial in
            let base = partial.baseAddress!
            Parallel.forEachInShares(pieces) { p in
                base[p] = smil_sum(Swift.min(count, (p + 1) * grain) - p * grain, src + p * grain)
            }
        }
        return partial.reduce(0, +)
    }

    /// Sums over `dims` (all when nil), keeping them as size 1 when `keepDims`. Adjacent summed
    /// dimensions are summed as one.
    public func sum(dims: [Int]? = nil, keepDims: Bool = false) throws -> Tensor {
        let reduce = try Set((dims ?? Array(0..<rank)).map { try normalizeDim($0, rank: rank, op: "sum") })
        var r = detached()
        if let (source, perm) = pendingView, !reduce.isEmpty {
            // A pending permutation: its source summed over the same dimensions, what is left
            // permuted into this order.
            let kept = (0..<rank).filter { !reduce.contains($0) }.map { perm[$0] }
            let sorted = kept.sorted()
            r = try source.sum(dims: reduce.map { perm[$0] }).permutedView(kept.map { sorted.firstIndex(of: $0)! })
        } else if reduce.count == rank {
            r = Tensor(scalar: Float(Tensor.total(storage.pointer, count: count)))
        } else if !reduce.isEmpty {
            // Runs of adjacent dimensions, summed or kept, each merged into one.
            var merged: [Int] = [], summed: [Bool] = []
            for d in 0..<rank {
                if let last = summed.last, last == reduce.contains(d) { merged[merged.count - 1] *= shape[d] }
                else { merged.append(shape[d]); summed.append(reduce.contains(d)) }
            }
            r = r.withShape(merged)
            for d in merged.indices.reversed() where summed[d] { r = r.sumAlong(d) }
        }
        let keptShape = shape.enumerated().map { reduce.contains($0.offset) ? 1 : $0.element }
        let outShape = keepDims ? keptShape : shape.enumerated().filter { !reduce.contains($0.offset) }.map { $0.element }
        let inShape = shape
        return r.withShape(outShape).recorded("sum", [self]) { g in
            [g.withShape(keptShape).broadcastCopy(to: inShape)]
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
        idx.withUnsafeMutableBufferPointer { idx in
            let ip = UnsafeMutableRawPointer(idx.baseAddress!).assumingMemoryBound(to: Int64.self)
            let flag: Int32 = largest ? 1 : 0
            if inner == 1 {
                Parallel.forRangesInShares(outer, grain: Swift.max(1, elementwiseGrain / size)) { r in
                    for o in r { smil_extreme(size, 1, 1, src + o * size, flag, dst + o, ip + o) }
                }
            } else {
                let width = Swift.min(inner, Swift.max(64, elementwiseGrain / size))
                let pieces = (inner + width - 1) / width
                Parallel.forEachInShares(outer * pieces) { p in
                    let o = p / pieces, c0 = (p % pieces) * width, n = Swift.min(inner, c0 + width) - c0
                    smil_extreme(size, n, inner, src + o * size * inner + c0, flag, dst + o * inner + c0, ip + o * inner + c0)
                }
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
            [y.softmaxBackward(g, dim: d, log: false)]
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
            [y.softmaxBackward(g, dim: d, log: true)]
        }
    }

    private func softmaxKernel(dim: Int, log: Bool) -> Tensor {
        guard rank > 0 else { return Tensor(repeating: log ? 0 : 1, shape: shape) }
        let (outer, size, inner) = splitAround(shape, dim)
        let out = Tensor(uninitializedShape: shape)
        guard count > 0 else { return out }
        let src = storage.pointer, dst = out.storage.pointer
        let flag: Int32 = log ? 1 : 0
        if inner == 1 {
            // Rows of `size` contiguous values.
            Parallel.forRangesInShares(outer, grain: Swift.max(1, elementwiseGrain / size)) { r in
                var m: Float = 0, z: Double = 0
                for o in r { smil_softmax(size, 1, 1, src + o * size, dst + o * size, flag, &m, &z) }
            }
            return out
        }
        // Blocks [size, inner]: columns in pieces of a fixed width, over the threads.
        let width = Swift.min(inner, Swift.max(64, elementwiseGrain / size))
        let piecesPerBlock = (inner + width - 1) / width
        Parallel.forEachInShares(outer * piecesPerBlock) { p in
            let o = p / piecesPerBlock, c0 = (p % piecesPerBlock) * width, n = Swift.min(inner, c0 + width) - c0
            var m = [Float](repeating: 0, count: n), z = [Double](repeating: 0, count: n)
            smil_softmax(size, n, inner, src + o * size * inner + c0, dst + o * size * inner + c0, flag, &m, &z)
        }
        return out
    }

    /// The gradient of softmax (log-softmax when `log`) along `dim`, from this output and its
    /// gradient `g`, in one kernel: rows over the threads, or column pieces of each block.
    func softmaxBackward(_ g: Tensor, dim: Int, log: Bool) -> Tensor {
        let (outer, size, inner) = splitAround(shape, dim)
        let out = Tensor(uninitializedShape: shape)
        guard count > 0 else { return out }
        let y = storage.pointer, gp = g.storage.pointer, dst = out.storage.pointer
        let flag: Int32 = log ? 1 : 0
        if inner == 1 {
            Parallel.forRangesInShares(outer, grain: Swift.max(1, elementwiseGrain / size)) { r in
                var z: Double = 0
                for o in r { smil_softmax_backward(size, 1, 1, y + o * size, gp + o * size, dst + o * size, flag, &z) }
            }
            return out
        }
        let width = Swift.min(inner, Swift.max(64, elementwiseGrain / size))
        let piecesPerBlock = (inner + width - 1) / width
        Parallel.forEachInShares(outer * piecesPerBlock) { p in
            let o = p / piecesPerBlock, c0 = (p % piecesPerBlock) * width, n = Swift.min(inner, c0 + width) - c0
            var z = [Double](repeating: 0, count: n)
            let at = o * size * inner + c0
            smil_softmax_backward(size, n, inner, y + at, gp + at, dst + at, flag, &z)
        }
        return out
    }
}
