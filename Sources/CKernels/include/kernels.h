// kernels.h: small kernels written in C: elementwise loops where `restrict` lets the compiler
// vectorise over several buffers that Swift cannot prove apart, and the register-blocked AVX2
// products of the sparse convolution (gathered rows times a weight, sums of outer products),
// which fuse the gather and scatter that a BLAS call needs around it.
#ifndef SMIL_KERNELS_H
#define SMIL_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>

// Every kernel file includes this header first: no floating-point contraction from here to the end
// of the file, so a * b + c is a product rounded and then a sum rounded, as in PyTorch's loops and
// in the Swift reference loops, never one fused multiply-add (which the AVX2 functions' "fma"
// target would otherwise allow). The explicit _mm256_fmadd_ps of the blocked products stay fused.
#pragma STDC FP_CONTRACT OFF

/// One Adam / AdamW update of n parameters, as torch.optim.Adam (non-foreach) computes it:
///   w *= 1 - lr * decay                     (decoupled weight decay, AdamW)
///   g' = g + l2 * w                         (L2 into the gradient, Adam)
///   m = b1 * m + (1 - b1) * g'
///   v = b2 * v + (1 - b2) * g' * g'
///   w -= step_size * m / (sqrt(v) / bc2_sqrt + eps)
void smil_adam_update(size_t n, float *restrict w, const float *restrict g, float *restrict m,
                      float *restrict v, float b1, float b2, float eps, float l2, float decay_keep,
                      float step_size, float bc2_sqrt);

/// dst[i] = src[i * step] for i < n, reading no further than src[(n - 1) * step]: a strided
/// window's run of an im2col panel (step 2, ResNet's downsample, vectorised with shuffles).
void smil_gather_strided(float *restrict dst, const float *restrict src, int n, int step);

/// The inverse of smil_gather_strided over a whole row of `width`: dst[i * step] = src[i] for
/// i < n, and every other element of the row zero, in one pass.
void smil_spread_strided(float *restrict dst, int width, const float *restrict src, int n, int step);

/// dst[i * step] += src[i] for i < n, the other floats of dst untouched (touching no further than
/// dst[(n - 1) * step]): a strided convolution's input-gradient columns added into the gradient.
void smil_add_strided(float *restrict dst, const float *restrict src, int n, int step);

/// Whether the AVX2 + FMA kernels below can run on this processor.
int smil_has_avx2_fma(void);

/// A hint that the caller is spinning on a flag (x86's `pause`), so that the core's other
/// hyperthread and the memory bus are spared while it waits.
static inline void smil_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/// Whether the calling thread is running items of a compute-pool job (a helper, or the caller
/// that handed the job out), and setting it: a job started there runs on that thread alone.
int smil_in_pool_job(void);
void smil_set_in_pool_job(int inside);

/// Products of rows with one matrix, the rows gathered and scattered through optional indices:
/// for i < m, C[ci] = (accumulate ? C[ci] : 0) + A[ai] x B, where A[ai] is the row of k floats at
/// a + ai * lda with ai = arows ? arows[i] : i, C[ci] the row of n floats at c + ci * ldc with
/// ci = crows ? crows[i] : i, and B is k x n row-major with rows ldb apart. Each row of C is
/// computed on its own, so the result does not depend on how rows are split between calls.
/// Needs AVX2 + FMA and n a multiple of 16; returns 0 (and does nothing) otherwise.
int smil_rows_gemm(int m, int n, int k, const float *a, const int *arows, int lda, const float *b, int ldb,
                   float *c, const int *crows, int ldc, int accumulate);

/// C = A x B on the row kernel with B's rows read where they lie: row p of B is the n floats at
/// brows[p] + boff (A is m x k, rows lda apart; C m x n, rows ldc apart). Each element is the same
/// chain of multiply-adds as smil_rows_gemm on B packed. Needs AVX2 + FMA and n a multiple of 16;
/// returns 0 otherwise.
int smil_rows_gemm_bptr(int m, int n, int k, const float *a, int lda, const float *const *brows, long boff, float *c,
                        int ldc);

/// C = A x B on the row kernel (A m x k, rows lda apart; B k x n row-major, rows ldb apart), added
/// into every other float of dst's rows: row i of C goes to dst + i * ldd, its column j added to
/// dst[2 j]; the odd floats are stored back unchanged, and dst[2 n - 1] must lie in the row.
/// Each element is the same chain of multiply-adds as smil_rows_gemm, then one add. The lines
/// of the next 6 x 16 block are asked for while one block is computed. Needs AVX2 + FMA and n a
/// multiple of 16; returns 0 (and does nothing) otherwise.
int smil_rows_gemm_add_even(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *dst,
                            long ldd);

/// A copy carried out a little at a time inside the row kernels (`smil_rows_gemm_side`,
/// `smil_rows_gemm_add_even_side`), so that the next band's operands come in from memory while
/// this band's multiply-adds run, instead of in a pass of their own that waits on memory. Run r
/// (r < runs) is (outer, inner) = (r / inners, r % inners): it writes `count` floats at
/// dst + outer * dstOuter + inner * dstInner, float i taken from src + outer * srcOuter +
/// inner * srcInner + i * step (step 1 or 2; count a multiple of 8). Each run's source lines are
/// asked for `ahead` runs before it is copied. `done` counts the runs copied so far.
typedef struct {
    const float *src;
    long srcOuter, srcInner;
    float *dst;
    long dstOuter, dstInner;
    int runs, inners, count, step, ahead, done;
} smil_side_copy;

/// Copies up to `runs` more runs of `side` (asking for the lines of the runs `ahead` after them).
void smil_side_copy_some(smil_side_copy *side, int runs);

/// smil_rows_gemm without row indices (C = (accumulate ? C : 0) + A x B), with `perBlock` runs of
/// `side` copied per 6 x 16 block (side may be NULL; the caller copies what is left with
/// smil_side_copy_some). With a side copy, C's rows are taken to lie in memory as well: each
/// block of 6 rows asks for the lines of the next one (for writing) before its multiply-adds. The same bits as
/// smil_rows_gemm. Needs AVX2 + FMA and n a multiple of 16; returns 0 (and does nothing) otherwise.
int smil_rows_gemm_side(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
                        int accumulate, smil_side_copy *side, int perBlock);

/// smil_rows_gemm_add_even with `perBlock` runs of `side` copied per 6 x 16 block (side may be
/// NULL; the caller copies what is left with smil_side_copy_some). The same bits as smil_rows_gemm_add_even.
int smil_rows_gemm_add_even_side(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *dst,
                                 long ldd, smil_side_copy *side, int perBlock);

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

// Winograd F(2x2, 3x3) over the 2 x 2 tiles of a submanifold map (Core's SparseWinograd.swift).
// A tile's 4 x 4 patch starts one row and one column before its 2 x 2 cells; `patch[16 t + 4 a + b]`
// is the source row at patch position (a, b) of tile t and `cells[4 t + 2 i + j]` the row of its
// cell (i, j), -1 where there is no site (read as zeros, never written). Transformed values are
// laid out [16][tiles][c]: position xi = 4 r + q of tile t at `base + xi * stride + t * c`. Each
// needs AVX2 + FMA and c a multiple of 8 (at most 1024 where rows are read); returns 0 otherwise.

/// B^T d B of each tile's patch of `src`: `kind` 0 is F(2x2, 3x3)'s data transform
/// (B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]), kind 1 F(3x3, 2x2)'s (last row negated).
int smil_winograd_input(int tiles, const int *patch, const float *src, int c, int kind, float *v, long vstride);

/// A^T M A (A^T = [1 1 1 0; 0 1 -1 -1]) plus `bias` (or nothing) into the rows of each tile's
/// cells in `dst`, written or (`accumulate`) added to what they hold.
int smil_winograd_output(int tiles, const int *cells, const float *m, long mstride, int c, const float *bias, float *dst,
                         int accumulate);

/// G x G^T of each tile's own 2 x 2 rows of `src` (G = [1 0; .5 .5; .5 -.5; 0 1]): the output
/// gradient as F(3x3, 2x2)'s kernel, for the weight gradient.
int smil_winograd_tile_kernel(int tiles, const int *cells, const float *src, int c, float *g, long gstride);

/// One row of a convolution's im2col matrix (an input channel at one kernel offset), as the
/// windows below read it: output pixel (y, x) reads `plane[iy * cols + ix]` with
/// iy = y * yStep + yOffset and ix = x * xStep + xOffset, or zero where iy is outside 0..<rows or
/// x outside lo..<hi (the output columns whose ix is inside the plane).
typedef struct {
    float *plane;
    int rows, cols, yStep, yOffset, xStep, xOffset, lo, hi;
} smil_window;

/// Packs the im2col panel of output rows y0 ..< y0 + rows of the k windows `win`, taken as one
/// run of rows * width columns (`width` the output's), gathered from the input in place and cut
/// into chunks of `chunk` columns: chunk c is k rows of wc floats at panel + c * k * chunk, wc =
/// chunk except for the last. Each window's plane is read in order, row after row, where a
/// single output row would read a short run from each of many planes at once; the lines of the
/// windows a few ahead are asked for as it goes.
void smil_pack_band(float *restrict panel, int chunk, const smil_window *win, int k, int y0, int rows, int width);

/// The reverse for gradients: adds the panel (laid out as smil_pack_band writes it) into the
/// input pixels its windows read; pixels outside the planes are skipped.
void smil_add_band(const float *restrict panel, int chunk, const smil_window *win, int k, int y0, int rows, int width);

/// A channel's sum for batch normalisation, over `runs` runs of `n` floats `stride` floats apart
/// (its plane in each image), in double: of the values, or (`squares`) of their squared distances
/// from `mean`. Several sums run side by side (a single chain waits on each add), so the order of
/// the additions is not the loop's; the float statistics made from them come out the same but for
/// sums that fall within an ulp of a double's rounding.
double smil_channel_sum(const float *x, int runs, long stride, long n, double mean, int squares);

/// The same for batch normalisation's backward: the sum of g, and of g * (x - mean) (the
/// difference taken in float), over a channel's runs.
void smil_channel_gradient_sums(const float *g, const float *x, int runs, long stride, long n, float mean,
                                double *sumG, double *sumGX);

/// Max pooling of one h x w plane into oh x ow (floor mode, the padding never chosen), as
/// PyTorch's: each window is scanned row by row from its first position, and a value takes over
/// when it is greater than the running maximum or NaN (so ties keep the first, and NaN wins).
/// argmax, when not NULL, receives each maximum's index in the plane. Eight windows at a time on
/// AVX2 at stride 2.
void smil_max_pool_plane(const float *x, int h, int w, float *y, int *argmax, int oh, int ow, int kernel, int stride,
                         int padding);

/// dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols (8 x 8 blocks on AVX2).
void smil_transpose(float *restrict dst, int ldd, const float *restrict src, int lds, int rows, int cols);

/// Asks for the cache line at p ahead of a load that would miss (hash probes: the line for a key
/// a few iterations ahead is fetched while the current one is handled).
static inline void smil_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

/// The process-wide interrupt request (Ctrl-C): set from a signal handler, read at safe points by
/// the interpreter and by Core's layers, autograd and long kernels. A lock-free atomic int, so
/// setting it is async-signal-safe and reading it is one relaxed load.
extern atomic_int smil_interrupt_flag;
/// Set while a model summary records layer outputs: modules read it after each forward (one
/// relaxed load; the summary's lock is taken only when it is set).
extern atomic_int smil_summary_flag;
static inline int smil_summary_recording(void) {
    return atomic_load_explicit(&smil_summary_flag, memory_order_relaxed);
}
static inline void smil_summary_set(int recording) {
    atomic_store_explicit(&smil_summary_flag, recording, memory_order_relaxed);
}
static inline int smil_interrupt_requested(void) {
    return atomic_load_explicit(&smil_interrupt_flag, memory_order_relaxed);
}
static inline void smil_interrupt_set(int requested) {
    atomic_store_explicit(&smil_interrupt_flag, requested, memory_order_relaxed);
}

// MARK: General tensor operations (elementwise.c)

/// Operations of smil_unary: y = f(x) (a and b: the scalar, or clamp's and inside's bounds).
enum {
    SMIL_NEG, SMIL_ABS, SMIL_RELU, SMIL_ADD_SCALAR, SMIL_MUL_SCALAR, SMIL_CLAMP, SMIL_EXP, SMIL_TANH,
    SMIL_SIGMOID, SMIL_SQRT, SMIL_LOG, SMIL_SIGN, SMIL_INSIDE, SMIL_FILL, SMIL_NONZERO, SMIL_ONE_MINUS,
    SMIL_FINITE_OR_ZERO, SMIL_GELU
};

/// Operations of smil_binary: y = f(a, b), the gradient rules that need two tensors (relu:
/// a * (b > 0) with b the output; sigmoid: a * b * (1 - b); tanh: a * (1 - b^2); sqrt: a / (2 b);
/// div's divisor: -a / b^2 with a = g * numerator), first (a: a broadcast copy) and comparisons
/// giving 1 or 0; gelu's: a * (Phi(b) + b phi(b)) with b the input.
enum {
    SMIL_ADD, SMIL_SUB, SMIL_MUL, SMIL_DIV, SMIL_MAX, SMIL_MIN, SMIL_RELU_BACKWARD, SMIL_SIGMOID_BACKWARD,
    SMIL_TANH_BACKWARD, SMIL_SQRT_BACKWARD, SMIL_DIV_BACKWARD, SMIL_FIRST,
    SMIL_LT, SMIL_LE, SMIL_GT, SMIL_GE, SMIL_EQ, SMIL_NE, SMIL_GELU_BACKWARD
};

/// y[i] = op(x[i]) for i < n (x and y may be the same buffer).
void smil_unary(int op, long n, const float *x, float *y, float a, float b);

/// y[i] = op(a[i * sa], b[i * sb]) for i < n, where sa and sb are 1 or 0 (a broadcast scalar).
void smil_binary(int op, long n, const float *a, long sa, const float *b, long sb, float *y);

/// smil_binary over `rows` rows of n: row r of y from a + r ra and b + r rb (inner strides sa, sb).
void smil_binary_rows(int op, long rows, long n, const float *a, long ra, long sa, const float *b, long rb, long sb, float *y);

/// y[i] = c[i] != 0 ? a[i] : b[i].
void smil_select(long n, const float *c, const float *a, const float *b, float *y);

/// The sum of n floats: blocks of 1024 summed in 64 float lanes and pairwise, the blocks in
/// double, in a fixed order.
double smil_sum(long n, const float *x);

/// out[r] = the sum of row r of `size` contiguous floats (as smil_sum).
void smil_sum_rows(long rows, long size, const float *x, float *out);

/// out[r] = max + log(sum e^(x - max)) of row r of `size` contiguous floats.
void smil_logsumexp_rows(long rows, long size, const float *x, float *out);

/// y = e^(x - shift[r]) along each row r of `size` contiguous floats.
void smil_exp_shifted_rows(long rows, long size, const float *x, const float *shift, float *y);

/// acc[j] += x[r * width + j] for every row r < rows (16 rows at a time in float, then double).
void smil_add_rows(long rows, long width, const float *x, double *acc);

/// y[i] = (float)x[i] * scale.
void smil_narrow(long n, const double *x, float scale, float *y);

/// The largest (`largest`) or smallest of `size` values `ld` apart, for each of `inner` columns,
/// and where it first occurs (NaN wins, as in PyTorch).
void smil_extreme(long size, long inner, long ld, const float *x, int largest, float *best, int64_t *index);

/// Softmax (log-softmax when `logarithm`) over `size` rows, `ld` apart, of `inner` values, each
/// column on its own; m (inner floats) and z (inner doubles) are scratch.
void smil_softmax(long size, long inner, long ld, const float *x, float *y, int logarithm, float *m, double *z);

/// The gradient of smil_softmax from its output y and the output's gradient g: softmax
/// dx = y (g - sum(g y)), log-softmax dx = g - e^y sum(g), along the `size` rows; z is scratch.
void smil_softmax_backward(long size, long inner, long ld, const float *y, const float *g, float *dx, int logarithm, double *z);

/// Sorts each of the `rows` runs from `first` on, of `size` floats `inner` apart (run r: block
/// r / inner of x's [outer, size, inner], column r % inner), and writes the first k values and their indices the same
/// way into [k, inner] blocks. Stable; NaN largest; -0 equal to 0. k <= 16 below size selects
/// instead of sorting. `scratch` holds 2 * size uint64. Sizes up to 2^32.
void smil_sort_rows(long first, long rows, long size, long inner, const float *x, int descending, long k, float *values, int64_t *indices,
                    uint64_t *scratch);

/// Which copy of the loops above runs: 0 portable, 1 AVX2, 2 AVX-512 (the processor's best, or
/// less when SMIL_SIMD=portable or avx2); set_level chooses (never above the processor's best;
/// -1 goes back to the default).
int smil_elementwise_level(void);
int smil_elementwise_processor_level(void);
void smil_elementwise_set_level(int level);

#endif
