// Convolution.swift: 2-D convolution (cross-correlation) forward and backward over NCHW buffers,
// by im2col + GEMM, with a direct GEMM for 1x1 stride-1 convolutions and a plain loop as oracle.

/// Geometry of one 2-D convolution: sizes, kernel, stride, padding, dilation.
public struct ConvGeometry: Equatable {
    public var batch, inChannels, height, width: Int
    public var outChannels, kernelH, kernelW: Int
    public var stride, padding, dilation: Int

    public init(batch: Int, inChannels: Int, height: Int, width: Int, outChannels: Int, kernelH: Int, kernelW: Int,
                stride: Int = 1, padding: Int = 0, dilation: Int = 1) {
        (self.batch, self.inChannels, self.height, self.width) = (batch, inChannels, height, width)
        (self.outChannels, self.kernelH, self.kernelW) = (outChannels, kernelH, kernelW)
        (self.stride, self.padding, self.dilation) = (stride, padding, dilation)
    }

    public var outHeight: Int { (height + 2 * padding - dilation * (kernelH - 1) - 1) / stride + 1 }
    public var outWidth: Int { (width + 2 * padding - dilation * (kernelW - 1) - 1) / stride + 1 }
    var outPlane: Int { outHeight * outWidth }
    var inPlane: Int { height * width }
    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    var patch: Int { inChannels * kernelH * kernelW }
    /// A 1x1, stride-1, unpadded convolution is a plain GEMM over each image.
    var isPointwise: Bool { kernelH == 1 && kernelW == 1 && stride == 1 && padding == 0 }
    /// FLOPs of the forward pass (2 per multiply-add).
    public var flops: Double { 2 * Double(batch) * Double(outChannels) * Double(outPlane) * Double(patch) }

    /// Images per im2col chunk: enough to make GEMMs wide, few enough to bound the buffer (64 MB).
    var imagesPerChunk: Int {
        let perImage = max(1, patch * outPlane)
        return max(1, min(batch, (1 << 24) / perImage))
    }
}

/// Writes the im2col matrix of images `n0..<n0+count` into `col`, laid out
/// `[patch, count * outPlane]` (row = channel/kernel offset, column = image then output pixel).
func im2col(_ input: UnsafePointer<Float>, _ col: UnsafeMutablePointer<Float>, _ g: ConvGeometry, n0: Int, count: Int) {
    let oh = g.outHeight, ow = g.outWidth, plane = g.outPlane
    let kk = g.kernelH * g.kernelW
    let rowLength = count * plane
    Parallel.forEach(g.patch) { row in
        let c = row / kk, ki = (row % kk) / g.kernelW, kj = row % g.kernelW
        for img in 0..<count {
            let src = input + ((n0 + img) * g.inChannels + c) * g.inPlane
            let dst = col + row * rowLength + img * plane
            for y in 0..<oh {
                let iy = y * g.stride - g.padding + ki * g.dilation
                let d = dst + y * ow
                if iy < 0 || iy >= g.height {
                    d.update(repeating: 0, count: ow)
                    continue
                }
                let srow = src + iy * g.width
                let x0 = -g.padding + kj * g.dilation
                if g.stride == 1 {
                    // Contiguous run: zero the borders, copy the middle.
                    let lo = max(0, -x0), hi = min(ow, g.width - x0)
                    if lo > 0 { d.update(repeating: 0, count: min(lo, ow)) }
                    if hi > lo { (d + lo).update(from: srow + x0 + lo, count: hi - lo) }
                    if hi < ow { (d + max(hi, 0)).update(repeating: 0, count: ow - max(hi, 0)) }
                } else {
                    // Output columns whose input column x0 + x * stride lies inside the row.
                    let s = g.stride
                    let lo = min(ow, x0 >= 0 ? 0 : (-x0 + s - 1) / s)
                    let hi = max(lo, min(ow, g.width - x0 <= 0 ? 0 : (g.width - 1 - x0) / s + 1))
                    for x in 0..<lo { d[x] = 0 }
                    var ix = x0 + lo * s
                    for x in lo..<hi { d[x] = srow[ix]; ix += s }
                    for x in hi..<ow { d[x] = 0 }
                }
            }
        }
    }
}

/// Adds the columns of `col` (laid out as im2col writes it) back into the input-gradient images.
/// Split by input channel, so no two threads write the same element.
func col2im(_ col: UnsafePointer<Float>, _ gradInput: UnsafeMutablePointer<Float>, _ g: ConvGeometry, n0: Int, count: Int) {
    let oh = g.outHeight, ow = g.outWidth, plane = g.outPlane
    let kk = g.kernelH * g.kernelW
    let rowLength = count * plane
    Parallel.forEach(g.inChannels) { c in
        for img in 0..<count {
            let dst = gradInput + ((n0 + img) * g.inChannels + c) * g.inPlane
            for r in 0..<kk {
                let ki = r / g.kernelW, kj = r % g.kernelW
                let src = col + (c * kk + r) * rowLength + img * plane
                for y in 0..<oh {
                    let iy = y * g.stride - g.padding + ki * g.dilation
                    if iy < 0 || iy >= g.height { continue }
                    let drow = dst + iy * g.width, s = src + y * ow
                    let x0 = -g.padding + kj * g.dilation
                    for x in 0..<ow {
                        let ix = x0 + x * g.stride
                        if ix >= 0 && ix < g.width { drow[ix] += s[x] }
                    }
                }
            }
        }
    }
}

/// Forward convolution: `output[n, o] = bias[o] + sum_c weight[o, c] (*) input[n, c]`.
/// Shapes: input `[N, C, H, W]`, output `[N, O, OH, OW]`, weight `[O, C, KH, KW]`, bias `[O]`.
public func conv2dForward(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                          weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, _ g: ConvGeometry,
                          winograd: WinogradWeights? = nil) {
    if winogradApplies(g) {
        let u = winograd ?? WinogradWeights(weight, outChannels: g.outChannels, inChannels: g.inChannels)
        winogradConvolution(input: input, output: output, u: u.pointer, bias: bias, g)
        return
    }
    let plane = g.outPlane
    let chunk = g.imagesPerChunk
    var colBuffer: UnsafeMutablePointer<Float>? = nil
    var gemmBuffer: UnsafeMutablePointer<Float>? = nil
    defer { colBuffer?.deallocate(); gemmBuffer?.deallocate() }
    var n0 = 0
    while n0 < g.batch {
        let count = min(chunk, g.batch - n0)
        if g.isPointwise {
            for img in n0..<(n0 + count) {
                gemm(transA: false, transB: false, m: g.outChannels, n: plane, k: g.inChannels, a: weight, lda: g.inChannels,
                     b: input + img * g.inChannels * g.inPlane, ldb: plane, c: output + img * g.outChannels * plane, ldc: plane)
            }
        } else {
            if colBuffer == nil { colBuffer = .allocate(capacity: g.patch * chunk * plane) }
            im2col(input, colBuffer!, g, n0: n0, count: count)
            if count == 1 {
                gemm(transA: false, transB: false, m: g.outChannels, n: plane, k: g.patch, a: weight, lda: g.patch,
                     b: colBuffer!, ldb: plane, c: output + n0 * g.outChannels * plane, ldc: plane)
            } else {
                // One wide GEMM over the chunk's images, then reorder [O, img, pixel] -> [img, O, pixel].
                if gemmBuffer == nil { gemmBuffer = .allocate(capacity: g.outChannels * chunk * plane) }
                let tmp = gemmBuffer!
                gemm(transA: false, transB: false, m: g.outChannels, n: count * plane, k: g.patch, a: weight, lda: g.patch,
                     b: colBuffer!, ldb: count * plane, c: tmp, ldc: count * plane)
                Parallel.forEach(count) { img in
                    for o in 0..<g.outChannels {
                        (output + ((n0 + img) * g.outChannels + o) * plane).update(from: tmp + (o * count + img) * plane, count: plane)
                    }
                }
            }
        }
        n0 += count
    }
    if let bias = bias {
        Parallel.forEach(g.batch) { n in
            for o in 0..<g.outChannels {
                let p = output + (n * g.outChannels + o) * plane, b = bias[o]
                for i in 0..<plane { p[i] += b }
            }
        }
    }
}

/// Backward convolution. Writes `gradInput` (if given), and overwrites `gradWeight` and
/// `gradBias` (if given) with the gradients for the whole batch.
public func conv2dBackward(input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                           weight: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>?,
                           gradWeight: UnsafeMutablePointer<Float>?, gradBias: UnsafeMutablePointer<Float>?,
                           _ g: ConvGeometry, winograd: WinogradWeights? = nil) {
    let plane = g.outPlane
    if let gb = gradBias {
        Parallel.forEach(g.outChannels) { o in
            var s: Double = 0
            for n in 0..<g.batch {
                let p = gradOutput + (n * g.outChannels + o) * plane
                for i in 0..<plane { s += Double(p[i]) }
            }
            gb[o] = Float(s)
        }
    }
    if g.isPointwise {
        for n in 0..<g.batch {
            let x = input + n * g.inChannels * g.inPlane, go = gradOutput + n * g.outChannels * plane
            if let gw = gradWeight {
                gemm(transA: false, transB: true, m: g.outChannels, n: g.inChannels, k: plane, a: go, lda: plane,
                     b: x, ldb: plane, beta: n == 0 ? 0 : 1, c: gw, ldc: g.inChannels)
            }
            if let gi = gradInput {
                gemm(transA: true, transB: false, m: g.inChannels, n: plane, k: g.outChannels, a: weight, lda: g.inChannels,
                     b: go, ldb: plane, c: gi + n * g.inChannels * g.inPlane, ldc: plane)
            }
        }
        return
    }
    var gradInput = gradInput
    if let gi = gradInput, winogradApplies(g) {
        // The input gradient of a 3x3 stride-1 convolution is itself one: over the output
        // gradient, with the kernel flipped and its channels swapped, padded by 2 - padding.
        let u = winograd ?? WinogradWeights(weight, outChannels: g.outChannels, inChannels: g.inChannels)
        let transposed = ConvGeometry(batch: g.batch, inChannels: g.outChannels, height: g.outHeight, width: g.outWidth,
                                      outChannels: g.inChannels, kernelH: 3, kernelW: 3, stride: 1, padding: 2 - g.padding)
        winogradConvolution(input: gradOutput, output: gi, u: u.pointer, bias: nil, transposed, transposedFlipped: true)
        gradInput = nil
    }
    if gradWeight == nil && gradInput == nil { return }
    let chunk = g.imagesPerChunk
    let col = UnsafeMutablePointer<Float>.allocate(capacity: g.patch * chunk * plane)
    defer { col.deallocate() }
    let goChunk: UnsafeMutablePointer<Float>? = chunk > 1 ? .allocate(capacity: g.outChannels * chunk * plane) : nil
    defer { goChunk?.deallocate() }
    if let gi = gradInput { gi.update(repeating: 0, count: g.batch * g.inChannels * g.inPlane) }
    var n0 = 0
    while n0 < g.batch {
        let count = min(chunk, g.batch - n0)
        let width = count * plane
        // The chunk's output gradient as [O, img * pixel], matching the im2col column order.
        let go: UnsafePointer<Float>
        if count == 1 {
            go = gradOutput + n0 * g.outChannels * plane
        } else {
            let buf = goChunk!
            Parallel.forEach(g.outChannels) { o in
                for img in 0..<count {
                    (buf + (o * count + img) * plane).update(from: gradOutput + ((n0 + img) * g.outChannels + o) * plane, count: plane)
                }
            }
            go = UnsafePointer(buf)
        }
        if let gw = gradWeight {
            im2col(input, col, g, n0: n0, count: count)
            gemm(transA: false, transB: true, m: g.outChannels, n: g.patch, k: width, a: go, lda: width,
                 b: col, ldb: width, beta: n0 == 0 ? 0 : 1, c: gw, ldc: g.patch)
        }
        if let gi = gradInput {
            gemm(transA: true, transB: false, m: g.patch, n: width, k: g.outChannels, a: weight, lda: g.patch,
                 b: go, ldb: width, c: col, ldc: width)
            col2im(col, gi, g, n0: n0, count: count)
        }
        n0 += count
    }
}

/// The direct seven-loop convolution; the oracle for tests.
public func referenceConv2d(input: [Float], weight: [Float], bias: [Float]?, _ g: ConvGeometry) -> [Float] {
    var out = [Float](repeating: 0, count: g.batch * g.outChannels * g.outPlane)
    for n in 0..<g.batch { for o in 0..<g.outChannels { for y in 0..<g.outHeight { for x in 0..<g.outWidth {
        var s = Double(bias?[o] ?? 0)
        for c in 0..<g.inChannels { for i in 0..<g.kernelH { for j in 0..<g.kernelW {
            let iy = y * g.stride - g.padding + i * g.dilation, ix = x * g.stride - g.padding + j * g.dilation
            if iy < 0 || iy >= g.height || ix < 0 || ix >= g.width { continue }
            s += Double(input[((n * g.inChannels + c) * g.height + iy) * g.width + ix]) *
                 Double(weight[((o * g.inChannels + c) * g.kernelH + i) * g.kernelW + j])
        } } }
        out[((n * g.outChannels + o) * g.outHeight + y) * g.outWidth + x] = Float(s)
    } } } }
    return out
}
