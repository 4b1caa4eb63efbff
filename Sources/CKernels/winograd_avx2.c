// winograd_avx2.c: the transforms of a submanifold 3 x 3 convolution by Winograd's minimal
// filtering over 2 x 2 tiles of active sites (see include/kernels.h). Rows are sites, channels
// contiguous; a tile's missing sites read as zero. Compiled for every x86-64 processor; the AVX2
// functions carry a target attribute and run only when the processor has the instructions.

#include "kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

/// The most channels a transform takes (its zero row; winogradMaxChannels in Core).
#define WINO_MAX_CHANNELS 1024
static const float zero_row[WINO_MAX_CHANNELS] __attribute__((aligned(32)));

AVX2 static void winograd_input_avx2(int tiles, const int *patch, const float *src, int c, int kind, float *v, long vstride) {
    // The sign of B^T's last row: d1 - d3 for F(2x2, 3x3), d3 - d1 for F(3x3, 2x2).
    const __m256 s = _mm256_set1_ps(kind == 0 ? 1.0f : -1.0f);
    for (int t = 0; t < tiles; t++) {
        const float *row[16];
        for (int p = 0; p < 16; p++) {
            int j = patch[16 * t + p];
            row[p] = j >= 0 ? src + (long)j * c : zero_row;
        }
        float *out = v + (long)t * c;
        for (int ch = 0; ch < c; ch += 8) {
            __m256 d[16], e[16];
            for (int p = 0; p < 16; p++) d[p] = _mm256_loadu_ps(row[p] + ch);
            // B^T d: rows.
            for (int q = 0; q < 4; q++) {
                __m256 d0 = d[q], d1 = d[4 + q], d2 = d[8 + q], d3 = d[12 + q];
                e[q] = _mm256_sub_ps(d0, d2);
                e[4 + q] = _mm256_add_ps(d1, d2);
                e[8 + q] = _mm256_sub_ps(d2, d1);
                e[12 + q] = _mm256_mul_ps(s, _mm256_sub_ps(d1, d3));
            }
            // (B^T d) B: columns.
            for (int r = 0; r < 4; r++) {
                __m256 e0 = e[4 * r], e1 = e[4 * r + 1], e2 = e[4 * r + 2], e3 = e[4 * r + 3];
                _mm256_storeu_ps(out + (4 * r) * vstride + ch, _mm256_sub_ps(e0, e2));
                _mm256_storeu_ps(out + (4 * r + 1) * vstride + ch, _mm256_add_ps(e1, e2));
                _mm256_storeu_ps(out + (4 * r + 2) * vstride + ch, _mm256_sub_ps(e2, e1));
                _mm256_storeu_ps(out + (4 * r + 3) * vstride + ch, _mm256_mul_ps(s, _mm256_sub_ps(e1, e3)));
            }
        }
    }
}

int smil_winograd_input(int tiles, const int *patch, const float *src, int c, int kind, float *v, long vstride) {
    if (!smil_has_avx2_fma() || c % 8 != 0 || c > WINO_MAX_CHANNELS) return 0;
    winograd_input_avx2(tiles, patch, src, c, kind, v, vstride);
    return 1;
}

AVX2 static void winograd_output_avx2(int tiles, const int *cells, const float *m, long mstride, int c, const float *bias,
                                      float *dst, int accumulate) {
    for (int t = 0; t < tiles; t++) {
        const int *cell = cells + 4 * t;
        const float *in = m + (long)t * c;
        for (int ch = 0; ch < c; ch += 8) {
            __m256 r0[4], r1[4];
            // A^T M: rows 0 (m0 + m1 + m2) and 1 (m1 - m2 - m3).
            for (int q = 0; q < 4; q++) {
                __m256 m0 = _mm256_loadu_ps(in + q * mstride + ch), m1 = _mm256_loadu_ps(in + (4 + q) * mstride + ch);
                __m256 m2 = _mm256_loadu_ps(in + (8 + q) * mstride + ch), m3 = _mm256_loadu_ps(in + (12 + q) * mstride + ch);
                r0[q] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
                r1[q] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
            }
            __m256 b = bias ? _mm256_loadu_ps(bias + ch) : _mm256_setzero_ps();
            __m256 y[4];
            y[0] = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(r0[0], r0[1]), r0[2]), b);
            y[1] = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(r0[1], r0[2]), r0[3]), b);
            y[2] = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(r1[0], r1[1]), r1[2]), b);
            y[3] = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(r1[1], r1[2]), r1[3]), b);
            for (int q = 0; q < 4; q++) {
                if (cell[q] < 0) continue;
                float *out = dst + (long)cell[q] * c + ch;
                _mm256_storeu_ps(out, accumulate ? _mm256_add_ps(_mm256_loadu_ps(out), y[q]) : y[q]);
            }
        }
    }
}

int smil_winograd_output(int tiles, const int *cells, const float *m, long mstride, int c, const float *bias, float *dst,
                         int accumulate) {
    if (!smil_has_avx2_fma() || c % 8 != 0) return 0;
    winograd_output_avx2(tiles, cells, m, mstride, c, bias, dst, accumulate);
    return 1;
}

AVX2 static void winograd_tile_kernel_avx2(int tiles, const int *cells, const float *src, int c, float *g, long gstride) {
    const __m256 half = _mm256_set1_ps(0.5f);
    for (int t = 0; t < tiles; t++) {
        const float *row[4];
        for (int q = 0; q < 4; q++) row[q] = cells[4 * t + q] >= 0 ? src + (long)cells[4 * t + q] * c : zero_row;
        float *out = g + (long)t * c;
        for (int ch = 0; ch < c; ch += 8) {
            __m256 x00 = _mm256_loadu_ps(row[0] + ch), x01 = _mm256_loadu_ps(row[1] + ch);
            __m256 x10 = _mm256_loadu_ps(row[2] + ch), x11 = _mm256_loadu_ps(row[3] + ch);
            // G x (4 x 2): rows x0, (x0 + x1) / 2, (x0 - x1) / 2, x1; then the same on columns.
            __m256 h[4][2] = {
                {x00, x01},
                {_mm256_mul_ps(half, _mm256_add_ps(x00, x10)), _mm256_mul_ps(half, _mm256_add_ps(x01, x11))},
                {_mm256_mul_ps(half, _mm256_sub_ps(x00, x10)), _mm256_mul_ps(half, _mm256_sub_ps(x01, x11))},
                {x10, x11}};
            for (int r = 0; r < 4; r++) {
                __m256 a = h[r][0], b = h[r][1];
                _mm256_storeu_ps(out + (4 * r) * gstride + ch, a);
                _mm256_storeu_ps(out + (4 * r + 1) * gstride + ch, _mm256_mul_ps(half, _mm256_add_ps(a, b)));
                _mm256_storeu_ps(out + (4 * r + 2) * gstride + ch, _mm256_mul_ps(half, _mm256_sub_ps(a, b)));
                _mm256_storeu_ps(out + (4 * r + 3) * gstride + ch, b);
            }
        }
    }
}

int smil_winograd_tile_kernel(int tiles, const int *cells, const float *src, int c, float *g, long gstride) {
    if (!smil_has_avx2_fma() || c % 8 != 0 || c > WINO_MAX_CHANNELS) return 0;
    winograd_tile_kernel_avx2(tiles, cells, src, c, g, gstride);
    return 1;
}

#else
int smil_winograd_input(int tiles, const int *patch, const float *src, int c, int kind, float *v, long vstride) { return 0; }
int smil_winograd_output(int tiles, const int *cells, const float *m, long mstride, int c, const float *bias, float *dst,
                         int accumulate) { return 0; }
int smil_winograd_tile_kernel(int tiles, const int *cells, const float *src, int c, float *g, long gstride) { return 0; }
#endif
