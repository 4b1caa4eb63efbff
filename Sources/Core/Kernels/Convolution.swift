// Convolution.swift: 2-D convolution (cross-correlation) forward and backward over NCHW buffers:
// a direct GEMM for 1x1 stride-1 convolutions, Winograd for 3x3 stride-1 (Winograd.swift), the
// windowed row kernel for small patches (WindowedConvolution.swift: the stem, the downsample),
// and otherwise im2col + GEMM over bands of output rows whose columns stay in cache; a plain loop
// as the oracle.

import CKernels


/// How many positions a window of `kernel` cells (spread by `dilation`) takes sliding by `stride`
/// over `size` cells padded by `padding` on both sides: PyTorch's
/// floor((size + 2 padding - dilation (kernel - 1) - 1) / stride) + 1, rounding down also when the
/// window is larger than the padded input (then it is 0 or less, which callers report).
@inlinable public func slidingOutputSize(_ size: Int, kernel: Int, stride: Int, padding: Int, dilation: Int = 1) -> Int {
    let span = size + 2 * padding - dilation * (kernel - 1) - 1
    return (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1
}

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

    public var outHeight: Int { slidingOutputSize(height, kernel: kernelH, stride: stride, padding: padding, dilation: dilation) }
    public var outWidth: Int { slidingOutputSize(width, kernel: kernelW, stride: stride, padding: padding, dilation: dilation) }
    var outPlane: Int { outHeight * outWidth }
    var inPlane: Int { height * width }
    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    var patch: Int { inChannels * kernelH * kernelW }
    /// A 1x1, stride-1, unpadded convolution is a plain GEMM over each image.
    var isPointwise: Bool { kernelH == 1 && kernelW == 1 && stride == 1 && padding == 0 }
    /// A 1x1 strided unpadded convolution (ResNet's downsample) is a GEMM over the subsampled image.
    var isStridedPointwise: Bool { kernelH == 1 && kernelW == 1 && stride > 1 && padding == 0 }
    /// The same convolution over the subsampled input: 1x1, stride 1.
    var subsampled: ConvGeometry {
        ConvGeometry(batch: batch, inChannels: inChannels, height: outHeight, width: outWidth, outChannels: outChannels,
                     kernelH: 1, kernelW: 1)
    }
    /// FLOPs of the forward pass (2 per multiply-add).
    public var flops: Double { 2 * Double(batch) * Double(outChannels) * Double(outPlane) * Double(patch) }

    /// Output rows per im2col tile: about 128 K floats of columns, so that a tile's columns stay
    /// in the L2 cache between im2col writing them and the GEMM reading them (a whole image's
    /// columns, 38 MB for ResNet's stem at 512 x 512, went to memory and back), and at least 256
    /// output pixels so that the GEMM stays wide.
    var tileRows: Int { rowsFor(columns: max(256, (1 << 17) / max(1, patch))) }

    func rowsFor(columns: Int) -> Int { max(1, min(outHeight, columns / max(1, outWidth))) }
    func tileCount(rows: Int) -> Int { batch * ((outHeight + rows - 1) / rows) }
    /// The image and output rows of tile `t` when tiles are `rows` output rows.
    func tile(_ t: Int, rows: Int) -> (image: Int, rows: Range<Int>) {
        let perImage = (outHeight + rows - 1) / rows
        let image = t / perImage, y0 = (t % perImage) * rows
        return (image, y0..<min(outHeight, y0 + rows))
    }
}

/// What one im2col row reads: a plane of `rows x cols` floats, in which output pixel (y, x) reads
/// row `y * yStep + yOffset`, column `x * xStep + xOffset`, or zero outside the plane.
struct ConvWindow {
    var plane: UnsafeMutablePointer<Float>
    var rows, cols, yStep, yOffset, xStep, xOffset: Int

    /// Output columns `lo..<hi` of a row of `width` read inside the plane; the rest are zero.
    @inline(__always) func columns(_ width: Int) -> (lo: Int, hi: Int) {
        let lo = min(width, xOffset >= 0 ? 0 : (-xOffset + xStep - 1) / xStep)
        let hi = max(lo, min(width, cols - xOffset <= 0 ? 0 : (cols - 1 - xOffset) / xStep + 1))
        return (lo, hi)
    }
}

/// Where im2col reads: the input itself, or — for a strided convolution without dilation — the
/// input split into stride x stride phase planes (rows and columns of the same parity), where
/// every kernel offset reads a contiguous window: im2col becomes row copies instead of strided
/// gathers (49 gathers of every input pixel for ResNet's 7x7 stem), and col2im row additions.
struct ConvSource {
    let g: ConvGeometry
    let data: UnsafeMutablePointer<Float>
    let phased: Bool
    /// Rows and columns of each phase plane (rows past the image are zero).
    let phaseRows, phaseCols: Int

    /// Strided, undilated and larger than 1x1 (a strided 1x1 reads one phase plane of the s x s,
    /// which splitting would copy all of).
    static func usesPhases(_ g: ConvGeometry) -> Bool { g.stride > 1 && g.dilation == 1 && g.kernelH * g.kernelW > 1 }

    init(_ g: ConvGeometry, data: UnsafeMutablePointer<Float>, phased: Bool) {
        self.g = g
        self.data = data
        self.phased = phased
        phaseRows = (g.height + g.stride - 1) / g.stride
        phaseCols = (g.width + g.stride - 1) / g.stride
    }

    /// Floats of a phase-split batch.
    static func phasedCount(_ g: ConvGeometry) -> Int {
        let s = g.stride
        return g.batch * g.inChannels * s * s * ((g.height + s - 1) / s) * ((g.width + s - 1) / s)
    }

    /// The window of input channel `c`, kernel offset (ki, kj), in image `n`.
    @inline(__always) func window(image n: Int, channel c: Int, ki: Int, kj: Int) -> ConvWindow {
        let s = g.stride
        if !phased {
            return ConvWindow(plane: data + (n * g.inChannels + c) * g.inPlane, rows: g.height, cols: g.width,
                              yStep: s, yOffset: ki * g.dilation - g.padding, xStep: s, xOffset: kj * g.dilation - g.padding)
        }
        // Input row y * s + ki - padding = s * (y + qy) + ry with 0 <= ry < s.
        let dy = ki - g.padding, dx = kj - g.padding
        let qy = dy >= 0 ? dy / s : -((-dy + s - 1) / s), qx = dx >= 0 ? dx / s : -((-dx + s - 1) / s)
        let ry = dy - s * qy, rx = dx - s * qx
        let size = phaseRows * phaseCols
        let plane = data + ((n * g.inChannels + c) * s * s + ry * s + rx) * size
        return ConvWindow(plane: plane, rows: phaseRows, cols: phaseCols, yStep: 1, yOffset: qy, xStep: 1, xOffset: qx)
    }

    /// Splits `input` into phase planes in `data`.
    func split(_ input: UnsafePointer<Float>) {
        let s = g.stride, size = phaseRows * phaseCols
        Parallel.forEach(g.batch * g.inChannels) { plane in
            let src = input + plane * g.inPlane
            for ry in 0..<s {
                for rx in 0..<s {
                    let dst = data + (plane * s * s + ry * s + rx) * size
                    for j in 0..<phaseRows {
                        let iy = j * s + ry, d = dst + j * phaseCols
                        if iy >= g.height { d.update(repeating: 0, count: phaseCols); continue }
                        let row = src + iy * g.width
                        for i in 0..<phaseCols {
                            let ix = i * s + rx
                            d[i] = ix < g.width ? row[ix] : 0
                        }
                    }
                }
            }
        }
    }

    /// Writes (or, with `accumulate`, adds) the phase planes in `data` back to image layout in
    /// `output` (each input pixel is in exactly one phase plane).
    func merge(into output: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        let s = g.stride, size = phaseRows * phaseCols
        Parallel.forEach(g.batch * g.inChannels) { plane in
            let dst = output + plane * g.inPlane
            for ry in 0..<s {
                for rx in 0..<s {
                    let src = data + (plane * s * s + ry * s + rx) * size
                    for j in 0..<phaseRows {
                        let iy = j * s + ry
                        if iy >= g.height { break }
                        let row = dst + iy * g.width, sr = src + j * phaseCols
                        var ix = rx, i = 0
                        if accumulate {
                            while ix < g.width { row[ix] += sr[i]; ix += s; i += 1 }
                        } else {
                            while ix < g.width { row[ix] = sr[i]; ix += s; i += 1 }
                        }
                    }
                }
            }
        }
    }
}

/// Writes the im2col columns of output rows `rows` of image `n` into `col`, laid out
/// `[patch, rows.count * outWidth]` (row = input channel and kernel offset, column = output pixel).
func im2colTile(_ source: ConvSource, _ col: UnsafeMutablePointer<Float>, image n: Int, rows: Range<Int>) {
    let g = source.g
    let ow = g.outWidth, width = rows.count * ow
    let kk = g.kernelH * g.kernelW
    for row in 0..<g.patch {
        let c = row / kk, ki = (row % kk) / g.kernelW, kj = row % g.kernelW
        let w = source.window(image: n, channel: c, ki: ki, kj: kj)
        let dst = col + row * width
        let (lo, hi) = w.columns(ow)
        for y in rows {
            let iy = y * w.yStep + w.yOffset
            let d = dst + (y - rows.lowerBound) * ow
            if iy < 0 || iy >= w.rows {
                d.update(repeating: 0, count: ow)
                continue
            }
            let srow = w.plane + iy * w.cols
            if lo > 0 { d.update(repeating: 0, count: lo) }
            if w.xStep == 1 {
                if hi > lo { (d + lo).update(from: srow + w.xOffset + lo, count: hi - lo) }
            } else {
                var ix = w.xOffset + lo * w.xStep
                for x in lo..<hi { d[x] = srow[ix]; ix += w.xStep }
            }
            if hi < ow { (d + hi).update(repeating: 0, count: ow - hi) }
        }
    }
}

/// Adds a tile's columns (laid out as `im2colTile` writes them) back into the gradient laid out
/// as `target` (the input gradient, or its phase planes), for input channel `c` only.
func col2imTile(_ col: UnsafePointer<Float>, _ target: ConvSource, image n: Int, rows: Range<Int>, channel c: Int) {
    let g = target.g
    let ow = g.outWidth, width = rows.count * ow
    let kk = g.kernelH * g.kernelW
    for r in 0..<kk {
        let w = target.window(image: n, channel: c, ki: r / g.kernelW, kj: r % g.kernelW)
        let src = col + (c * kk + r) * width
        let (lo, hi) = w.columns(ow)
        guard hi > lo else { continue }
        for y in rows {
            let iy = y * w.yStep + w.yOffset
            if iy < 0 || iy >= w.rows { continue }
            let drow = w.plane + iy * w.cols, srow = src + (y - rows.lowerBound) * ow
            if w.xStep == 1 {
                let d = drow + w.xOffset
                for x in lo..<hi { d[x] += srow[x] }
            } else {
                var ix = w.xOffset + lo * w.xStep
                for x in lo..<hi { drow[ix] += srow[x]; ix += w.xStep }
            }
        }
    }
}

/// Input pixels (y * stride, x * stride) of every plane, as `[N, C, outHeight, outWidth]`.
func subsample(_ input: UnsafePointer<Float>, into sub: UnsafeMutablePointer<Float>, _ g: ConvGeometry) {
    let oh = g.outHeight, ow = g.outWidth, s = g.stride
    Parallel.forEach(g.batch * g.inChannels) { plane in
        let src = input + plane * g.inPlane, dst = sub + plane * oh * ow
        for y in 0..<oh { smil_gather_strided(dst + y * ow, src + y * s * g.width, Int32(ow), Int32(s)) }
    }
}

/// The inverse of `subsample` for gradients: the sampled pixels get `sub`, the others zero; each
/// row written once. With `accumulate`, `sub` is added at the sampled pixels and the others are
/// left as they are (only the sampled rows are touched).
func unsubsample(_ sub: UnsafePointer<Float>, into output: UnsafeMutablePointer<Float>, _ g: ConvGeometry,
                 accumulate: Bool = false) {
    let oh = g.outHeight, ow = g.outWidth, s = g.stride
    Parallel.forEach(g.batch * g.inChannels) { plane in
        let dst = output + plane * g.inPlane, src = sub + plane * oh * ow
        if accumulate {
            for y in 0..<oh { smil_add_strided(dst + y * s * g.width, src + y * ow, Int32(ow), Int32(s)) }
            return
        }
        for iy in 0..<g.height {
            let row = dst + iy * g.width
            if iy % s == 0 && iy / s < oh {
                smil_spread_strided(row, Int32(g.width), src + iy / s * ow, Int32(ow), Int32(s))
            } else {
                row.update(repeating: 0, count: g.width)
            }
        }
    }
}

/// The input as im2col reads it: split into phase planes when that applies (the caller frees them).
func makeSource(_ input: UnsafePointer<Float>, _ g: ConvGeometry) -> ConvSource {
    guard ConvSource.usesPhases(g) else { return ConvSource(g, data: UnsafeMutablePointer(mutating: input), phased: false) }
    let source = ConvSource(g, data: .allocate(capacity: ConvSource.phasedCount(g)), phased: true)
    source.split(input)
    return source
}

/// Runs `body(tile, scratch)` for every tile, spread over the threads (claimed one at a time),
/// each thread with its own scratch buffer of `scratch` floats. Each tile's result is the same
/// whichever thread runs it.
func forEachTile(_ g: ConvGeometry, scratch: Int, _ body: (Int, UnsafeMutablePointer<Float>) -> Void) {
    Parallel.forEachClaimed(g.tileCount(rows: g.tileRows)) { _, claim in
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: scratch)
        defer { buffer.deallocate() }
        while let t = claim() { body(t, buffer) }
    }
}

/// Forward convolution: `output[n, o] = bias[o] + sum_c weight[o, c] (*) input[n, c]`.
/// Shapes: input `[N, C, H, W]`, output `[N, O, OH, OW]`, weight `[O, C, KH, KW]`, bias `[O]`.
/// With `keepingSubsample` (where `keepsSubsample(g)`), the input's sampled pixels are also left
/// there, `[N, OH, C, OW]`, for `conv2dBackward`'s `keptSubsample`.
public func conv2dForward(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                          weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, _ g: ConvGeometry,
                          winograd: WinogradWeights? = nil, keepingSubsample: UnsafeMutablePointer<Float>? = nil) {
    precondition(keepingSubsample == nil || keepsSubsample(g), "conv2dForward: \(g) keeps no subsample")
    if winogradApplies(g) {
        let u = winograd ?? WinogradWeights(weight, outChannels: g.outChannels, inChannels: g.inChannels)
        winogradConvolution(input: input, output: output, u: u.pointer, bias: bias, g)
        return
    }
    let plane = g.outPlane, ow = g.outWidth
    if windowedApplies(g) {
        windowedForward(input: input, output: output, weight: weight, g, keepingSubsample: keepingSubsample)
    } else if g.isStridedPointwise {
        let sub = UnsafeMutablePointer<Float>.allocate(capacity: g.batch * g.inChannels * plane)
        defer { sub.deallocate() }
        subsample(input, into: sub, g)
        conv2dForward(input: sub, output: output, weight: weight, bias: bias, g.subsampled)
        return
    } else if g.isPointwise && g.inChannels <= smallKLimit {
        // Few input channels: blocks of pixels, each [O, C] x [C, pixels] on the row kernel.
        let block = 512, blocks = (plane + block - 1) / block
        Parallel.forEach(g.batch * blocks) { t in
            let img = t / blocks, p0 = (t % blocks) * block
            smallKProduct(m: g.outChannels, n: min(block, plane - p0), k: g.inChannels, a: weight, lda: g.inChannels,
                          b: input + img * g.inChannels * g.inPlane + p0, ldb: plane,
                          c: output + img * g.outChannels * plane + p0, ldc: plane)
        }
    } else if g.isPointwise {
        for img in 0..<g.batch {
            gemm(transA: false, transB: false, m: g.outChannels, n: plane, k: g.inChannels, a: weight, lda: g.inChannels,
                 b: input + img * g.inChannels * g.inPlane, ldb: plane, c: output + img * g.outChannels * plane, ldc: plane)
        }
    } else {
        // Per tile: its columns, then [O, patch] x [patch, pixels] straight into the output rows.
        let source = makeSource(input, g)
        defer { if source.phased { source.data.deallocate() } }
        forEachTile(g, scratch: g.patch * g.tileRows * ow) { t, col in
            let (n, rows) = g.tile(t, rows: g.tileRows)
            im2colTile(source, col, image: n, rows: rows)
            let width = rows.count * ow
            let out = output + n * g.outChannels * plane + rows.lowerBound * ow
            if g.patch <= smallKLimit {
                smallKProduct(m: g.outChannels, n: width, k: g.patch, a: weight, lda: g.patch, b: col, ldb: width, c: out, ldc: plane)
            } else {
                sgemmSerial(m: g.outChannels, n: width, k: g.patch, a: weight, lda: g.patch, b: col, ldb: width, c: out, ldc: plane)
            }
        }
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

/// Backward convolution. Writes `gradInput` (if given; or adds to it, with `accumulateInput`),
/// and overwrites `gradWeight` and `gradBias` (if given) with the gradients for the whole batch.
/// `keptSubsample`: what `conv2dForward` kept with `keepingSubsample`, which the weight gradient then
/// reads instead of the input.
public func conv2dBackward(input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                           weight: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>?,
                           gradWeight: UnsafeMutablePointer<Float>?, gradBias: UnsafeMutablePointer<Float>?,
                           _ g: ConvGeometry, winograd: WinogradWeights? = nil, accumulateInput: Bool = false,
                           keptSubsample: UnsafePointer<Float>? = nil) {
    precondition(keptSubsample == nil || keepsSubsample(g), "conv2dBackward: \(g) keeps no subsample")
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
    if windowedApplies(g) {
        windowedBackward(input: input, gradOutput: gradOutput, weight: weight, gradInput: gradInput, gradWeight: gradWeight,
                         g, accumulate: accumulateInput, subsample: keptSubsample)
        return
    }
    if g.isStridedPointwise {
        // As a pointwise convolution of the subsampled input, whose gradient is then spread back
        // to the sampled pixels (the others get zero).
        let count = g.batch * g.inChannels * plane
        let sub = UnsafeMutablePointer<Float>.allocate(capacity: count)
        defer { sub.deallocate() }
        if gradWeight != nil { subsample(input, into: sub, g) }
        let subGrad: UnsafeMutablePointer<Float>? = gradInput == nil ? nil : .allocate(capacity: count)
        defer { subGrad?.deallocate() }
        conv2dBackward(input: sub, gradOutput: gradOutput, weight: weight, gradInput: subGrad, gradWeight: gradWeight,
                       gradBias: nil, g.subsampled)
        if let gi = gradInput, let sg = subGrad { unsubsample(sg, into: gi, g, accumulate: accumulateInput) }
        return
    }
    if g.isPointwise {
        var gradInput = gradInput
        if let gi = gradInput, g.outChannels <= smallKLimit, smil_has_avx2_fma() != 0 {
            // Few output channels: weight^T [C, O] x gradOutput [O, pixels] in blocks of pixels on
            // the row kernel, as the forward's few-input-channel case.
            let wt = transposedMatrices(weight, count: 1, rows: g.outChannels, cols: g.inChannels)
            defer { wt.deallocate() }
            let block = 512, blocks = (plane + block - 1) / block
            Parallel.forEach(g.batch * blocks) { t in
                let img = t / blocks, p0 = (t % blocks) * block
                smallKProduct(m: g.inChannels, n: min(block, plane - p0), k: g.outChannels, a: wt, lda: g.outChannels,
                              b: gradOutput + img * g.outChannels * plane + p0, ldb: plane,
                              c: gi + img * g.inChannels * g.inPlane + p0, ldc: plane, accumulate: accumulateInput)
            }
            gradInput = nil
        }
        for n in 0..<g.batch {
            let x = input + n * g.inChannels * g.inPlane, go = gradOutput + n * g.outChannels * plane
            if let gw = gradWeight {
                gemm(transA: false, transB: true, m: g.outChannels, n: g.inChannels, k: plane, a: go, lda: plane,
                     b: x, ldb: plane, beta: n == 0 ? 0 : 1, c: gw, ldc: g.inChannels)
            }
            if let gi = gradInput {
                gemm(transA: true, transB: false, m: g.inChannels, n: plane, k: g.outChannels, a: weight, lda: g.inChannels,
                     b: go, ldb: plane, beta: accumulateInput ? 1 : 0, c: gi + n * g.inChannels * g.inPlane, ldc: plane)
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
        winogradConvolution(input: gradOutput, output: gi, u: u.pointer, bias: nil, transposed, transposedFlipped: true,
                            accumulate: accumulateInput)
        gradInput = nil
    }
    if let gw = gradWeight { convWeightGradient(input: input, gradOutput: gradOutput, gradWeight: gw, g) }
    if let gi = gradInput { convInputGradient(gradOutput: gradOutput, weight: weight, gradInput: gi, g, accumulate: accumulateInput) }
}

/// Groups of tiles of a weight gradient: each sums its tiles' products into a partial weight
/// gradient of its own; the partials are added in group order.
let weightGradientGroups = 8

/// One tile's turn in `groupedWeightGradient`: add tile `index`'s product into `partial`
/// (overwriting it when `beta` is 0), with the worker's own `scratch`. `next` is the tile the same
/// worker runs after it (nil: none), whose operands it may bring in meanwhile; `turn` counts the
/// tiles the worker ran before (0: nothing was brought in for this one).
struct WeightGradientTile {
    let index: Int
    let next: Int?
    let partial: UnsafeMutablePointer<Float>
    let beta: Float
    let scratch: UnsafeMutablePointer<Float>
    let turn: Int
}

/// A weight gradient of `size` floats summed over `tiles` products. The tiles go in consecutive
/// runs to `weightGradientGroups` groups, each summed in tile order into a partial of its own,
/// and the partials are added in group order: fixed by the shape, so the bits do not depend on
/// the thread count. The workers claim groups one at a time (`Parallel.forEachClaimed`), a worker
/// its next group as it starts its current group's last tile, so that even a group's first tile
/// can have its operands brought in. Each worker has `scratch` floats of its own. (16 or 32
/// groups, for finer shares between the cores, were no faster at the downsample: 24 and 27 of
/// 40 alternating rounds went to 8, the partials' sum costing what the balance saved.)
func groupedWeightGradient(tiles: Int, size: Int, scratch: Int = 0, into gw: UnsafeMutablePointer<Float>,
                           _ product: (WeightGradientTile) -> Void) {
    let groups = max(1, min(weightGradientGroups, tiles))
    let partial = UnsafeMutablePointer<Float>.allocate(capacity: groups * size)
    defer { partial.deallocate() }
    Parallel.forEachClaimed(groups) { _, claim in
        guard var group = claim() else { return }
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(1, scratch))
        defer { buffer.deallocate() }
        var turn = 0
        while true {
            let first = group * tiles / groups, last = (group + 1) * tiles / groups
            var following: Int? = nil
            for t in first..<last {
                var next: Int? = t + 1
                if t + 1 == last {
                    following = claim()
                    next = following.map { $0 * tiles / groups }
                }
                product(WeightGradientTile(index: t, next: next, partial: partial + group * size, beta: t == first ? 0 : 1,
                                           scratch: buffer, turn: turn))
                turn += 1
            }
            guard let following = following else { break }
            group = following
        }
    }
    // The partials added in group order (per element the same sum as a loop over the groups).
    Parallel.forRanges(size, grain: 4096) { r in
        let out = gw + r.lowerBound
        out.update(from: partial + r.lowerBound, count: r.count)
        for group in 1..<groups {
            let p = partial + group * size + r.lowerBound
            for x in 0..<r.count { out[x] += p[x] }
        }
    }
}

/// The weight gradient of an im2col convolution, tile by tile: each tile's columns (about 1 MB)
/// are written and read back by one thread while they are in its cache, and
/// `gradOutput[O, tile] x columns[patch, tile]^T` added into its group's partial sum. (Columns of
/// whole images, 38 MB each for the stem at 512 x 512, went to memory and back: stem fwd+bwd
/// 95-97 -> 85-86 ms, the 64-channel 3x3 layer at 128 x 128 5-10% faster, the 512-channel one at
/// 16 x 16 within 3%, alternating in one process.)
func convWeightGradient(input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                        gradWeight gw: UnsafeMutablePointer<Float>, _ g: ConvGeometry) {
    let plane = g.outPlane, ow = g.outWidth
    let source = makeSource(input, g)
    defer { if source.phased { source.data.deallocate() } }
    let rows = g.rowsFor(columns: max(256, (1 << 18) / max(1, g.patch)))
    let tiles = g.tileCount(rows: rows)
    groupedWeightGradient(tiles: tiles, size: g.outChannels * g.patch, scratch: g.patch * rows * ow, into: gw) { tile in
        let (n, range) = g.tile(tile.index, rows: rows), col = tile.scratch
        let width = range.count * ow
        im2colTile(source, col, image: n, rows: range)
        sgemmSerial(transA: false, transB: true, m: g.outChannels, n: g.patch, k: width,
                    a: gradOutput + n * g.outChannels * plane + range.lowerBound * ow, lda: plane,
                    b: col, ldb: width, beta: tile.beta, c: tile.partial, ldc: g.patch)
    }
}

/// The input gradient of an im2col convolution: per tile, columns = weight^T x gradOutput, added
/// back into the input gradient (which, with `accumulate`, already holds a sum to add to).
func convInputGradient(gradOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                       gradInput gi: UnsafeMutablePointer<Float>, _ g: ConvGeometry, accumulate: Bool = false) {
    let plane = g.outPlane, ow = g.outWidth
    // Tiles overlap in the input, so the products of a few tiles are computed side by side and
    // then added in tile order, split by input channel.
    let tileRows = g.tileRows, tiles = g.tileCount(rows: tileRows), maxWidth = tileRows * ow
    let phased = ConvSource.usesPhases(g)
    let target = ConvSource(g, data: phased ? .allocate(capacity: ConvSource.phasedCount(g)) : gi, phased: phased)
    defer { if phased { target.data.deallocate() } }
    if phased || !accumulate {
        target.data.update(repeating: 0, count: phased ? ConvSource.phasedCount(g) : g.batch * g.inChannels * g.inPlane)
    }
    // With few tiles each tile's GEMM is split over the threads instead; the choice depends on
    // the shape only, so the bits do not depend on the thread count.
    let splitEach = tiles < 4
    let side = splitEach ? 1 : max(1, min(Parallel.threads, tiles)), span = g.patch * maxWidth
    let cols = UnsafeMutablePointer<Float>.allocate(capacity: side * span)
    defer { cols.deallocate() }
    // Few output channels (the stem's 64): weight^T [patch, O] on the row kernel, which reads it
    // where it lies, where sgemm packs both operands for every tile.
    let rowKernel = !splitEach && g.outChannels <= smallKLimit && smil_has_avx2_fma() != 0
    let wt = rowKernel ? transposedMatrices(weight, count: 1, rows: g.outChannels, cols: g.patch) : nil
    defer { wt?.deallocate() }
    var t0 = 0
    while t0 < tiles {
        let count = min(side, tiles - t0)
        if splitEach {
            let (n, rows) = g.tile(t0, rows: tileRows)
            let width = rows.count * ow
            gemm(transA: true, transB: false, m: g.patch, n: width, k: g.outChannels, a: weight, lda: g.patch,
                 b: gradOutput + n * g.outChannels * plane + rows.lowerBound * ow, ldb: plane, c: cols, ldc: width)
        } else {
            Parallel.forEach(count) { i in
                let (n, rows) = g.tile(t0 + i, rows: tileRows)
                let width = rows.count * ow
                if let wt = wt {
                    smallKProduct(m: g.patch, n: width, k: g.outChannels, a: wt, lda: g.outChannels,
                                  b: gradOutput + n * g.outChannels * plane + rows.lowerBound * ow, ldb: plane,
                                  c: cols + i * span, ldc: width)
                    return
                }
                sgemmSerial(transA: true, transB: false, m: g.patch, n: width, k: g.outChannels, a: weight, lda: g.patch,
                       b: gradOutput + n * g.outChannels * plane + rows.lowerBound * ow, ldb: plane,
                       beta: 0, c: cols + i * span, ldc: width)
            }
        }
        Parallel.forEach(g.inChannels) { c in
            for i in 0..<count {
                let (n, rows) = g.tile(t0 + i, rows: tileRows)
                col2imTile(cols + i * span, target, image: n, rows: rows, channel: c)
            }
        }
        t0 += count
    }
    if phased { target.merge(into: gi, accumulate: accumulate) }
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
