// kernels.h: small kernels written in C: elementwise loops where `restrict` lets the compiler
// vectorise over several buffers that Swift cannot prove apart, and the register-blocked AVX2
// products of the sparse convolution (gathered rows times a weight, sums of outer products),
// which fuse the gather and scatter that a BLAS call needs around it.
#ifndef SMIL_KERNELS_H
#define SMIL_KERNELS_H

#include <stddef.h>

/// One Adam / AdamW update of n parameters, as torch.optim.Adam (non-foreach) computes it:
///   w *= 1 - lr * decay                     (decoupled weight decay, AdamW)
///   g' = g + l2 * w                         (L2 into the gradient, Adam)
///   m = b1 * m + (1 - b1) * g'
///   v = b2 * v + (1 - b2) * g' * g'
///   w -= step_size * m / (sqrt(v) / bc2_sqrt + eps)
void smil_adam_update(size_t n, float *restrict w, const float *restrict g, float *restrict m,
                      float *restrict v, float b1, float b2, float eps, float l2, float decay_keep,
                      float step_size, float bc2_sqrt);

/// dst[i] = src[i * step] for i < n: one row of a strided 1x1 convolution's subsampled input
/// (step 2, ResNet's downsample, vectorised with shuffles).
void smil_gather_strided(float *restrict dst, const float *restrict src, int n, int step);

/// The inverse of smil_gather_strided over a whole row of `width`: dst[i * step] = src[i] for
/// i < n, and every other element of the row zero, in one pass.
void smil_spread_strided(float *restrict dst, int width, const float *restrict src, int n, int step);

/// Whether the AVX2 + FMA kernels below can run on this processor.
int smil_has_avx2_fma(void);

/// Products of rows with one matrix, the rows gathered and scattered through optional indices:
/// for i < m, C[ci] = (accumulate ? C[ci] : 0) + A[ai] x B, where A[ai] is the row of k floats at
/// a + ai * lda with ai = arows ? arows[i] : i, C[ci] the row of n floats at c + ci * ldc with
/// ci = crows ? crows[i] : i, and B is k x n row-major with rows ldb apart. Each row of C is
/// computed on its own, so the result does not depend on how rows are split between calls.
/// Needs AVX2 + FMA and n a multiple of 16; returns 0 (and does nothing) otherwise.
int smil_rows_gemm(int m, int n, int k, const float *a, const int *arows, int lda, const float *b, int ldb,
                   float *c, const int *crows, int ldc, int accumulate);

/// A sum of outer products over pairs of rows: C = (accumulate ? C : 0) + sum over p < pairs of
/// A[ap]^T B[bp], with A[ap] the row of k floats at a + ap * lda (ap = arows ? arows[p] : p),
/// B[bp] the row of n floats at b + bp * ldb (likewise), and C k x n with rows ldc apart. Each
/// element is summed over p in order. Needs AVX2 + FMA and n a multiple of 16; returns 0 otherwise.
int smil_outer_gemm(int pairs, int k, int n, const float *a, const int *arows, int lda, const float *b,
                    const int *brows, int ldb, float *c, int ldc, int accumulate);

/// Rows lo..hi of a submanifold convolution's product read from its output-major neighbour table
/// (`offsets` columns per row, -1 where a neighbour is missing): for each target row i,
/// C[i] = sum over offsets k, the centre first and then the others in order, of A[t] x B_k, where
/// t = table[i][mirrored ? offsets - 1 - k : k], A's rows are kdim floats and B_k is the k-th
/// kdim x n matrix after b. Each sum is one chain of multiply-adds kept in registers and C's row
/// (n floats) is written once: for dense maps, where nearly every slot holds a neighbour. Needs
/// AVX2 + FMA, n a multiple of 16, kdim <= 1024 and at most 49 offsets; returns 0 otherwise.
int smil_table_gemm(int lo, int hi, int offsets, const int *table, int mirrored, const float *a, int kdim, const float *b,
                    int n, float *c);

/// Asks for the cache line at p ahead of a load that would miss (hash probes: the line for a key
/// a few iterations ahead is fetched while the current one is handled).
static inline void smil_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

#endif
