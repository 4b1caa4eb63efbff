// SparseConvolution.swift: sparse convolution and pooling over row-major feature matrices, driven
// by a rulebook: the centre offset is one GEMM straight into the output, every other offset is
// gather -> GEMM -> scatter-add (SparseConvNet's CPU/Convolution.cpp scheme). An offset never
// repeats an output (or input) row, so its scatter is split over threads without races, and the
// offsets are applied in order: the same bits whatever the thread count. On the fused AVX2
// kernels, a submanifold layer reads its output-major neighbour table instead: one pass over
// blocks of output rows, and a backward that computes the input and weight gradients in the same
// parallel pass; a submanifold 3 x 3 layer on a densely filled map goes by Winograd over 2 x 2
// tiles instead (SparseWinograd.swift). Without them, a dense submanifold map is one implicit GEMM
// (BLAS) over gathered neighbourhoods.

import COpenBLAS
import CKernels

/// Whether the sparse convolution uses the fused AVX2 kernels (gather, product and scatter in one
/// pass; CKernels/gemm_avx2.c) where the processor has them and the channels are multiples of 16.
/// Settable so that tests can compare them with the BLAS path.
public enum SparseKernels {
    nonisolated(unsafe) public static var fused = true
    /// Whether submanifold 3 x 3 layers on densely filled maps take the Winograd route on the fused
    /// kernels (SparseWinograd.swift). Settable so that tests can compare it with the table route.
    nonisolated(unsafe) public static var winograd = true
    /// What a 2 x 2 tile of the Winograd route costs, in neighbour pairs of the table route (its
    /// 16 products and the transforms): a map takes the route when tiles x cost <= pairs. On
    /// 180 x 180 maps filled at random, 64 -> 64 channels, the routes broke even at 16-20 pairs
    /// per tile; a full map has 36, W3b's disk 35.3. Settable so that tests can force the route.
    nonisolated(unsafe) static var winogradTileCost = 18.0
    /// Whether this processor can run them (AVX2 and FMA).
    public static var available: Bool { smil_has_avx2_fma() != 0 }

    static func apply(cin: Int, cout: Int) -> Bool {
        fused && cin % 16 == 0 && cout % 16 == 0 && smil_has_avx2_fma() != 0
    }
}

/// Rows per task of the fused kernels (a multiple of their 6-row block).
let fusedRows = 240

/// `C[crows[i]] (+)= A[arows[i]] x B` on the fused kernel, rows split over the threads.
func fusedRowsGemm(_ m: Int, n: Int, k: Int, a: UnsafePointer<Float>, arows: UnsafePointer<Int32>?, lda: Int,
                   b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, crows: UnsafePointer<Int32>?,
                   ldc: Int, accumulate: Bool) {
    Parallel.forRanges(m, grain: fusedRows) { r in
        let lo = r.lowerBound
        _ = smil_rows_gemm(Int32(r.count), Int32(n), Int32(k), arows == nil ? a + lo * lda : a, arows.map { $0 + lo }, Int32(lda),
                           b, Int32(ldb), crows == nil ? c + lo * ldc : c, crows.map { $0 + lo }, Int32(ldc), accumulate ? 1 : 0)
    }
}

/// `C = sum_p A[arows[p]]^T B[brows[p]]` (C `k x n`) on the fused kernel, C's rows split over the
/// threads (each element is summed over every pair in order, whatever the split).
func fusedOuterGemm(_ pairs: Int, k: Int, n: Int, a: UnsafePointer<Float>, arows: UnsafePointer<Int32>?, lda: Int,
                    b: UnsafePointer<Float>, brows: UnsafePointer<Int32>?, ldb: Int, c: UnsafeMutablePointer<Float>,
                    ldc: Int, accumulate: Bool) {
    Parallel.forRanges(k, grain: 12) { r in
        _ = smil_outer_gemm(Int32(pairs), Int32(r.count), Int32(n), a + r.lowerBound, arows, Int32(lda), b, brows, Int32(ldb),
                            c + r.lowerBound * ldc, Int32(ldc), accumulate ? 1 : 0)
    }
}

/// Copies rows `index[p]` of `src` (`width` wide) into consecutive rows of `dst`.
func gatherRows(_ src: UnsafePointer<Float>, _ index: [Int32], width: Int, _ dst: UnsafeMutablePointer<Float>) {
    index.withUnsafeBufferPointer { idx in
        Parallel.forRanges(idx.count, grain: max(1, 16384 / max(width, 1))) { r in
            for p in r { (dst + p * width).update(from: src + Int(idx[p]) * width, count: width) }
        }
    }
}

/// `gatherRows` on the calling thread (for work already spread over threads).
@inline(__always) func gatherRowsSerial(_ src: UnsafePointer<Float>, _ index: [Int32], width: Int, _ dst: UnsafeMutablePointer<Float>) {
    index.withUnsafeBufferPointer { idx in
        for q in 0..<idx.count { (dst + q * width).update(from: src + Int(idx[q]) * width, count: width) }
    }
}

/// Column sums of a row-major `rows x cols` matrix, in double precision (bias gradients).
func columnSums(_ m: UnsafePointer<Float>, rows: Int, cols: Int, into out: UnsafeMutablePointer<Float>) {
    Parallel.forRanges(cols, grain: 16) { r in
        for j in r {
            var s: Double = 0
            for i in 0..<rows { s += Double(m[i * cols + j]) }
            out[j] = Float(s)
        }
    }
}

/// Adds consecutive rows of `src` into rows `index[p]` of `dst` (indices distinct).
func scatterAddRows(_ src: UnsafePointer<Float>, _ index: [Int32], width: Int, _ dst: UnsafeMutablePointer<Float>) {
    index.withUnsafeBufferPointer { idx in
        Parallel.forRanges(idx.count, grain: max(1, 16384 / max(width, 1))) { r in
            for p in r {
                let d = dst + Int(idx[p]) * width, s = src + p * width
                for j in 0..<width { d[j] += s[j] }
            }
        }
    }
}

/// The non-centre offsets that have pairs, and where each one's pairs start in a buffer holding
/// all of them.
func offsetSegments(_ rulebook: Rulebook) -> (offsets: [Int], starts: [Int], total: Int) {
    var offsets: [Int] = [], starts: [Int] = [], total = 0
    for k in 0..<rulebook.offsets where k != rulebook.centre && !rulebook.inputs[k].isEmpty {
        offsets.append(k)
        starts.append(total)
        total += rulebook.inputs[k].count
    }
    return (offsets, starts, total)
}

/// Forward sparse convolution: `output` `[nOut, cout]` from `input` `[nIn, cin]`, weight
/// `[offsets, cin, cout]`, optional bias `[cout]`. Offsets are spread over the threads (gather and
/// GEMM each on one thread), then scattered in offset order.
func sparseConvolutionForward(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                              weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                              rulebook: Rulebook, nOut: Int, cin: Int, cout: Int) {
    if SparseKernels.apply(cin: cin, cout: cout) {
        fusedRulebookProduct(rulebook, source: input, width: cin, target: output, targetWidth: cout, targetRows: nOut,
                             matrices: weight, backward: false)
        if let bias = bias {
            Parallel.forRanges(nOut, grain: 1024) { r in
                for i in r { for j in 0..<cout { output[i * cout + j] += bias[j] } }
            }
        }
        return
    }
    if let c = rulebook.centre {
        gemm(transA: false, transB: false, m: nOut, n: cout, k: cin, a: input, lda: cin,
             b: weight + c * cin * cout, ldb: cout, c: output, ldc: cout)
    } else {
        output.update(repeating: 0, count: nOut * cout)
    }
    let (offsets, starts, total) = offsetSegments(rulebook)
    let gathered = UnsafeMutablePointer<Float>.allocate(capacity: max(1, total * cin))
    let product = UnsafeMutablePointer<Float>.allocate(capacity: max(1, total * cout))
    defer { gathered.deallocate(); product.deallocate() }
    Parallel.forEach(offsets.count) { s in
        let k = offsets[s], pairs = rulebook.inputs[k].count
        let g = gathered + starts[s] * cin, p = product + starts[s] * cout
        gatherRowsSerial(input, rulebook.inputs[k], width: cin, g)
        sgemmSerial(m: pairs, n: cout, k: cin, a: g, lda: cin, b: weight + k * cin * cout, ldb: cout, c: p, ldc: cout)
    }
    for (s, k) in offsets.enumerated() {
        scatterAddRows(product + starts[s] * cout, rulebook.outputs[k], width: cout, output)
    }
    if let bias = bias {
        Parallel.forRanges(nOut, grain: 1024) { r in
            for i in r { for j in 0..<cout { output[i * cout + j] += bias[j] } }
        }
    }
}

/// Backward sparse convolution: writes `gradInput` `[nIn, cin]` (if given; or adds to it, with
/// `accumulateInput`), `gradWeight` `[offsets, cin, cout]` (if given) and `gradBias` `[cout]` (if
/// given).
func sparseConvolutionBackward(input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                               gradInput: UnsafeMutablePointer<Float>?, gradWeight: UnsafeMutablePointer<Float>?,
                               gradBias: UnsafeMutablePointer<Float>?, rulebook: Rulebook,
                               nIn: Int, nOut: Int, cin: Int, cout: Int, accumulateInput: Bool = false) {
    if let gb = gradBias { columnSums(gradOutput, rows: nOut, cols: cout, into: gb) }
    if SparseKernels.apply(cin: cin, cout: cout) {
        if let gi = gradInput {
            // gradInput[in] += gradOutput[out] x weight[k]^T, offset by offset in order.
            let wt = transposedMatrices(weight, count: rulebook.offsets, rows: cin, cols: cout)
            defer { wt.deallocate() }
            fusedRulebookProduct(rulebook, source: gradOutput, width: cout, target: gi, targetWidth: cin, targetRows: nIn,
                                 matrices: wt, backward: true, accumulate: accumulateInput)
        }
        if let gw = gradWeight {
            // gradWeight[k] = sum over the offset's pairs of input[in]^T gradOutput[out].
            for k in 0..<rulebook.offsets {
                let w = gw + k * cin * cout
                if k == rulebook.centre {
                    // Every site with itself: contiguous rows and a long sum, where BLAS (its sum
                    // split in fixed pieces by `gemm`) measured faster than the outer-product kernel.
                    gemm(transA: true, transB: false, m: cin, n: cout, k: nIn, a: input, lda: cin,
                         b: gradOutput, ldb: cout, c: w, ldc: cout)
                    continue
                }
                rulebook.inputs[k].withUnsafeBufferPointer { ins in rulebook.outputs[k].withUnsafeBufferPointer { outs in
                    fusedOuterGemm(ins.count, k: cin, n: cout, a: input, arows: ins.baseAddress, lda: cin, b: gradOutput,
                                   brows: outs.baseAddress, ldb: cout, c: w, ldc: cout, accumulate: false)
                } }
            }
        }
        return
    }
    if let c = rulebook.centre {
        if let gi = gradInput {
            gemm(transA: false, transB: true, m: nIn, n: cin, k: cout, a: gradOutput, lda: cout,
                 b: weight + c * cin * cout, ldb: cout, beta: accumulateInput ? 1 : 0, c: gi, ldc: cin)
        }
        if let gw = gradWeight {
            gemm(transA: true, transB: false, m: cin, n: cout, k: nIn, a: input, lda: cin,
                 b: gradOutput, ldb: cout, c: gw + c * cin * cout, ldc: cout)
        }
    } else if !accumulateInput {
        gradInput?.update(repeating: 0, count: nIn * cin)
    }
    if let gw = gradWeight {
        for k in 0..<rulebook.offsets where k != rulebook.centre && rulebook.inputs[k].isEmpty {
            (gw + k * cin * cout).update(repeating: 0, count: cin * cout)
        }
    }
    let (offsets, starts, total) = offsetSegments(rulebook)
    let gIn = UnsafeMutablePointer<Float>.allocate(capacity: max(1, total * cin))
    let gOut = UnsafeMutablePointer<Float>.allocate(capacity: max(1, total * cout))
    defer { gIn.deallocate(); gOut.deallocate() }
    Parallel.forEach(offsets.count) { s in
        let k = offsets[s], pairs = rulebook.inputs[k].count
        let go = gOut + starts[s] * cout, gi = gIn + starts[s] * cin
        gatherRowsSerial(gradOutput, rulebook.outputs[k], width: cout, go)
        if let gw = gradWeight {
            gatherRowsSerial(input, rulebook.inputs[k], width: cin, gi)
            sgemmSerial(transA: true, m: cin, n: cout, k: pairs, a: gi, lda: cin, b: go, ldb: cout, c: gw + k * cin * cout, ldc: cout)
        }
        if gradInput != nil {
            sgemmSerial(transB: true, m: pairs, n: cin, k: cout, a: go, lda: cout, b: weight + k * cin * cout, ldb: cout, c: gi, ldc: cin)
        }
    }
    if let gi = gradInput {
        for (s, k) in offsets.enumerated() { scatterAddRows(gIn + starts[s] * cin, rulebook.inputs[k], width: cin, gi) }
    }
}

/// `target = source x matrices[centre]`, then for each offset in order, its pairs' source rows
/// times the offset's matrix added into their target rows in one pass (an offset repeats no target
/// row, so its pairs are split over the threads without races). Forward: source rows are the
/// pairs' inputs and targets their outputs; backward (`matrices` transposed), the other way round.
func fusedRulebookProduct(_ rulebook: Rulebook, source: UnsafePointer<Float>, width: Int,
                          target: UnsafeMutablePointer<Float>, targetWidth: Int, targetRows: Int,
                          matrices: UnsafePointer<Float>, backward: Bool, accumulate: Bool = false) {
    let size = width * targetWidth
    if let c = rulebook.centre {
        fusedRowsGemm(targetRows, n: targetWidth, k: width, a: source, arows: nil, lda: width, b: matrices + c * size,
                      ldb: targetWidth, c: target, crows: nil, ldc: targetWidth, accumulate: accumulate)
    } else if !accumulate {
        target.update(repeating: 0, count: targetRows * targetWidth)
    }
    for k in 0..<rulebook.offsets where k != rulebook.centre && !rulebook.inputs[k].isEmpty {
        rulebook.inputs[k].withUnsafeBufferPointer { ins in rulebook.outputs[k].withUnsafeBufferPointer { outs in
            let (from, to) = backward ? (outs, ins) : (ins, outs)
            fusedRowsGemm(from.count, n: targetWidth, k: width, a: source, arows: from.baseAddress, lda: width,
                          b: matrices + k * size, ldb: targetWidth, c: target, crows: to.baseAddress, ldc: targetWidth,
                          accumulate: true)
        } }
    }
}

/// Sparse max pooling: each output row is the channel-wise max over its rulebook inputs; `argmax`
/// receives, per output element, the input row that won (first offset wins ties).
func sparseMaxPoolForward(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>,
                          rulebook: Rulebook, nOut: Int, channels: Int) {
    output.update(repeating: -.infinity, count: nOut * channels)
    argmax.update(repeating: -1, count: nOut * channels)
    for k in 0..<rulebook.offsets {
        let ins = rulebook.inputs[k], outs = rulebook.outputs[k]
        Parallel.forRanges(ins.count, grain: 1024) { r in
            for p in r {
                let i = Int(ins[p]), o = Int(outs[p])
                for c in 0..<channels where input[i * channels + c] > output[o * channels + c] || argmax[o * channels + c] < 0 {
                    output[o * channels + c] = input[i * channels + c]
                    argmax[o * channels + c] = Int32(i)
                }
            }
        }
    }
}

// MARK: Implicit GEMM for dense submanifold rulebooks (without the fused kernels)

/// Rows per block of the implicit GEMM: the gathered block (rows x offsets x channels) stays in cache.
let implicitBlock = 128

/// Gathers, for output rows `range`, the neighbourhood rows of `src` (`width` wide) into `col`,
/// laid out `[row, offset, width]`, zeros where a neighbour is missing.
@inline(__always)
func gatherNeighbourhoods(_ src: UnsafePointer<Float>, _ neighbours: UnsafePointer<Int32>, offsets: Int, width: Int,
                          range: Range<Int>, _ col: UnsafeMutablePointer<Float>) {
    for i in range {
        for k in 0..<offsets {
            let j = Int(neighbours[i * offsets + k])
            let dst = col + ((i - range.lowerBound) * offsets + k) * width
            if j >= 0 { dst.update(from: src + j * width, count: width) } else { dst.update(repeating: 0, count: width) }
        }
    }
}

/// Forward submanifold convolution as one GEMM per block of output rows over their gathered
/// neighbourhoods: `output[i] = [input[nb(i, 0)], ..., input[nb(i, K-1)]] @ weight` with weight
/// read as `[K * cin, cout]`. No scatter: every output row is written once.
func submanifoldForwardImplicit(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                                neighbours: [Int32], n: Int, offsets: Int, cin: Int, cout: Int) {
    let width = offsets * cin
    neighbours.withUnsafeBufferPointer { nb in
        let nbp = nb.baseAddress!
        Parallel.forRanges(n, grain: implicitBlock) { range in
            let col = UnsafeMutablePointer<Float>.allocate(capacity: range.count * width)
            defer { col.deallocate() }
            gatherNeighbourhoods(input, nbp, offsets: offsets, width: cin, range: range, col)
            let out = output + range.lowerBound * cout
            sgemmSerial(m: range.count, n: cout, k: width, a: col, lda: width, b: weight, ldb: cout, c: out, ldc: cout)
            if let bias = bias {
                for i in 0..<range.count { for j in 0..<cout { out[i * cout + j] += bias[j] } }
            }
        }
    }
}

/// Backward of `submanifoldForwardImplicit`. The input gradient is the same gather over the
/// output gradient (the neighbour relation is symmetric: j = nb(i, k) iff i = nb(j, K-1-k)) times
/// the weight with offsets mirrored and channels swapped; the weight gradient is
/// `gathered^T @ gradOutput`, accumulated block by block in order.
func submanifoldBackwardImplicit(input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                 gradInput: UnsafeMutablePointer<Float>?, gradWeight: UnsafeMutablePointer<Float>?,
                                 gradBias: UnsafeMutablePointer<Float>?, neighbours: [Int32], n: Int, offsets: Int,
                                 cin: Int, cout: Int, accumulateInput: Bool = false) {
    if let gb = gradBias { columnSums(gradOutput, rows: n, cols: cout, into: gb) }
    neighbours.withUnsafeBufferPointer { nb in
        let nbp = nb.baseAddress!
        if let gi = gradInput {
            // Mirrored, transposed weight: wm[k' * cout + o][c] = weight[K-1-k'][c][o].
            let wm = UnsafeMutablePointer<Float>.allocate(capacity: offsets * cout * cin)
            defer { wm.deallocate() }
            for k in 0..<offsets { for c in 0..<cin { for o in 0..<cout {
                wm[(k * cout + o) * cin + c] = weight[((offsets - 1 - k) * cin + c) * cout + o]
            } } }
            let width = offsets * cout
            Parallel.forRanges(n, grain: implicitBlock) { range in
                let col = UnsafeMutablePointer<Float>.allocate(capacity: range.count * width)
                defer { col.deallocate() }
                gatherNeighbourhoods(gradOutput, nbp, offsets: offsets, width: cout, range: range, col)
                sgemmSerial(m: range.count, n: cin, k: width, a: col, lda: width, b: wm, ldb: cin,
                            beta: accumulateInput ? 1 : 0, c: gi + range.lowerBound * cin, ldc: cin)
            }
        }
        if let gw = gradWeight {
            let width = offsets * cin, block = 2048
            let col = UnsafeMutablePointer<Float>.allocate(capacity: min(n, block) * width)
            defer { col.deallocate() }
            var start = 0
            while start < n {
                let range = start..<min(n, start + block)
                Parallel.forRanges(range.count, grain: implicitBlock) { sub in
                    let r = (range.lowerBound + sub.lowerBound)..<(range.lowerBound + sub.upperBound)
                    gatherNeighbourhoods(input, nbp, offsets: offsets, width: cin, range: r, col + sub.lowerBound * width)
                }
                gemm(transA: true, transB: false, m: width, n: cout, k: range.count, a: col, lda: width,
                     b: gradOutput + start * cout, ldb: cout, beta: start == 0 ? 0 : 1, c: gw, ldc: cout)
                start += block
            }
            if n == 0 { gw.update(repeating: 0, count: width * cout) }
        }
    }
}

// MARK: Submanifold products from the neighbour table (sparse maps, fused kernels)

/// Target rows per block of the table-driven products (a multiple of the kernels' 6-row block):
/// a block's rows stay in cache while the centre and then every offset add into them.
let tableBlock = 240

/// A submanifold convolution's product read straight from its output-major neighbour table, in one
/// parallel pass over blocks of target rows (`tableProductBlock`). Each target row is summed in the
/// same order as `fusedRulebookProduct`, so the two give the same bits.
/// - Forward: target i, source `table[i][k]`, matrix k.
/// - Input gradient (`mirrored`, matrices transposed): target j takes, for offset k, the output i
///   whose offset-k neighbour is j, which is `table[j][K - 1 - k]` (the relation is symmetric).
func submanifoldTableProduct(_ table: UnsafePointer<Int32>, rows n: Int, offsets: Int, dense: Bool,
                             source: UnsafePointer<Float>, width: Int, target: UnsafeMutablePointer<Float>,
                             targetWidth: Int, matrices: UnsafePointer<Float>, bias: UnsafePointer<Float>?, mirrored: Bool) {
    Parallel.forRanges(n, grain: tableBlock) { range in
        tableProductBlock(range, table, offsets: offsets, dense: dense, source: source, width: width, target: target,
                          targetWidth: targetWidth, matrices: matrices, bias: bias, mirrored: mirrored)
    }
}

/// One block of target rows of `submanifoldTableProduct`: the centre's product (each row with
/// itself; written, or with `accumulate` added to the rows), then for each offset in order the
/// block's rows that have a neighbour there, their source rows gathered by the kernel, then the
/// bias. The offsets' pairs are listed before the centre's product, so that on a sparse map their
/// source rows can be fetched while it runs. On a dense map (`dense`) the offsets are summed in
/// the same order by one kernel that keeps each row's sums in registers over all of them
/// (`smil_table_gemm`) instead of adding every offset's product into the rows.
func tableProductBlock(_ range: Range<Int>, _ table: UnsafePointer<Int32>, offsets: Int, dense: Bool,
                       source: UnsafePointer<Float>, width: Int, target: UnsafeMutablePointer<Float>, targetWidth: Int,
                       matrices: UnsafePointer<Float>, bias: UnsafePointer<Float>?, mirrored: Bool, accumulate: Bool = false) {
    let size = width * targetWidth, centre = offsets / 2
    if dense && !accumulate && smil_table_gemm(Int32(range.lowerBound), Int32(range.upperBound), Int32(offsets), table,
                                mirrored ? 1 : 0, source, Int32(width), matrices, Int32(targetWidth), target) != 0 {
        if let bias = bias {
            for i in range { for j in 0..<targetWidth { target[i * targetWidth + j] += bias[j] } }
        }
        return
    }
    // Each offset's pairs: source rows from[start[k]..<start[k + 1]] into target rows `to`.
    let lists = offsets * range.count
    withUnsafeTemporaryAllocation(of: Int32.self, capacity: 2 * lists + offsets + 1) { buffer in
        let from = buffer.baseAddress!, to = from + lists, start = to + lists
        var m = 0
        for k in 0..<offsets {
            start[k] = Int32(m)
            if k == centre { continue }
            let column = mirrored ? offsets - 1 - k : k
            for i in range {
                let j = table[i * offsets + column]
                if j >= 0 { from[m] = j; to[m] = Int32(i); m += 1 }
            }
        }
        start[offsets] = Int32(m)
        if 2 * m <= range.count {
            // A sparse map's neighbours are rows anywhere in memory: start loading them now, to
            // arrive while the centre's product runs (W3a cached forward 1-11% faster in 5 of 7
            // in-process A/B runs, fresh fwd+bwd in 5 of 7).
            let bytes = width * MemoryLayout<Float>.stride
            for p in 0..<m {
                let row = UnsafeRawPointer(source + Int(from[p]) * width)
                for byte in stride(from: 0, to: bytes, by: 64) { smil_prefetch(row + byte) }
            }
        }
        _ = smil_rows_gemm(Int32(range.count), Int32(targetWidth), Int32(width), source + range.lowerBound * width, nil,
                           Int32(width), matrices + centre * size, Int32(targetWidth),
                           target + range.lowerBound * targetWidth, nil, Int32(targetWidth), accumulate ? 1 : 0)
        for k in 0..<offsets where k != centre && start[k + 1] > start[k] {
            let p = Int(start[k])
            _ = smil_rows_gemm(start[k + 1] - start[k], Int32(targetWidth), Int32(width), source, from + p, Int32(width),
                               matrices + k * size, Int32(targetWidth), target, to + p, Int32(targetWidth), 1)
        }
        if let bias = bias {
            for i in range { for j in 0..<targetWidth { target[i * targetWidth + j] += bias[j] } }
        }
    }
}

/// The table-driven backward works in `centreSegments` segments of rows (at least
/// `minimumCentreSegment` each, a multiple of `tableBlock`): a count fixed by the number of rows,
/// never by the thread count.
let centreSegments = 8, minimumCentreSegment = 6 * tableBlock

/// Backward of `submanifoldTableProduct` (forward) as independent tasks, run in one parallel pass.
/// - The input gradient is the forward's product over the output gradient, each offset's matrix
///   transposed and the table read mirrored, block by block (`tableProductBlock`).
/// - `gradWeight[k]` sums `input[j]^T gradOutput[i]` over the outputs i with a neighbour j at
///   offset k, on the outer-product kernel. Each segment writes partial sums, block after block
///   right after the block's input gradient, while the block's rows are still in cache; `finish`
///   adds the partials in segment order. On a sparse map a segment does so for the centre only
///   (every row with itself), and each other offset is one task, its few pairs gathered from the
///   whole table, its sum written straight into `gradWeight[k]`: per block they would be too few
///   to pay for the kernel's passes over the weight gradient. On a dense map (`dense`, most slots
///   of the table hold a neighbour) a segment does every offset: its blocks' neighbours are rows
///   near the block, still in cache, where a task per offset streams both whole matrices through
///   the kernel once for each offset.
/// Every result is summed in an order fixed by the problem, so the bits do not depend on the thread
/// count.
struct TableBackward {
    let table: UnsafePointer<Int32>, n: Int, offsets: Int, cin: Int, cout: Int
    let input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>
    let gradInput: UnsafeMutablePointer<Float>?, gradWeight: UnsafeMutablePointer<Float>?
    /// Whether the input gradient is added to what `gradInput` holds.
    let accumulateInput: Bool
    let segmentRows: Int, segments: Int
    /// The offsets whose weight gradient the segments compute: the centre, or all of them (dense).
    let segmentOffsets: Range<Int>
    /// The weight matrices transposed, for the input gradient.
    let transposed: UnsafeMutablePointer<Float>?
    /// The segments' partial weight gradients, `segmentOffsets.count` matrices per segment (the
    /// gradient itself when there is one segment).
    let partial: UnsafeMutablePointer<Float>?

    init(_ table: UnsafePointer<Int32>, rows n: Int, offsets: Int, dense: Bool, input: UnsafePointer<Float>,
         weight: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>?,
         gradWeight: UnsafeMutablePointer<Float>?, cin: Int, cout: Int, accumulateInput: Bool = false) {
        (self.table, self.n, self.offsets, self.cin, self.cout) = (table, n, offsets, cin, cout)
        self.accumulateInput = accumulateInput
        (self.input, self.gradOutput, self.gradInput, self.gradWeight) = (input, gradOutput, gradInput, gradWeight)
        let blocks = (n + tableBlock - 1) / tableBlock
        segmentRows = max(minimumCentreSegment, (blocks + centreSegments - 1) / centreSegments * tableBlock)
        segments = max(1, (n + segmentRows - 1) / segmentRows)
        segmentOffsets = dense ? 0..<offsets : offsets / 2..<offsets / 2 + 1
        transposed = gradInput == nil ? nil : transposedMatrices(weight, count: offsets, rows: cin, cols: cout)
        if let gw = gradWeight {
            let matrices = segmentOffsets.count * cin * cout
            partial = segments == 1 ? gw + segmentOffsets.lowerBound * cin * cout : .allocate(capacity: segments * matrices)
        } else {
            partial = nil
        }
    }

    /// The segments, then (with a weight gradient) one task per offset the segments leave.
    var count: Int { segments + (gradWeight == nil ? 0 : offsets - segmentOffsets.count) }

    func task(_ t: Int) {
        let size = cin * cout, centre = offsets / 2
        if t < segments {
            let start = t * segmentRows, end = min(n, start + segmentRows)
            let sums = partial.map { $0 + t * segmentOffsets.count * size }
            if end <= start, let p = sums { p.update(repeating: 0, count: segmentOffsets.count * size) }  // no rows
            withUnsafeTemporaryAllocation(of: Int32.self, capacity: 2 * tableBlock) { buffer in
                let ins = buffer.baseAddress!, outs = ins + tableBlock
                for lo in stride(from: start, to: end, by: tableBlock) {
                    let hi = min(end, lo + tableBlock), accumulate: Int32 = lo == start ? 0 : 1
                    if let gi = gradInput {
                        // Offset by offset even on a dense map: here the all-offsets kernel measured
                        // slower (W3b fwd+bwd +1-2%, 3 in-process runs of 16-24 rounds), its matrices'
                        // slices (36 KB) competing for the cache with this pass's partial sums.
                        tableProductBlock(lo..<hi, table, offsets: offsets, dense: false, source: gradOutput, width: cout, target: gi,
                                          targetWidth: cin, matrices: transposed!, bias: nil, mirrored: true,
                                          accumulate: accumulateInput)
                    }
                    guard let sums = sums else { continue }
                    for k in segmentOffsets {
                        let target = sums + (k - segmentOffsets.lowerBound) * size
                        if k == centre {
                            _ = smil_outer_gemm(Int32(hi - lo), Int32(cin), Int32(cout), input + lo * cin, nil, Int32(cin),
                                                gradOutput + lo * cout, nil, Int32(cout), target, Int32(cout), accumulate)
                            continue
                        }
                        var m = 0
                        for i in lo..<hi {
                            let j = table[i * offsets + k]
                            if j >= 0 { ins[m] = j; outs[m] = Int32(i); m += 1 }
                        }
                        _ = smil_outer_gemm(Int32(m), Int32(cin), Int32(cout), input, ins, Int32(cin), gradOutput, outs,
                                            Int32(cout), target, Int32(cout), accumulate)
                    }
                }
            }
            return
        }
        // One of the offsets the segments leave: every offset but the centre.
        let k = t - segments < centre ? t - segments : t - segments + 1
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: 2 * max(1, n)) { buffer in
            let ins = buffer.baseAddress!, outs = ins + n
            var m = 0
            for i in 0..<n {
                let j = table[i * offsets + k]
                if j >= 0 { ins[m] = j; outs[m] = Int32(i); m += 1 }
            }
            _ = smil_outer_gemm(Int32(m), Int32(cin), Int32(cout), input, ins, Int32(cin), gradOutput, outs, Int32(cout),
                                gradWeight! + k * size, Int32(cout), 0)
        }
    }

    /// Adds the segments' partials in segment order and frees the scratch.
    func finish() {
        transposed?.deallocate()
        guard let gw = gradWeight, let partial = partial, segments > 1 else { return }
        let size = cin * cout, matrices = segmentOffsets.count
        for (m, k) in segmentOffsets.enumerated() {
            let out = gw + k * size
            for x in 0..<size { out[x] = partial[m * size + x] }
            for s in 1..<segments {
                let p = partial + (s * matrices + m) * size
                for x in 0..<size { out[x] += p[x] }
            }
        }
        partial.deallocate()
    }
}

/// Backward of `submanifoldTableProduct` (forward): see `TableBackward`.
func submanifoldBackwardTable(_ table: [Int32], input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                              weight: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>?,
                              gradWeight: UnsafeMutablePointer<Float>?, gradBias: UnsafeMutablePointer<Float>?,
                              n: Int, offsets: Int, dense: Bool, cin: Int, cout: Int, accumulateInput: Bool = false) {
    if let gb = gradBias { columnSums(gradOutput, rows: n, cols: cout, into: gb) }
    table.withUnsafeBufferPointer { t in
        let backward = TableBackward(t.baseAddress!, rows: n, offsets: offsets, dense: dense, input: input, weight: weight,
                                     gradOutput: gradOutput, gradInput: gradInput, gradWeight: gradWeight, cin: cin, cout: cout,
                                     accumulateInput: accumulateInput)
        Parallel.forEach(backward.count) { backward.task($0) }
        backward.finish()
    }
}
