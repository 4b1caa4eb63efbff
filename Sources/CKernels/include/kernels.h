// kernels.h: small elementwise kernels written in C, where `restrict` lets the compiler vectorise
// loops over several buffers that Swift cannot prove apart.
#ifndef SMIL_KERNELS_H
#define SMIL_KERNELS_H

#include <stddef.h>

/// One Adam / AdamW update of n parameters, as torch.optim.Adam (non-foreach) computes it:
///   w *= 1 - lr * decay                     (decoupled weight decay, AdamW)
///   g' = g + l2 * w                         (L2 into the gradient, Adam)
///   m = b1 * m + (1 - b1) * g'
///   v = b2 * v + (1 - b2) * g' * g'
///   w -= step_size * m / (sqrt(v) / bc2_sqrt + eps)
void smil_adam_update(size_t n, float *restrict w, const float *restrict g, float *restrict m,
                      float *restrict v, float b1, float b2, float eps, float l2, float decay_keep,
                      float step_size, float bc2_sqrt);

#endif
