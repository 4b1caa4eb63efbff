// Tensor+Shape.swift: reshaping, transposing, slicing, joining — differentiable.

import CKernels

extension Tensor {
    /// The same elements in a new shape; one dimension may be -1 (inferred).
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        var target = newShape
        // Sizes beyond the element count cannot fit (and their product could overflow).
        guard count == 0 || newShape.allSatisfy({ $0 <= count }) else {
            throw CoreError.shapeMismatch(op: "reshape", "shape \(shapeString(newShape)) is invalid for input of size \(count) (shape \(shapeString(shape)))")
        }
        func product(_ sizes: [Int]) -> Int { sizes.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 } }
        let known = product(newShape.filter { $0 != -1 })
        let inferred = newShape.filter { $0 == -1 }.count
        if inferred == 1, let i = newShape.firstIndex(of: -1), known > 0, count % known == 0 {
            target[i] = count / known
        }
        guard inferred <= 1, target.allSatisfy({ $0 >= 0 }), product(target) == count else {
            throw CoreError.shapeMismatch(op: "reshape", "shape \(shapeString(newShape)) is invalid for input of size \(count) (shape \(shapeString(shape)))")
        }
        let old = shape
        return withShape(target).recorded("reshape", [self]) { g in [g.withShape(old)] }
    }

    /// Flattens dimensions `start...end` into one.
    public func flattened(start: Int = 0, end: Int = -1) throws -> Tensor {
        guard rank > 0 else { return try reshaped([1]) }
        let s = try normalizeDim(start, rank: rank, op: "flatten"), e = try normalizeDim(end, rank: rank, op: "flatten")
        guard s <= e else { throw CoreError.invalidArgument(op: "flatten", "start \(start) is after end \(end)") }
        let merged = shape[s...e].reduce(1, *)
        return try reshaped(Array(shape[..<s]) + [merged] + Array(shape[(e + 1)...]))
    }

    /// Inserts a dimension of size 1 at `dim`.
    public func unsqueezed(_ dim: Int) throws -> Tensor {
        let d = try normalizeDim(dim, rank: rank + 1, op: "unsqueeze")
        var s = shape
        s.insert(1, at: d)
        return try reshaped(s)
    }

    /// Removes dimension `dim` if its size is 1 (all size-1 dimensions when nil).
    public func squeezed(_ dim: Int? = nil) throws -> Tensor {
        guard let dim = dim else { return try reshaped(shape.filter { $0 != 1 }) }
        let d = try normalizeDim(dim, rank: rank, op: "squeeze")
        guard rank > 0, shape[d] == 1 else { return self }
        var s = shape
        s.remove(at: d)
        return try reshaped(s)
    }

    /// Reorders the dimensions: result dimension i is input dimension `dims[i]`.
    public func permuted(_ dims: [Int]) throws -> Tensor {
        let ds = try dims.map { try normalizeDim($0, rank: rank, op: "permute") }
        guard ds.count == rank, Set(ds).count == rank else {
            throw CoreError.invalidArgument(op: "permute", "\(dims) is not a permutation of the \(rank) dimensions of \(shapeString(shape))")
        }
        if ds == Array(0..<rank) { return self }
        let r = rank
        let out = detached().permutedView(ds)
        var inverse = [Int](repeating: 0, count: r)
        for (i, d) in ds.enumerated() { inverse[d] = i }
        return out.recorded("permute", [self]) { g in [try g.permuted(inverse)] }
    }

    /// This tensor's source and permutation while its storage is a pending permutation.
    var pendingView: (source: Tensor, dims: [Int])? {
        guard let p = storage.pending, storage.isPending, shape == p.dims.map({ p.sourceShape[$0] }) else { return nil }
        return (Tensor(storage: p.source, shape: p.sourceShape), p.dims)
    }

    /// The permutation by `dims` as a view (no autograd): a pending permutation of this storage,
    /// or of its source when this is itself one (the identity gives the source back). Small
    /// tensors are copied at once.
    func permutedView(_ dims: [Int]) -> Tensor {
        if dims == Array(0..<rank) { return self }
        let outShape = dims.map { shape[$0] }
        if let (source, inner) = pendingView {
            let composed = dims.map { inner[$0] }
            if composed == Array(0..<composed.count) { return source }
            return Tensor(storage: TensorStorage(permuting: source.storage, shape: source.shape, dims: composed), shape: outShape)
        }
        if count < 4096 {
            let out = Tensor(uninitializedShape: outShape)
            let own = contiguousStrides(shape)
            Tensor.permuteCopy(from: storage.pointer, strides: dims.map { own[$0] }, shape: outShape, into: out.storage.pointer)
            return out
        }
        return Tensor(storage: TensorStorage(permuting: storage, shape: shape, dims: dims), shape: outShape)
    }

    /// Copies the strided view (`shape`, source `strides`) into contiguous `dst`. Where the
    /// source's contiguous dimension is not the output's last, each [rows, columns] plane between
    /// the two is transposed in cache-sized tiles (a column-by-column walk would miss the cache on
    /// every element); the planes go over the threads.
    static func permuteCopy(from src: UnsafePointer<Float>, strides: [Int], shape: [Int], into dst: UnsafeMutablePointer<Float>) {
        let r = shape.count, total = shape.reduce(1, *)
        guard total > 0 else { return }
        let outStrides = contiguousStrides(shape)
        let last = r - 1
        if let q = strides.firstIndex(of: 1), q != last, shape[q] > 1, shape[last] > 1 {
            // dst[.., iq, .., il] = src[.. + iq + il * strides[last]]: planes over the other dimensions.
            let others = (0..<r).filter { $0 != q && $0 != last }
            let planes = others.reduce(1) { $0 * shape[$1] }
            let rows = shape[last], cols = shape[q]
            Parallel.forEachInShares(planes) { p in
                var rest = p, offS = 0, offD = 0
                for d in others.reversed() {
                    let i = rest % shape[d]
                    rest /= shape[d]
                    offS += i * strides[d]
                    offD += i * outStrides[d]
                }
                // smil_transpose: dst[c * ldd + r] = src[r * lds + c], with r over il and c over iq.
                smil_transpose(dst + offD, Int32(outStrides[q]), src + offS, Int32(strides[last]), Int32(rows), Int32(cols))
            }
            return
        }
        let inner = shape[last], innerStride = strides[last]
        let rows = total / inner
        Parallel.forRangesInShares(rows, grain: Swift.max(1, elementwiseGrain / inner)) { range in
            var index = [Int](repeating: 0, count: r)
            var rest = range.lowerBound, off = 0
            for d in stride(from: r - 2, through: 0, by: -1) {
                index[d] = rest % shape[d]
                rest /= shape[d]
                off += index[d] * strides[d]
            }
            for row in range {
                let base = dst + row * inner
                if innerStride == 1 { base.update(from: src + off, count: inner) }
                else { for j in 0..<inner { base[j] = src[off + j * innerStride] } }
                var d = r - 2
                while d >= 0 {
                    index[d] += 1
                    off += strides[d]
                    if index[d] < shape[d] { break }
                    off -= strides[d] * shape[d]
                    index[d] = 0
                    d -= 1
                }
            }
        }
    }

    /// Swaps two dimensions.
    public func transposed(_ a: Int = 0, _ b: Int = 1) throws -> Tensor {
        let da = try normalizeDim(a, rank: rank, op: "transpose"), db = try normalizeDim(b, rank: rank, op: "transpose")
        guard rank > 0 else { return self }
        var dims = Array(0..<rank)
        dims.swapAt(da, db)
        return try permuted(dims)
    }

    /// Elements `start, start+step, ...` below `end` along `dim` (Python slice semantics: negative
    /// bounds count from the end and are clipped).
    public func slice(dim: Int, start: Int? = nil, end: Int? = nil, step: Int = 1) throws -> Tensor {
        guard rank > 0 else { throw CoreError.invalidArgument(op: "slice", "a tensor with no dimensions (a scalar) cannot be sliced") }
        let d = try normalizeDim(dim, rank: rank, op: "slice")
        guard step > 0 else { throw CoreError.invalidArgument(op: "slice", "step must be positive, got \(step)") }
        let n = shape[d]
        func clip(_ v: Int?, _ def: Int) -> Int {
            guard var v = v else { return def }
            if v < 0 { v += n }
            return Swift.min(Swift.max(v, 0), n)
        }
        let lo = clip(start, 0), hi = clip(end, n)
        let picked = lo < hi ? Array(stride(from: lo, to: hi, by: step)) : []
        return try gather(dim: d, picked)
    }

    /// The sub-tensor at `index` along `dim`, with that dimension removed.
    public func select(dim: Int = 0, _ index: Int) throws -> Tensor {
        guard rank > 0 else { throw CoreError.invalidArgument(op: "select", "a tensor with no dimensions (a scalar) cannot be indexed") }
        let d = try normalizeDim(dim, rank: rank, op: "select")
        let n = shape[d]
        let i = index < 0 ? index + n : index
        guard i >= 0 && i < n else {
            throw CoreError.invalidArgument(op: "index", "index \(index) is out of bounds for dimension \(d) with size \(n)")
        }
        var s = shape
        s.remove(at: d)
        return try gather(dim: d, [i]).reshaped(s)
    }

    /// Picks `indices` along `dim` (repeats allowed); gradients add up at repeated indices.
    public func gather(dim d: Int, _ indices: [Int]) throws -> Tensor {
        guard rank > 0, d >= 0, d < rank else {
            throw CoreError.invalidArgument(op: "index_select", "dimension \(d) is out of range for a tensor of \(rank == 0 ? "no dimensions (a scalar)" : "rank \(rank)")")
        }
        let n = shape[d]
        for i in indices where i < 0 || i >= n {
            throw CoreError.invalidArgument(op: "index", "index \(i) is out of bounds for dimension \(d) with size \(n)")
        }
        let (outer, _, inner) = splitAround(shape, d)
        var outShape = shape
        outShape[d] = indices.count
        let out = Tensor(uninitializedShape: outShape)
        let src = storage.pointer, dst = out.storage.pointer
        let m = indices.count
        indices.withUnsafeBufferPointer { ip in
            // One run of `inner` floats per (outer, index), in pieces of about 64 K floats over the threads.
            Parallel.forRangesInShares(outer * m, grain: Swift.max(1, elementwiseGrain / Swift.max(1, inner))) { r in
                for q in r {
                    let (o, k) = q.quotientAndRemainder(dividingBy: m)
                    (dst + q * inner).update(from: src + (o * n + ip[k]) * inner, count: inner)
                }
            }
        }
        let inShape = shape
        return out.recorded("index", [self]) { g in
            let gx = Tensor(repeating: 0, shape: inShape)
            let gp = g.storage.pointer, gxp = gx.storage.pointer
            for o in 0..<outer {
                for (k, i) in indices.enumerated() {
                    let a = gxp + (o * n + i) * inner, b = gp + (o * indices.count + k) * inner
                    for j in 0..<inner { a[j] += b[j] }
                }
            }
            return [gx]
        }
    }

    /// Joins tensors along `dim`; all other dimensions must agree.
    public static func cat(_ tensors: [Tensor], dim: Int = 0) throws -> Tensor {
        guard let first = tensors.first else { throw CoreError.invalidArgument(op: "cat", "expected a non-empty list of tensors") }
        if let i = tensors.firstIndex(where: { $0.rank == 0 }) {
            throw CoreError.invalidArgument(op: "cat", "tensor \(i) has no dimensions (a scalar) and cannot be concatenated; stack() makes a new dimension")
        }
        let d = try normalizeDim(dim, rank: first.rank, op: "cat")
        for (i, t) in tensors.enumerated() {
            var a = t.shape, b = first.shape
            guard a.count == b.count else {
                throw CoreError.shapeMismatch(op: "cat", "tensor 0 has shape \(shapeString(first.shape)) but tensor \(i) has shape \(shapeString(t.shape))")
            }
            a[d] = 0; b[d] = 0
            guard a == b else {
                throw CoreError.shapeMismatch(op: "cat", "sizes must match except in dimension \(d): tensor 0 has shape \(shapeString(first.shape)), tensor \(i) has \(shapeString(t.shape))")
            }
        }
        let sizes = tensors.map { $0.shape[d] }
        var outShape = first.shape
        outShape[d] = sizes.reduce(0) { $0.addingReportingOverflow($1).overflow ? Int.max : $0 + $1 }
        try Memory.checkAllocation(outShape, op: "cat")
        let (outer, total, inner) = splitAround(outShape, d)
        let out = Tensor(uninitializedShape: outShape)
        let dst = out.storage.pointer
        // The contiguous runs to copy, cut into pieces of at most 64 K floats, over the threads.
        var pieces: [(to: Int, from: UnsafePointer<Float>, count: Int)] = []
        var offset = 0
        for t in tensors {
            let n = t.shape[d], src = UnsafePointer(t.storage.pointer)
            for o in 0..<outer {
                let run = n * inner, to = (o * total + offset) * inner, from = src + o * n * inner
                for start in stride(from: 0, to: run, by: elementwiseGrain) {
                    pieces.append((to + start, from + start, Swift.min(elementwiseGrain, run - start)))
                }
            }
            offset += n
        }
        pieces.withUnsafeBufferPointer { pieces in
            Parallel.forEachInShares(pieces.count) { i in
                let p = pieces[i]
                (dst + p.to).update(from: p.from, count: p.count)
            }
        }
        return out.recorded("cat", tensors) { g in
            var start = 0
            return try sizes.map { n in
                defer { start += n }
                return try g.slice(dim: d, start: start, end: start + n)
            }
        }
    }

    /// Stacks equal-shaped tensors along a new dimension `dim`.
    public static func stack(_ tensors: [Tensor], dim: Int = 0) throws -> Tensor {
        guard let first = tensors.first else { throw CoreError.invalidArgument(op: "stack", "expected a non-empty list of tensors") }
        for (i, t) in tensors.enumerated() where t.shape != first.shape {
            throw CoreError.shapeMismatch(op: "stack", "stack expects each tensor to be equal size, but got \(shapeString(first.shape)) at entry 0 and \(shapeString(t.shape)) at entry \(i)")
        }
        let d = try normalizeDim(dim, rank: first.rank + 1, op: "stack")
        return try cat(tensors.map { try $0.unsqueezed(d) }, dim: d)
    }
}
