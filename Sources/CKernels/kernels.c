// kernels.c: see include/kernels.h. Compiled without floating-point contraction, so each element
// goes through exactly the operations, in the order, that PyTorch's loop uses.

#include "kernels.h"
#include <math.h>

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
        w[j] -= step_size * (m[j] / (sqrtf(v[j]) / bc2_sqrt + eps));
    }
}

void smil_gather_strided(float *restrict dst, const float *restrict src, int n, int step) {
    if (step == 2) {
        for (int i = 0; i < n; i++) dst[i] = src[2 * i];
        return;
    }
    for (int i = 0; i < n; i++) dst[i] = src[(long)i * step];
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
