// kernels.c: see include/kernels.h. Without floating-point contraction (the pragma there), so each
// element goes through exactly the operations, in the order, that PyTorch's loop uses.

#include "kernels.h"
#include <math.h>

// The correctly rounded square root with no errno to set (v is never negative): sqrtf may set errno
// for a negative argument, and that possible side effect keeps the compiler from vectorising the
// loop unless the build passes -fno-math-errno, which a package dependency cannot.
#if __has_builtin(__builtin_elementwise_sqrt)
#define smil_sqrt(x) __builtin_elementwise_sqrt(x)
#else
#define smil_sqrt(x) sqrtf(x)
#endif

void smil_adam_update(size_t n, float *restrict w, const float *restrict g, float *restrict m,
                      float *restrict v, float b1, float b2, float eps, float l2, float decay_keep,
                      float step_size, float bc2_sqrt) {
    if (decay_keep != 1.0f) {
        for (size_t j = 0; j < n; j++) w[j] *= decay_keep;
    }
    for (size_t j = 0; j < n; j++) {
        float gj = g[j] + l2 * w[j];
        m[j] = b1 * m[j] + (1.0f - b1) * gj;
        v[j] = b2 * v[j] + (1.0f - b2) * gj * gj;
        w[j] -= step_size * (m[j] / (smil_sqrt(v[j]) / bc2_sqrt + eps));
    }
}

atomic_int smil_interrupt_flag;
atomic_int smil_summary_flag;

static _Thread_local int in_pool_job;
int smil_in_pool_job(void) { return in_pool_job; }
void smil_set_in_pool_job(int inside) { in_pool_job = inside; }

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))

/// Step 2 on AVX2: 16 floats in, the 8 even ones out. The vectors stop where the next would read
/// past src[2 n - 2] (a window's run may end at its plane's last float); the caller does the rest.
AVX2 static int gather_even_avx2(float *restrict dst, const float *restrict src, int n) {
    int i = 0;
    for (; i + 8 < n; i += 8) {
        __m256 a = _mm256_loadu_ps(src + 2 * i), b = _mm256_loadu_ps(src + 2 * i + 8);
        // [a0 a2 b0 b2 | a4 a6 b4 b6], then the middle quarters swapped.
        __m256 even = _mm256_shuffle_ps(a, b, 0x88);
        _mm256_storeu_ps(dst + i, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), 0xd8)));
    }
    return i;
}

/// Step 2 on AVX2: 8 floats of src added to the even floats of 16 of dst; the odd ones are
/// stored back as they were (not + 0, which would turn -0 into +0). Touches no further than
/// dst[2 n - 2], as gather_even_avx2 reads.
AVX2 static int add_even_avx2(float *restrict dst, const float *restrict src, int n) {
    int i = 0;
    const __m256 zero = _mm256_setzero_ps();
    for (; i + 8 < n; i += 8) {
        __m256 s = _mm256_loadu_ps(src + i);
        __m256 lo = _mm256_unpacklo_ps(s, zero), hi = _mm256_unpackhi_ps(s, zero);
        __m256 x0 = _mm256_permute2f128_ps(lo, hi, 0x20), x1 = _mm256_permute2f128_ps(lo, hi, 0x31);
        __m256 d0 = _mm256_loadu_ps(dst + 2 * i), d1 = _mm256_loadu_ps(dst + 2 * i + 8);
        _mm256_storeu_ps(dst + 2 * i, _mm256_blend_ps(d0, _mm256_add_ps(d0, x0), 0x55));
        _mm256_storeu_ps(dst + 2 * i + 8, _mm256_blend_ps(d1, _mm256_add_ps(d1, x1), 0x55));
    }
    return i;
}
#endif

void smil_gather_strided(float *restrict dst, const float *restrict src, int n, int step) {
    if (step == 2) {
        int i = 0;
#if defined(__x86_64__)
        if (smil_has_avx2_fma()) i = gather_even_avx2(dst, src, n);
#endif
        for (; i < n; i++) dst[i] = src[2 * i];
        return;
    }
    for (int i = 0; i < n; i++) dst[i] = src[(long)i * step];
}

void smil_add_strided(float *restrict dst, const float *restrict src, int n, int step) {
    int i = 0;
#if defined(__x86_64__)
    if (step == 2 && smil_has_avx2_fma()) i = add_even_avx2(dst, src, n);
#endif
    for (; i < n; i++) dst[(long)i * step] += src[i];
}

void smil_spread_strided(float *restrict dst, int width, const float *restrict src, int n, int step) {
    int i = 0;
    if (step == 2) {
        for (; i < n && 2 * i + 1 < width; i++) {
            dst[2 * i] = src[i];
            dst[2 * i + 1] = 0;
        }
    }
    for (int j = i * step; j < width; j++) dst[j] = j % step == 0 && j / step < n ? src[j / step] : 0;
}
