// WindowedConvolution.swift: convolutions with a small im2col patch (ResNet's 7x7 stem, the
// strided 1x1 downsample) on the AVX2 row kernel, their im2col panels packed straight from the
// input (or its phase planes) a band of output rows at a time and their input-gradient columns
// added straight back into the gradient. No im2col matrix is ever written out: the im2col route
// wrote each tile's columns, copied them again into the kernel's panels, and for the downsample
// also wrote the subsampled input and its gradient out and read them back.

import CKernels

/// Whether `g` takes the windowed route: a patch (input channels times kernel area) small enough
/// for the row kernel, on a processor that has it; 3x3 stride-1 convolutions go to Winograd and
/// unstrided 1x1 ones are plain products already.
func windowedApplies(_ g: ConvGeometry) -> Bool {
    g.patch <= smallKLimit && !g.isPointwise && !winogradApplies(g) && smil_has_avx2_fma() != 0
}

/// The windows of every im2col row of every image, `[batch, patch]`.
func windowTable(_ source: ConvSource) -> [smil_window] {
    let g = source.g, kk = g.kernelH * g.kernelW
    var table: [smil_window] = []
    table.reserveCapacity(g.batch * g.patch)
    for n in 0..<g.batch {
        for row in 0..<g.patch {
            let w = source.window(image: n, channel: row / kk, ki: (row % kk) / g.kernelW, kj: row % g.kernelW)
            let (lo, hi) = w.columns(g.outWidth)
            table.append(smil_window(plane: w.plane, rows: Int32(w.rows), cols: Int32(w.cols), yStep: Int32(w.yStep),
                                     yOffset: Int32(w.yOffset), xStep: Int32(w.xStep), xOffset: Int32(w.xOffset),
                                     lo: Int32(lo), hi: Int32(hi)))
        }
    }
    return table
}

/// Output rows per band: about `columns` output pixels (whole rows, at least one).
func bandRows(_ g: ConvGeometry, columns: Int) -> Int { max(1, min(g.outHeight, columns / g.outWidth)) }

/// `floor(a / b)` for b > 0.
@inline(__always) func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }

/// The input split into stride x stride phase planes with a zero border wide enough that every
/// window a strided, undilated convolution reads lies inside its plane: the row kernel can then
/// read each panel row where it lies (`smil_rows_gemm_bptr`), with nothing packed. (Packing was
/// about a fifth of the stem's forward: 147 runs of 32 floats per chunk of a row.)
struct PaddedPhases {
    let g: ConvGeometry
    let data: UnsafeMutablePointer<Float>
    /// Rows and columns of each padded plane, and floats per image.
    let rows, cols, imageFloats: Int
    /// Per im2col row: where its window reads output pixel (0, 0), from the image's first plane.
    let offsets: [Int]

    /// The border above and left of each plane, and the padded planes' rows and columns.
    static func shape(_ g: ConvGeometry) -> (top: Int, rows: Int, cols: Int) {
        let s = g.stride, pad = g.padding
        // Output row y reads phase row y + q, q = floor((k - padding) / stride) for kernel row k.
        let top = -floorDiv(-pad, s)
        let bottom = floorDiv(g.kernelH - 1 - pad, s), right = floorDiv(g.kernelW - 1 - pad, s)
        return (top, top + max((g.height + s - 1) / s, g.outHeight + bottom), top + max((g.width + s - 1) / s, g.outWidth + right))
    }

    /// Floats of one image's padded planes.
    static func imageFloats(_ g: ConvGeometry) -> Int {
        let (_, rows, cols) = shape(g)
        return g.inChannels * g.stride * g.stride * rows * cols
    }

    init(_ input: UnsafePointer<Float>, _ g: ConvGeometry) {
        self.g = g
        let s = g.stride, pad = g.padding
        let phaseRows = (g.height + s - 1) / s
        let (top, rows, cols) = PaddedPhases.shape(g)
        let left = top
        (self.rows, self.cols) = (rows, cols)
        imageFloats = PaddedPhases.imageFloats(g)
        var offsets: [Int] = []
        for c in 0..<g.inChannels {
            for ki in 0..<g.kernelH {
                for kj in 0..<g.kernelW {
                    let qy = floorDiv(ki - pad, s), qx = floorDiv(kj - pad, s)
                    let plane = c * s * s + (ki - pad - s * qy) * s + (kj - pad - s * qx)
                    offsets.append(plane * rows * cols + (qy + top) * cols + qx + left)
                }
            }
        }
        self.offsets = offsets
        let data = UnsafeMutablePointer<Float>.allocate(capacity: g.batch * imageFloats)
        self.data = data
        Parallel.forEach(g.batch * g.inChannels * s * s) { index in
            // Phase (ry, rx) of input plane `index / (s * s)` (an image's channel).
            let ry = (index % (s * s)) / s, rx = index % s
            let src = input + index / (s * s) * g.inPlane, plane = data + index * rows * cols
            let count = rx < g.width ? (g.width - rx + s - 1) / s : 0
            for j in 0..<rows {
                let row = plane + j * cols, iy = (j - top) * s + ry
                guard j >= top, j - top < phaseRows, iy < g.height else {
                    row.update(repeating: 0, count: cols)
                    continue
                }
                row.update(repeating: 0, count: left)
                smil_gather_strided(row + left, src + iy * g.width + rx, Int32(count), Int32(s))
                (row + left + count).update(repeating: 0, count: cols - left - count)
            }
        }
    }

    func deallocate() { data.deallocate() }
}

/// Forward of a strided convolution whose output rows are whole vectors (the stem): per output row
/// and chunk of columns, `weight [O, patch] x panel` with the panel's rows read from padded phase
/// planes where they lie. One image at a time, so that the planes are one image's (3 MB for the
/// stem at 512 x 512, where a batch of 10 would need 32 MB more at once).
func paddedPhasesForward(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>,
                         _ g: ConvGeometry) {
    var one = g
    one.batch = 1
    let oh = g.outHeight, ow = g.outWidth, plane = g.outPlane, patch = g.patch, o = g.outChannels
    let chunk = smallKChunk(patch)
    for n in 0..<g.batch {
        let phases = PaddedPhases(input + n * g.inChannels * g.inPlane, one)
        defer { phases.deallocate() }
        phases.offsets.withUnsafeBufferPointer { offsets in
            Parallel.forEach(oh) { y in
                let base = UnsafePointer(phases.data + y * phases.cols)
                withUnsafeTemporaryAllocation(of: UnsafePointer<Float>?.self, capacity: patch) { rows in
                    for p in 0..<patch { rows[p] = base + offsets[p] }
                    let out = output + n * o * plane + y * ow
                    var x0 = 0
                    while x0 < ow {
                        let w = min(chunk, ow - x0)
                        _ = smil_rows_gemm_bptr(Int32(o), Int32(w), Int32(patch), weight, Int32(patch), rows.baseAddress!, x0,
                                                out + x0, Int32(plane))
                        x0 += w
                    }
                }
            }
        }
    }
}

/// Forward: per band of output rows, its panel `[patch, pixels]` packed from the input in chunks,
/// and `weight [O, patch] x chunk` written into the output rows.
func windowedForward(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>,
                     _ g: ConvGeometry, keepingSubsample: UnsafeMutablePointer<Float>? = nil) {
    if ConvSource.usesPhases(g) && g.outWidth % 16 == 0 {
        paddedPhasesForward(input: input, output: output, weight: weight, g)
        return
    }
    if InputGradientTarget.addsOnStores(g) {
        stridedPointwiseForward(input: input, output: output, weight: weight, g, keeping: keepingSubsample)
        return
    }
    let source = makeSource(input, g)
    defer { if source.phased { source.data.deallocate() } }
    let table = windowTable(source)
    let oh = g.outHeight, ow = g.outWidth, plane = g.outPlane, patch = g.patch, o = g.outChannels
    // Bands whose panel is about 64 KB (one row for the stem, four for the downsample: 3-5% faster
    // than 512 pixels for the downsample, alternating in one process; the stem within noise).
    let rows = bandRows(g, columns: (1 << 14) / patch), bands = (oh + rows - 1) / rows
    table.withUnsafeBufferPointer { windows in
        Parallel.forEach(g.batch * bands) { t in
            let n = t / bands, y0 = (t % bands) * rows, r = min(rows, oh - y0), columns = r * ow
            let chunk = smallKChunk(patch)
            let panel = UnsafeMutablePointer<Float>.allocate(capacity: patch * columns)
            defer { panel.deallocate() }
            smil_pack_band(panel, Int32(chunk), windows.baseAddress! + n * patch, Int32(patch), Int32(y0), Int32(r), Int32(ow))
            let out = output + n * o * plane + y0 * ow
            for c in 0..<((columns + chunk - 1) / chunk) {
                panelProduct(m: o, n: min(chunk, columns - c * chunk), k: patch, a: weight, lda: patch,
                             panel: panel + c * patch * chunk, c: out + c * chunk, ldc: plane)
            }
        }
    }
}

/// Whether `conv2dForward` can keep the sampled input pixels of `g` for its backward: the strided
/// 1x1 whose gradients `stridedPointwiseBackward` takes.
public func keepsSubsample(_ g: ConvGeometry) -> Bool {
    windowedApplies(g) && InputGradientTarget.addsOnStores(g) && g.outChannels % 16 == 0
}

/// Forward of the strided 1x1 (ResNet's downsample) whose output rows are whole vectors: per band
/// of output rows, `weight [O, C] x` each row's even input floats, the panel of the worker's next
/// band packed by the row kernel between its blocks (`smil_rows_gemm_side`), so that its input
/// rows come in from memory while this band's multiply-adds run, and the next block's output
/// lines are asked for a block ahead. The workers claim bands one at a time, each its next band
/// as it starts the current one (`Parallel.forEachClaimed`: every `workers`-th band each left the
/// faster core idle for up to a third of the forward); each output element is the same chain of
/// multiply-adds as on any route. (2 x 64 x 128 x 128 -> 128
/// channels: 10% less time than packing each band before its products, 89 of 100 alternating
/// rounds.) With `keeping`, the panels are packed into the kept subsample, `[N, OH, C, OW]`
/// (each output row's C x OW block), for `stridedPointwiseBackward`, instead of the two buffers.
func stridedPointwiseForward(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                             weight: UnsafePointer<Float>, _ g: ConvGeometry, keeping subsample: UnsafeMutablePointer<Float>? = nil) {
    let oh = g.outHeight, ow = g.outWidth, plane = g.outPlane, c = g.inChannels, o = g.outChannels
    // Bands of about 256 output pixels (a 64 KB panel at 64 input channels).
    let rows = bandRows(g, columns: max(ow, (1 << 14) / c)), bands = (oh + rows - 1) / rows, tiles = g.batch * bands
    // Band t's panel: row q's C x ow floats at q * C * ow, channel p's at p * ow within it.
    func panelCopy(_ t: Int, into panel: UnsafeMutablePointer<Float>) -> smil_side_copy {
        let n = t / bands, y0 = (t % bands) * rows, r = min(rows, oh - y0)
        return smil_side_copy(src: input + n * c * g.inPlane + 2 * y0 * g.width, srcOuter: g.inPlane, srcInner: 2 * g.width,
                              dst: panel, dstOuter: ow, dstInner: c * ow, runs: Int32(c * r), inners: Int32(r),
                              count: Int32(ow), step: 2, ahead: 8, done: 0)
    }
    Parallel.forEachClaimed(tiles) { _, claim in
        guard var t = claim() else { return }
        let buffers = subsample == nil ? UnsafeMutablePointer<Float>.allocate(capacity: 2 * rows * c * ow) : nil
        defer { buffers?.deallocate() }
        // Band t's panel: in the kept subsample, or in one of the worker's two buffers in turn.
        func panel(_ t: Int, turn: Int) -> UnsafeMutablePointer<Float> {
            guard let subsample = subsample else { return buffers! + (turn % 2) * rows * c * ow }
            return subsample + (t / bands * oh + t % bands * rows) * c * ow
        }
        var first = panelCopy(t, into: panel(t, turn: 0))
        smil_side_copy_some(&first, first.runs)
        var turn = 0
        while true {
            let n = t / bands, y0 = (t % bands) * rows, r = min(rows, oh - y0)
            let current = panel(t, turn: turn)
            // The worker's next band, claimed now so that its panel comes in during this one's products.
            let following = claim()
            var next = following.map { panelCopy($0, into: panel($0, turn: turn + 1)) } ?? first
            let out = output + n * o * plane + y0 * ow
            withUnsafeMutablePointer(to: &next) { side in
                for q in 0..<r {
                    _ = smil_rows_gemm_side(Int32(o), Int32(ow), Int32(c), weight, Int32(c), current + q * c * ow, Int32(ow),
                                            out + q * ow, Int32(plane), 0, following != nil ? side : nil, 1)
                }
                if following != nil { smil_side_copy_some(side, side.pointee.runs) }
            }
            guard let following = following else { break }
            t = following
            turn += 1
        }
    }
}

/// Whether neighbouring output rows read input rows in common (a kernel taller than its stride).
func windowedRowsOverlap(_ g: ConvGeometry) -> Bool { (g.kernelH - 1) * g.dilation + 1 > g.stride }

/// Backward of the windowed route. Where output rows read disjoint input rows (the strided 1x1),
/// both gradients are taken in one pass over the output gradient, band by band, so that it is read
/// from memory once.
func windowedBackward(input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                      gradInput gi: UnsafeMutablePointer<Float>?, gradWeight gw: UnsafeMutablePointer<Float>?,
                      _ g: ConvGeometry, accumulate: Bool, subsample: UnsafePointer<Float>? = nil) {
    let fused = gi != nil && !windowedRowsOverlap(g)
    if let gw = gw {
        windowedWeightGradient(input: input, gradOutput: gradOutput, gradWeight: gw, g,
                               alsoInputGradient: fused ? (gi!, weight, accumulate) : nil, subsample: subsample)
        if fused { return }
    }
    if let gi = gi { windowedInputGradient(gradOutput: gradOutput, weight: weight, gradInput: gi, g, accumulate: accumulate) }
}

/// `count` rows of `columns` floats, `apart` floats apart at `src`, copied one after another.
func copyRows(_ src: UnsafePointer<Float>, count: Int, apart: Int, columns: Int, into dst: UnsafeMutablePointer<Float>) {
    for q in 0..<count { (dst + q * columns).update(from: src + q * apart, count: columns) }
}

/// Where the input gradient's columns are added: the gradient itself, zeroed first unless it
/// holds a sum to add to. Windows of a strided kernel add into every other pixel there (phase
/// planes, zeroed, added into and merged back, were 5-14% slower for the stem's input gradient,
/// alternating in one process; reading, the forward and weight gradient still go through them).
struct InputGradientTarget {
    let g: ConvGeometry
    let gi: UnsafeMutablePointer<Float>
    let windows: [smil_window]
    /// `weight^T [patch, O]` for the row kernel, with few output channels or `addsOnStores`;
    /// nil: sgemm reads the weight.
    let transposedWeight: UnsafeMutablePointer<Float>?
    /// Whether a band's columns are added on the row kernel's stores (`smil_rows_gemm_add_even`),
    /// never written out: the strided 1x1 whose output rows are whole vectors and whose input
    /// rows have an even width (so that the last odd float a row's stores touch lies in the row).
    let addsOnStores: Bool

    init(_ gi: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>, _ g: ConvGeometry, accumulate: Bool) {
        self.g = g
        self.gi = gi
        if !accumulate {
            Parallel.forRanges(g.batch * g.inChannels * g.inPlane, grain: elementwiseGrain) { r in
                (gi + r.lowerBound).update(repeating: 0, count: r.count)
            }
        }
        addsOnStores = InputGradientTarget.addsOnStores(g)
        windows = addsOnStores ? [] : windowTable(ConvSource(g, data: gi, phased: false))
        transposedWeight = g.outChannels <= smallKLimit || addsOnStores
            ? transposedMatrices(weight, count: 1, rows: g.outChannels, cols: g.patch) : nil
    }

    /// Whether `g`'s bands are added on the row kernel's stores (see `addsOnStores`).
    static func addsOnStores(_ g: ConvGeometry) -> Bool {
        g.kernelH == 1 && g.kernelW == 1 && g.stride == 2 && g.padding == 0 && g.dilation == 1
            && g.outWidth % 16 == 0 && g.width % 2 == 0 && smil_has_avx2_fma() != 0
    }

    /// Floats of scratch `addBand` takes per output pixel.
    var scratchPerColumn: Int { addsOnStores ? g.outChannels : g.patch }

    /// Adds the columns of output rows y0 ..< y0 + rows of image n: `weight^T x gradOutput` into
    /// `col` (`scratchPerColumn` x rows * outWidth floats), then into the pixels they came from;
    /// with `addsOnStores`, the band's gradient is copied into `col` and added on the stores.
    func addBand(_ gradOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>, image n: Int, y0: Int, rows: Int,
                 col: UnsafeMutablePointer<Float>) {
        let ow = g.outWidth, o = g.outChannels, columns = rows * ow, patch = g.patch
        let go = gradOutput + n * o * g.outPlane + y0 * ow
        if addsOnStores {
            copyRows(go, count: o, apart: g.outPlane, columns: columns, into: col)
            addBandOnStores(col, image: n, y0: y0, rows: rows)
            return
        }
        if let wt = transposedWeight {
            smallKProduct(m: patch, n: columns, k: o, a: wt, lda: o, b: go, ldb: g.outPlane, c: col, ldc: columns)
        } else {
            sgemmSerial(transA: true, m: patch, n: columns, k: o, a: weight, lda: patch, b: go, ldb: g.outPlane, c: col, ldc: columns)
        }
        windows.withUnsafeBufferPointer { w in
            smil_add_band(col, Int32(columns), w.baseAddress! + n * patch, Int32(patch), Int32(y0), Int32(rows), Int32(ow))
        }
    }

    /// With `addsOnStores`: adds `weight^T x band` for output rows y0 ..< y0 + rows of image n,
    /// the band's output gradient copied contiguous (`[O, rows * outWidth]`), straight into the
    /// even pixels of the even input rows they came from. (The 1x1/2 fused backward, against
    /// columns written out and added by `smil_add_band`: faster in 20 of 30, 29 of 40 and 33 of
    /// 40 rounds alternating in one process, medians 1-5% lower.)
    func addBandOnStores(_ band: UnsafePointer<Float>, image n: Int, y0: Int, rows: Int) {
        let ow = g.outWidth, columns = rows * ow
        for r in 0..<rows {
            let row = gi + (n * g.inChannels) * g.inPlane + 2 * (y0 + r) * g.width
            _ = smil_rows_gemm_add_even(Int32(g.patch), Int32(ow), Int32(g.outChannels), transposedWeight!, Int32(g.outChannels),
                                        band + r * ow, Int32(columns), row, g.inPlane)
        }
    }

    /// Frees what the target allocated.
    func finish() { transposedWeight?.deallocate() }
}

/// Weight gradient: per band of output rows, `panel [patch, pixels] x
/// gradOutput^T [pixels, O]` (the band's gradient transposed) summed into a transposed partial of
/// its group (`groupedWeightGradient`'s fixed groups of bands, so the bits do not depend on the
/// thread count), transposed once at the end. With `alsoInputGradient` (only where output rows
/// read disjoint input rows) each band's input gradient is added too, while its output gradient
/// is in cache.
func windowedWeightGradient(input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                            gradWeight gw: UnsafeMutablePointer<Float>, _ g: ConvGeometry,
                            alsoInputGradient: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, Bool)? = nil,
                            subsample: UnsafePointer<Float>? = nil) {
    // (The row kernel indexes the planes' rows with 32-bit offsets from an image's first plane.)
    if alsoInputGradient == nil && ConvSource.usesPhases(g) && g.outChannels % 16 == 0
        && PaddedPhases.imageFloats(g) < Int(Int32.max) {
        paddedPhasesWeightGradient(input: input, gradOutput: gradOutput, gradWeight: gw, g)
        return
    }
    let target = alsoInputGradient.map { InputGradientTarget($0.0, weight: $0.1, g, accumulate: $0.2) }
    let oh = g.outHeight, ow = g.outWidth, plane = g.outPlane, patch = g.patch, o = g.outChannels
    let onStores = target?.addsOnStores ?? false
    if let target = target, onStores, o % 16 == 0 {
        stridedPointwiseBackward(input: input, gradOutput: gradOutput, gradWeight: gw, target: target, g, subsample: subsample)
        return
    }
    let source = makeSource(input, g)
    defer { if source.phased { source.data.deallocate() } }
    let table = windowTable(source)
    // Bands of output rows whose scratch (panel, transposed gradient, input-gradient columns) is
    // about 64 KB: one row for the stem and the downsample (1x1/2 fused backward 3-7% faster
    // than with 256-pixel bands, alternating in one process; 512 and 1024 slower still).
    // Scratch per column: the panel, the transposed gradient, and the input gradient's columns
    // or (added on the stores) the band's gradient copied contiguous.
    let perColumn = patch + o + (target == nil ? 0 : onStores ? o : patch)
    let rows = bandRows(g, columns: (1 << 14) / perColumn), bands = (oh + rows - 1) / rows, most = rows * ow
    let transposed = UnsafeMutablePointer<Float>.allocate(capacity: patch * o)
    defer { transposed.deallocate() }
    let scratch = perColumn * most
    table.withUnsafeBufferPointer { windows in
        groupedWeightGradient(tiles: g.batch * bands, size: patch * o, scratch: scratch, into: transposed) { tile in
            let t = tile.index, partial = tile.partial, beta = tile.beta, scratch = tile.scratch
            let n = t / bands, y0 = (t % bands) * rows, r = min(rows, oh - y0), columns = r * ow
            let panel = scratch, bandT = scratch + patch * most, extra = bandT + o * most
            let go = gradOutput + n * o * plane + y0 * ow
            if onStores {
                // Copied first, one run per channel (the rows lie a plane apart, all in the same
                // cache sets), then transposed from the copy, which the input gradient reads too.
                copyRows(go, count: o, apart: plane, columns: columns, into: extra)
                smil_transpose(bandT, Int32(o), extra, Int32(columns), Int32(o), Int32(columns))
            } else {
                smil_transpose(bandT, Int32(o), go, Int32(plane), Int32(o), Int32(columns))
            }
            smil_pack_band(panel, Int32(columns), windows.baseAddress! + n * patch, Int32(patch), Int32(y0), Int32(r), Int32(ow))
            panelProduct(m: patch, n: o, k: columns, a: panel, lda: columns, panel: bandT, c: partial, ldc: o,
                         accumulate: beta != 0)
            if let target = target, let weight = alsoInputGradient?.1 {
                if onStores {
                    target.addBandOnStores(extra, image: n, y0: y0, rows: r)
                } else {
                    target.addBand(gradOutput, weight: weight, image: n, y0: y0, rows: r, col: extra)
                }
            }
        }
    }
    target?.finish()
    smil_transpose(gw, Int32(patch), transposed, Int32(o), Int32(patch), Int32(o))
}

/// Both gradients of the strided 1x1 whose gradient is added on the stores
/// (`InputGradientTarget.addsOnStores`), with whole vectors of output channels: as
/// `windowedWeightGradient`, band by band in `groupedWeightGradient`'s groups, but each band's
/// operands (its output gradient copied contiguous, its input rows' even floats packed) are
/// brought in by the previous band's products (`smil_side_copy`), into two sets of buffers used
/// in turn. The output gradient comes in while the weight gradient's products run, the input rows
/// while the input gradient's do. (A band's memory traffic, otherwise a pass of its own that
/// waited on memory, then overlaps the multiply-adds: the 1x1/2 at 2 x 64 x 128 x 128 took 8%
/// less time forward and backward, 94 of 100 alternating rounds, together with
/// `stridedPointwiseForward`.) The same bits as `windowedWeightGradient`.
///
/// With `subsample` (the forward's panels kept, `[N, OH, C, OW]`) the weight gradient reads each
/// output row's block there, in order, and no input rows are packed: a quarter of the input held
/// from forward to backward, for fwd+bwd 4% less time (75, 76 and 85 of 100 alternating rounds).
/// The same bits for bands of one row; a band of several rows sums its weight gradient a row at
/// a time.
func stridedPointwiseBackward(input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                              gradWeight gw: UnsafeMutablePointer<Float>, target: InputGradientTarget, _ g: ConvGeometry,
                              subsample: UnsafePointer<Float>? = nil) {
    let oh = g.outHeight, ow = g.outWidth, plane = g.outPlane, c = g.inChannels, o = g.outChannels
    // Scratch per output pixel: the transposed gradient, and two of (packed input, copied gradient).
    let perColumn = o + 2 * (c + o)
    let rows = bandRows(g, columns: (1 << 14) / perColumn), bands = (oh + rows - 1) / rows, most = rows * ow
    let tiles = g.batch * bands
    // The copied gradient's rows and its transpose's padded by a line: at a power-of-two stride
    // (64 or 128 floats) the 64-128 rows a product block reads one line from share 8-16 of the
    // L1 cache's 64 sets, 8 ways each (fwd+bwd 3% less time, 69 of 100 alternating rounds, twice).
    let ldCopy = most + 16, ldT = o + 16
    let transposed = UnsafeMutablePointer<Float>.allocate(capacity: c * o)
    defer { transposed.deallocate() }

    /// A band's operands in one of the two buffers, and the copies that fill them.
    struct Operands {
        var panel, copy: UnsafeMutablePointer<Float>
        var inputRows, gradient: smil_side_copy
    }
    // Floats of one buffer's packed input rows: none where the forward kept them.
    let panelFloats = subsample == nil ? c * most : 0
    func operands(_ t: Int, turn: Int, _ buffers: UnsafeMutablePointer<Float>) -> Operands {
        let n = t / bands, y0 = (t % bands) * rows, r = min(rows, oh - y0), columns = r * ow
        let panel = buffers + (turn % 2) * (panelFloats + o * ldCopy), copy = panel + panelFloats
        // Input row 2 y of every channel, its even floats (the 1x1/2 reads pixel (2 y, 2 x)).
        let inputRows = smil_side_copy(src: input + n * c * g.inPlane + 2 * y0 * g.width, srcOuter: g.inPlane,
                                       srcInner: 2 * g.width, dst: panel, dstOuter: columns, dstInner: ow,
                                       runs: Int32(c * r), inners: Int32(r), count: Int32(ow), step: 2, ahead: 8, done: 0)
        // The band's output gradient, one run of its rows per channel.
        let gradient = smil_side_copy(src: gradOutput + n * o * plane + y0 * ow, srcOuter: plane, srcInner: 0,
                                      dst: copy, dstOuter: ldCopy, dstInner: 0, runs: Int32(o), inners: 1,
                                      count: Int32(columns), step: 1, ahead: 8, done: 0)
        return Operands(panel: panel, copy: copy, inputRows: inputRows, gradient: gradient)
    }

    let scratch = most * ldT + 2 * (panelFloats + o * ldCopy)
    groupedWeightGradient(tiles: tiles, size: c * o, scratch: scratch, into: transposed) { tile in
        let t = tile.index, partial = tile.partial, beta = tile.beta
        let bandT = tile.scratch, buffers = tile.scratch + most * ldT
        let n = t / bands, y0 = (t % bands) * rows, r = min(rows, oh - y0), columns = r * ow
        var this = operands(t, turn: tile.turn, buffers)
        if tile.turn == 0 {  // the worker's first band: no band before it brought its operands in
            if subsample == nil { smil_side_copy_some(&this.inputRows, this.inputRows.runs) }
            smil_side_copy_some(&this.gradient, this.gradient.runs)
        }
        smil_transpose(bandT, Int32(ldT), this.copy, Int32(ldCopy), Int32(o), Int32(columns))
        // The worker's next band's copies (none after its last).
        let follows = tile.next != nil
        var next = tile.next.map { operands($0, turn: tile.turn + 1, buffers) } ?? this
        // Weight gradient, transposed: panel [C, pixels] x gradient^T [pixels, O], two runs of the
        // next band's gradient copied per 6 x 16 block.
        withUnsafeMutablePointer(to: &next.gradient) { gradient in
            let side = follows ? gradient : nil
            if let subsample = subsample {
                // A row at a time from the kept subsample (rows of C x OW floats).
                for q in 0..<r {
                    _ = smil_rows_gemm_side(Int32(c), Int32(o), Int32(ow), subsample + (n * oh + y0 + q) * c * ow, Int32(ow),
                                            bandT + q * ow * ldT, Int32(ldT), partial, Int32(o), beta != 0 || q > 0 ? 1 : 0,
                                            q == 0 ? side : nil, 2)
                }
            } else {
                _ = smil_rows_gemm_side(Int32(c), Int32(o), Int32(columns), this.panel, Int32(columns), bandT, Int32(ldT), partial,
                                        Int32(o), beta != 0 ? 1 : 0, side, 2)
            }
            if let side = side { smil_side_copy_some(side, side.pointee.runs) }
        }
        // Input gradient: weight^T [C, O] x gradient [O, pixels] added into the even floats of
        // input rows 2 y, two runs of the next band's input rows packed per block.
        withUnsafeMutablePointer(to: &next.inputRows) { inputRows in
            let side = follows && subsample == nil ? inputRows : nil
            for q in 0..<r {
                let row = target.gi + n * c * g.inPlane + 2 * (y0 + q) * g.width
                _ = smil_rows_gemm_add_even_side(Int32(c), Int32(ow), Int32(o), target.transposedWeight!, Int32(o),
                                                 this.copy + q * ow, Int32(ldCopy), row, g.inPlane, side, 2)
            }
            if let side = side { smil_side_copy_some(side, side.pointee.runs) }
        }
    }
    target.finish()
    smil_transpose(gw, Int32(c), transposed, Int32(o), Int32(c), Int32(o))
}

/// Output rows per band of the input gradient on its own: about 256 KB of scratch (at least 256
/// pixels), so that each window's plane gets long runs of rows to add into. The scratch is the
/// band's columns (patch floats a pixel), or the band's gradient copied (O floats a pixel).
func inputGradientBandRows(_ g: ConvGeometry, scratchPerColumn: Int? = nil) -> Int {
    bandRows(g, columns: max(256, (1 << 16) / (scratchPerColumn ?? g.patch)))
}

/// Weight gradient of a strided convolution with a multiple of 16 output channels (the stem), as
/// `windowedWeightGradient` but a row at a time with the panel's rows read from padded phase
/// planes where they lie (the row kernel's gathered rows of A), nothing packed.
func paddedPhasesWeightGradient(input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                gradWeight gw: UnsafeMutablePointer<Float>, _ g: ConvGeometry) {
    let phases = PaddedPhases(input, g)
    defer { phases.deallocate() }
    let oh = g.outHeight, ow = g.outWidth, plane = g.outPlane, patch = g.patch, o = g.outChannels
    let offsets = phases.offsets.map { Int32($0) }
    let transposed = UnsafeMutablePointer<Float>.allocate(capacity: patch * o)
    defer { transposed.deallocate() }
    offsets.withUnsafeBufferPointer { offsets in
        groupedWeightGradient(tiles: g.batch * oh, size: patch * o, scratch: o * ow, into: transposed) { tile in
            let t = tile.index, partial = tile.partial, beta = tile.beta, rowT = tile.scratch
            let n = t / oh, y = t % oh
            smil_transpose(rowT, Int32(o), gradOutput + n * o * plane + y * ow, Int32(plane), Int32(o), Int32(ow))
            // Row p of the panel is the ow floats at base + offsets[p].
            let base = phases.data + n * phases.imageFloats + y * phases.cols
            _ = smil_rows_gemm(Int32(patch), Int32(o), Int32(ow), base, offsets.baseAddress!, 1, rowT, Int32(o), partial, nil,
                               Int32(o), beta != 0 ? 1 : 0)
        }
    }
    smil_transpose(gw, Int32(patch), transposed, Int32(o), Int32(patch), Int32(o))
}

/// Input gradient: per band of output rows, its columns `weight^T [patch, O] x gradOutput
/// [O, pixels]` added straight into the input pixels they came from. Where neighbouring output rows read overlapping input rows, the bands are
/// grouped into stripes that read none in common with the stripe after next: even stripes run
/// first and odd ones after, so no two threads add into the same pixel and each pixel's sum has
/// an order fixed by the shape.
func windowedInputGradient(gradOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                           gradInput gi: UnsafeMutablePointer<Float>, _ g: ConvGeometry, accumulate: Bool) {
    let target = InputGradientTarget(gi, weight: weight, g, accumulate: accumulate)
    defer { target.finish() }
    let oh = g.outHeight, perColumn = target.scratchPerColumn
    let rows = inputGradientBandRows(g, scratchPerColumn: perColumn), most = rows * g.outWidth
    // An output row reads `reach` input rows; output rows `apart` apart read none in common.
    let reach = (g.kernelH - 1) * g.dilation + 1, apart = (reach + g.stride - 1) / g.stride
    let stripe = (max(apart, rows) + rows - 1) / rows * rows, passes = windowedRowsOverlap(g) ? 2 : 1
    let stripes = (oh + stripe - 1) / stripe
    for pass in 0..<passes {
        let perImage = (stripes - pass + passes - 1) / passes
        Parallel.forEach(g.batch * perImage) { t in
            let n = t / perImage, s = (t % perImage) * passes + pass
            let col = UnsafeMutablePointer<Float>.allocate(capacity: perColumn * most)
            defer { col.deallocate() }
            for y0 in stride(from: s * stripe, to: min(oh, (s + 1) * stripe), by: rows) {
                target.addBand(gradOutput, weight: weight, image: n, y0: y0, rows: min(rows, oh - y0), col: col)
            }
        }
    }
}
