// WindowedConvolution.swift: convolutions with a small im2col patch (ResNet's 7x7 stem, the
// strided 1x1 downsample) on the AVX2 row kernel, their im2col panels packed straight from the
// input a chunk of an output row at a time and their input-gradient panels added straight back.
// No im2col matrix is ever written out: the im2col route wrote each tile's columns, copied them
// again into the kernel's panels, and for the downsample also wrote the subsampled input and its
// gradient out and read them back.

import CKernels

/// Whether `g` takes the windowed route: a patch (input channels times kernel area) small enough
/// for the row kernel, on a processor that has it; 3x3 stride-1 convolutions go to Winograd and
/// unstrided 1x1 ones are plain products already.
func windowedApplies(_ g: ConvGeometry) -> Bool {
    g.patch <= smallKLimit && !g.isPointwise && !winogradApplies(g) && smil_has_avx2_fma() != 0
}

/// Where the windowed route reads `data` (an input, or a gradient it adds into): phase planes for
/// a strided kernel larger than 1x1 (the caller splits or merges them), so that every window reads
/// contiguous columns; the data in place otherwise (the strided 1x1 reads every other column, of
/// which phase planes would copy four times as much as it reads).
func windowedSource(_ g: ConvGeometry, _ data: UnsafeMutablePointer<Float>) -> ConvSource {
    let phased = ConvSource.usesPhases(g) && !g.isStridedPointwise
    return ConvSource(g, data: phased ? .allocate(capacity: ConvSource.phasedCount(g)) : data, phased: phased)
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

/// The output's planes as windows, `[batch, outChannels]`: packing them copies an output
/// gradient's rows into the panel the input gradient's product reads.
func outputWindows(_ output: UnsafePointer<Float>, _ g: ConvGeometry) -> [smil_window] {
    let oh = Int32(g.outHeight), ow = Int32(g.outWidth)
    return (0..<(g.batch * g.outChannels)).map { plane in
        smil_window(plane: UnsafeMutablePointer(mutating: output + plane * g.outPlane), rows: oh, cols: ow, yStep: 1,
                    yOffset: 0, xStep: 1, xOffset: 0, lo: 0, hi: ow)
    }
}

/// Columns per chunk of a band of `width` columns: at most `limit` (a multiple of 16), the band
/// cut into equal chunks rounded up to 16 (64 columns as 32 + 32, not 48 + 16: a chunk of 16
/// gives each pass of the kernel over its weight rows one block of work).
func balancedChunk(_ width: Int, limit: Int) -> Int {
    let chunks = (width + limit - 1) / limit
    return min(limit, ((width + chunks - 1) / chunks + 15) / 16 * 16)
}

/// Output rows per band: about `columns` output pixels (whole rows, at least one).
func bandRows(_ g: ConvGeometry, columns: Int) -> Int { max(1, min(g.outHeight, columns / g.outWidth)) }

/// Forward: per band of output rows (about 512 pixels), its panel `[patch, pixels]` packed from
/// the input in chunks, and `weight [O, patch] x chunk` written into the output rows.
func windowedForward(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>,
                     _ g: ConvGeometry) {
    let source = windowedSource(g, UnsafeMutablePointer(mutating: input))
    defer { if source.phased { source.data.deallocate() } }
    if source.phased { source.split(input) }
    let table = windowTable(source)
    let oh = g.outHeight, ow = g.outWidth, plane = g.outPlane, patch = g.patch, o = g.outChannels
    let rows = bandRows(g, columns: 512), bands = (oh + rows - 1) / rows
    table.withUnsafeBufferPointer { windows in
        Parallel.forEach(g.batch * bands) { t in
            let n = t / bands, y0 = (t % bands) * rows, r = min(rows, oh - y0), columns = r * ow
            let chunk = balancedChunk(columns, limit: smallKChunk(patch))
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

/// Weight gradient: per band of output rows (about 256 pixels), `panel [patch, pixels] x
/// gradOutput^T [pixels, O]` (the band's gradient transposed) summed into a transposed partial of
/// its group (`groupedWeightGradient`'s fixed groups of bands, so the bits do not depend on the
/// thread count), transposed once at the end.
func windowedWeightGradient(input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                            gradWeight gw: UnsafeMutablePointer<Float>, _ g: ConvGeometry) {
    let source = windowedSource(g, UnsafeMutablePointer(mutating: input))
    defer { if source.phased { source.data.deallocate() } }
    if source.phased { source.split(input) }
    let table = windowTable(source)
    let oh = g.outHeight, ow = g.outWidth, plane = g.outPlane, patch = g.patch, o = g.outChannels
    let rows = bandRows(g, columns: 256), bands = (oh + rows - 1) / rows, most = rows * ow
    let transposed = UnsafeMutablePointer<Float>.allocate(capacity: patch * o)
    defer { transposed.deallocate() }
    table.withUnsafeBufferPointer { windows in
        groupedWeightGradient(tiles: g.batch * bands, size: patch * o, scratch: (patch + o) * most, into: transposed) { t, partial, beta, scratch in
            let n = t / bands, y0 = (t % bands) * rows, r = min(rows, oh - y0), columns = r * ow
            let panel = scratch, bandT = scratch + patch * most
            smil_pack_band(panel, Int32(columns), windows.baseAddress! + n * patch, Int32(patch), Int32(y0), Int32(r), Int32(ow))
            smil_transpose(bandT, Int32(o), gradOutput + n * o * plane + y0 * ow, Int32(plane), Int32(o), Int32(columns))
            panelProduct(m: patch, n: o, k: columns, a: panel, lda: columns, panel: bandT, c: partial, ldc: o,
                         accumulate: beta != 0)
        }
    }
    smil_transpose(gw, Int32(patch), transposed, Int32(o), Int32(patch), Int32(o))
}

/// Input gradient: per band of output rows (about 256 pixels), its columns `weight^T [patch, O] x
/// gradOutput [O, pixels]` added straight into the input pixels they came from (or their phase
/// planes, merged at the end). Where neighbouring output rows read overlapping input rows, the
/// bands are grouped into stripes that read none in common with the stripe after next: even
/// stripes run first and odd ones after, so no two threads add into the same pixel and each
/// pixel's sum has an order fixed by the shape.
func windowedInputGradient(gradOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                           gradInput gi: UnsafeMutablePointer<Float>, _ g: ConvGeometry, accumulate: Bool) {
    let target = windowedSource(g, gi)
    defer { if target.phased { target.data.deallocate() } }
    if target.phased || !accumulate {
        let count = target.phased ? ConvSource.phasedCount(g) : g.batch * g.inChannels * g.inPlane
        let data = target.data
        Parallel.forRanges(count, grain: elementwiseGrain) { r in (data + r.lowerBound).update(repeating: 0, count: r.count) }
    }
    let table = windowTable(target), gradWindows = outputWindows(gradOutput, g)
    let oh = g.outHeight, ow = g.outWidth, plane = g.outPlane, patch = g.patch, o = g.outChannels
    // Few output channels: weight^T on the row kernel, the gradient's rows packed into its panel;
    // otherwise sgemm reads the gradient in place.
    let rowKernel = o <= smallKLimit
    let wt = rowKernel ? transposedMatrices(weight, count: 1, rows: o, cols: patch) : nil
    defer { wt?.deallocate() }
    let rows = bandRows(g, columns: 256), most = rows * ow
    // An output row reads `reach` input rows; output rows `apart` apart read none in common.
    let reach = (g.kernelH - 1) * g.dilation + 1, apart = (reach + g.stride - 1) / g.stride
    let stripe = (max(apart, rows) + rows - 1) / rows * rows, passes = reach > g.stride ? 2 : 1
    let stripes = (oh + stripe - 1) / stripe
    table.withUnsafeBufferPointer { windows in
        gradWindows.withUnsafeBufferPointer { gradRows in
            for pass in 0..<passes {
                let perImage = (stripes - pass + passes - 1) / passes
                Parallel.forEach(g.batch * perImage) { t in
                    let n = t / perImage, s = (t % perImage) * passes + pass
                    let col = UnsafeMutablePointer<Float>.allocate(capacity: (patch + (rowKernel ? o : 0)) * most)
                    defer { col.deallocate() }
                    let panel = col + patch * most
                    for y0 in stride(from: s * stripe, to: min(oh, (s + 1) * stripe), by: rows) {
                        let r = min(rows, oh - y0), columns = r * ow
                        let chunk = balancedChunk(columns, limit: rowKernel ? smallKChunk(o) : 64)
                        if rowKernel {
                            smil_pack_band(panel, Int32(chunk), gradRows.baseAddress! + n * o, Int32(o), Int32(y0), Int32(r), Int32(ow))
                        }
                        for c in 0..<((columns + chunk - 1) / chunk) {
                            let wc = min(chunk, columns - c * chunk)
                            if let wt = wt {
                                panelProduct(m: patch, n: wc, k: o, a: wt, lda: o, panel: panel + c * o * chunk,
                                             c: col + c * patch * chunk, ldc: wc)
                            } else {
                                sgemmSerial(transA: true, m: patch, n: wc, k: o, a: weight, lda: patch,
                                            b: gradOutput + n * o * plane + y0 * ow + c * chunk, ldb: plane,
                                            c: col + c * patch * chunk, ldc: wc)
                            }
                        }
                        smil_add_band(col, Int32(chunk), windows.baseAddress! + n * patch, Int32(patch), Int32(y0), Int32(r), Int32(ow))
                    }
                }
            }
        }
    }
    if target.phased { target.merge(into: gi, accumulate: accumulate) }
}
