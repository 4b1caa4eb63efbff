// windows.c: the panels of a convolution's im2col matrix, packed straight from the input and added
// straight back into a gradient (see include/kernels.h), and a blocked transpose.

#include "kernels.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static void add_contiguous(float *restrict dst, const float *restrict src, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(dst + i), _mm256_loadu_ps(src + i)));
    for (; i < n; i++) dst[i] += src[i];
}

/// dst[c * ldd + r] = src[r * lds + c] for an 8 x 8 block.
AVX2 static void transpose8(float *dst, int ldd, const float *src, int lds) {
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + lds), r2 = _mm256_loadu_ps(src + 2 * lds);
    __m256 r3 = _mm256_loadu_ps(src + 3 * lds), r4 = _mm256_loadu_ps(src + 4 * lds), r5 = _mm256_loadu_ps(src + 5 * lds);
    __m256 r6 = _mm256_loadu_ps(src + 6 * lds), r7 = _mm256_loadu_ps(src + 7 * lds);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3);
    __m256 t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

/// Where window `win` reads output row y: the input row's first float, or NULL outside the plane.
static inline float *window_row(const smil_window *win, int y) {
    int iy = y * win->yStep + win->yOffset;
    return iy < 0 || iy >= win->rows ? NULL : win->plane + (long)iy * win->cols;
}

/// dst[i] = what window v reads at output (y, x0 + i), for i < n.
static inline void pack_run(float *restrict dst, const smil_window *v, int y, int x0, int n, int avx2) {
    (void)avx2;
    const float *row = window_row(v, y);
    int lo = v->lo > x0 ? v->lo - x0 : 0, hi = v->hi - x0 < n ? v->hi - x0 : n;
    if (!row || hi <= lo) { memset(dst, 0, sizeof(float) * n); return; }
    if (lo > 0) memset(dst, 0, sizeof(float) * lo);
    // Output column x0 + i reads input column (x0 + i) * xStep + xOffset.
    const float *src = row + (long)(x0 + lo) * v->xStep + v->xOffset;
    if (v->xStep == 1) memcpy(dst + lo, src, sizeof(float) * (hi - lo));
    else smil_gather_strided(dst + lo, src, hi - lo, v->xStep);
    if (hi < n) memset(dst + hi, 0, sizeof(float) * (n - hi));
}

/// What window v reads at output (y, x0 + i) += src[i], for i < n, inside the plane.
static inline void add_run(const float *restrict src, const smil_window *v, int y, int x0, int n, int avx2) {
    float *row = window_row(v, y);
    int lo = v->lo > x0 ? v->lo - x0 : 0, hi = v->hi - x0 < n ? v->hi - x0 : n;
    if (!row || hi <= lo) return;
    float *dst = row + (long)(x0 + lo) * v->xStep + v->xOffset;
    if (v->xStep != 1) { smil_add_strided(dst, src + lo, hi - lo, v->xStep); return; }
#if defined(__x86_64__)
    if (avx2) { add_contiguous(dst, src + lo, hi - lo); return; }
#endif
    for (int i = lo; i < hi; i++) dst[i - lo] += src[i];
}

/// Windows ahead of the one being packed (or added into) whose lines are asked for: a band's
/// windows each read a few short runs of rows from a plane of their own, too many streams for
/// the hardware prefetcher to follow (1x1/2 forward and weight gradient 3-10% faster, the
/// input gradient's adds 2-12%, alternating in one process; 2, 4, 8 and 16 within noise).
#define WINDOWS_AHEAD 4

/// Asks for the lines window v reads (write: writes) at output rows y0 ..< y0 + rows.
static inline void prefetch_window_rows(const smil_window *v, int y0, int rows, int width, int write) {
    int lo = v->lo, hi = v->hi < width ? v->hi : width;
    if (hi <= lo) return;
    for (int r = 0; r < rows; r++) {
        const float *row = window_row(v, y0 + r);
        if (!row) continue;
        const char *first = (const char *)(row + (long)lo * v->xStep + v->xOffset);
        const char *last = (const char *)(row + (long)(hi - 1) * v->xStep + v->xOffset);
        for (const char *q = (const char *)((unsigned long)first & ~63ul); q <= last; q += 64) {
            if (write) __builtin_prefetch(q, 1, 3);
            else __builtin_prefetch(q, 0, 3);
        }
    }
}

/// Calls `run(panel piece, window, y, x0, n, avx2)` for every run of a band's columns that lies
/// in one chunk: window by window, and row by row within a window, so that each window's plane is
/// read (or written) in order; the lines of the window WINDOWS_AHEAD on are asked for first.
#define FOR_BAND_RUNS(run, write)                                                                   \
    do {                                                                                            \
        const int total = rows * width, avx2 = smil_has_avx2_fma();                                 \
        for (int p = 0; p < WINDOWS_AHEAD && p < k; p++) prefetch_window_rows(win + p, y0, rows, width, write); \
        for (int p = 0; p < k; p++) {                                                               \
            if (p + WINDOWS_AHEAD < k) prefetch_window_rows(win + p + WINDOWS_AHEAD, y0, rows, width, write); \
            for (int r = 0; r < rows; r++) {                                                        \
                int x = 0;                                                                          \
                while (x < width) {                                                                 \
                    int j = r * width + x, c = j / chunk, off = j % chunk;                          \
                    int wc = total - c * chunk < chunk ? total - c * chunk : chunk;                 \
                    int n = width - x < chunk - off ? width - x : chunk - off;                      \
                    run(panel + (long)c * k * chunk + (long)p * wc + off, win + p, y0 + r, x, n, avx2); \
                    x += n;                                                                         \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
    } while (0)

void smil_pack_band(float *restrict panel, int chunk, const smil_window *win, int k, int y0, int rows, int width) {
    FOR_BAND_RUNS(pack_run, 0);
}

void smil_add_band(const float *restrict panel, int chunk, const smil_window *win, int k, int y0, int rows, int width) {
    FOR_BAND_RUNS(add_run, 1);
}

void smil_transpose(float *restrict dst, int ldd, const float *restrict src, int lds, int rows, int cols) {
    int r = 0;
#if defined(__x86_64__)
    if (smil_has_avx2_fma()) {
        for (; r + 8 <= rows; r += 8) {
            int c = 0;
            for (; c + 8 <= cols; c += 8) transpose8(dst + (long)c * ldd + r, ldd, src + (long)r * lds + c, lds);
            for (; c < cols; c++)
                for (int q = r; q < r + 8; q++) dst[(long)c * ldd + q] = src[(long)q * lds + c];
        }
    }
#endif
    for (; r < rows; r++)
        for (int c = 0; c < cols; c++) dst[(long)c * ldd + r] = src[(long)r * lds + c];
}

