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
        let batchA = Array(shape.dropLast(2)), batchB = Array(other.shape.dropLast(2))
        let batch = try broadcastShapes(batchA, batchB, op: "matmul")
        let a = batchA == batch ? detached() : try detached().expandedBatch(batch + [m, k])
        let b = batchB == batch ? other.detached() : try other.detached().expandedBatch(batch + [k, n])
        let nb = batch.reduce(1, *)
        let out = Tensor(uninitializedShape: batch + [m, n])
        let pa = a.storage.pointer, pb = b.storage.pointer, pc = out.storage.pointer
        for i in 0..<nb {
            gemm(transA: false, transB: false, m: m, n: n, k: k, a: pa + i * m * k, lda: k,
                 b: pb + i * k * n, ldb: n, c: pc + i * m * n, ldc: n)
        }
        let (shapeA, shapeB) = (shape, other.shape)
        let (selfD, otherD) = (detached(), other.detached())
        return out.recorded("matmul", [self, other]) { g in
            // dA = g @ B^T, dB = A^T @ g, each summed back over broadcast batch dimensions.
            let ga = try g.matmul(otherD.transposed(-1, -2)).sumTo(shapeA)
            let gb = try selfD.transposed(-1, -2).matmul(g).sumTo(shapeB)
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
