// GEMM.swift: matrix products on OpenBLAS's cblas_sgemm, split over threads, with the plain loop
// beside it as the test oracle.

import COpenBLAS
import CKernels

/// Row-major single-precision GEMM: `C = alpha * op(A) * op(B) + beta * C`, with `op(A)` M x K and
/// `op(B)` K x N. Large products are split into column (or row) blocks whose bounds depend only on
/// the shape, each computed by a single-threaded sgemm, so the bits do not depend on the threads.
@inline(__always)
public func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                 a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                 beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
        return
    }
    let ta = transA ? CblasTrans : CblasNoTrans
    let tb = transB ? CblasTrans : CblasNoTrans
    let work = m * n * k
    if work < 1 << 20 {
        cblas_sgemm(CblasRowMajor, ta, tb, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb),
                    beta, c, Int32(ldc))
        return
    }
    if m * n <= 1 << 16 && k >= 8192 {
        // A small output over a long sum (weight gradients): split the sum into fixed chunks,
        // computed in parallel into partial products, then added in chunk order.
        let grain = max(2048, ((k + 7) / 8 + 255) / 256 * 256)
        let pieces = (k + grain - 1) / grain
        let partial = UnsafeMutablePointer<Float>.allocate(capacity: pieces * m * n)
        defer { partial.deallocate() }
        Parallel.forEach(pieces) { p in
            let k0 = p * grain, kc = min(grain, k - k0)
            let ap = transA ? a + k0 * lda : a + k0, bp = transB ? b + k0 : b + k0 * ldb
            cblas_sgemm(CblasRowMajor, ta, tb, Int32(m), Int32(n), Int32(kc), alpha, ap, Int32(lda), bp, Int32(ldb),
                        0, partial + p * m * n, Int32(n))
        }
        for i in 0..<m {
            for j in 0..<n {
                var s = beta == 0 ? 0 : beta * c[i * ldc + j]
                for p in 0..<pieces { s += partial[(p * m + i) * n + j] }
                c[i * ldc + j] = s
            }
        }
        return
    }
    // Split the larger output dimension into blocks of a multiple of 16 chosen from the shape alone.
    if n >= m {
        let grain = max(64, ((n + 7) / 8 + 15) / 16 * 16)
        Parallel.forRanges(n, grain: grain) { r in
            let bp = transB ? b + r.lowerBound * ldb : b + r.lowerBound
            cblas_sgemm(CblasRowMajor, ta, tb, Int32(m), Int32(r.count), Int32(k), alpha, a, Int32(lda),
                        bp, Int32(ldb), beta, c + r.lowerBound, Int32(ldc))
        }
    } else {
        let grain = max(64, ((m + 7) / 8 + 15) / 16 * 16)
        Parallel.forRanges(m, grain: grain) { r in
            let ap = transA ? a + r.lowerBound : a + r.lowerBound * lda
            cblas_sgemm(CblasRowMajor, ta, tb, Int32(r.count), Int32(n), Int32(k), alpha, ap, Int32(lda),
                        b, Int32(ldb), beta, c + r.lowerBound * ldc, Int32(ldc))
        }
    }
}

/// Single-threaded row-major sgemm for work that is already split over threads.
@inline(__always) func sgemmSerial(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                                   a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                                   beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    guard m > 0, n > 0 else { return }
    if k == 0 { for i in 0..<m { for j in 0..<n { c[i * ldc + j] *= beta } }; return }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// `count` row-major `rows x cols` matrices, each transposed (`[count, cols, rows]`; the caller
/// frees it): a sparse convolution's offsets for its input gradient, a dense convolution's weight
/// `[O, patch]` as `[patch, O]` for the row kernel.
func transposedMatrices(_ a: UnsafePointer<Float>, count: Int, rows: Int, cols: Int) -> UnsafeMutablePointer<Float> {
    let t = UnsafeMutablePointer<Float>.allocate(capacity: count * rows * cols)
    for k in 0..<count {
        let src = a + k * rows * cols, dst = t + k * rows * cols
        for r in 0..<rows { for c in 0..<cols { dst[c * rows + r] = src[r * cols + c] } }
    }
    return t
}

/// Inner sizes up to which `smallKProduct` uses the AVX2 row kernel.
let smallKLimit = 320

/// `C = A x B` (or, with `accumulate`, `C += A x B`) on one thread, no transposes: for the products of convolution tiles,
/// whose inner size `k` (input channels times kernel area) is small. There, sgemm spends much of
/// each call around its kernel: it packs both operands and first zeroes C in a pass of its own.
/// The AVX2 row kernel reads A and B where they lie and writes C once; it runs over column chunks
/// whose slice of B (k rows) stays in the L1 cache while every row of A passes over it. Each
/// element is one chain of multiply-adds over k in order, so the result does not depend on the
/// chunking. Falls back to sgemm for a large `k`, without AVX2, and for the last `n % 16` columns.
func smallKProduct(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                   c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool = false) {
    let vectorColumns = k <= smallKLimit && smil_has_avx2_fma() != 0 ? n / 16 * 16 : 0
    if vectorColumns > 0 {
        let chunk = smallKChunk(k)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: k * chunk) { packed in
            let panel = packed.baseAddress!
            var j = 0
            while j < vectorColumns {
                let w = min(chunk, vectorColumns - j)
                for p in 0..<k { (panel + p * w).update(from: b + p * ldb + j, count: w) }
                panelProduct(m: m, n: w, k: k, a: a, lda: lda, panel: panel, c: c + j, ldc: ldc, accumulate: accumulate)
                j += w
            }
        }
    }
    if vectorColumns < n {
        sgemmSerial(m: m, n: n - vectorColumns, k: k, a: a, lda: lda, b: b + vectorColumns, ldb: ldb,
                    beta: accumulate ? 1 : 0, c: c + vectorColumns, ldc: ldc)
    }
}

/// Columns per packed chunk of `smallKProduct`: about 24 KB of B, 32 columns at the stem's
/// k = 147, 96 at k = 64.
func smallKChunk(_ k: Int) -> Int { max(16, min(256, 6144 / max(k, 1) / 16 * 16)) }

/// `C = A x panel` on one thread, the panel packed `[k, n]` (rows n apart) by the caller: the row
/// kernel on the first `n / 16 * 16` columns, sgemm on the rest. Needs `k <= smallKLimit` and AVX2.
func panelProduct(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, panel: UnsafePointer<Float>,
                  c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool = false) {
    let vectorColumns = n / 16 * 16
    if vectorColumns > 0 {
        _ = smil_rows_gemm(Int32(m), Int32(vectorColumns), Int32(k), a, nil, Int32(lda), panel, Int32(n), c, nil, Int32(ldc),
                           accumulate ? 1 : 0)
    }
    if vectorColumns < n {
        sgemmSerial(m: m, n: n - vectorColumns, k: k, a: a, lda: lda, b: panel + vectorColumns, ldb: n,
                    beta: accumulate ? 1 : 0, c: c + vectorColumns, ldc: ldc)
    }
}

/// The plain triple loop computing the same as `gemm`; the oracle for tests.
public func referenceGemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                          a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                          beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    for i in 0..<m {
        for j in 0..<n {
            var s: Double = 0
            for p in 0..<k {
                let av = transA ? a[p * lda + i] : a[i * lda + p]
                let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                s += Double(av) * Double(bv)
            }
            let prior = beta == 0 ? 0 : beta * c[i * ldc + j]
            c[i * ldc + j] = alpha * Float(s) + prior
        }
    }
}
