// SparseConvolution.swift: sparse convolution and pooling over row-major feature matrices, driven
// by a rulebook: the centre offset is one GEMM straight into the output, every other offset is
// gather -> GEMM -> scatter-add (SparseConvNet's CPU/Convolution.cpp scheme). An offset never
// repeats an output (or input) row, so its scatter is split over threads without races, and the
// offsets are applied in order: the same bits whatever the thread count.

/// Copies rows `index[p]` of `src` (`width` wide) into consecutive rows of `dst`.
func gatherRows(_ src: UnsafePointer<Float>, _ index: [Int32], width: Int, _ dst: UnsafeMutablePointer<Float>) {
    index.withUnsafeBufferPointer { idx in
        Parallel.forRanges(idx.count, grain: max(1, 16384 / max(width, 1))) { r in
            for p in r { (dst + p * width).update(from: src + Int(idx[p]) * width, count: width) }
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

/// Forward sparse convolution: `output` `[nOut, cout]` from `input` `[nIn, cin]`, weight
/// `[offsets, cin, cout]`, optional bias `[cout]`.
func sparseConvolutionForward(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                              weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                              rulebook: Rulebook, nOut: Int, cin: Int, cout: Int) {
    if let c = rulebook.centre {
        gemm(transA: false, transB: false, m: nOut, n: cout, k: cin, a: input, lda: cin,
             b: weight + c * cin * cout, ldb: cout, c: output, ldc: cout)
    } else {
        output.update(repeating: 0, count: nOut * cout)
    }
    let most = rulebook.inputs.map(\.count).max() ?? 0
    let gathered = UnsafeMutablePointer<Float>.allocate(capacity: max(1, most * cin))
    let product = UnsafeMutablePointer<Float>.allocate(capacity: max(1, most * cout))
    defer { gathered.deallocate(); product.deallocate() }
    for k in 0..<rulebook.offsets where !rulebook.inputs[k].isEmpty {
        let pairs = rulebook.inputs[k].count
        gatherRows(input, rulebook.inputs[k], width: cin, gathered)
        gemm(transA: false, transB: false, m: pairs, n: cout, k: cin, a: gathered, lda: cin,
             b: weight + k * cin * cout, ldb: cout, c: product, ldc: cout)
        scatterAddRows(product, rulebook.outputs[k], width: cout, output)
    }
    if let bias = bias {
        Parallel.forRanges(nOut, grain: 1024) { r in
            for i in r { for j in 0..<cout { output[i * cout + j] += bias[j] } }
        }
    }
}

/// Backward sparse convolution: writes `gradInput` `[nIn, cin]` (if given), `gradWeight`
/// `[offsets, cin, cout]` (if given) and `gradBias` `[cout]` (if given).
func sparseConvolutionBackward(input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                               gradInput: UnsafeMutablePointer<Float>?, gradWeight: UnsafeMutablePointer<Float>?,
                               gradBias: UnsafeMutablePointer<Float>?, rulebook: Rulebook,
                               nIn: Int, nOut: Int, cin: Int, cout: Int) {
    if let gb = gradBias {
        Parallel.forRanges(cout, grain: 16) { r in
            for j in r {
                var s: Double = 0
                for i in 0..<nOut { s += Double(gradOutput[i * cout + j]) }
                gb[j] = Float(s)
            }
        }
    }
    if let c = rulebook.centre {
        if let gi = gradInput {
            gemm(transA: false, transB: true, m: nIn, n: cin, k: cout, a: gradOutput, lda: cout,
                 b: weight + c * cin * cout, ldb: cout, c: gi, ldc: cin)
        }
        if let gw = gradWeight {
            gemm(transA: true, transB: false, m: cin, n: cout, k: nIn, a: input, lda: cin,
                 b: gradOutput, ldb: cout, c: gw + c * cin * cout, ldc: cout)
        }
    } else {
        gradInput?.update(repeating: 0, count: nIn * cin)
    }
    let most = rulebook.inputs.map(\.count).max() ?? 0
    let gIn = UnsafeMutablePointer<Float>.allocate(capacity: max(1, most * cin))
    let gOut = UnsafeMutablePointer<Float>.allocate(capacity: max(1, most * cout))
    defer { gIn.deallocate(); gOut.deallocate() }
    for k in 0..<rulebook.offsets where k != rulebook.centre {
        let pairs = rulebook.inputs[k].count
        if pairs == 0 {
            gradWeight.map { ($0 + k * cin * cout).update(repeating: 0, count: cin * cout) }
            continue
        }
        gatherRows(gradOutput, rulebook.outputs[k], width: cout, gOut)
        if let gw = gradWeight {
            gatherRows(input, rulebook.inputs[k], width: cin, gIn)
            gemm(transA: true, transB: false, m: cin, n: cout, k: pairs, a: gIn, lda: cin,
                 b: gOut, ldb: cout, c: gw + k * cin * cout, ldc: cout)
        }
        if let gi = gradInput {
            gemm(transA: false, transB: true, m: pairs, n: cin, k: cout, a: gOut, lda: cout,
                 b: weight + k * cin * cout, ldb: cout, c: gIn, ldc: cin)
            scatterAddRows(gIn, rulebook.inputs[k], width: cin, gi)
        }
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
