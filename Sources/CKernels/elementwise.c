// elementwise.c: the general tensor operations' inner loops (see include/kernels.h): unary and
// binary maps with a broadcast operand, comparisons and selection, their gradients, sums, extrema
// and softmax. Each loop is written once, as an always-inline function, and compiled three times:
// for any x86-64 (SSE2), for AVX2 and for AVX-512, chosen at run time. The copies give bit-identical
// results: no contraction (kernels.h), sums in a fixed order, and exp, tanh and sigmoid the same
// polynomial in all (not libm, whose calls would keep the loops scalar).

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
#define AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
#else
#define AVX2
#define AVX512
#endif

/// The best copy this processor runs: 0 portable, 1 AVX2 + FMA, 2 AVX-512 (F, VL, BW, DQ).
static int processor_level(void) {
    int best = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (smil_has_avx2_fma()) best = 1;
    if (best == 1 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")) best = 2;
#endif
    return best;
}

static int chosen_level = -1;

/// The copy in use: the processor's best, lowered by SMIL_SIMD=portable or avx2, or by a test.
static int level(void) {
    if (chosen_level < 0) {
        int best = processor_level(), asked = best;
        const char *s = getenv("SMIL_SIMD");
        if (s != NULL && strcmp(s, "portable") == 0) asked = 0;
        if (s != NULL && strcmp(s, "avx2") == 0) asked = 1;
        chosen_level = asked < best ? asked : best;
    }
    return chosen_level;
}

int smil_elementwise_level(void) { return level(); }
int smil_elementwise_processor_level(void) { return processor_level(); }

void smil_elementwise_set_level(int l) {
    int best = processor_level();
    chosen_level = l < 0 ? -1 : (l < best ? l : best);
}

/// NAME's three copies around the always-inline NAME##_loop, and NAME choosing among them.
#define THREE_COPIES(RET, NAME, PARAMS, ARGS)                            \
    static RET NAME##_portable PARAMS { return NAME##_loop ARGS; }       \
    AVX2 static RET NAME##_avx2 PARAMS { return NAME##_loop ARGS; }      \
    AVX512 static RET NAME##_avx512 PARAMS { return NAME##_loop ARGS; }  \
    RET NAME PARAMS {                                                    \
        switch (level()) {                                               \
        case 2: return NAME##_avx512 ARGS;                               \
        case 1: return NAME##_avx2 ARGS;                                 \
        default: return NAME##_portable ARGS;                            \
        }                                                                \
    }

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

INLINE void smil_unary_loop(int op, long n, const float *restrict x, float *restrict y, float a, float b) {
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
    case SMIL_NONZERO: for (long i = 0; i < n; i++) y[i] = x[i] != 0 ? 1.0f : 0.0f; break;
    case SMIL_ONE_MINUS: for (long i = 0; i < n; i++) y[i] = 1.0f - x[i]; break;
    default: break;
    }
}

THREE_COPIES(void, smil_unary, (int op, long n, const float *x, float *y, float a, float b), (op, n, x, y, a, b))

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
    case SMIL_FIRST: for (long i = 0; i < n; i++) y[i] = A; break;                                  \
    case SMIL_LT: for (long i = 0; i < n; i++) y[i] = A < B ? 1.0f : 0.0f; break;                   \
    case SMIL_LE: for (long i = 0; i < n; i++) y[i] = A <= B ? 1.0f : 0.0f; break;                  \
    case SMIL_GT: for (long i = 0; i < n; i++) y[i] = A > B ? 1.0f : 0.0f; break;                   \
    case SMIL_GE: for (long i = 0; i < n; i++) y[i] = A >= B ? 1.0f : 0.0f; break;                  \
    case SMIL_EQ: for (long i = 0; i < n; i++) y[i] = A == B ? 1.0f : 0.0f; break;                  \
    case SMIL_NE: for (long i = 0; i < n; i++) y[i] = A != B ? 1.0f : 0.0f; break;                  \
    default: break;                                                                                 \
    }

INLINE void smil_binary_loop(int op, long n, const float *restrict a, long sa, const float *restrict b, long sb, float *restrict y) {
    if (sa && sb) { BINARY_CASES(a[i], b[i]) }
    else if (sa) { const float s = b[0]; BINARY_CASES(a[i], s) }
    else if (sb) { const float s = a[0]; BINARY_CASES(s, b[i]) }
    else { const float s = a[0], t = b[0]; BINARY_CASES(s, t) }
}

THREE_COPIES(void, smil_binary, (int op, long n, const float *a, long sa, const float *b, long sb, float *y), (op, n, a, sa, b, sb, y))

INLINE void smil_binary_rows_loop(int op, long rows, long n, const float *restrict a, long ra, long sa, const float *restrict b, long rb, long sb,
                                  float *restrict y) {
    for (long r = 0; r < rows; r++) smil_binary_loop(op, n, a + r * ra, sa, b + r * rb, sb, y + r * n);
}

THREE_COPIES(void, smil_binary_rows, (int op, long rows, long n, const float *a, long ra, long sa, const float *b, long rb, long sb, float *y),
             (op, rows, n, a, ra, sa, b, rb, sb, y))

INLINE void smil_select_loop(long n, const float *restrict c, const float *restrict a, const float *restrict b, float *restrict y) {
    for (long i = 0; i < n; i++) y[i] = c[i] != 0 ? a[i] : b[i];
}

THREE_COPIES(void, smil_select, (long n, const float *c, const float *a, const float *b, float *y), (n, c, a, b, y))

// MARK: Sums

/// Floats are summed in blocks of 256 by 16 float lanes (each lane adds 16 values), each block's
/// total then added in double: as fast as a float sum, and as exact as a double one for any
/// length (the float part never adds more than 16 values).
enum { SUM_BLOCK = 256 };

/// The sum of n <= SUM_BLOCK floats: 16 float lanes, then the lanes in double.
INLINE double block_sum(const float *restrict x, long n) {
    float lanes[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    long i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) lanes[k] += x[i + k];
    for (; i < n; i++) lanes[i & 15] += x[i];
    double s = 0;
    for (int k = 0; k < 16; k += 2) s += (double)lanes[k] + (double)lanes[k + 1];
    return s;
}

INLINE double smil_sum_loop(long n, const float *restrict x) {
    double total = 0;
    for (long i = 0; i < n; i += SUM_BLOCK) total += block_sum(x + i, n - i < SUM_BLOCK ? n - i : SUM_BLOCK);
    return total;
}

THREE_COPIES(double, smil_sum, (long n, const float *x), (n, x))

/// acc[j] += x[r * width + j] for r < rows: 16 rows at a time summed in float into a tile of 256
/// columns, then the tile added in double.
INLINE void smil_add_rows_loop(long rows, long width, const float *restrict x, double *restrict acc) {
    float tile[256];
    for (long j0 = 0; j0 < width; j0 += 256) {
        long w = width - j0 < 256 ? width - j0 : 256;
        for (long r0 = 0; r0 < rows; r0 += 16) {
            long r1 = r0 + 16 < rows ? r0 + 16 : rows;
            const float *first = x + r0 * width + j0;
            for (long j = 0; j < w; j++) tile[j] = first[j];
            for (long r = r0 + 1; r < r1; r++) {
                const float *row = x + r * width + j0;
                for (long j = 0; j < w; j++) tile[j] += row[j];
            }
            for (long j = 0; j < w; j++) acc[j0 + j] += (double)tile[j];
        }
    }
}

THREE_COPIES(void, smil_add_rows, (long rows, long width, const float *x, double *acc), (rows, width, x, acc))

INLINE void smil_narrow_loop(long n, const double *restrict x, float scale, float *restrict y) {
    for (long i = 0; i < n; i++) y[i] = (float)x[i] * scale;
}

THREE_COPIES(void, smil_narrow, (long n, const double *x, float scale, float *y), (n, x, scale, y))

// MARK: Extrema

/// The largest (or smallest) of `size` values `ld` apart, for `inner` columns side by side, and
/// the index of its first occurrence; NaN wins over any number (its first occurrence), as in
/// PyTorch.
INLINE void smil_extreme_loop(long size, long inner, long ld, const float *restrict x, int largest,
                              float *restrict best, int64_t *restrict index) {
    if (inner == 1) {
        float m = x[0];
        int64_t at = 0;
        for (long s = 1; s < size; s++) {
            float v = x[s * ld];
            int better = largest ? v > m : v < m;
            if (better || (v != v && m == m)) { m = v; at = s; }
        }
        best[0] = m;
        index[0] = at;
        return;
    }
    for (long j = 0; j < inner; j++) { best[j] = x[j]; index[j] = 0; }
    for (long s = 1; s < size; s++) {
        const float *row = x + s * ld;
        for (long j = 0; j < inner; j++) {
            float v = row[j], m = best[j];
            int take = (largest ? v > m : v < m) | ((v != v) & (m == m));
            best[j] = take ? v : m;
            index[j] = take ? s : index[j];
        }
    }
}

THREE_COPIES(void, smil_extreme, (long size, long inner, long ld, const float *x, int largest, float *best, int64_t *index),
             (size, inner, ld, x, largest, best, index))

// MARK: Softmax

/// Softmax (or log-softmax) of `size` values `ld` apart, for `inner` such columns side by side
/// (a block [size, inner] of rows `ld` long): the maximum, e^(x - max) and its sum, then the
/// products with the sum's reciprocal (x - max - log(sum) for log-softmax), all in float as
/// PyTorch's kernels compute them, the sum in double. `m` and `z` are scratch of `inner` each.
INLINE void smil_softmax_loop(long size, long inner, long ld, const float *restrict x, float *restrict y, int logarithm,
                              float *restrict m, double *restrict z) {
    if (inner == 1) {
        // One contiguous row: reductions along it, in 16 lanes.
        float lanes[16];
        for (int k = 0; k < 16; k++) lanes[k] = -__builtin_inff();
        long s = 0;
        for (; s + 16 <= size; s += 16)
            for (int k = 0; k < 16; k++) lanes[k] = x[s + k] > lanes[k] ? x[s + k] : lanes[k];
        float mx = -__builtin_inff();
        for (int k = 0; k < 16; k++) mx = lanes[k] > mx ? lanes[k] : mx;
        for (; s < size; s++) mx = x[s] > mx ? x[s] : mx;
        for (int k = 0; k < 16; k++) lanes[k] = 0;
        s = 0;
        double total = 0;
        if (logarithm) {
            for (; s + 16 <= size; s += 16) {
                for (int k = 0; k < 16; k++) lanes[k] += exp_poly(x[s + k] - mx);
                if ((s & 255) == 240) { for (int k = 0; k < 16; k++) { total += (double)lanes[k]; lanes[k] = 0; } }
            }
            for (; s < size; s++) total += (double)exp_poly(x[s] - mx);
        } else {
            for (; s + 16 <= size; s += 16) {
                for (int k = 0; k < 16; k++) { float e = exp_poly(x[s + k] - mx); y[s + k] = e; lanes[k] += e; }
                if ((s & 255) == 240) { for (int k = 0; k < 16; k++) { total += (double)lanes[k]; lanes[k] = 0; } }
            }
            for (; s < size; s++) { float e = exp_poly(x[s] - mx); y[s] = e; total += (double)e; }
        }
        for (int k = 0; k < 16; k++) total += (double)lanes[k];
        if (logarithm) {
            float shift = mx + (float)log(total);
            for (long t = 0; t < size; t++) y[t] = x[t] - shift;
        } else {
            float inverse = (float)(1.0 / total);
            for (long t = 0; t < size; t++) y[t] = y[t] * inverse;
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
        if (logarithm) {
            for (long j = 0; j < inner; j++) z[j] += (double)exp_poly(row[j] - m[j]);
        } else {
            for (long j = 0; j < inner; j++) {
                float e = exp_poly(row[j] - m[j]);
                z[j] += (double)e;
                out[j] = e;
            }
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
        for (long j = 0; j < inner; j++) m[j] = (float)(1.0 / z[j]);
        for (long s = 0; s < size; s++) {
            float *out = y + s * ld;
            for (long j = 0; j < inner; j++) out[j] = out[j] * m[j];
        }
    }
}

THREE_COPIES(void, smil_softmax, (long size, long inner, long ld, const float *x, float *y, int logarithm, float *m, double *z),
             (size, inner, ld, x, y, logarithm, m, z))

/// The gradient of softmax (dx = y (g - sum(g y))) or log-softmax (dx = g - e^y sum(g)) over `size`
/// rows `ld` apart, for `inner` columns, from the output y and its gradient g. `z` is scratch of
/// `inner` doubles.
INLINE void smil_softmax_backward_loop(long size, long inner, long ld, const float *restrict y, const float *restrict g, float *restrict dx,
                                       int logarithm, double *restrict z) {
    if (inner == 1) {
        double total = 0;
        for (long s0 = 0; s0 < size; s0 += SUM_BLOCK) {
            long n = size - s0 < SUM_BLOCK ? size - s0 : SUM_BLOCK;
            float lanes[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
            long i = 0;
            if (logarithm) {
                for (; i + 16 <= n; i += 16) for (int k = 0; k < 16; k++) lanes[k] += g[s0 + i + k];
                for (; i < n; i++) lanes[i & 15] += g[s0 + i];
            } else {
                for (; i + 16 <= n; i += 16) for (int k = 0; k < 16; k++) lanes[k] += g[s0 + i + k] * y[s0 + i + k];
                for (; i < n; i++) lanes[i & 15] += g[s0 + i] * y[s0 + i];
            }
            for (int k = 0; k < 16; k += 2) total += (double)lanes[k] + (double)lanes[k + 1];
        }
        float t = (float)total;
        if (logarithm) for (long s = 0; s < size; s++) dx[s] = g[s] - exp_poly(y[s]) * t;
        else for (long s = 0; s < size; s++) dx[s] = y[s] * (g[s] - t);
        return;
    }
    for (long j = 0; j < inner; j++) z[j] = 0;
    for (long s = 0; s < size; s++) {
        const float *gr = g + s * ld, *yr = y + s * ld;
        if (logarithm) for (long j = 0; j < inner; j++) z[j] += (double)gr[j];
        else for (long j = 0; j < inner; j++) z[j] += (double)(gr[j] * yr[j]);
    }
    for (long s = 0; s < size; s++) {
        const float *gr = g + s * ld, *yr = y + s * ld;
        float *out = dx + s * ld;
        if (logarithm) for (long j = 0; j < inner; j++) out[j] = gr[j] - exp_poly(yr[j]) * (float)z[j];
        else for (long j = 0; j < inner; j++) out[j] = yr[j] * (gr[j] - (float)z[j]);
    }
}

THREE_COPIES(void, smil_softmax_backward, (long size, long inner, long ld, const float *y, const float *g, float *dx, int logarithm, double *z),
             (size, inner, ld, y, g, dx, logarithm, z))
