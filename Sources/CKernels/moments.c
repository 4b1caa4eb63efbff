// moments.c: a channel's sums for batch normalisation, in double (see include/kernels.h).

#include "kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))

/// The 8 floats at p as two vectors of doubles.
AVX2 static inline void widen(const float *p, __m256d *lo, __m256d *hi) {
    __m256 v = _mm256_loadu_ps(p);
    *lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    *hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}

AVX2 static inline double total(__m256d a, __m256d b, __m256d c, __m256d d) {
    __m256d s = _mm256_add_pd(_mm256_add_pd(a, b), _mm256_add_pd(c, d));
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

AVX2 static double sum_avx2(const float *x, int runs, long stride, long n, double mean, int squares) {
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0, m = _mm256_set1_pd(mean);
    double tail = 0;
    for (int r = 0; r < runs; r++) {
        const float *p = x + r * stride;
        long i = 0;
        for (; i + 16 <= n; i += 16) {
            __m256d v0, v1, v2, v3;
            widen(p + i, &v0, &v1);
            widen(p + i + 8, &v2, &v3);
            if (squares) {
                v0 = _mm256_sub_pd(v0, m); v1 = _mm256_sub_pd(v1, m); v2 = _mm256_sub_pd(v2, m); v3 = _mm256_sub_pd(v3, m);
                a0 = _mm256_fmadd_pd(v0, v0, a0); a1 = _mm256_fmadd_pd(v1, v1, a1);
                a2 = _mm256_fmadd_pd(v2, v2, a2); a3 = _mm256_fmadd_pd(v3, v3, a3);
            } else {
                a0 = _mm256_add_pd(a0, v0); a1 = _mm256_add_pd(a1, v1); a2 = _mm256_add_pd(a2, v2); a3 = _mm256_add_pd(a3, v3);
            }
        }
        for (; i < n; i++) {
            double v = (double)p[i];
            tail += squares ? (v - mean) * (v - mean) : v;
        }
    }
    return total(a0, a1, a2, a3) + tail;
}

AVX2 static void gradient_sums_avx2(const float *g, const float *x, int runs, long stride, long n, float mean,
                                    double *sumG, double *sumGX) {
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, t0 = s0, t1 = s0;
    const __m256 m = _mm256_set1_ps(mean);
    double sg = 0, sgx = 0;
    for (int r = 0; r < runs; r++) {
        const float *gp = g + r * stride, *xp = x + r * stride;
        long i = 0;
        for (; i + 8 <= n; i += 8) {
            __m256d g0, g1, d0, d1;
            widen(gp + i, &g0, &g1);
            // x - mean in float, then widened: the same values as the scalar loop's.
            __m256 dx = _mm256_sub_ps(_mm256_loadu_ps(xp + i), m);
            d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(dx));
            d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(dx, 1));
            s0 = _mm256_add_pd(s0, g0); s1 = _mm256_add_pd(s1, g1);
            t0 = _mm256_fmadd_pd(g0, d0, t0); t1 = _mm256_fmadd_pd(g1, d1, t1);
        }
        for (; i < n; i++) {
            sg += (double)gp[i];
            sgx += (double)gp[i] * (double)(xp[i] - mean);
        }
    }
    *sumG = total(s0, s1, _mm256_setzero_pd(), _mm256_setzero_pd()) + sg;
    *sumGX = total(t0, t1, _mm256_setzero_pd(), _mm256_setzero_pd()) + sgx;
}
#endif

double smil_channel_sum(const float *x, int runs, long stride, long n, double mean, int squares) {
#if defined(__x86_64__)
    if (smil_has_avx2_fma()) return sum_avx2(x, runs, stride, n, mean, squares);
#endif
    double s = 0;
    for (int r = 0; r < runs; r++)
        for (long i = 0; i < n; i++) {
            double v = (double)x[r * stride + i];
            s += squares ? (v - mean) * (v - mean) : v;
        }
    return s;
}

void smil_channel_gradient_sums(const float *g, const float *x, int runs, long stride, long n, float mean,
                                double *sumG, double *sumGX) {
#if defined(__x86_64__)
    if (smil_has_avx2_fma()) { gradient_sums_avx2(g, x, runs, stride, n, mean, sumG, sumGX); return; }
#endif
    double sg = 0, sgx = 0;
    for (int r = 0; r < runs; r++)
        for (long i = 0; i < n; i++) {
            sg += (double)g[r * stride + i];
            sgx += (double)g[r * stride + i] * (double)(x[r * stride + i] - mean);
        }
    *sumG = sg;
    *sumGX = sgx;
}
