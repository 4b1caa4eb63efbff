// Normalization.swift: batch normalisation over NCHW buffers, forward and backward, optionally
// fused with the ReLU that follows it in ResNets. Work is split by channel.

import CKernels

/// Per-channel batch statistics: mean and biased variance over N x H x W (double accumulation).
func batchStatistics(_ x: UnsafePointer<Float>, batch: Int, channels: Int, plane: Int,
                     mean: UnsafeMutablePointer<Float>, variance: UnsafeMutablePointer<Float>) {
    Parallel.forEach(channels) { c in
        let p = x + c * plane, stride = channels * plane
        let count = Double(batch * plane)
        let m = smil_channel_sum(p, Int32(batch), stride, plane, 0, 0) / count
        mean[c] = Float(m)
        // Second pass for the variance: exact enough where sum-of-squares cancels badly.
        variance[c] = Float(smil_channel_sum(p, Int32(batch), stride, plane, m, 1) / count)
    }
}

/// `y = (x - mean) * invstd * weight + bias` per channel, then ReLU if `relu`.
func batchNormApply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, channels: Int, plane: Int,
                    mean: UnsafePointer<Float>, invstd: UnsafePointer<Float>,
                    weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?, relu: Bool) {
    Parallel.forEach(batch * channels) { nc in
        let c = nc % channels
        let scale = invstd[c] * (weight?[c] ?? 1)
        let shift = (bias?[c] ?? 0) - mean[c] * scale
        let src = x + nc * plane, dst = y + nc * plane
        if relu {
            for i in 0..<plane { let v = src[i] * scale + shift; dst[i] = v > 0 ? v : 0 }
        } else {
            for i in 0..<plane { dst[i] = src[i] * scale + shift }
        }
    }
}

/// Gradients of batch norm. With `batchStats` the mean and invstd came from this batch (training);
/// otherwise from running statistics (evaluation). Writes `gradInput`, `gradWeight`, `gradBias`.
func batchNormBackward(_ x: UnsafePointer<Float>, _ gradOutput: UnsafePointer<Float>,
                       batch: Int, channels: Int, plane: Int,
                       mean: UnsafePointer<Float>, invstd: UnsafePointer<Float>, weight: UnsafePointer<Float>?,
                       batchStats: Bool, gradInput: UnsafeMutablePointer<Float>?,
                       gradWeight: UnsafeMutablePointer<Float>?, gradBias: UnsafeMutablePointer<Float>?) {
    Parallel.forEach(channels) { c in
        let m = mean[c], inv = invstd[c], w = weight?[c] ?? 1
        var sumG: Double = 0, sumGX: Double = 0
        smil_channel_gradient_sums(gradOutput + c * plane, x + c * plane, Int32(batch), channels * plane, plane, m, &sumG, &sumGX)
        let dBias = sumG, dWeight = sumGX * Double(inv)
        gradBias?[c] = Float(dBias)
        gradWeight?[c] = Float(dWeight)
        guard let gi = gradInput else { return }
        if batchStats {
            // dx = w * invstd / M * (M * g - sum(g) - xhat * sum(g * xhat))
            let count = Double(batch * plane)
            let k1 = Float(Double(w) * Double(inv)), meanG = Float(dBias / count)
            let k2 = Float(dWeight / count) * inv
            for n in 0..<batch {
                let g = gradOutput + (n * channels + c) * plane, xs = x + (n * channels + c) * plane
                let d = gi + (n * channels + c) * plane
                for i in 0..<plane { d[i] = k1 * (g[i] - meanG - (xs[i] - m) * k2) }
            }
        } else {
            let k = w * inv
            for n in 0..<batch {
                let g = gradOutput + (n * channels + c) * plane, d = gi + (n * channels + c) * plane
                for i in 0..<plane { d[i] = k * g[i] }
            }
        }
    }
}
