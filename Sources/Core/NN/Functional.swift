import CKernels
// Functional.swift: the differentiable layer operations (convolution, batch norm, pooling, linear,
// dropout) as functions of tensors, each with its backward right under its forward.

extension Tensor {
    /// The pixels a strided 1x1 convolution with geometry `g` reads, `[N, C, outHeight, outWidth]`;
    /// the gradient goes back to those pixels (the others get zero).
    func subsampled(_ g: ConvGeometry) -> Tensor {
        let out = Tensor(uninitializedShape: [g.batch, g.inChannels, g.outHeight, g.outWidth])
        subsample(storage.pointer, into: out.storage.pointer, g)
        let shape = self.shape
        return out.recorded("subsample", [self], addingInto: { gout, sums in
            // Into the sum held for the input, if any: then only the sampled pixels are touched.
            let sum = sums.take(0)
            let gi = sum ?? Tensor(uninitializedShape: shape)
            unsubsample(gout.storage.pointer, into: gi.storage.pointer, g, accumulate: sum != nil)
            return [gi]
        })
    }

    /// Checks rank 4 (NCHW) for a layer operation.
    func requireNCHW(_ op: String) throws -> (Int, Int, Int, Int) {
        guard rank == 4 else {
            throw CoreError.shapeMismatch(op: op, "expected a 4-D input [N, C, H, W], got \(shapeString(shape))")
        }
        return (shape[0], shape[1], shape[2], shape[3])
    }
}

/// Namespace for the functional forms of layers (as `torch.nn.functional`).
public enum Functional {
    /// 2-D convolution. `input` `[N, C, H, W]`, `weight` `[O, C, KH, KW]`, `bias` `[O]`.
    public static func conv2d(_ input: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0,
                              dilation: Int = 1) throws -> Tensor {
        let (n, c, h, w) = try input.requireNCHW("conv2d")
        guard weight.rank == 4, weight.shape[1] == c else {
            throw CoreError.shapeMismatch(op: "conv2d", "weight of shape \(shapeString(weight.shape)) expects input with \(weight.rank == 4 ? weight.shape[1] : -1) channels, but got input of shape \(shapeString(input.shape))")
        }
        if let b = bias, b.shape != [weight.shape[0]] {
            throw CoreError.shapeMismatch(op: "conv2d", "bias of shape \(shapeString(b.shape)) does not match \(weight.shape[0]) output channels")
        }
        // Bounded so that the geometry's arithmetic cannot overflow (a real padding is a few pixels).
        guard (1...(1 << 30)).contains(stride), (0...(1 << 30)).contains(padding), (1...(1 << 30)).contains(dilation) else {
            throw CoreError.invalidArgument(op: "conv2d", "stride \(stride), padding \(padding), dilation \(dilation) out of range (stride and dilation from 1, padding from 0, each at most 2^30)")
        }
        let g = ConvGeometry(batch: n, inChannels: c, height: h, width: w, outChannels: weight.shape[0],
                             kernelH: weight.shape[2], kernelW: weight.shape[3], stride: stride, padding: padding, dilation: dilation)
        guard g.outHeight > 0, g.outWidth > 0 else {
            throw CoreError.shapeMismatch(op: "conv2d", "calculated output size (\(g.outHeight) x \(g.outWidth)) is too small for input \(shapeString(input.shape)) and kernel \(weight.shape[2]) x \(weight.shape[3])")
        }
        try Memory.checkAllocation([n, g.outChannels, g.outHeight, g.outWidth], op: "conv2d")
        let needInput = input.requiresGrad, needWeight = weight.requiresGrad, needBias = bias?.requiresGrad ?? false
        let recording = GradMode.isEnabled && (needInput || needWeight || needBias)
        if g.isStridedPointwise && recording && !windowedApplies(g) {
            // A 1x1 convolution of the subsampled input: the graph then keeps the subsampled input
            // (a quarter of it at stride 2) for the weight gradient, where the backward would
            // otherwise subsample the input again. (The windowed route reads the input in place.)
            return try conv2d(input.subsampled(g), weight: weight, bias: bias)
        }
        let out = Tensor(uninitializedShape: [n, g.outChannels, g.outHeight, g.outWidth])
        let x = input.detached(), wt = weight.detached(), b = bias?.detached()
        // The Winograd-domain weight is shared by forward and backward.
        let winograd = winogradApplies(g) ? WinogradWeights(wt.storage.pointer, outChannels: g.outChannels, inChannels: c) : nil
        // The downsample's sampled input pixels, kept for the weight gradient (a quarter of the
        // input, read in order instead of every other pixel of every other row).
        let subsample = recording && needInput && needWeight && keepsSubsample(g)
            ? Tensor(uninitializedShape: [n, g.outHeight, c, g.outWidth]) : nil
        conv2dForward(input: x.storage.pointer, output: out.storage.pointer, weight: wt.storage.pointer,
                      bias: b?.storage.pointer, g, winograd: winograd, keepingSubsample: subsample?.storage.pointer)
        // Its tiles stop being claimed once Ctrl-C is requested: never return the unfinished output.
        try Interrupt.check()
        guard recording else { return out }
        let inputs = bias.map { [input, weight, $0] } ?? [input, weight]
        return out.recorded("conv2d", inputs, addingInto: { gout, sums in
            // The input gradient goes straight into the sum the engine holds for it, if any.
            let sum = needInput ? sums.take(0) : nil
            let gi = needInput ? sum ?? Tensor(uninitializedShape: x.shape) : nil
            let gw = needWeight ? Tensor(uninitializedShape: wt.shape) : nil
            let gb = needBias ? Tensor(uninitializedShape: [g.outChannels]) : nil
            conv2dBackward(input: x.storage.pointer, gradOutput: gout.storage.pointer, weight: wt.storage.pointer,
                           gradInput: gi?.storage.pointer, gradWeight: gw?.storage.pointer,
                           gradBias: gb?.storage.pointer, g, winograd: needInput ? winograd : nil,
                           accumulateInput: sum != nil, keptSubsample: subsample.map { UnsafePointer($0.storage.pointer) })
            return bias == nil ? [gi, gw] : [gi, gw, gb]
        })
    }

    /// Batch normalisation over `[N, C, H, W]`. In training, normalises with batch statistics and
    /// updates `runningMean`/`runningVar` in place (momentum, unbiased variance); in evaluation,
    /// uses them. `relu` fuses the following ReLU.
    public static func batchNorm2d(_ input: Tensor, weight: Tensor?, bias: Tensor?,
                                   runningMean: inout Tensor, runningVar: inout Tensor,
                                   training: Bool, momentum: Float = 0.1, eps: Float = 1e-5, relu: Bool = false) throws -> Tensor {
        let (n, c, h, w) = try input.requireNCHW("batch_norm")
        let plane = h * w
        for (name, t) in [("weight", weight), ("bias", bias), ("running_mean", runningMean), ("running_var", runningVar)] {
            if let t = t, t.shape != [c] {
                throw CoreError.shapeMismatch(op: "batch_norm", "\(name) has shape \(shapeString(t.shape)), expected [\(c)] for input \(shapeString(input.shape))")
            }
        }
        var mean = Tensor(uninitializedShape: [c]), invstd = Tensor(uninitializedShape: [c])
        if training {
            guard n * plane > 1 else {
                throw CoreError.invalidArgument(op: "batch_norm", "expected more than 1 value per channel when training, got input of shape \(shapeString(input.shape))")
            }
            let variance = Tensor(uninitializedShape: [c])
            batchStatistics(input.storage.pointer, batch: n, channels: c, plane: plane,
                            mean: mean.storage.pointer, variance: variance.storage.pointer)
            let unbias = Float(n * plane) / Float(n * plane - 1)
            runningMean.withUnsafeMutableBufferPointer { rm in
                runningVar.withUnsafeMutableBufferPointer { rv in
                    for i in 0..<c {
                        rm[i] = (1 - momentum) * rm[i] + momentum * mean[flat: i]
                        rv[i] = (1 - momentum) * rv[i] + momentum * variance[flat: i] * unbias
                    }
                }
            }
            for i in 0..<c { invstd[flat: i] = 1 / (variance[flat: i] + eps).squareRoot() }
        } else {
            mean = runningMean.detached()
            for i in 0..<c { invstd[flat: i] = 1 / (runningVar[flat: i] + eps).squareRoot() }
        }
        let out = Tensor(uninitializedShape: input.shape)
        let x = input.detached(), wt = weight?.detached(), b = bias?.detached()
        batchNormApply(x.storage.pointer, out.storage.pointer, batch: n, channels: c, plane: plane,
                       mean: mean.storage.pointer, invstd: invstd.storage.pointer,
                       weight: wt?.storage.pointer, bias: b?.storage.pointer, relu: relu)
        let y = relu ? out.detached() : nil
        var inputs = [input]
        if let weight = weight { inputs.append(weight) }
        if let bias = bias { inputs.append(bias) }
        let (needW, needB) = (weight?.requiresGrad ?? false, bias?.requiresGrad ?? false)
        return out.recorded(relu ? "batch_norm_relu" : "batch_norm", inputs) { gout in
            var g = gout
            if let y = y { g = try gout.binary(SMIL_RELU_BACKWARD, y, name: "relu") }
            let gi = Tensor(uninitializedShape: x.shape)
            let gw = Tensor(uninitializedShape: [c]), gb = Tensor(uninitializedShape: [c])
            batchNormBackward(x.storage.pointer, g.storage.pointer, batch: n, channels: c, plane: plane,
                              mean: mean.storage.pointer, invstd: invstd.storage.pointer, weight: wt?.storage.pointer,
                              batchStats: training, gradInput: gi.storage.pointer,
                              gradWeight: gw.storage.pointer, gradBias: gb.storage.pointer)
            var grads: [Tensor?] = [gi]
            if weight != nil { grads.append(needW ? gw : nil) }
            if bias != nil { grads.append(needB ? gb : nil) }
            return grads
        }
    }

    /// Max pooling with a square window (floor mode, -inf padding).
    public static func maxPool2d(_ input: Tensor, kernel: Int, stride: Int? = nil, padding: Int = 0) throws -> Tensor {
        let (n, c, h, w) = try input.requireNCHW("max_pool2d")
        let s = stride ?? kernel
        guard kernel > 0, s > 0, padding >= 0, padding <= kernel / 2 else {
            throw CoreError.invalidArgument(op: "max_pool2d", "kernel \(kernel), stride \(s), padding \(padding): padding should be at most half of the kernel")
        }
        let g = PoolGeometry(height: h, width: w, kernel: kernel, stride: s, padding: padding)
        guard g.outHeight > 0, g.outWidth > 0 else {
            throw CoreError.shapeMismatch(op: "max_pool2d", "output size \(g.outHeight) x \(g.outWidth) is too small for input \(shapeString(input.shape))")
        }
        let out = Tensor(uninitializedShape: [n, c, g.outHeight, g.outWidth])
        guard GradMode.isEnabled && input.requiresGrad else {
            maxPoolForward(input.storage.pointer, out.storage.pointer, argmax: nil, planes: n * c, g)
            return out
        }
        let argmax = UnsafeMutablePointer<Int32>.allocate(capacity: out.count)
        let holder = ArgmaxHolder(argmax)
        maxPoolForward(input.storage.pointer, out.storage.pointer, argmax: argmax, planes: n * c, g)
        let inShape = input.shape
        return out.recorded("max_pool2d", [input]) { gout in
            let gi = Tensor(uninitializedShape: inShape)
            maxPoolBackward(gout.storage.pointer, gi.storage.pointer, argmax: holder.pointer, planes: n * c, g)
            return [gi]
        }
    }

    /// Adaptive average pooling to `outHeight x outWidth` (PyTorch's window bounds).
    public static func adaptiveAvgPool2d(_ input: Tensor, outHeight: Int, outWidth: Int) throws -> Tensor {
        let (n, c, h, w) = try input.requireNCHW("adaptive_avg_pool2d")
        guard outHeight > 0, outWidth > 0 else {
            throw CoreError.invalidArgument(op: "adaptive_avg_pool2d", "output size \(outHeight) x \(outWidth) must be positive")
        }
        try Memory.checkAllocation([n, c, outHeight, outWidth], op: "adaptive_avg_pool2d")
        let out = Tensor(uninitializedShape: [n, c, outHeight, outWidth])
        adaptiveAvgPoolForward(input.storage.pointer, out.storage.pointer, planes: n * c, h: h, w: w, oh: outHeight, ow: outWidth)
        let inShape = input.shape
        return out.recorded("adaptive_avg_pool2d", [input]) { gout in
            let gi = Tensor(uninitializedShape: inShape)
            adaptiveAvgPoolBackward(gout.storage.pointer, gi.storage.pointer, planes: n * c, h: h, w: w, oh: outHeight, ow: outWidth)
            return [gi]
        }
    }

    /// `input @ weight^T + bias`: `input` `[*, in]`, `weight` `[out, in]`, `bias` `[out]`.
    public static func linear(_ input: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
        guard input.rank >= 1, weight.rank == 2, input.shape[input.rank - 1] == weight.shape[1] else {
            throw CoreError.shapeMismatch(op: "linear", "input of shape \(shapeString(input.shape)) does not fit weight of shape \(shapeString(weight.shape)) (expects last dimension \(weight.rank == 2 ? weight.shape[1] : -1))")
        }
        if let b = bias, b.shape != [weight.shape[0]] {
            throw CoreError.shapeMismatch(op: "linear", "bias of shape \(shapeString(b.shape)) does not match \(weight.shape[0]) outputs")
        }
        let inF = weight.shape[1], outF = weight.shape[0]
        // Counted from the leading sizes, not input.count / inF: with no input features the input
        // is empty but the output still has a row (the bias) for every leading index.
        let rows = input.shape.dropLast().reduce(1, *)
        try Memory.checkAllocation(Array(input.shape.dropLast()) + [outF], op: "linear")
        let out = Tensor(uninitializedShape: Array(input.shape.dropLast()) + [outF])
        let x = input.detached(), wt = weight.detached()
        gemm(transA: false, transB: true, m: rows, n: outF, k: inF, a: x.storage.pointer, lda: inF,
             b: wt.storage.pointer, ldb: inF, c: out.storage.pointer, ldc: outF)
        if let b = bias {
            let bp = b.storage.pointer, op = out.storage.pointer
            for r in 0..<rows { for j in 0..<outF { op[r * outF + j] += bp[j] } }
        }
        let inputs = bias.map { [input, weight, $0] } ?? [input, weight]
        // Only the gradients some input needs: features that require none (data, a frozen
        // encoder's output) cost no input-gradient product, a frozen weight no weight product.
        let needInput = input.requiresGrad, needWeight = weight.requiresGrad, needBias = bias?.requiresGrad ?? false
        return out.recorded("linear", inputs) { g in
            var gi: Tensor? = nil, gw: Tensor? = nil
            if needInput {
                let t = Tensor(uninitializedShape: x.shape)
                gemm(transA: false, transB: false, m: rows, n: inF, k: outF, a: g.storage.pointer, lda: outF,
                     b: wt.storage.pointer, ldb: inF, c: t.storage.pointer, ldc: inF)
                gi = t
            }
            if needWeight {
                let t = Tensor(uninitializedShape: wt.shape)
                gemm(transA: true, transB: false, m: outF, n: inF, k: rows, a: g.storage.pointer, lda: outF,
                     b: x.storage.pointer, ldb: inF, c: t.storage.pointer, ldc: inF)
                gw = t
            }
            guard bias != nil else { return [gi, gw] }
            return [gi, gw, needBias ? try g.reshaped([rows, outF]).sum(dims: [0]) : nil]
        }
    }

    /// Zeroes each element with probability `p` and scales the rest by 1/(1-p) (training only).
    public static func dropout(_ input: Tensor, p: Float, training: Bool) throws -> Tensor {
        guard p >= 0 && p <= 1 else { throw CoreError.invalidArgument(op: "dropout", "probability has to be between 0 and 1, but got \(p)") }
        guard training && p > 0 else { return input }
        if p == 1 { return try input.mul(Tensor.zeros(input.shape)) }
        var mask = Tensor(uninitializedShape: input.shape)
        let scale = 1 / (1 - p)
        for i in 0..<mask.count { mask[flat: i] = RandomGenerator.global.nextUniformFloat() < p ? 0 : scale }
        return try input.mul(mask)
    }
}

/// Owns max pooling's argmax indices until the backward closure that needs them is freed.
final class ArgmaxHolder {
    let pointer: UnsafeMutablePointer<Int32>
    init(_ p: UnsafeMutablePointer<Int32>) { pointer = p }
    deinit { pointer.deallocate() }
}
