// elementwise.c: the general tensor operations' inner loops (see include/kernels.h): unary and
// binary maps with a broadcast operand, comparisons and selection, their gradients, sums, extrema
// and softmax. Each loop is written once, as an always-inline function, and compiled three times:
// for any x86-64 (SSE2), for AVX2 and for AVX-512, chosen at run time. The copies give bit-identical
// results: no contraction (kernels.h), sums in a fixed order, and exp, tanh and sigmoid the same
// polynomial in all (not libm's expf, whose calls would keep the loops scalar). exp's polynomial is
// written in explicit fused multiply-adds: instructions on the AVX2 and AVX-512 copies, and libm's
// correctly rounded fmaf on the portable copy (slower there, but rounded alike), for processors
// older than AVX2 only.

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

/// e^x to within 1 ulp (measured against double libm; Cephes' expf polynomial after a Cody-Waite
/// reduction x = n ln 2 + r, in fused multiply-adds: one instruction on the AVX2 and AVX-512
/// copies, libm's exact fmaf on the portable one, so all three round alike),
/// written so that it vectorises where the fused multiply-add is an instruction: selects instead of
/// branches. 2^n is applied as two
/// factors so that results down to the subnormals (x > -103.97) come out, not zero.
INLINE float exp_poly(float x) {
    float c = x > 88.72283935546875f ? 88.72283935546875f : (x < -103.972084045410f ? -103.972084045410f : x);
    float n = __builtin_floorf(__builtin_fmaf(c, 1.44269502162933349609375f, 0.5f));
    float r = __builtin_fmaf(n, -0.693359375f, c);
    r = __builtin_fmaf(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = __builtin_fmaf(p, r, 1.3981999507e-3f);
    p = __builtin_fmaf(p, r, 8.3334519073e-3f);
    p = __builtin_fmaf(p, r, 4.1665795894e-2f);
    p = __builtin_fmaf(p, r, 1.6666665459e-1f);
    p = __builtin_fmaf(p, r, 5.0000001201e-1f);
    float e = __builtin_fmaf(p, r * r, r) + 1.0f;
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

/// z * z as hi + lo exactly, without a fused multiply-add (Dekker's split of z into 12-bit halves;
/// |z| <= 2^20 here), so every copy of the loops gets the same bits.
INLINE void square_exact(float z, float *hi, float *lo) {
    float big = z * 4097.0f;
    float zh = big - (big - z), zl = z - zh;
    float p = z * z;
    *hi = p;
    *lo = ((zh * zh - p) + 2.0f * zh * zl) + zl * zl;
}

/// Phi(x), the standard normal distribution function, as 0.5 erfc(-x / sqrt 2), with erfc from
/// the Chebyshev-fitted form of Numerical Recipes (erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2),
/// relative error below 1.2e-7 for every z >= 0). The exponential is taken as exp(-z^2) exp(P - lo)
/// with z^2 split exactly, so that large |x| lose nothing to the rounding of -z^2 + P.
INLINE float normal_cdf(float x) {
    // z = |x| / sqrt 2 only sets t; the exponent -z^2 = -x^2 / 2 comes from x itself, since
    // rounding z first would cost 1e-5 relative where z^2 is 70.
    float a = __builtin_fabsf(x);
    a = a < 28.0f ? a : 28.0f;
    float z = a * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    float hi, lo;
    square_exact(a, &hi, &lo);
    float erfc = t * (exp_poly(-0.5f * hi) * exp_poly(p - 0.5f * lo));
    float phi = x < 0 ? 0.5f * erfc : 1.0f - 0.5f * erfc;
    return x != x ? x : phi;
}

/// GELU's derivative: Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi) (x^2 split exactly).
INLINE float gelu_slope(float x) {
    float c = __builtin_fabsf(x) < 40.0f ? x : 40.0f;
    float hi, lo;
    square_exact(c, &hi, &lo);
    float density = 0.3989422804014327f * (exp_poly(-0.5f * hi) * exp_poly(-0.5f * lo));
    return normal_cdf(x) + x * density;
}

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
    case SMIL_FINITE_OR_ZERO: for (long i = 0; i < n; i++) y[i] = x[i] - x[i] == 0 ? x[i] : 0.0f; break;
    case SMIL_GELU: for (long i = 0; i < n; i++) y[i] = x[i] * normal_cdf(x[i]); break;
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
    case SMIL_GELU_BACKWARD: for (long i = 0; i < n; i++) y[i] = A * gelu_slope(B); break;          \
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

/// Floats are summed in blocks of 1024 by 64 float lanes (each lane adds at most 16 values, and
/// four vector registers' worth of independent sums keep the adder busy), the lanes then added
/// pairwise in float and each block's total in double: as fast as a float sum, and as exact as a
/// double one for any length.
enum { SUM_BLOCK = 1024 };

// Vectors of the compiler's vector extension: the same operations on any target (split into
// SSE registers on the portable copy), so that the lanes' final reductions stay in registers.
typedef float v16f __attribute__((vector_size(64), aligned(4)));
typedef float v8f __attribute__((vector_size(32), aligned(4)));
typedef float v4f __attribute__((vector_size(16), aligned(4)));
typedef int32_t v16i __attribute__((vector_size(64), aligned(4)));
typedef int32_t v8i __attribute__((vector_size(32), aligned(4)));
typedef int32_t v4i __attribute__((vector_size(16), aligned(4)));

// Macros, not functions: a function returning a 64-byte vector warns of an ABI change where the
// target lacks AVX-512, even when it is always inlined.
#define load16(p) ({ v16f v_; memcpy(&v_, (p), 64); v_; })
#define low8(v) __builtin_shufflevector((v), (v), 0, 1, 2, 3, 4, 5, 6, 7)
#define high8(v) __builtin_shufflevector((v), (v), 8, 9, 10, 11, 12, 13, 14, 15)
#define low4(v) __builtin_shufflevector((v), (v), 0, 1, 2, 3)
#define high4(v) __builtin_shufflevector((v), (v), 4, 5, 6, 7)

/// Adds lanes[0..<n] (n 16 or 64) pairwise: lanes k and k + n/2, then k and k + n/4, ..., in
/// vector registers.
INLINE float tree(const float *lanes, int n) {
    v16f v = load16(lanes);
    if (n == 64) v = (v + load16(lanes + 32)) + (load16(lanes + 16) + load16(lanes + 48));
    v8f a = low8(v) + high8(v);
    v4f b = low4(a) + high4(a);
    return (b[0] + b[2]) + (b[1] + b[3]);
}

/// v where it is larger than m (smaller, unless `largest`) or NaN, else m.
#define PICK(T, TI, v, m, largest)                                                            \
    ({ TI take_ = ((largest) ? ((v) > (m)) : ((v) < (m))) | ((v) != (v));                     \
       (T)((take_ & (TI)(v)) | (~take_ & (TI)(m))); })

/// The extreme of lanes[0..<n] (n 16 or 64), NaN winning, reduced as `tree` adds.
INLINE float tree_extreme(const float *lanes, int n, int largest) {
    v16f v = load16(lanes);
    if (n == 64) {
        v16f p = PICK(v16f, v16i, load16(lanes + 32), v, largest);
        v16f q = PICK(v16f, v16i, load16(lanes + 48), load16(lanes + 16), largest);
        v = PICK(v16f, v16i, q, p, largest);
    }
    v8f a = PICK(v8f, v8i, high8(v), low8(v), largest);
    v4f b = PICK(v4f, v4i, high4(a), low4(a), largest);
    float c0 = b[0], c1 = b[1], c2 = b[2], c3 = b[3];
    c0 = ((largest ? c2 > c0 : c2 < c0) || c2 != c2) ? c2 : c0;
    c1 = ((largest ? c3 > c1 : c3 < c1) || c3 != c3) ? c3 : c1;
    return ((largest ? c1 > c0 : c1 < c0) || c1 != c1) ? c1 : c0;
}

/// exp_poly on 16 floats at once, operation for operation (so bit for bit the same): the lanes'
/// sums of e^x stay in registers instead of going through memory.
/// a * b + c rounded once, on 16 lanes (b and c may be scalars).
#define FMA16(a, b, c) __builtin_elementwise_fma((v16f)(a), (b) - (v16f){0}, (c) - (v16f){0})
#define BLEND(T, TI, mask, a, b) ((T)(((mask) & (TI)(a)) | (~(mask) & (TI)(b))))
#define EXP16(xv)                                                                                  \
    ({                                                                                             \
        v16f x_ = (xv);                                                                            \
        const v16f hi_ = 88.72283935546875f - (v16f){0}, lo_ = -103.972084045410f - (v16f){0};     \
        v16i over_ = x_ > hi_, under_ = x_ < lo_;                                                  \
        v16f c_ = BLEND(v16f, v16i, over_, hi_, BLEND(v16f, v16i, under_, lo_, x_));               \
        v16f n_ = __builtin_elementwise_floor(FMA16(c_, 1.44269502162933349609375f, 0.5f));        \
        v16f r_ = FMA16(n_, -0.693359375f, c_);                                                    \
        r_ = FMA16(n_, 2.12194440e-4f, r_);                                                        \
        v16f p_ = 1.9875691500e-4f - (v16f){0};                                                    \
        p_ = FMA16(p_, r_, 1.3981999507e-3f);                                                      \
        p_ = FMA16(p_, r_, 8.3334519073e-3f);                                                      \
        p_ = FMA16(p_, r_, 4.1665795894e-2f);                                                      \
        p_ = FMA16(p_, r_, 1.6666665459e-1f);                                                      \
        p_ = FMA16(p_, r_, 5.0000001201e-1f);                                                      \
        v16f e_ = FMA16(p_, r_ * r_, r_) + 1.0f;                                                   \
        v16i ni_ = __builtin_convertvector(n_, v16i);                                              \
        v16i n1_ = ni_ / 2, n2_ = ni_ - ni_ / 2;                                                   \
        v16f y_ = e_ * (v16f)((n1_ + 127) << 23) * (v16f)((n2_ + 127) << 23);                      \
        y_ = BLEND(v16f, v16i, over_, __builtin_inff() - (v16f){0}, y_);                           \
        y_ = BLEND(v16f, v16i, under_, (v16f){0}, y_);                                             \
        BLEND(v16f, v16i, x_ != x_, x_, y_);                                                       \
    })

/// Lanes in registers: a0..a3 hold lanes 0-15, 16-31, 32-47, 48-63 (only a0 when L is 16).
typedef struct { v16f a0, a1, a2, a3; } lanes64;

INLINE void lanes_zero(lanes64 *l) { v16f z = {0}; l->a0 = z; l->a1 = z; l->a2 = z; l->a3 = z; }

/// Adds the L floats at p (L 16 or 64) into the lanes.
#define LANES_ADD(l, p, L)                                   \
    do {                                                     \
        (l).a0 += load16(p);                                 \
        if ((L) == 64) {                                     \
            (l).a1 += load16((p) + 16);                      \
            (l).a2 += load16((p) + 32);                      \
            (l).a3 += load16((p) + 48);                      \
        }                                                    \
    } while (0)

/// The lanes added pairwise, as `tree` does.
INLINE float lanes_total(lanes64 *l, const int L) {
    float t[64];
    memcpy(t, &l->a0, 64);
    if (L == 64) { memcpy(t + 16, &l->a1, 64); memcpy(t + 32, &l->a2, 64); memcpy(t + 48, &l->a3, 64); }
    return tree(t, L);
}

/// The sum of n <= SUM_BLOCK floats in L lanes (a constant where it is inlined: 16 for short runs,
/// where 64 lanes would cost more to add up than to fill, 64 for long ones); the last partial
/// group of L goes into the first lanes.
INLINE float lane_sum(const float *restrict x, long n, const int L) {
    lanes64 l;
    lanes_zero(&l);
    long i = 0;
    for (; i + L <= n; i += L) LANES_ADD(l, x + i, L);
    if (i < n) {
        float t[64] = {0};
        memcpy(t, x + i, (size_t)(n - i) * 4);
        LANES_ADD(l, t, L);
    }
    return lanes_total(&l, L);
}

INLINE float block_sum(const float *restrict x, long n) { return n >= 256 ? lane_sum(x, n, 64) : lane_sum(x, n, 16); }

INLINE double smil_sum_loop(long n, const float *restrict x) {
    double total = 0;
    for (long i = 0; i < n; i += SUM_BLOCK) total += (double)block_sum(x + i, n - i < SUM_BLOCK ? n - i : SUM_BLOCK);
    return total;
}

THREE_COPIES(double, smil_sum, (long n, const float *x), (n, x))

/// out[r] = the sum of row r (rows of `size` contiguous floats), as smil_sum.
INLINE void smil_sum_rows_loop(long rows, long size, const float *restrict x, float *restrict out) {
    for (long r = 0; r < rows; r++) out[r] = (float)smil_sum_loop(size, x + r * size);
}

THREE_COPIES(void, smil_sum_rows, (long rows, long size, const float *x, float *out), (rows, size, x, out))

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

/// The largest (`largest`) or smallest of n >= 1 floats, NaN if any is NaN, in L lanes.
INLINE float lane_extreme(const float *restrict x, long n, int largest, const int L) {
    float lanes[64];
    for (int k = 0; k < L; k++) lanes[k] = x[0];
    long i = 0;
    for (; i + L <= n; i += L)
        for (int k = 0; k < L; k++) {
            float v = x[i + k], m = lanes[k];
            lanes[k] = ((largest ? v > m : v < m) || v != v) ? v : m;
        }
    for (int k = 0; i < n; i++, k++) {
        float v = x[i], m = lanes[k];
        lanes[k] = ((largest ? v > m : v < m) || v != v) ? v : m;
    }
    return tree_extreme(lanes, L, largest);
}

/// The largest (or smallest) of `size` values `ld` apart, for `inner` columns side by side, and
/// the index of its first occurrence; NaN wins over any number (its first occurrence), as in
/// PyTorch.
INLINE void smil_extreme_loop(long size, long inner, long ld, const float *restrict x, int largest,
                              float *restrict best, int64_t *restrict index) {
    if (inner == 1 && ld == 1) {
        // A contiguous row: the extreme in lanes, then where it first occurs.
        float m = size >= 256 ? lane_extreme(x, size, largest, 64) : lane_extreme(x, size, largest, 16);
        long at = 0;
        if (m != m) { while (x[at] == x[at]) at++; }
        else { while (x[at] != m) at++; }
        best[0] = x[at];
        index[0] = at;
        return;
    }
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

/// The largest of n floats (NaN if any is NaN), in L lanes (see lane_sum).
INLINE float lane_max(const float *restrict x, long n, const int L) {
    float lanes[64];
    for (int k = 0; k < L; k++) lanes[k] = -__builtin_inff();
    long i = 0;
    for (; i + L <= n; i += L)
        for (int k = 0; k < L; k++) { float v = x[i + k]; lanes[k] = (v > lanes[k] || v != v) ? v : lanes[k]; }
    for (int k = 0; i < n; i++, k++) { float v = x[i]; lanes[k] = (v > lanes[k] || v != v) ? v : lanes[k]; }
    return tree_extreme(lanes, L, 1);
}

INLINE float row_max(const float *restrict x, long n) { return n >= 256 ? lane_max(x, n, 64) : lane_max(x, n, 16); }

/// The sum of e^(x - mx) over n <= SUM_BLOCK floats in L lanes, each term also stored in y when
/// y is not null (a last partial group padded with e^-inf = 0).
INLINE float lane_exp_sum(const float *restrict x, long n, float mx, float *restrict y, const int L) {
    lanes64 l;
    lanes_zero(&l);
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        v16f e = EXP16(load16(x + i) - mx);
        if (y) memcpy(y + i, &e, 64);
        switch (L == 64 ? (i >> 4) & 3 : 0) {
        case 0: l.a0 += e; break;
        case 1: l.a1 += e; break;
        case 2: l.a2 += e; break;
        default: l.a3 += e; break;
        }
    }
    if (i < n) {
        float t[16];
        for (int k = 0; k < 16; k++) t[k] = -__builtin_inff();
        memcpy(t, x + i, (size_t)(n - i) * 4);
        v16f e = EXP16(load16(t) - mx);
        if (y) memcpy(y + i, &e, (size_t)(n - i) * 4);
        switch (L == 64 ? (i >> 4) & 3 : 0) {
        case 0: l.a0 += e; break;
        case 1: l.a1 += e; break;
        case 2: l.a2 += e; break;
        default: l.a3 += e; break;
        }
    }
    return lanes_total(&l, L);
}

/// The sum of e^(x - mx) over a row of n floats (stored in y too when y is not null), in blocks.
INLINE double row_exp_sum(const float *restrict x, long n, float mx, float *restrict y) {
    double total = 0;
    for (long s0 = 0; s0 < n; s0 += SUM_BLOCK) {
        long m = n - s0 < SUM_BLOCK ? n - s0 : SUM_BLOCK;
        total += (double)(m >= 256 ? lane_exp_sum(x + s0, m, mx, y ? y + s0 : 0, 64) : lane_exp_sum(x + s0, m, mx, y ? y + s0 : 0, 16));
    }
    return total;
}

/// m + log(sum e^(x - m)) of each row of `size` contiguous floats (m the row's maximum).
INLINE void smil_logsumexp_rows_loop(long rows, long size, const float *restrict x, float *restrict out) {
    for (long r = 0; r < rows; r++) {
        const float *row = x + r * size;
        float mx = row_max(row, size);
        double total = row_exp_sum(row, size, mx, 0);
        out[r] = mx + logf((float)total);
    }
}

THREE_COPIES(void, smil_logsumexp_rows, (long rows, long size, const float *x, float *out), (rows, size, x, out))

/// y = e^(x - shift[r]) for each row r of `size` floats (softmax from a row's logsumexp).
INLINE void smil_exp_shifted_rows_loop(long rows, long size, const float *restrict x, const float *restrict shift, float *restrict y) {
    for (long r = 0; r < rows; r++) {
        const float s = shift[r];
        for (long i = 0; i < size; i++) y[r * size + i] = exp_poly(x[r * size + i] - s);
    }
}

THREE_COPIES(void, smil_exp_shifted_rows, (long rows, long size, const float *x, const float *shift, float *y), (rows, size, x, shift, y))

/// Softmax (or log-softmax) of `size` values `ld` apart, for `inner` such columns side by side
/// (a block [size, inner] of rows `ld` long): the maximum, e^(x - max) and its sum, then the
/// products with the sum's reciprocal (x - max - log(sum) for log-softmax), all in float as
/// PyTorch's kernels compute them, the sum in double. `m` and `z` are scratch of `inner` each.
INLINE void smil_softmax_loop(long size, long inner, long ld, const float *restrict x, float *restrict y, int logarithm,
                              float *restrict m, double *restrict z) {
    if (inner == 1) {
        // One contiguous row: its maximum, e^(x - max) and their sum in blocks (as smil_sum).
        float mx = row_max(x, size);
        double total = row_exp_sum(x, size, mx, logarithm ? 0 : y);
        if (logarithm) {
            float shift = mx + logf((float)total);
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

/// The sum of g (times y, when y is not null) over n <= SUM_BLOCK floats, in L lanes.
INLINE float lane_dot(const float *restrict g, const float *restrict y, long n, const int L) {
    if (!y) return lane_sum(g, n, L);
    lanes64 l;
    lanes_zero(&l);
    for (long i = 0; i < n; i += L) {
        long m = n - i < L ? n - i : L;
        float p[64] = {0};
        if (m == L) { for (int k = 0; k < L; k++) p[k] = g[i + k] * y[i + k]; }
        else { for (long k = 0; k < m; k++) p[k] = g[i + k] * y[i + k]; }
        LANES_ADD(l, p, L);
    }
    return lanes_total(&l, L);
}

/// The gradient of softmax (dx = y (g - sum(g y))) or log-softmax (dx = g - e^y sum(g)) over `size`
/// rows `ld` apart, for `inner` columns, from the output y and its gradient g. `z` is scratch of
/// `inner` doubles.
INLINE void smil_softmax_backward_loop(long size, long inner, long ld, const float *restrict y, const float *restrict g, float *restrict dx,
                                       int logarithm, double *restrict z) {
    if (inner == 1) {
        double total = 0;
        for (long s0 = 0; s0 < size; s0 += SUM_BLOCK) {
            long n = size - s0 < SUM_BLOCK ? size - s0 : SUM_BLOCK;
            const float *ys = logarithm ? 0 : y + s0;
            total += (double)(n >= 256 ? lane_dot(g + s0, ys, n, 64) : lane_dot(g + s0, ys, n, 16));
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

// MARK: Sorting

/// A float's sort key: larger floats give larger keys; -0 and +0 the same key; every NaN the
/// largest key (NaN sorts last ascending, first descending, as in PyTorch).
static inline uint32_t sort_key(float v) {
    if (v != v) return 0xFFFFFFFFu;
    if (v == 0) v = 0;
    uint32_t b;
    memcpy(&b, &v, 4);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

/// Sorts a[0..<n] ascending, b as scratch of n; the result is in a.
static void merge_sort(uint64_t *restrict a, uint64_t *restrict b, long n) {
    // Runs of 16 by insertion, then bottom-up merges (ping-ponging between a and b).
    for (long s = 0; s < n; s += 16) {
        long e = s + 16 < n ? s + 16 : n;
        for (long i = s + 1; i < e; i++) {
            uint64_t v = a[i];
            long j = i - 1;
            while (j >= s && a[j] > v) { a[j + 1] = a[j]; j--; }
            a[j + 1] = v;
        }
    }
    uint64_t *src = a, *dst = b;
    for (long width = 16; width < n; width *= 2) {
        for (long s = 0; s < n; s += 2 * width) {
            long m = s + width < n ? s + width : n, e = s + 2 * width < n ? s + 2 * width : n;
            long i = s, j = m, k = s;
            while (i < m && j < e) dst[k++] = src[i] <= src[j] ? src[i++] : src[j++];
            while (i < m) dst[k++] = src[i++];
            while (j < e) dst[k++] = src[j++];
        }
        uint64_t *t = src; src = dst; dst = t;
    }
    if (src != a) memcpy(a, src, (size_t)n * 8);
}

void smil_sort_rows(long first, long rows, long size, long inner, const float *x, int descending, long k, float *values, int64_t *indices,
                    uint64_t *scratch) {
    uint64_t *keys = scratch, *tmp = scratch + size;
    if (k <= 0) return;
    for (long r = first; r < first + rows; r++) {
        long o = r / inner, j = r % inner;
        const float *base = x + o * size * inner + j;
        for (long s = 0; s < size; s++) {
            uint32_t key = sort_key(base[s * inner]);
            if (descending) key = ~key;
            keys[s] = ((uint64_t)key << 32) | (uint64_t)s;
        }
        if (k < size && k <= 16) {
            // The k smallest keys by insertion into a sorted prefix.
            long have = 0;
            for (long s = 0; s < size; s++) {
                uint64_t v = keys[s];
                if (have == k && v >= keys[k - 1]) continue;
                long p = have < k ? have++ : k - 1;
                while (p > 0 && keys[p - 1] > v) { keys[p] = keys[p - 1]; p--; }
                keys[p] = v;
            }
        } else {
            merge_sort(keys, tmp, size);
        }
        float *vout = values + o * k * inner + j;
        int64_t *iout = indices + o * k * inner + j;
        for (long t = 0; t < k; t++) {
            long s = (long)(keys[t] & 0xFFFFFFFFu);
            vout[t * inner] = base[s * inner];
            iout[t * inner] = s;
        }
    }
}
