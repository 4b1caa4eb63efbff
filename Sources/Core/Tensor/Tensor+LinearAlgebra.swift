// Tensor+LinearAlgebra.swift: matrix products (batched, broadcast) on the GEMM kernel.

extension Tensor {
    /// Matrix product with PyTorch's `matmul` rules: 1-D operands are promoted and the added
    /// dimension removed afterwards; leading (batch) dimensions broadcast.
    public func matmul(_ other: Tensor) throws -> Tensor {
        guard rank >= 1, other.rank >= 1 else {
            throw CoreError.shapeMismatch(op: "matmul", "both arguments need at least one dimension, got \(shapeString(shape)) and \(shapeString(other.shape))")
        }
        if rank == 1 && other.rank == 1 {
            return try unsqueezed(0).matmul(other.unsqueezed(1)).reshaped([])
        }
        if rank == 1 { return try unsqueezed(0).matmul(other).squeezed(-2) }
        if other.rank == 1 { return try matmul(other.unsqueezed(1)).squeezed(-1) }
        let m = shape[rank - 2], k = shape[rank - 1], k2 = other.shape[other.rank - 2], n = other.shape[other.rank - 1]
        guard k == k2 else {
            throw CoreError.shapeMismatch(op: "matmul", "mat1 and mat2 shapes cannot be multiplied (\(shapeString(shape)) @ \(shapeString(other.shape)): \(k) != \(k2))")
        }
        let (needA, needB) = (requiresGrad, other.requiresGrad)
        let (selfD, otherD) = (detached(), other.detached())
        if other.rank == 2 {
            // [..., m, k] @ [k, n]: the leading dimensions fold into the rows of one product, and
            // the gradients are one product each, read transposed in place (no copies).
            let rows = count / Swift.max(k, 1)
            let out = Tensor(uninitializedShape: Array(shape.dropLast()) + [n])
            gemm(transA: false, transB: false, m: rows, n: n, k: k, a: storage.pointer, lda: k,
                 b: other.storage.pointer, ldb: n, c: out.storage.pointer, ldc: n)
            let shapeA = shape
            return out.recorded("matmul", [self, other]) { g in
                var ga: Tensor? = nil, gb: Tensor? = nil
                if needA {
                    // dA = g @ B^T
                    let t = Tensor(uninitializedShape: shapeA)
                    gemm(transA: false, transB: true, m: rows, n: k, k: n, a: g.storage.pointer, lda: n,
                         b: otherD.storage.pointer, ldb: n, c: t.storage.pointer, ldc: k)
                    ga = t
                }
                if needB {
                    // dB = A^T @ g, summed over the folded rows
                    let t = Tensor(uninitializedShape: [k, n])
                    gemm(transA: true, transB: false, m: k, n: n, k: rows, a: selfD.storage.pointer, lda: k,
                         b: g.storage.pointer, ldb: n, c: t.storage.pointer, ldc: n)
                    gb = t
                }
                return [ga, gb]
            }
        }
        let batchA = Array(shape.dropLast(2)), batchB = Array(other.shape.dropLast(2))
        let batch = try broadcastShapes(batchA, batchB, op: "matmul")
        let a = batchA == batch ? selfD : try selfD.expandedBatch(batch + [m, k])
        let b = batchB == batch ? otherD : try otherD.expandedBatch(batch + [k, n])
        let nb = batch.reduce(1, *)
        let out = Tensor(uninitializedShape: batch + [m, n])
        batchedGemm(count: nb, m: m, n: n, k: k, a: a.storage.pointer, lda: k, b: b.storage.pointer, ldb: n, c: out.storage.pointer)
        let (shapeA, shapeB) = (shape, other.shape)
        return out.recorded("matmul", [self, other]) { g in
            // dA = g @ B^T, dB = A^T @ g per batch (transposed in place), each summed back over
            // broadcast batch dimensions.
            var ga: Tensor? = nil, gb: Tensor? = nil
            if needA {
                let t = Tensor(uninitializedShape: batch + [m, k])
                batchedGemm(count: nb, transB: true, m: m, n: k, k: n, a: g.storage.pointer, lda: n, b: b.storage.pointer, ldb: n, c: t.storage.pointer)
                ga = t.sumTo(shapeA)
            }
            if needB {
                let t = Tensor(uninitializedShape: batch + [k, n])
                batchedGemm(count: nb, transA: true, m: k, n: n, k: m, a: a.storage.pointer, lda: k, b: g.storage.pointer, ldb: n, c: t.storage.pointer)
                gb = t.sumTo(shapeB)
            }
            return [ga, gb]
        }
    }

    /// Repeats the tensor to a broadcast-compatible larger shape (no autograd).
    func expandedBatch(_ target: [Int]) throws -> Tensor {
        broadcastCopy(to: try broadcastShapes(shape, target, op: "expand"))
    }

    /// `a @ b`.
    public static func matmul(_ a: Tensor, _ b: Tensor) throws -> Tensor { try a.matmul(b) }
}

/// `count` products C_i = op(A_i) op(B_i) of contiguous matrices (A_i m x k as stored, B_i k x n,
/// C_i m x n, each a whole matrix after the previous one): many small ones one per thread, larger
/// ones each split over the threads.
func batchedGemm(count: Int, transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                 a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>) {
    let (sa, sb, sc) = (m * k, k * n, m * n)
    if count >= 2 && m * n * k < 1 << 20 {
        Parallel.forEach(count) { i in
            sgemmSerial(transA: transA, transB: transB, m: m, n: n, k: k, a: a + i * sa, lda: lda, b: b + i * sb, ldb: ldb, c: c + i * sc, ldc: n)
        }
    } else {
        for i in 0..<count {
            gemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a + i * sa, lda: lda, b: b + i * sb, ldb: ldb, c: c + i * sc, ldc: n)
        }
    }
}
