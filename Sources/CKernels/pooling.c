// pooling.c: max pooling of one plane, with the position of each maximum (see include/kernels.h).

#include "kernels.h"

#include <math.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))

/// Output columns ox .. ox + 7 of one output row at stride 2, their windows' columns starting at
/// x0 = 2 ox - padding, all inside the row (the loads reach x0 + kernel + 14). The same scan and
/// rule as the scalar loop, eight windows at a time.
AVX2 static void pool8_stride2(const float *x, int w, int ys, int ye, int x0, int kernel, float *y, int *argmax) {
    const __m256i lanes = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    __m256 m = _mm256_set1_ps(-INFINITY);
    __m256i at = _mm256_add_epi32(_mm256_set1_epi32(ys * w + x0), lanes);
    for (int iy = ys; iy < ye; iy++) {
        const float *row = x + (long)iy * w + x0;
        for (int kx = 0; kx < kernel; kx++) {
            // Columns x0 + kx + 2 l: the even floats of 16, their middle quarters swapped back.
            __m256 even = _mm256_shuffle_ps(_mm256_loadu_ps(row + kx), _mm256_loadu_ps(row + kx + 8), 0x88);
            __m256 v = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), 0xd8));
            __m256 take = _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
            m = _mm256_blendv_ps(m, v, take);
            if (argmax) {
                __m256i here = _mm256_add_epi32(_mm256_set1_epi32(iy * w + x0 + kx), lanes);
                at = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(at), _mm256_castsi256_ps(here), take));
            }
        }
    }
    _mm256_storeu_ps(y, m);
    if (argmax) _mm256_storeu_si256((__m256i *)argmax, at);
}
#endif

/// One output cell: the window scanned row by row, a value taking over when greater or NaN.
static inline void pool1(const float *x, int w, int ys, int ye, int xs, int xe, float *y, int *argmax) {
    float m = -INFINITY;
    int at = ys * w + xs;
    for (int iy = ys; iy < ye; iy++) {
        const float *row = x + (long)iy * w;
        for (int ix = xs; ix < xe; ix++) {
            float v = row[ix];
            int take = v > m || v != v;
            m = take ? v : m;
            at = take ? iy * w + ix : at;
        }
    }
    *y = m;
    if (argmax) *argmax = at;
}

void smil_max_pool_plane(const float *x, int h, int w, float *y, int *argmax, int oh, int ow, int kernel, int stride,
                         int padding) {
#if defined(__x86_64__)
    const int vector = stride == 2 && smil_has_avx2_fma();
#else
    const int vector = 0;
#endif
    for (int oy = 0; oy < oh; oy++) {
        int y0 = oy * stride - padding, ys = y0 > 0 ? y0 : 0, ye = y0 + kernel < h ? y0 + kernel : h;
        float *out = y + (long)oy * ow;
        int *outAt = argmax ? argmax + (long)oy * ow : 0;
        int ox = 0;
        while (ox < ow) {
            int x0 = ox * stride - padding;
#if defined(__x86_64__)
            if (vector && x0 >= 0 && ox + 8 <= ow && x0 + kernel + 15 <= w) {
                pool8_stride2(x, w, ys, ye, x0, kernel, out + ox, outAt ? outAt + ox : 0);
                ox += 8;
                continue;
            }
#endif
            int xs = x0 > 0 ? x0 : 0, xe = x0 + kernel < w ? x0 + kernel : w;
            pool1(x, w, ys, ye, xs, xe, out + ox, outAt ? outAt + ox : 0);
            ox++;
        }
    }
}
