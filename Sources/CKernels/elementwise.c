// elementwise.c: the general tensor operations' inner loops (see include/kernels.h): unary and
// binary maps with a broadcast operand, their gradients, sums and softmax. Each loop is written
// once, as an always-inline function, and compiled twice: for any x86-64 (SSE2) and for AVX2, chosen
// at run time. The two give bit-identical results: no contraction (kernels.h), and exp, tanh and
// sigmoid are the same polynomial in both (not libm, whose calls would keep the loops scalar).

#include "kernels.h"
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>

#if __has_builtin(__builtin_elementwise_sqrt)
#define smil_sqrtf(x) __builtin_elementwise_sqrt(x)
#else
#define smil_sqrtf(x) sqrtf(x)
#endif

#define INLINE static inline __attribute__((always_inline))

#if defined(__x86_64__)
#define AVX2 __attribute__((target("avx2,fma")))
#else
#define AVX2
#endif

static int simd_forced_off = -1;

void smil_elementwise_force_portable(int on) { simd_forced_off = on; }

/// Whether to take the AVX2 copies: the processor has AVX2 and FMA, and neither SMIL_SIMD=portable
/// nor a test asked for the portable loops.
static int use_avx2(void) {
#if defined(__x86_64__)
    if (simd_forced_off < 0) {
        const char *s = getenv("SMIL_SIMD");
        simd_forced_off = s != NULL && strcmp(s, "portable") == 0;
    }
    return !simd_forced_off && smil_has_avx2_fma();
#else
    return 0;
#endif
}

int smil_elementwise_uses_avx2(void) { return use_avx2(); }

// MARK: exp, tanh, sigmoid

INLINE float as_float(int32_t i) { float f; memcpy(&f, &i, 4); return f; }

/// e^x to within 1 ulp (0.95 measured against double libm; Cephes' expf polynomial after a Cody-Waite reduction x = n ln 2 + r),
/// written so that it vectorises: no calls, selects instead of branches. 2^n is applied as two
/// factors so that results down to the subnormals (x > -103.97) come out, not zero.
INLINE float exp_poly(float x) {
    float c = x > 88.72283935546875f ? 88.72283935546875f : (x < -103.972084045410f ? -103.972084045410f : x);
    float n = __builtin_floorf(c * 1.44269502162933349609375f + 0.5f);
    float r = c - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float e = p * (r * r) + r + 1.0f;
    int32_t ni = (int32_t)n;
    int32_t n1 = ni / 2, n2 = ni - ni / 2;
    float y = e * as_float((n1 + 127) << 23) * as_float((n2 + 127) << 23);
    y = x > 88.72283935546875f ? __builtin_inff() : y;
    y = x < -103.972084045410f ? 0.0f : y;
    return x != x ? x : y;
}

/// tanh(x) to within 1.2 ulp (sigmoid below: 2.2): Cephes' odd polynomial below |x| 0.625, 1 - 2 / (e^2|x| + 1) above.
INLINE float tanh_poly(float x) {
    float a = __builtin_fabsf(x);
    float z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z + 1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
    float e = exp_poly(2.0f * (a > 9.0f ? 9.0f : a));
    float big = 1.0f - 2.0f / (e + 1.0f);
    big = a > 9.0f ? 1.0f : big;
    big = x < 0 ? -big : big;
    return a < 0.625f ? small : big;
}

INLINE float sigmoid_poly(float x) { return 1.0f / (1.0f + exp_poly(-x)); }

// MARK: Unary maps

INLINE void unary_loop(int op, long n, const float *restrict x, float *restrict y, float a, float b) {
    switch (op) {
    case SMIL_NEG: for (long i = 0; i < n; i++) y[i] = -x[i]; break;
    case SMIL_ABS: for (long i = 0; i < n; i++) y[i] = __builtin_fabsf(x[i]); break;
    case SMIL_RELU: for (long i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0; break;
    case SMIL_ADD_SCALAR: for (long i = 0; i < n; i++) y[i] = x[i] + a; break;
    case SMIL_MUL_SCALAR: for (long i = 0; i < n; i++) y[i] = x[i] * a; break;
    case SMIL_CLAMP:
        // max then min, as Swift.min(Swift.max(x, lo), hi): NaN stays NaN.
        for (long i = 0; i < n; i++) {
            float v = x[i];
            v = v < a ? a : v;
            y[i] = v > b ? b : v;
        }
        break;
    case SMIL_EXP: for (long i = 0; i < n; i++) y[i] = exp_poly(x[i]); break;
    case SMIL_TANH: for (long i = 0; i < n; i++) y[i] = tanh_poly(x[i]); break;
    case SMIL_SIGMOID: for (long i = 0; i < n; i++) y[i] = sigmoid_poly(x[i]); break;
    case SMIL_SQRT: for (long i = 0; i < n; i++) y[i] = smil_sqrtf(x[i]); break;
    case SMIL_LOG: for (long i = 0; i < n; i++) y[i] = logf(x[i]); break;
    case SMIL_SIGN: for (long i = 0; i < n; i++) y[i] = x[i] > 0 ? 1.0f : (x[i] < 0 ? -1.0f : 0.0f); break;
    case SMIL_INSIDE: for (long i = 0; i < n; i++) y[i] = x[i] >= a && x[i] <= b ? 1.0f : 0.0f; break;
    case SMIL_FILL: for (long i = 0; i < n; i++) y[i] = a; break;
    default: break;
    }
}

static void unary_portable(int op, long n, const float *restrict x, float *restrict y, float a, float b) { unary_loop(op, n, x, y, a, b); }
AVX2 static void unary_avx2(int op, long n, const float *restrict x, float *restrict y, float a, float b) { unary_loop(op, n, x, y, a, b); }

void smil_unary(int op, long n, const float *x, float *y, float a, float b) {
    if (use_avx2()) unary_avx2(op, n, x, y, a, b);
    else unary_portable(op, n, x, y, a, b);
}

// MARK: Binary maps

/// One binary operation of two operands (`A`, `B` index expressions), written out for each op.
#define BINARY_CASES(A, B)                                                                          \
    switch (op) {                                                                                   \
    case SMIL_ADD: for (long i = 0; i < n; i++) y[i] = A + B; break;                                \
    case SMIL_SUB: for (long i = 0; i < n; i++) y[i] = A - B; break;                                \
    case SMIL_MUL: for (long i = 0; i < n; i++) y[i] = A * B; break;                                \
    case SMIL_DIV: for (long i = 0; i < n; i++) y[i] = A / B; break;                                \
    case SMIL_MAX: for (long i = 0; i < n; i++) { float u = A, v = B; y[i] = u > v ? u : v; } break; \
    case SMIL_MIN: for (long i = 0; i < n; i++) { float u = A, v = B; y[i] = u < v ? u : v; } break; \
    case SMIL_RELU_BACKWARD: for (long i = 0; i < n; i++) y[i] = B > 0 ? A : 0; break;              \
    case SMIL_SIGMOID_BACKWARD: for (long i = 0; i < n; i++) { float v = B; y[i] = A * v * (1 - v); } break; \
    case SMIL_TANH_BACKWARD: for (long i = 0; i < n; i++) { float v = B; y[i] = A * (1 - v * v); } break; \
    case SMIL_SQRT_BACKWARD: for (long i = 0; i < n; i++) y[i] = A / (2 * B); break;                \
    case SMIL_DIV_BACKWARD: for (long i = 0; i < n; i++) { float v = B; y[i] = -A / (v * v); } break; \
    case SMIL_GE_MASK: for (long i = 0; i < n; i++) y[i] = A >= B ? 1.0f : 0.0f; break;             \
    case SMIL_FIRST: for (long i = 0; i < n; i++) y[i] = A; break;                                  \
    default: break;                                                                                 \
    }

INLINE void binary_loop(int op, long n, const float *restrict a, long sa, const float *restrict b, long sb, float *restrict y) {
    if (sa && sb) { BINARY_CASES(a[i], b[i]) }
    else if (sa) { const float s = b[0]; BINARY_CASES(a[i], s) }
    else if (sb) { const float s = a[0]; BINARY_CASES(s, b[i]) }
    else { const float s = a[0], t = b[0]; BINARY_CASES(s, t) }
}

static void binary_portable(int op, long n, const float *restrict a, long sa, const float *restrict b, long sb, float *restrict y) {
    binary_loop(op, n, a, sa, b, sb, y);
}
AVX2 static void binary_avx2(int op, long n, const float *restrict a, long sa, const float *restrict b, long sb, float *restrict y) {
    binary_loop(op, n, a, sa, b, sb, y);
}

void smil_binary(int op, long n, const float *a, long sa, const float *b, long sb, float *y) {
    if (use_avx2()) binary_avx2(op, n, a, sa, b, sb, y);
    else binary_portable(op, n, a, sa, b, sb, y);
}

// MARK: Sums

/// The sum of n floats in double precision: eight running sums (so the loop vectorises), then
/// added in a fixed order, so the result depends only on the data.
INLINE double sum_loop(long n, const float *restrict x) {
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    long i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += (double)x[i + k];
    for (; i < n; i++) s[i & 7] += (double)x[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

static double sum_portable(long n, const float *restrict x) { return sum_loop(n, x); }
AVX2 static double sum_avx2(long n, const float *restrict x) { return sum_loop(n, x); }

double smil_sum(long n, const float *x) { return use_avx2() ? sum_avx2(n, x) : sum_portable(n, x); }

INLINE void add_rows_loop(long rows, long width, const float *restrict x, double *restrict acc) {
    for (long r = 0; r < rows; r++) {
        const float *row = x + r * width;
        for (long j = 0; j < width; j++) acc[j] += (double)row[j];
    }
}

static void add_rows_portable(long rows, long width, const float *restrict x, double *restrict acc) { add_rows_loop(rows, width, x, acc); }
AVX2 static void add_rows_avx2(long rows, long width, const float *restrict x, double *restrict acc) { add_rows_loop(rows, width, x, acc); }

void smil_add_rows(long rows, long width, const float *x, double *acc) {
    if (use_avx2()) add_rows_avx2(rows, width, x, acc);
    else add_rows_portable(rows, width, x, acc);
}

INLINE void narrow_loop(long n, const double *restrict x, float scale, float *restrict y) {
    for (long i = 0; i < n; i++) y[i] = (float)x[i] * scale;
}
static void narrow_portable(long n, const double *restrict x, float scale, float *restrict y) { narrow_loop(n, x, scale, y); }
AVX2 static void narrow_avx2(long n, const double *restrict x, float scale, float *restrict y) { narrow_loop(n, x, scale, y); }

void smil_narrow(long n, const double *x, float scale, float *y) {
    if (use_avx2()) narrow_avx2(n, x, scale, y);
    else narrow_portable(n, x, scale, y);
}

// MARK: Softmax

/// Softmax (or log-softmax) of `size` values `ld` apart, for `inner` such columns side by side
/// (a block [size, inner] of rows `ld` long): the maximum, e^(x - max) and its sum in double, then
/// the quotient (x - max - log(sum) for log-softmax). `m` and `z` are scratch of `inner` each.
INLINE void softmax_loop(long size, long inner, long ld, const float *restrict x, float *restrict y, int logarithm,
                         float *restrict m, double *restrict z) {
    if (inner == 1) {
        // One contiguous row: reductions along it.
        float mx = -__builtin_inff();
        for (long s = 0; s < size; s++) mx = x[s] > mx ? x[s] : mx;
        double sums[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        long s = 0;
        for (; s + 8 <= size; s += 8)
            for (int k = 0; k < 8; k++) {
                float e = exp_poly(x[s + k] - mx);
                sums[k] += (double)e;
                if (!logarithm) y[s + k] = e;
            }
        for (; s < size; s++) {
            float e = exp_poly(x[s] - mx);
            sums[s & 7] += (double)e;
            if (!logarithm) y[s] = e;
        }
        double total = ((sums[0] + sums[1]) + (sums[2] + sums[3])) + ((sums[4] + sums[5]) + (sums[6] + sums[7]));
        if (logarithm) {
            float shift = mx + (float)log(total);
            for (long t = 0; t < size; t++) y[t] = x[t] - shift;
        } else {
            double inverse = 1.0 / total;
            for (long t = 0; t < size; t++) y[t] = (float)((double)y[t] * inverse);
        }
        return;
    }
    for (long j = 0; j < inner; j++) { m[j] = -__builtin_inff(); z[j] = 0; }
    for (long s = 0; s < size; s++) {
        const float *row = x + s * ld;
        for (long j = 0; j < inner; j++) m[j] = row[j] > m[j] ? row[j] : m[j];
    }
    for (long s = 0; s < size; s++) {
        const float *row = x + s * ld;
        float *out = y + s * ld;
        for (long j = 0; j < inner; j++) {
            float e = exp_poly(row[j] - m[j]);
            z[j] += (double)e;
            if (!logarithm) out[j] = e;
        }
    }
    if (logarithm) {
        for (long j = 0; j < inner; j++) m[j] = m[j] + (float)log(z[j]);
        for (long s = 0; s < size; s++) {
            const float *row = x + s * ld;
            float *out = y + s * ld;
            for (long j = 0; j < inner; j++) out[j] = row[j] - m[j];
        }
    } else {
        for (long j = 0; j < inner; j++) z[j] = 1.0 / z[j];
        for (long s = 0; s < size; s++) {
            float *out = y + s * ld;
            for (long j = 0; j < inner; j++) out[j] = (float)((double)out[j] * z[j]);
        }
    }
}

static void softmax_portable(long size, long inner, long ld, const float *restrict x, float *restrict y, int logarithm, float *restrict m, double *restrict z) {
    softmax_loop(size, inner, ld, x, y, logarithm, m, z);
}
AVX2 static void softmax_avx2(long size, long inner, long ld, const float *restrict x, float *restrict y, int logarithm, float *restrict m, double *restrict z) {
    softmax_loop(size, inner, ld, x, y, logarithm, m, z);
}

void smil_softmax(long size, long inner, long ld, const float *x, float *y, int logarithm, float *m, double *z) {
    if (use_avx2()) softmax_avx2(size, inner, ld, x, y, logarithm, m, z);
    else softmax_portable(size, inner, ld, x, y, logarithm, m, z);
}
