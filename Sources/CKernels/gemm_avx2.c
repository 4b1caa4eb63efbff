// gemm_avx2.c: the sparse convolution's products, register-blocked for AVX2 + FMA (see
// include/kernels.h). Compiled for every x86-64 processor; the AVX2 functions carry a target
// attribute and run only when the processor has the instructions.

#include "kernels.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

int smil_has_avx2_fma(void) {
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return known;
}

#define AVX2 __attribute__((target("avx2,fma")))

/// Stores (or adds) two accumulators to 16 floats at p.
AVX2 static inline void put16(float *p, __m256 lo, __m256 hi, int accumulate) {
    if (accumulate) {
        lo = _mm256_add_ps(_mm256_loadu_ps(p), lo);
        hi = _mm256_add_ps(_mm256_loadu_ps(p + 8), hi);
    }
    _mm256_storeu_ps(p, lo);
    _mm256_storeu_ps(p + 8, hi);
}

/// One step of a 6 x 16 block: two loads of B's row at BP, six broadcasts (A0..A5 point at the
/// six floats), twelve multiply-adds into the accumulators x00..x51 of the enclosing scope.
#define FMA_6x16(A0, A1, A2, A3, A4, A5, BP)                                                                \
    do {                                                                                                   \
        __m256 b0_ = _mm256_loadu_ps(BP), b1_ = _mm256_loadu_ps((BP) + 8), v_;                            \
        v_ = _mm256_broadcast_ss(A0); x00 = _mm256_fmadd_ps(v_, b0_, x00); x01 = _mm256_fmadd_ps(v_, b1_, x01); \
        v_ = _mm256_broadcast_ss(A1); x10 = _mm256_fmadd_ps(v_, b0_, x10); x11 = _mm256_fmadd_ps(v_, b1_, x11); \
        v_ = _mm256_broadcast_ss(A2); x20 = _mm256_fmadd_ps(v_, b0_, x20); x21 = _mm256_fmadd_ps(v_, b1_, x21); \
        v_ = _mm256_broadcast_ss(A3); x30 = _mm256_fmadd_ps(v_, b0_, x30); x31 = _mm256_fmadd_ps(v_, b1_, x31); \
        v_ = _mm256_broadcast_ss(A4); x40 = _mm256_fmadd_ps(v_, b0_, x40); x41 = _mm256_fmadd_ps(v_, b1_, x41); \
        v_ = _mm256_broadcast_ss(A5); x50 = _mm256_fmadd_ps(v_, b0_, x50); x51 = _mm256_fmadd_ps(v_, b1_, x51); \
    } while (0)

/// Asks for the source lines of run r of `side`.
static inline void side_prefetch(const smil_side_copy *side, int r) {
    const char *p = (const char *)(side->src + (long)(r / side->inners) * side->srcOuter + (long)(r % side->inners) * side->srcInner);
    long bytes = 4L * side->count * side->step;
    for (long l = 0; l < bytes; l += 64) __builtin_prefetch(p + l, 0, 3);
}

/// Copies run r of `side`.
AVX2 static inline void side_run(const smil_side_copy *side, int r) {
    const float *s = side->src + (long)(r / side->inners) * side->srcOuter + (long)(r % side->inners) * side->srcInner;
    float *d = side->dst + (long)(r / side->inners) * side->dstOuter + (long)(r % side->inners) * side->dstInner;
    if (side->step == 1) {
        for (int i = 0; i < side->count; i += 8) _mm256_storeu_ps(d + i, _mm256_loadu_ps(s + i));
        return;
    }
    // The even floats of 16: one shuffle takes floats 0 2 | 8 10 ... lane by lane, the permute
    // puts the two lanes' halves in order.
    for (int i = 0; i < side->count; i += 8) {
        __m256 e = _mm256_shuffle_ps(_mm256_loadu_ps(s + 2 * i), _mm256_loadu_ps(s + 2 * i + 8), 0x88);
        _mm256_storeu_ps(d + i, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xd8)));
    }
}

/// Asks for the first `ahead` runs' lines (once, before the first run is copied).
static inline void side_start(smil_side_copy *side) {
    if (side->done == 0)
        for (int r = 0; r < side->ahead && r < side->runs; r++) side_prefetch(side, r);
}

/// Copies the next `runs` runs of `side` (fewer at its end), each after asking for the lines of
/// the run `ahead` after it.
AVX2 static inline void side_some(smil_side_copy *side, int runs) {
    for (int e = 0; e < runs && side->done < side->runs; e++, side->done++) {
        if (side->done + side->ahead < side->runs) side_prefetch(side, side->done + side->ahead);
        side_run(side, side->done);
    }
}

AVX2 static void side_copy_some(smil_side_copy *side, int runs) {
    side_start(side);
    side_some(side, runs);
}

void smil_side_copy_some(smil_side_copy *side, int runs) {
    if (smil_has_avx2_fma()) side_copy_some(side, runs);
}

/// Six rows at a time: 6 x 16 accumulators, each step two loads of B and six broadcasts of A.
AVX2 static inline __attribute__((always_inline)) void rows6_with(int n, int k, const float *a0, const float *a1,
        const float *a2, const float *a3, const float *a4, const float *a5, const float *b, int ldb, float *c0,
        float *c1, float *c2, float *c3, float *c4, float *c5, int accumulate, smil_side_copy *side, int perBlock) {
    for (int j = 0; j < n; j += 16) {
        if (side) side_some(side, perBlock);
        // With a side copy the rows of C are taken to be in memory too: the next block's lines
        // are asked for, for writing, a block ahead of its stores.
        if (side && j + 16 < n) {
            __builtin_prefetch(c0 + j + 16, 1, 3); __builtin_prefetch(c1 + j + 16, 1, 3); __builtin_prefetch(c2 + j + 16, 1, 3);
            __builtin_prefetch(c3 + j + 16, 1, 3); __builtin_prefetch(c4 + j + 16, 1, 3); __builtin_prefetch(c5 + j + 16, 1, 3);
        }
        __m256 x00 = _mm256_setzero_ps(), x01 = x00, x10 = x00, x11 = x00, x20 = x00, x21 = x00;
        __m256 x30 = x00, x31 = x00, x40 = x00, x41 = x00, x50 = x00, x51 = x00;
        const float *bp = b + j;
        for (int p = 0; p < k; p++, bp += ldb) FMA_6x16(a0 + p, a1 + p, a2 + p, a3 + p, a4 + p, a5 + p, bp);
        put16(c0 + j, x00, x01, accumulate);
        put16(c1 + j, x10, x11, accumulate);
        put16(c2 + j, x20, x21, accumulate);
        put16(c3 + j, x30, x31, accumulate);
        put16(c4 + j, x40, x41, accumulate);
        put16(c5 + j, x50, x51, accumulate);
    }
}

AVX2 static void rows6(int n, int k, const float *a0, const float *a1, const float *a2, const float *a3,
                       const float *a4, const float *a5, const float *b, int ldb, float *c0, float *c1,
                       float *c2, float *c3, float *c4, float *c5, int accumulate) {
    rows6_with(n, k, a0, a1, a2, a3, a4, a5, b, ldb, c0, c1, c2, c3, c4, c5, accumulate, NULL, 0);
}

/// x[r] = the 16 floats of row r of A x B at b, for R (< 6) rows of A at a[r], k deep: one chain
/// of multiply-adds over p per element, as in rows6.
AVX2 static inline __attribute__((always_inline)) void block_R16(int R, int k, const float *const *a, const float *b,
                                                                  int ldb, __m256 x[5][2]) {
    for (int r = 0; r < R; r++) { x[r][0] = _mm256_setzero_ps(); x[r][1] = x[r][0]; }
    for (int p = 0; p < k; p++, b += ldb) {
        __m256 y0 = _mm256_loadu_ps(b), y1 = _mm256_loadu_ps(b + 8);
        for (int r = 0; r < R; r++) {
            __m256 s = _mm256_broadcast_ss(a[r] + p);
            x[r][0] = _mm256_fmadd_ps(s, y0, x[r][0]);
            x[r][1] = _mm256_fmadd_ps(s, y1, x[r][1]);
        }
    }
}

/// R rows (R < 6) of C, 8 * V columns at a time, V * R accumulators: the tail of a call to
/// smil_rows_gemm, blocked so that enough independent sums are in flight (a single row of 16
/// columns has only two, and waits on the latency of each multiply-add). Every element is the same
/// chain of multiply-adds over p as in rows6, so the blocking does not change the result.
AVX2 static inline __attribute__((always_inline)) void rows_tail(int R, int V, int n, int k, const float *const *a,
                                                                  const float *b, int ldb, float *const *c, int accumulate) {
    int j = 0;
    for (; j + 8 * V <= n; j += 8 * V) {
        __m256 x[5][8];
        for (int r = 0; r < R; r++) for (int v = 0; v < V; v++) x[r][v] = _mm256_setzero_ps();
        const float *bp = b + j;
        for (int p = 0; p < k; p++, bp += ldb) {
            __m256 y[8];
            for (int v = 0; v < V; v++) y[v] = _mm256_loadu_ps(bp + 8 * v);
            for (int r = 0; r < R; r++) {
                __m256 s = _mm256_broadcast_ss(a[r] + p);
                for (int v = 0; v < V; v++) x[r][v] = _mm256_fmadd_ps(s, y[v], x[r][v]);
            }
        }
        for (int r = 0; r < R; r++)
            for (int v = 0; v < V; v += 2) put16(c[r] + j + 8 * v, x[r][v], x[r][v + 1], accumulate);
    }
    if (j < n) {  // n is a multiple of 16: the rest two vectors at a time
        for (; j < n; j += 16) {
            __m256 x[5][2];
            block_R16(R, k, a, b + j, ldb, x);
            for (int r = 0; r < R; r++) put16(c[r] + j, x[r][0], x[r][1], accumulate);
        }
    }
}

AVX2 static void rows4(int n, int k, const float *const *a, const float *b, int ldb, float *const *c, int acc) {
    rows_tail(4, 2, n, k, a, b, ldb, c, acc);
}
AVX2 static void rows2(int n, int k, const float *const *a, const float *b, int ldb, float *const *c, int acc) {
    rows_tail(2, 4, n, k, a, b, ldb, c, acc);
}
AVX2 static void rows1(int n, int k, const float *const *a, const float *b, int ldb, float *const *c, int acc) {
    rows_tail(1, 8, n, k, a, b, ldb, c, acc);
}

int smil_rows_gemm(int m, int n, int k, const float *a, const int *arows, int lda, const float *b, int ldb,
                   float *c, const int *crows, int ldc, int accumulate) {
    if (!smil_has_avx2_fma() || n % 16 != 0) return 0;
#define AROW(i) (a + (long)(arows ? arows[i] : (i)) * lda)
#define CROW(i) (c + (long)(crows ? crows[i] : (i)) * ldc)
    int i = 0;
    for (; i + 6 <= m; i += 6)
        rows6(n, k, AROW(i), AROW(i + 1), AROW(i + 2), AROW(i + 3), AROW(i + 4), AROW(i + 5), b, ldb,
              CROW(i), CROW(i + 1), CROW(i + 2), CROW(i + 3), CROW(i + 4), CROW(i + 5), accumulate);
    for (int rows = 4; rows >= 1; rows /= 2) {
        for (; i + rows <= m; i += rows) {
            const float *ar[4];
            float *cr[4];
            for (int r = 0; r < rows; r++) { ar[r] = AROW(i + r); cr[r] = CROW(i + r); }
            if (rows == 4) rows4(n, k, ar, b, ldb, cr, accumulate);
            else if (rows == 2) rows2(n, k, ar, b, ldb, cr, accumulate);
            else rows1(n, k, ar, b, ldb, cr, accumulate);
        }
    }
#undef AROW
#undef CROW
    return 1;
}

AVX2 static void rows_gemm_side(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c,
                                int ldc, int accumulate, smil_side_copy *side, int perBlock) {
    if (side) side_start(side);
    int i = 0;
    for (; i + 6 <= m; i += 6) {
        const float *ai = a + (long)i * lda;
        float *ci = c + (long)i * ldc;
        rows6_with(n, k, ai, ai + lda, ai + 2 * lda, ai + 3 * lda, ai + 4 * lda, ai + 5 * lda, b, ldb, ci, ci + ldc,
                   ci + 2 * (long)ldc, ci + 3 * (long)ldc, ci + 4 * (long)ldc, ci + 5 * (long)ldc, accumulate, side,
                   perBlock);
    }
    if (i < m) smil_rows_gemm(m - i, n, k, a + (long)i * lda, NULL, lda, b, ldb, c + (long)i * ldc, NULL, ldc, accumulate);
}

int smil_rows_gemm_side(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
                        int accumulate, smil_side_copy *side, int perBlock) {
    if (!smil_has_avx2_fma() || n % 16 != 0) return 0;
    rows_gemm_side(m, n, k, a, lda, b, ldb, c, ldc, accumulate, side, perBlock);
    return 1;
}

/// Six rows of A times B whose rows are read through pointers (row p at brows[p] + boff): the
/// same multiply-adds, in the same order, as rows6 on B packed.
AVX2 static void rows6_ptr(int n, int k, const float *a0, const float *a1, const float *a2, const float *a3,
                           const float *a4, const float *a5, const float *const *brows, long boff, float *c0, float *c1,
                           float *c2, float *c3, float *c4, float *c5) {
    for (int j = 0; j < n; j += 16) {
        __m256 x00 = _mm256_setzero_ps(), x01 = x00, x10 = x00, x11 = x00, x20 = x00, x21 = x00;
        __m256 x30 = x00, x31 = x00, x40 = x00, x41 = x00, x50 = x00, x51 = x00;
        for (int p = 0; p < k; p++) {
            const float *bp = brows[p] + boff + j;
            FMA_6x16(a0 + p, a1 + p, a2 + p, a3 + p, a4 + p, a5 + p, bp);
        }
        put16(c0 + j, x00, x01, 0); put16(c1 + j, x10, x11, 0); put16(c2 + j, x20, x21, 0);
        put16(c3 + j, x30, x31, 0); put16(c4 + j, x40, x41, 0); put16(c5 + j, x50, x51, 0);
    }
}

/// Four rows of rows6_ptr.
AVX2 static void rows4_ptr(int n, int k, const float *a0, const float *a1, const float *a2, const float *a3,
                           const float *const *brows, long boff, float *c0, float *c1, float *c2, float *c3) {
    for (int j = 0; j < n; j += 16) {
        __m256 x00 = _mm256_setzero_ps(), x01 = x00, x10 = x00, x11 = x00, x20 = x00, x21 = x00, x30 = x00, x31 = x00;
        for (int p = 0; p < k; p++) {
            const float *bp = brows[p] + boff + j;
            __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8), v;
            v = _mm256_broadcast_ss(a0 + p); x00 = _mm256_fmadd_ps(v, b0, x00); x01 = _mm256_fmadd_ps(v, b1, x01);
            v = _mm256_broadcast_ss(a1 + p); x10 = _mm256_fmadd_ps(v, b0, x10); x11 = _mm256_fmadd_ps(v, b1, x11);
            v = _mm256_broadcast_ss(a2 + p); x20 = _mm256_fmadd_ps(v, b0, x20); x21 = _mm256_fmadd_ps(v, b1, x21);
            v = _mm256_broadcast_ss(a3 + p); x30 = _mm256_fmadd_ps(v, b0, x30); x31 = _mm256_fmadd_ps(v, b1, x31);
        }
        put16(c0 + j, x00, x01, 0); put16(c1 + j, x10, x11, 0); put16(c2 + j, x20, x21, 0); put16(c3 + j, x30, x31, 0);
    }
}

/// One row of rows6_ptr.
AVX2 static void rows1_ptr(int n, int k, const float *a, const float *const *brows, long boff, float *c) {
    for (int j = 0; j < n; j += 16) {
        __m256 x0 = _mm256_setzero_ps(), x1 = x0;
        for (int p = 0; p < k; p++) {
            const float *bp = brows[p] + boff + j;
            __m256 v = _mm256_broadcast_ss(a + p);
            x0 = _mm256_fmadd_ps(v, _mm256_loadu_ps(bp), x0);
            x1 = _mm256_fmadd_ps(v, _mm256_loadu_ps(bp + 8), x1);
        }
        put16(c + j, x0, x1, 0);
    }
}

int smil_rows_gemm_bptr(int m, int n, int k, const float *a, int lda, const float *const *brows, long boff, float *c,
                        int ldc) {
    if (!smil_has_avx2_fma() || n % 16 != 0) return 0;
    int i = 0;
    for (; i + 6 <= m; i += 6) {
        const float *ai = a + (long)i * lda;
        float *ci = c + (long)i * ldc;
        rows6_ptr(n, k, ai, ai + lda, ai + 2 * lda, ai + 3 * lda, ai + 4 * lda, ai + 5 * lda, brows, boff, ci, ci + ldc,
                  ci + 2 * (long)ldc, ci + 3 * (long)ldc, ci + 4 * (long)ldc, ci + 5 * (long)ldc);
    }
    for (; i + 4 <= m; i += 4) {
        const float *ai = a + (long)i * lda;
        float *ci = c + (long)i * ldc;
        rows4_ptr(n, k, ai, ai + lda, ai + 2 * lda, ai + 3 * lda, brows, boff, ci, ci + ldc, ci + 2 * (long)ldc,
                  ci + 3 * (long)ldc);
    }
    for (; i < m; i++) rows1_ptr(n, k, a + (long)i * lda, brows, boff, c + (long)i * ldc);
    return 1;
}

/// Adds the 16 floats of (lo, hi) to the even floats of dst[0 .. 31]; the odd ones are stored
/// back as they were (a blend, not + 0, which would turn -0 into +0).
AVX2 static inline void add_even16(float *dst, __m256 lo, __m256 hi) {
    const __m256 zero = _mm256_setzero_ps();
    __m256 parts[2] = {lo, hi};
    for (int h = 0; h < 2; h++) {
        __m256 l = _mm256_unpacklo_ps(parts[h], zero), u = _mm256_unpackhi_ps(parts[h], zero);
        float *d = dst + 16 * h;
        __m256 d0 = _mm256_loadu_ps(d), d1 = _mm256_loadu_ps(d + 8);
        _mm256_storeu_ps(d, _mm256_blend_ps(d0, _mm256_add_ps(d0, _mm256_permute2f128_ps(l, u, 0x20)), 0x55));
        _mm256_storeu_ps(d + 8, _mm256_blend_ps(d1, _mm256_add_ps(d1, _mm256_permute2f128_ps(l, u, 0x31)), 0x55));
    }
}

/// Asks (for writing) for the 2 lines of each of `rows` rows that the block at row i, column j
/// of smil_rows_gemm_add_even adds into.
static inline void prefetch_even_block(float *dst, long ldd, int i, int j, int rows) {
    for (int r = 0; r < rows; r++) {
        const float *d = dst + (long)(i + r) * ldd + 2 * j;
        __builtin_prefetch(d, 1, 3);
        __builtin_prefetch(d + 16, 1, 3);
    }
}

/// R (< 6) rows of smil_rows_gemm_add_even, two vectors each: the same multiply-add chains.
AVX2 static inline __attribute__((always_inline)) void add_even_tail(int R, int n, int k, const float *a, int lda,
                                                                      const float *b, int ldb, float *dst, long ldd) {
    const float *rows[5];
    for (int r = 0; r < R; r++) rows[r] = a + (long)r * lda;
    for (int j = 0; j < n; j += 16) {
        __m256 x[5][2];
        block_R16(R, k, rows, b + j, ldb, x);
        for (int r = 0; r < R; r++) add_even16(dst + (long)r * ldd + 2 * j, x[r][0], x[r][1]);
    }
}

AVX2 static int rows_gemm_add_even(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *dst,
                                   long ldd, smil_side_copy *side, int perBlock) {
    if (side) side_start(side);
    int i = 0;
    for (; i + 6 <= m; i += 6) {
        const float *a0 = a + (long)i * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda, *a4 = a3 + lda, *a5 = a4 + lda;
        for (int j = 0; j < n; j += 16) {
            // The next block's lines: about a block's worth of multiply-adds ahead of its adds.
            if (j + 16 < n) prefetch_even_block(dst, ldd, i, j + 16, 6);
            else if (i + 6 < m) prefetch_even_block(dst, ldd, i + 6, 0, m - i - 6 < 6 ? m - i - 6 : 6);
            if (side) side_some(side, perBlock);
            __m256 x00 = _mm256_setzero_ps(), x01 = x00, x10 = x00, x11 = x00, x20 = x00, x21 = x00;
            __m256 x30 = x00, x31 = x00, x40 = x00, x41 = x00, x50 = x00, x51 = x00;
            const float *bp = b + j;
            for (int p = 0; p < k; p++, bp += ldb) FMA_6x16(a0 + p, a1 + p, a2 + p, a3 + p, a4 + p, a5 + p, bp);
            float *d = dst + (long)i * ldd + 2 * j;
            add_even16(d, x00, x01);
            add_even16(d + ldd, x10, x11);
            add_even16(d + 2 * ldd, x20, x21);
            add_even16(d + 3 * ldd, x30, x31);
            add_even16(d + 4 * ldd, x40, x41);
            add_even16(d + 5 * ldd, x50, x51);
        }
    }
    const float *at = a + (long)i * lda;
    float *dt = dst + (long)i * ldd;
    switch (m - i) {
    case 5: add_even_tail(5, n, k, at, lda, b, ldb, dt, ldd); break;
    case 4: add_even_tail(4, n, k, at, lda, b, ldb, dt, ldd); break;
    case 3: add_even_tail(3, n, k, at, lda, b, ldb, dt, ldd); break;
    case 2: add_even_tail(2, n, k, at, lda, b, ldb, dt, ldd); break;
    case 1: add_even_tail(1, n, k, at, lda, b, ldb, dt, ldd); break;
    default: break;
    }
    return 1;
}

int smil_rows_gemm_add_even(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *dst,
                            long ldd) {
    if (!smil_has_avx2_fma() || n % 16 != 0) return 0;
    return rows_gemm_add_even(m, n, k, a, lda, b, ldb, dst, ldd, NULL, 0);
}

int smil_rows_gemm_add_even_side(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *dst,
                                 long ldd, smil_side_copy *side, int perBlock) {
    if (!smil_has_avx2_fma() || n % 16 != 0) return 0;
    return rows_gemm_add_even(m, n, k, a, lda, b, ldb, dst, ldd, side, perBlock);
}

/// Rows i0..i0+5 of C, columns j..j+15, over pairs p0..p1: the accumulators start from C (or
/// zero) and take one fused multiply-add per pair, in pair order.
AVX2 static void outer6(int p0, int p1, int i0, int j, const float *a, const int *arows, int lda, const float *b,
                        const int *brows, int ldb, float *c, int ldc, int fromZero) {
    float *c0 = c + (long)i0 * ldc + j;
    __m256 x00, x01, x10, x11, x20, x21, x30, x31, x40, x41, x50, x51;
    if (fromZero) {
        x00 = _mm256_setzero_ps(); x01 = x00; x10 = x00; x11 = x00; x20 = x00; x21 = x00;
        x30 = x00; x31 = x00; x40 = x00; x41 = x00; x50 = x00; x51 = x00;
    } else {
        x00 = _mm256_loadu_ps(c0); x01 = _mm256_loadu_ps(c0 + 8);
        x10 = _mm256_loadu_ps(c0 + ldc); x11 = _mm256_loadu_ps(c0 + ldc + 8);
        x20 = _mm256_loadu_ps(c0 + 2 * ldc); x21 = _mm256_loadu_ps(c0 + 2 * ldc + 8);
        x30 = _mm256_loadu_ps(c0 + 3 * ldc); x31 = _mm256_loadu_ps(c0 + 3 * ldc + 8);
        x40 = _mm256_loadu_ps(c0 + 4 * ldc); x41 = _mm256_loadu_ps(c0 + 4 * ldc + 8);
        x50 = _mm256_loadu_ps(c0 + 5 * ldc); x51 = _mm256_loadu_ps(c0 + 5 * ldc + 8);
    }
    for (int p = p0; p < p1; p++) {
        const float *ap = a + (long)(arows ? arows[p] : p) * lda + i0;
        const float *bp = b + (long)(brows ? brows[p] : p) * ldb + j;
        FMA_6x16(ap, ap + 1, ap + 2, ap + 3, ap + 4, ap + 5, bp);
    }
    put16(c0, x00, x01, 0); put16(c0 + ldc, x10, x11, 0); put16(c0 + 2 * ldc, x20, x21, 0);
    put16(c0 + 3 * ldc, x30, x31, 0); put16(c0 + 4 * ldc, x40, x41, 0); put16(c0 + 5 * ldc, x50, x51, 0);
}

/// Four rows of C: the same operations as four rows of outer6.
AVX2 static void outer4(int p0, int p1, int i0, int j, const float *a, const int *arows, int lda, const float *b,
                        const int *brows, int ldb, float *c, int ldc, int fromZero) {
    float *c0 = c + (long)i0 * ldc + j;
    __m256 x00, x01, x10, x11, x20, x21, x30, x31;
    if (fromZero) {
        x00 = _mm256_setzero_ps(); x01 = x00; x10 = x00; x11 = x00; x20 = x00; x21 = x00; x30 = x00; x31 = x00;
    } else {
        x00 = _mm256_loadu_ps(c0); x01 = _mm256_loadu_ps(c0 + 8);
        x10 = _mm256_loadu_ps(c0 + ldc); x11 = _mm256_loadu_ps(c0 + ldc + 8);
        x20 = _mm256_loadu_ps(c0 + 2 * ldc); x21 = _mm256_loadu_ps(c0 + 2 * ldc + 8);
        x30 = _mm256_loadu_ps(c0 + 3 * ldc); x31 = _mm256_loadu_ps(c0 + 3 * ldc + 8);
    }
    for (int p = p0; p < p1; p++) {
        const float *ap = a + (long)(arows ? arows[p] : p) * lda + i0;
        const float *bp = b + (long)(brows ? brows[p] : p) * ldb + j;
        __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8), v;
        v = _mm256_broadcast_ss(ap); x00 = _mm256_fmadd_ps(v, b0, x00); x01 = _mm256_fmadd_ps(v, b1, x01);
        v = _mm256_broadcast_ss(ap + 1); x10 = _mm256_fmadd_ps(v, b0, x10); x11 = _mm256_fmadd_ps(v, b1, x11);
        v = _mm256_broadcast_ss(ap + 2); x20 = _mm256_fmadd_ps(v, b0, x20); x21 = _mm256_fmadd_ps(v, b1, x21);
        v = _mm256_broadcast_ss(ap + 3); x30 = _mm256_fmadd_ps(v, b0, x30); x31 = _mm256_fmadd_ps(v, b1, x31);
    }
    put16(c0, x00, x01, 0); put16(c0 + ldc, x10, x11, 0); put16(c0 + 2 * ldc, x20, x21, 0); put16(c0 + 3 * ldc, x30, x31, 0);
}

/// One row of C: the same operations as a row of outer6.
AVX2 static void outer1(int p0, int p1, int i, int j, const float *a, const int *arows, int lda, const float *b,
                        const int *brows, int ldb, float *c, int ldc, int fromZero) {
    float *c0 = c + (long)i * ldc + j;
    __m256 x00 = fromZero ? _mm256_setzero_ps() : _mm256_loadu_ps(c0);
    __m256 x01 = fromZero ? _mm256_setzero_ps() : _mm256_loadu_ps(c0 + 8);
    for (int p = p0; p < p1; p++) {
        const float *ap = a + (long)(arows ? arows[p] : p) * lda + i;
        const float *bp = b + (long)(brows ? brows[p] : p) * ldb + j;
        __m256 v = _mm256_broadcast_ss(ap);
        x00 = _mm256_fmadd_ps(v, _mm256_loadu_ps(bp), x00);
        x01 = _mm256_fmadd_ps(v, _mm256_loadu_ps(bp + 8), x01);
    }
    put16(c0, x00, x01, 0);
}

/// The blocks of C over pairs p0..p1 of rows a + p * lda and b + p * ldb (contiguous).
static void outer_chunk(int p0, int p1, int k, int n, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
                        int fromZero) {
    int i = 0;
    for (; i + 6 <= k; i += 6)
        for (int j = 0; j < n; j += 16) outer6(p0, p1, i, j, a, 0, lda, b, 0, ldb, c, ldc, fromZero);
    for (; i + 4 <= k; i += 4)
        for (int j = 0; j < n; j += 16) outer4(p0, p1, i, j, a, 0, lda, b, 0, ldb, c, ldc, fromZero);
    for (; i < k; i++)
        for (int j = 0; j < n; j += 16) outer1(p0, p1, i, j, a, 0, lda, b, 0, ldb, c, ldc, fromZero);
}

int smil_outer_gemm(int pairs, int k, int n, const float *a, const int *arows, int lda, const float *b,
                    const int *brows, int ldb, float *c, int ldc, int accumulate) {
    if (!smil_has_avx2_fma() || n % 16 != 0) return 0;
    if (pairs == 0 && !accumulate) {
        for (int i = 0; i < k; i++) for (int j = 0; j < n; j++) c[(long)i * ldc + j] = 0;
        return 1;
    }
    // Pairs in chunks whose rows (48 x 2 rows of 64 floats) stay in the L1 cache while every
    // block of C passes over them (48 measured best of 24 to 256 on the W3a weight gradient).
    // Indexed rows are first copied into contiguous buffers: the copies stream (many cache misses
    // in flight at once) and the blocks then read plain strided rows, with no index per pair.
    const int chunk = 48;
    float *ga = 0, *gb = 0;
    if (arows) ga = malloc(sizeof(float) * chunk * (size_t)k);
    if (brows) gb = malloc(sizeof(float) * chunk * (size_t)n);
    if ((arows && !ga) || (brows && !gb)) { free(ga); free(gb); return 0; }
    for (int p0 = 0; p0 < pairs; p0 += chunk) {
        int p1 = p0 + chunk < pairs ? p0 + chunk : pairs;
        int fromZero = p0 == 0 && !accumulate;
        const float *ca = a + (long)p0 * lda, *cb = b + (long)p0 * ldb;
        int cla = lda, clb = ldb;
        if (ga) {
            for (int p = p0; p < p1; p++) memcpy(ga + (long)(p - p0) * k, a + (long)arows[p] * lda, sizeof(float) * k);
            ca = ga; cla = k;
        }
        if (gb) {
            for (int p = p0; p < p1; p++) memcpy(gb + (long)(p - p0) * n, b + (long)brows[p] * ldb, sizeof(float) * n);
            cb = gb; clb = n;
        }
        outer_chunk(0, p1 - p0, k, n, ca, cla, cb, clb, c, ldc, fromZero);
    }
    free(ga);
    free(gb);
    return 1;
}

/// The most offsets smil_table_gemm takes (a 7 x 7 filter).
#define TABLE_MAX_OFFSETS 49

/// Zeros standing in for a missing neighbour's row, so that six rows keep one code path.
static const float zero_row[1024] __attribute__((aligned(64)));

/// The offset visited at step s of a table product: the centre first, then the others in order.
static inline int table_offset(int s, int offsets) {
    int centre = offsets / 2;
    return s == 0 ? centre : (s <= centre ? s - 1 : s);
}

/// Six target rows of smil_table_gemm: per 16 columns, 6 x 16 accumulators over every offset's
/// neighbour rows, then one store. An offset where none of the six rows has a neighbour is skipped;
/// where some have none, those read zeros.
AVX2 static void table6(int i0, int offsets, const int *table, int mirrored, const float *a, int kdim, const float *b,
                        int n, float *c) {
    const float *row[TABLE_MAX_OFFSETS * 6];
    int live[TABLE_MAX_OFFSETS];
    for (int s = 0; s < offsets; s++) {
        int k = table_offset(s, offsets), col = mirrored ? offsets - 1 - k : k;
        live[s] = 0;
        for (int q = 0; q < 6; q++) {
            int idx = table[(long)(i0 + q) * offsets + col];
            row[s * 6 + q] = idx >= 0 ? a + (long)idx * kdim : zero_row;
            live[s] |= idx >= 0;
        }
    }
    for (int j = 0; j < n; j += 16) {
        __m256 x00 = _mm256_setzero_ps(), x01 = x00, x10 = x00, x11 = x00, x20 = x00, x21 = x00;
        __m256 x30 = x00, x31 = x00, x40 = x00, x41 = x00, x50 = x00, x51 = x00;
        for (int s = 0; s < offsets; s++) {
            if (!live[s]) continue;
            const float *a0 = row[s * 6], *a1 = row[s * 6 + 1], *a2 = row[s * 6 + 2];
            const float *a3 = row[s * 6 + 3], *a4 = row[s * 6 + 4], *a5 = row[s * 6 + 5];
            const float *bp = b + (long)table_offset(s, offsets) * kdim * n + j;
            for (int p = 0; p < kdim; p++, bp += n) FMA_6x16(a0 + p, a1 + p, a2 + p, a3 + p, a4 + p, a5 + p, bp);
        }
        float *c0 = c + (long)i0 * n + j;
        put16(c0, x00, x01, 0); put16(c0 + n, x10, x11, 0); put16(c0 + 2 * n, x20, x21, 0);
        put16(c0 + 3 * n, x30, x31, 0); put16(c0 + 4 * n, x40, x41, 0); put16(c0 + 5 * n, x50, x51, 0);
    }
}

/// One target row of smil_table_gemm: the same sums as a row of table6.
AVX2 static void table1(int i, int offsets, const int *table, int mirrored, const float *a, int kdim, const float *b,
                        int n, float *c) {
    for (int j = 0; j < n; j += 16) {
        __m256 x0 = _mm256_setzero_ps(), x1 = x0;
        for (int s = 0; s < offsets; s++) {
            int k = table_offset(s, offsets), idx = table[(long)i * offsets + (mirrored ? offsets - 1 - k : k)];
            if (idx < 0) continue;
            const float *ap = a + (long)idx * kdim, *bp = b + (long)k * kdim * n + j;
            for (int p = 0; p < kdim; p++, bp += n) {
                __m256 v = _mm256_broadcast_ss(ap + p);
                x0 = _mm256_fmadd_ps(v, _mm256_loadu_ps(bp), x0);
                x1 = _mm256_fmadd_ps(v, _mm256_loadu_ps(bp + 8), x1);
            }
        }
        put16(c + (long)i * n + j, x0, x1, 0);
    }
}

int smil_table_gemm(int lo, int hi, int offsets, const int *table, int mirrored, const float *a, int kdim, const float *b,
                    int n, float *c) {
    if (!smil_has_avx2_fma() || n % 16 != 0 || kdim > 1024 || offsets > TABLE_MAX_OFFSETS) return 0;
    int i = lo;
    for (; i + 6 <= hi; i += 6) table6(i, offsets, table, mirrored, a, kdim, b, n, c);
    for (; i < hi; i++) table1(i, offsets, table, mirrored, a, kdim, b, n, c);
    return 1;
}

#else
int smil_has_avx2_fma(void) { return 0; }
int smil_rows_gemm(int m, int n, int k, const float *a, const int *arows, int lda, const float *b, int ldb,
                   float *c, const int *crows, int ldc, int accumulate) { return 0; }
int smil_outer_gemm(int pairs, int k, int n, const float *a, const int *arows, int lda, const float *b,
                    const int *brows, int ldb, float *c, int ldc, int accumulate) { return 0; }
int smil_rows_gemm_bptr(int m, int n, int k, const float *a, int lda, const float *const *brows, long boff, float *c,
                        int ldc) { return 0; }
int smil_rows_gemm_add_even(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *dst,
                            long ldd) { return 0; }
int smil_table_gemm(int lo, int hi, int offsets, const int *table, int mirrored, const float *a, int kdim, const float *b,
                    int n, float *c) { return 0; }
void smil_side_copy_some(smil_side_copy *side, int runs) {}
int smil_rows_gemm_side(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
                        int accumulate, smil_side_copy *side, int perBlock) { return 0; }
int smil_rows_gemm_add_even_side(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *dst,
                                 long ldd, smil_side_copy *side, int perBlock) { return 0; }
#endif
