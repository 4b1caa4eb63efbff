// Tensor+Ops.swift: the further operations attention and feature-bag models need — variance and
// standard deviation, logsumexp, norms, GELU, layer normalisation, masked_fill, expand, gather
// along a dimension (torch.gather) and its converse scatter_add, sort / argsort / topk, split and chunk — each with PyTorch's
// semantics and a gradient (most by composing the differentiable operations).

import CKernels
import Foundation

extension Tensor {
    /// The variance over `dims` (all when nil) with Bessel's `correction` (PyTorch's default 1).
    public func variance(dims: [Int]? = nil, keepDims: Bool = false, correction: Int = 1) throws -> Tensor {
        let reduce = try Set((dims ?? Array(0..<rank)).map { try normalizeDim($0, rank: rank, op: "var") })
        let n = rank == 0 ? 1 : reduce.reduce(1) { $0 * shape[$1] }
        let centred = try sub(try mean(dims: Array(reduce), keepDims: true))
        // Over no more values than the correction, PyTorch gives inf (or NaN): n - correction <= 0.
        let divisor = Float(n - correction)
        return try centred.mul(centred).sum(dims: Array(reduce), keepDims: keepDims).scaled(by: 1 / divisor)
    }

    /// The standard deviation over `dims` (see `variance`).
    public func standardDeviation(dims: [Int]? = nil, keepDims: Bool = false, correction: Int = 1) throws -> Tensor {
        try variance(dims: dims, keepDims: keepDims, correction: correction).sqrt()
    }

    /// log(sum(exp(x))) over `dims`, computed stably (the maximum taken out first; a dimension whose
    /// values are all -inf gives -inf, as in PyTorch).
    public func logsumexp(dims: [Int], keepDims: Bool = false) throws -> Tensor {
        let reduce = try dims.map { try normalizeDim($0, rank: rank, op: "logsumexp") }
        var m = detached()
        for d in Set(reduce).sorted(by: >) { m = try m.max(dim: d, keepDims: true).values }
        // An infinite maximum would give inf - inf: shift by 0 there instead.
        let shift = m.unary(SMIL_FINITE_OR_ZERO)
        let s = try sub(shift).exp().sum(dims: reduce, keepDims: true).log().add(shift)
        if keepDims { return s }
        return try s.reshaped(shape.enumerated().filter { !Set(reduce).contains($0.offset) }.map { $0.element })
    }

    /// The p-norm over `dims` (all when nil): (sum |x|^p)^(1/p); p = 2 by default, 1 and inf too.
    public func norm(p: Float = 2, dims: [Int]? = nil, keepDims: Bool = false) throws -> Tensor {
        if p == 2 { return try mul(self).sum(dims: dims, keepDims: keepDims).sqrt() }
        if p == 1 { return try abs().sum(dims: dims, keepDims: keepDims) }
        if p == .infinity {
            var r = abs()
            let reduce = try Set((dims ?? Array(0..<rank)).map { try normalizeDim($0, rank: rank, op: "norm") })
            for d in reduce.sorted(by: >) { r = try r.max(dim: d, keepDims: true).values }
            return keepDims ? r : try r.reshaped(shape.enumerated().filter { !reduce.contains($0.offset) }.map { $0.element })
        }
        guard p > 0, p.isFinite else { throw CoreError.invalidArgument(op: "norm", "p must be positive (or inf), got \(p)") }
        return try abs().pow(p).sum(dims: dims, keepDims: keepDims).pow(1 / p)
    }

    /// GELU, PyTorch's default (exact) form: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), Phi from an
    /// erfc within 1.2e-7 relative (CKernels: normal_cdf).
    public func gelu() -> Tensor {
        let x = detached()
        return unary(SMIL_GELU).recorded("gelu", [self]) { g in
            // d/dx = Phi(x) + x phi(x)
            [try g.binary(SMIL_GELU_BACKWARD, x, name: "gelu")]
        }
    }

    /// Layer normalisation over the last `normalizedShape.count` dimensions (biased variance, as
    /// torch.nn.functional.layer_norm), then `* weight + bias` where given.
    public func layerNorm(_ normalizedShape: [Int], weight: Tensor? = nil, bias: Tensor? = nil, eps: Float = 1e-5) throws -> Tensor {
        let k = normalizedShape.count
        guard k >= 1, k <= rank, Array(shape.suffix(k)) == normalizedShape else {
            throw CoreError.shapeMismatch(op: "layer_norm", "normalized_shape \(shapeString(normalizedShape)) must be the last dimensions of the input \(shapeString(shape))")
        }
        for (name, t) in [("weight", weight), ("bias", bias)] where t != nil && t!.shape != normalizedShape {
            throw CoreError.shapeMismatch(op: "layer_norm", "\(name) of shape \(shapeString(t!.shape)) does not match normalized_shape \(shapeString(normalizedShape))")
        }
        let dims = Array((rank - k)..<rank)
        let centred = try sub(try mean(dims: dims, keepDims: true))
        let v = try centred.mul(centred).mean(dims: dims, keepDims: true)
        var y = try centred.div(v.adding(eps).sqrt())
        if let weight { y = try y.mul(weight) }
        if let bias { y = try y.add(bias) }
        return y
    }

    /// `value` where `mask` is nonzero (broadcast to this shape), this tensor elsewhere.
    public func maskedFill(_ mask: Tensor, _ value: Float) throws -> Tensor {
        let target = try broadcastShapes(shape, mask.shape, op: "masked_fill")
        guard target == shape else {
            throw CoreError.shapeMismatch(op: "masked_fill", "mask of shape \(shapeString(mask.shape)) does not broadcast to the tensor's \(shapeString(shape))")
        }
        return try Tensor.where(mask, Tensor(scalar: value), self)
    }

    /// This tensor repeated along its size-1 (or new, leading) dimensions to `target` (-1 keeps a
    /// size), as a new tensor; the gradient sums back.
    public func expanded(to target: [Int]) throws -> Tensor {
        guard target.count >= rank else {
            throw CoreError.shapeMismatch(op: "expand", "the number of sizes (\(target.count)) must be at least the number of dimensions (\(rank))")
        }
        let pad = target.count - rank
        let resolved = target.enumerated().map { i, s in s == -1 && i >= pad ? shape[i - pad] : s }
        for (i, s) in resolved.enumerated() {
            let own = i >= pad ? shape[i - pad] : 1
            guard s >= 0, own == s || own == 1 else {
                throw CoreError.shapeMismatch(op: "expand", "cannot expand \(shapeString(shape)) to \(shapeString(target)) (dimension \(i): \(own) to \(s))")
            }
        }
        try Memory.checkAllocation(resolved, op: "expand")
        let inShape = shape
        return broadcastCopy(to: resolved).recorded("expand", [self]) { g in [g.sumTo(inShape)] }
    }

    /// torch.gather: `out[..., i, ...] = self[..., index[..., i, ...], ...]` along `dim`, where
    /// `index` has this tensor's rank and no size larger than its (except along `dim`).
    public func gather(dim: Int, index: IntTensor) throws -> Tensor {
        let d = try normalizeDim(dim, rank: Swift.max(rank, 1), op: "gather")
        guard index.rank == rank else {
            throw CoreError.shapeMismatch(op: "gather", "index of rank \(index.rank) for a tensor of rank \(rank)")
        }
        for (k, s) in index.shape.enumerated() where k != d && s > shape[k] {
            throw CoreError.shapeMismatch(op: "gather", "index of shape \(shapeString(index.shape)) is larger than the tensor's \(shapeString(shape)) in dimension \(k)")
        }
        let n = rank == 0 ? 1 : shape[d]
        let idx = index.scalars
        func outOfRange(_ i: Int) -> CoreError {
            CoreError.invalidArgument(op: "gather", "index \(i) is out of bounds for dimension \(d) with size \(n)")
        }
        if rank >= 1, d == rank - 1, Array(index.shape.dropLast()) == Array(shape.dropLast()) {
            // Along the last dimension, with the same leading sizes (the usual torch.gather): row r
            // of the output takes row r of the input at its indices; rows over the threads in
            // pieces of 16 K entries (no sum here, so the split need not be fixed), the indices
            // checked in the same pass (one out of range reads entry 0 and fails the call after).
            let k = index.shape[d], rows = index.count / Swift.max(k, 1)
            let out = Tensor(uninitializedShape: index.shape)
            let src = storage.pointer, dst = out.storage.pointer
            let span = UInt(bitPattern: 2 &* n)
            let pieces = Swift.max(1, Swift.min(rows, index.count / (1 << 14)))
            var outside = [Int](repeating: 0, count: pieces)
            idx.withUnsafeBufferPointer { ip in
                outside.withUnsafeMutableBufferPointer { bad in
                    let ip = ip.baseAddress, bad = bad.baseAddress!
                    Parallel.forEachInShares(pieces) { p in
                        guard let ip else { return }
                        var count = 0
                        for r in (p * rows / pieces)..<((p + 1) * rows / pieces) {
                            for j in 0..<k {
                                let i = ip[r * k + j]
                                let inside = UInt(bitPattern: i &+ n) < span
                                count &+= inside ? 0 : 1
                                dst[r * k + j] = src[r * n + (inside ? (i < 0 ? i + n : i) : 0)]
                            }
                        }
                        bad[p] = count
                    }
                }
            }
            if outside.contains(where: { $0 > 0 }), let i = firstOutOfRange(idx, n) { throw outOfRange(i) }
            let inShape = shape
            return out.recorded("gather", [self]) { g in
                let gx = Tensor(repeating: 0, shape: inShape)
                let gp = g.storage.pointer, gxp = gx.storage.pointer
                idx.withUnsafeBufferPointer { ip in
                    for r in 0..<rows {
                        for j in 0..<k {
                            let i = ip[r * k + j]
                            gxp[r * n + (i < 0 ? i + n : i)] += gp[r * k + j]
                        }
                    }
                }
                return [gx]
            }
        }
        if let i = firstOutOfRange(idx, n) { throw outOfRange(i) }
        let outShape = index.shape
        let offsets = indexedOffsets(idx, indexShape: outShape, strides: contiguousStrides(shape), dim: d, size: n)
        let out = Tensor(uninitializedShape: outShape)
        let src = storage.pointer, dst = out.storage.pointer
        for (i, off) in offsets.enumerated() { dst[i] = src[off] }
        let inShape = shape
        return out.recorded("gather", [self]) { g in
            // The gradient adds back into the gathered places (scatter_add).
            let gx = Tensor(repeating: 0, shape: inShape)
            let gp = g.storage.pointer, gxp = gx.storage.pointer
            for (i, off) in offsets.enumerated() { gxp[off] += gp[i] }
            return [gx]
        }
    }

    /// torch.scatter_add: a copy of this tensor with `source`'s entries added at `index` along
    /// `dim`: `out[..., index[p], ...] += source[p]` for every position p of `index` (the other
    /// coordinates of p kept). `index` has this tensor's rank and is no larger than `source` in any
    /// dimension, nor than this tensor outside `dim`; `source`'s entries outside `index`'s shape
    /// are not used. Entries that meet at one place are added in `index`'s row-major order, so the
    /// result does not depend on the threads. Gradients: the incoming gradient for this tensor,
    /// and for `source` the gradient gathered at `index` (zero where `index` does not reach).
    public func scatterAdd(dim: Int, index: IntTensor, source: Tensor) throws -> Tensor {
        let d = try normalizeDim(dim, rank: Swift.max(rank, 1), op: "scatter_add")
        guard index.rank == rank, source.rank == rank else {
            throw CoreError.shapeMismatch(op: "scatter_add", "index of rank \(index.rank) and source of rank \(source.rank) for a tensor of rank \(rank)")
        }
        for (k, s) in index.shape.enumerated() {
            if s > source.shape[k] {
                throw CoreError.shapeMismatch(op: "scatter_add", "index of shape \(shapeString(index.shape)) is larger than the source's \(shapeString(source.shape)) in dimension \(k)")
            }
            if k != d && s > shape[k] {
                throw CoreError.shapeMismatch(op: "scatter_add", "index of shape \(shapeString(index.shape)) is larger than the tensor's \(shapeString(shape)) in dimension \(k)")
            }
        }
        let n = rank == 0 ? 1 : shape[d]
        let idx = index.scalars
        if let i = firstOutOfRange(idx, n) {
            throw CoreError.invalidArgument(op: "scatter_add", "index \(i) is out of bounds for dimension \(d) with size \(n)")
        }
        if rank >= 1, index.shape == source.shape,
           index.shape.enumerated().allSatisfy({ $0.offset == d || $0.element == shape[$0.offset] }) {
            return scatterAddBlocked(dim: d, index: idx, source: source)
        }
        let targets = indexedOffsets(idx, indexShape: index.shape, strides: contiguousStrides(shape), dim: d, size: n)
        let sources = indexedOffsets(nil, indexShape: index.shape, strides: contiguousStrides(source.shape), dim: d, size: n)
        let out = Tensor(storage: storage.copy(), shape: shape)
        let src = source.storage.pointer, dst = out.storage.pointer
        for (t, s) in zip(targets, sources) { dst[t] += src[s] }
        let sourceShape = source.shape
        return out.recorded("scatter_add", [self, source]) { g in
            let gs = Tensor(repeating: 0, shape: sourceShape)
            let gp = g.storage.pointer, gsp = gs.storage.pointer
            for (t, s) in zip(targets, sources) { gsp[s] = gp[t] }
            return [g, gs]
        }
    }

    /// scatter_add where `index` and `source` have one shape that matches this tensor's outside
    /// `dim` (the usual use: pooling rows into groups). Viewed as [outer, rows, inner] (index and
    /// source) into [outer, n, inner] (this tensor), the work is split over the threads by `outer`
    /// when there is enough of it, else by columns of `inner`; either way each place's additions
    /// keep `index`'s row order, whatever the thread count.
    private func scatterAddBlocked(dim d: Int, index idx: [Int], source: Tensor) -> Tensor {
        let n = shape[d], rows = source.shape[d]
        let outer = shape[..<d].reduce(1, *), inner = shape[(d + 1)...].reduce(1, *)
        let out = Tensor(storage: storage.copy(), shape: shape)
        /// One pass over every entry of the index, in pieces over the threads: scattering adds
        /// `rowsOf`'s entry into `places` at the indexed place; gathering (the gradient) copies
        /// the indexed place of `places` into `rowsOf`'s entry.
        func pass(places: UnsafeMutablePointer<Float>, rowsOf: UnsafeMutablePointer<Float>, scattering: Bool) {
            guard outer * rows * inner > 0 else { return }
            idx.withUnsafeBufferPointer { ip in
                let ip = ip.baseAddress!
                func run(_ o: Int, _ columns: Range<Int>) {
                    for r in 0..<rows {
                        let from = (o * rows + r) * inner
                        for c in columns {
                            let i = ip[from + c]
                            let place = (o * n + (i < 0 ? i + n : i)) * inner + c
                            if scattering { places[place] += rowsOf[from + c] } else { rowsOf[from + c] = places[place] }
                        }
                    }
                }
                if outer >= 2 * Parallel.threads || inner < 64 {
                    Parallel.forRangesInShares(outer, grain: Swift.max(1, elementwiseGrain / Swift.max(1, rows * inner))) { range in
                        for o in range { run(o, 0..<inner) }
                    }
                } else {
                    let pieces = Swift.min(Parallel.threads, inner / 16)
                    Parallel.forEachInShares(Swift.max(pieces, 1)) { p in
                        for o in 0..<outer { run(o, (p * inner / pieces)..<((p + 1) * inner / pieces)) }
                    }
                }
            }
        }
        pass(places: out.storage.pointer, rowsOf: source.storage.pointer, scattering: true)
        let sourceShape = source.shape
        return out.recorded("scatter_add", [self, source]) { g in
            // The source's gradient gathers the output's at the same places.
            let gs = Tensor(uninitializedShape: sourceShape)
            pass(places: g.storage.pointer, rowsOf: gs.storage.pointer, scattering: false)
            return [g, gs]
        }
    }

    /// The first entry of `index` outside -n..<n, or nil: checked over the threads in pieces of
    /// 64 K (a serial pass cost gather as much as the gather itself), each piece noting its first.
    func firstOutOfRange(_ index: [Int], _ n: Int) -> Int? {
        let grain = 1 << 16, pieces = (index.count + grain - 1) / grain
        guard pieces > 0 else { return nil }
        var firstBad = [Int](repeating: -1, count: pieces)
        index.withUnsafeBufferPointer { ip in
            firstBad.withUnsafeMutableBufferPointer { bad in
                let ip = ip.baseAddress!, bad = bad.baseAddress!
                // -n <= i < n as one unsigned comparison, counted without a branch (vectorised).
                let span = UInt(bitPattern: 2 &* n)
                Parallel.forEachInShares(pieces) { p in
                    var outside = 0
                    for k in (p * grain)..<Swift.min(index.count, (p + 1) * grain) {
                        outside &+= UInt(bitPattern: ip[k] &+ n) >= span ? 1 : 0
                    }
                    guard outside > 0 else { return }
                    for k in (p * grain)..<Swift.min(index.count, (p + 1) * grain) where ip[k] < -n || ip[k] >= n {
                        bad[p] = k
                        return
                    }
                }
            }
        }
        return firstBad.first { $0 >= 0 }.map { index[$0] }
    }

    /// Offsets into a contiguous tensor of `strides` for every position of an index tensor of
    /// shape `indexShape`, in row-major order: the position's own coordinates, except along `dim`,
    /// where the coordinate is the index's value there (negative counting from `size`), or the
    /// position's own when `index` is nil. An odometer over the positions: no division per entry.
    func indexedOffsets(_ index: [Int]?, indexShape: [Int], strides: [Int], dim: Int, size n: Int) -> [Int] {
        let count = indexShape.reduce(1, *)
        var offsets = [Int](repeating: 0, count: count)
        guard count > 0 else { return offsets }
        let r = indexShape.count
        var at = [Int](repeating: 0, count: r)
        var base = 0
        let step = strides.isEmpty ? 0 : strides[dim]
        for flat in 0..<count {
            if let index {
                let i = index[flat]
                offsets[flat] = base + (i < 0 ? i + n : i) * step
            } else {
                offsets[flat] = base + (r == 0 ? 0 : at[dim]) * step
            }
            var k = r - 1
            while k >= 0 {
                at[k] += 1
                if k != dim { base += strides[k] }
                if at[k] < indexShape[k] { break }
                if k != dim { base -= strides[k] * indexShape[k] }
                at[k] = 0
                k -= 1
            }
        }
        return offsets
    }

    /// The values along `dim` in order (descending when asked), and where each came from. Stable:
    /// equal values keep their order; NaN sorts as the largest, as in PyTorch.
    public func sort(dim: Int = -1, descending: Bool = false) throws -> (values: Tensor, indices: IntTensor) {
        if rank == 0 { return (self, IntTensor(repeating: 0, shape: [])) }
        let d = try normalizeDim(dim, rank: rank, op: "sort")
        return try sorted(dim: d, descending: descending, keep: shape[d], op: "sort")
    }

    /// The `k` largest (or smallest) values along `dim`, in order, and their indices.
    public func topk(_ k: Int, dim: Int = -1, largest: Bool = true) throws -> (values: Tensor, indices: IntTensor) {
        let d = try normalizeDim(dim, rank: Swift.max(rank, 1), op: "topk")
        let size = rank == 0 ? 1 : shape[d]
        guard k >= 0, k <= size else { throw CoreError.invalidArgument(op: "topk", "k (\(k)) is out of range for dimension \(d) of size \(size)") }
        if rank == 0 { return k == 1 ? (self, IntTensor(repeating: 0, shape: [])) : (try Tensor.zeros([0]), try IntTensor([], shape: [0])) }
        return try sorted(dim: d, descending: largest, keep: k, op: "topk")
    }

    /// The first `keep` of the values along `d` in sorted order (C kernel; rows over the threads),
    /// with their indices; the gradient goes back to where each value came from.
    private func sorted(dim d: Int, descending: Bool, keep k: Int, op: String) throws -> (values: Tensor, indices: IntTensor) {
        let (outer, size, inner) = splitAround(shape, d)
        guard size < 1 << 32 else { throw CoreError.invalidArgument(op: op, "dimension \(d) has \(size) values, more than 2^32") }
        var outShape = shape
        outShape[d] = k
        let values = Tensor(uninitializedShape: outShape)
        var order = [Int](repeating: 0, count: outer * k * inner)
        let src = storage.pointer, dst = values.storage.pointer
        let rows = outer * inner
        order.withUnsafeMutableBufferPointer { order in
            guard rows > 0, size > 0, k > 0, let base = order.baseAddress else { return }
            let ip = UnsafeMutableRawPointer(base).assumingMemoryBound(to: Int64.self)
            Parallel.forRangesInShares(rows, grain: Swift.max(1, elementwiseGrain / size)) { r in
                let scratch = UnsafeMutablePointer<UInt64>.allocate(capacity: 2 * size)
                defer { scratch.deallocate() }
                smil_sort_rows(r.lowerBound, r.count, size, inner, src, descending ? 1 : 0, k, dst, ip, scratch)
            }
        }
        let indices = try IntTensor(order, shape: outShape)
        let inShape = shape
        let v = values.recorded(op, [self]) { g in
            let gx = Tensor(repeating: 0, shape: inShape)
            let gp = g.storage.pointer, gxp = gx.storage.pointer
            for o in 0..<outer { for t in 0..<k { for j in 0..<inner {
                let at = (o * k + t) * inner + j
                gxp[(o * size + order[at]) * inner + j] += gp[at]
            } } }
            return [gx]
        }
        return (v, indices)
    }

    /// Pieces of `size` along `dim` (the last one shorter when it does not divide).
    public func split(_ size: Int, dim: Int = 0) throws -> [Tensor] {
        guard rank > 0 else { throw CoreError.invalidArgument(op: "split", "a tensor with no dimensions (a scalar) cannot be split") }
        let d = try normalizeDim(dim, rank: rank, op: "split")
        guard size > 0 else { throw CoreError.invalidArgument(op: "split", "split size must be positive, got \(size)") }
        let n = shape[d]
        return try stride(from: 0, to: Swift.max(n, 1), by: size).map { try slice(dim: d, start: $0, end: Swift.min(n, $0 + size)) }
    }

    /// `chunks` pieces along `dim` of ceil(n / chunks) each (fewer when they run out), as torch.chunk.
    public func chunk(_ chunks: Int, dim: Int = 0) throws -> [Tensor] {
        guard rank > 0 else { throw CoreError.invalidArgument(op: "chunk", "a tensor with no dimensions (a scalar) cannot be chunked") }
        let d = try normalizeDim(dim, rank: rank, op: "chunk")
        guard chunks > 0 else { throw CoreError.invalidArgument(op: "chunk", "chunks must be positive, got \(chunks)") }
        return try split(Swift.max(1, (shape[d] + chunks - 1) / chunks), dim: d)
    }
}
