// Winograd.swift: 3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3)
// (Lavin & Gray, 2016): 16 multiplications per 2x2 output instead of 36, as 16 GEMMs.
//
// With U = G g G^T (weights), V = B^T d B (4x4 input tiles, overlapping by 2) and
// Y = A^T (sum_c U .* V) A:
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1].
// For each of the 16 tile positions xi the channel sum is one GEMM:
//   M[xi] (O x T) = U[xi] (O x C) * V[xi] (C x T), T = tiles.
// Both transforms run a whole row of tiles at a time, so their inner loops are contiguous.

/// Whether a convolution can take the Winograd path (3x3, stride 1, dilation 1, padding <= 2).
func winogradApplies(_ g: ConvGeometry) -> Bool {
    g.kernelH == 3 && g.kernelW == 3 && g.stride == 1 && g.dilation == 1 && g.padding <= 2
        && g.outHeight > 0 && g.outWidth > 0
}

/// Transforms weights `[O, C, 3, 3]` into `u` laid out `[16][O][C]`.
func winogradWeightTransform(_ w: UnsafePointer<Float>, _ u: UnsafeMutablePointer<Float>, outChannels: Int, inChannels: Int) {
    let oc = outChannels * inChannels
    Parallel.forRanges(oc, grain: 8192) { r in
        for idx in r {
            let k = w + idx * 9
            // Gg (4 x 3), row by row of G, then (Gg) G^T (4 x 4).
            for i in 0..<4 {
                var t0: Float, t1: Float, t2: Float
                switch i {
                case 0: (t0, t1, t2) = (k[0], k[1], k[2])
                case 1: (t0, t1, t2) = (0.5 * (k[0] + k[3] + k[6]), 0.5 * (k[1] + k[4] + k[7]), 0.5 * (k[2] + k[5] + k[8]))
                case 2: (t0, t1, t2) = (0.5 * (k[0] - k[3] + k[6]), 0.5 * (k[1] - k[4] + k[7]), 0.5 * (k[2] - k[5] + k[8]))
                default: (t0, t1, t2) = (k[6], k[7], k[8])
                }
                u[(4 * i) * oc + idx] = t0
                u[(4 * i + 1) * oc + idx] = 0.5 * (t0 + t1 + t2)
                u[(4 * i + 2) * oc + idx] = 0.5 * (t0 - t1 + t2)
                u[(4 * i + 3) * oc + idx] = t2
            }
        }
    }
}

/// A convolution weight in the Winograd domain, `[16][O][C]`; computed once per forward and
/// reused by the backward pass.
public final class WinogradWeights {
    let pointer: UnsafeMutablePointer<Float>
    let outChannels, inChannels: Int

    init(_ weight: UnsafePointer<Float>, outChannels: Int, inChannels: Int) {
        self.outChannels = outChannels
        self.inChannels = inChannels
        pointer = .allocate(capacity: 16 * outChannels * inChannels)
        winogradWeightTransform(weight, pointer, outChannels: outChannels, inChannels: inChannels)
    }

    deinit { pointer.deallocate() }
}

/// Position xi = 4a + b of the flipped kernel's transform: flipping a 3x3 kernel reverses it, and
/// G J = S G with S swapping rows 0 and 3, so U_flipped[a][b] = U[s(a)][s(b)].
@inline(__always) func flippedPosition(_ xi: Int) -> Int {
    let s = [3, 1, 2, 0]
    return 4 * s[xi / 4] + s[xi % 4]
}

/// Columns of M per task of the Winograd products (a multiple of 16).
let winogradColumnBlock = 512

/// Forward 3x3 stride-1 convolution by F(2x2, 3x3). `u` is the transformed weight
/// (`winogradWeightTransform`); input `[N, C, H, W]`, output `[N, O, OH, OW]`.
/// With `transposedFlipped`, `u` holds the transform of a `[C, O, 3, 3]` weight and the
/// convolution uses that weight flipped with its channels swapped (the input gradient's kernel).
/// With `accumulate` the result is added to what `output` holds.
func winogradConvolution(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                         u: UnsafePointer<Float>, bias: UnsafePointer<Float>?, _ g: ConvGeometry,
                         transposedFlipped: Bool = false, accumulate: Bool = false) {
    let C = g.inChannels, O = g.outChannels, p = g.padding
    let oh = g.outHeight, ow = g.outWidth
    let th = (oh + 1) / 2, tw = (ow + 1) / 2, tilesPerImage = th * tw
    let total = g.batch * tilesPerImage
    // Tiles per chunk: whole tile rows, bounded so that V and M stay near 2M floats; fixed by the
    // shape. (With the products in one parallel region, below: the 3x3 layers of ResNet-18 at 64
    // to 256 channels 3-11% faster than 8M floats and a region per product, in 13, 14 and 17 of
    // 20 rounds alternating in one process. Alone, 2M and 8M measured the same; 1M was slower.)
    let rowsPerChunk = max(1, (1 << 21) / (16 * (C + O) * tw))
    let chunk = min(total, rowsPerChunk * tw)
    let v = UnsafeMutablePointer<Float>.allocate(capacity: 16 * C * chunk)
    let m = UnsafeMutablePointer<Float>.allocate(capacity: 16 * O * chunk)
    defer { v.deallocate(); m.deallocate() }
    // Padded planes hold whole tiles: (2*th + 2) x (2*tw + 2), zero outside the image.
    let ph = 2 * th + 2, pw = 2 * tw + 2
    var t0 = 0
    while t0 < total {
        let count = min(chunk, total - t0)
        // Input transform, split by channel: V[xi][c][t].
        Parallel.forEach(C) { c in
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: ph * pw + 4 * pw)
            defer { scratch.deallocate() }
            let plane = scratch, b = scratch + ph * pw
            var loaded = -1
            let stream = C * count
            var t = 0
            while t < count {
                let gt = t0 + t, n = gt / tilesPerImage, local = gt % tilesPerImage
                let ty = local / tw, tx0 = local % tw
                let run = min(tw - tx0, count - t)
                if n != loaded {
                    plane.update(repeating: 0, count: ph * pw)
                    let src = input + (n * C + c) * g.height * g.width
                    let cols = min(g.width, pw - p)
                    for y in 0..<min(g.height, ph - p) {
                        (plane + (y + p) * pw + p).update(from: src + y * g.width, count: cols)
                    }
                    loaded = n
                }
                // B^T d over the whole padded row band: four rows b0..b3, contiguous in x.
                let r0 = plane + 2 * ty * pw, r1 = r0 + pw, r2 = r1 + pw, r3 = r2 + pw
                let b0 = b, b1 = b + pw, b2 = b + 2 * pw, b3 = b + 3 * pw
                for x in 0..<pw {
                    b0[x] = r0[x] - r2[x]
                    b1[x] = r1[x] + r2[x]
                    b2[x] = r2[x] - r1[x]
                    b3[x] = r1[x] - r3[x]
                }
                // (B^T d) B per tile: columns 2tx .. 2tx+3 of each band row.
                for i in 0..<4 {
                    let bi = b + i * pw
                    let s0 = v + (4 * i) * stream + c * count + t, s1 = s0 + stream, s2 = s1 + stream, s3 = s2 + stream
                    for k in 0..<run {
                        let x = 2 * (tx0 + k)
                        let e0 = bi[x], e1 = bi[x + 1], e2 = bi[x + 2], e3 = bi[x + 3]
                        s0[k] = e0 - e2
                        s1[k] = e1 + e2
                        s2[k] = e2 - e1
                        s3[k] = e1 - e3
                    }
                }
                t += run
            }
        }
        // 16 GEMMs: M[xi] = U[xi] V[xi], as tasks of one position and a block of columns, each on
        // a single-threaded sgemm (whose columns do not depend on how they are split). (One
        // parallel region for all 16, where each GEMM was one of its own.)
        let blocks = (count + winogradColumnBlock - 1) / winogradColumnBlock
        Parallel.forEach(16 * blocks) { task in
            let xi = task / blocks, j = (task % blocks) * winogradColumnBlock, n = min(winogradColumnBlock, count - j)
            if transposedFlipped {
                sgemmSerial(transA: true, m: O, n: n, k: C, a: u + flippedPosition(xi) * O * C, lda: O,
                            b: v + xi * C * count + j, ldb: count, c: m + xi * O * count + j, ldc: count)
            } else {
                sgemmSerial(m: O, n: n, k: C, a: u + xi * O * C, lda: C, b: v + xi * C * count + j, ldb: count,
                            c: m + xi * O * count + j, ldc: count)
            }
        }
        // Output transform, split by output channel: A^T M A, a row of tiles at a time.
        Parallel.forEach(O) { o in
            let bo = bias?[o] ?? 0
            let stream = O * count
            let q = UnsafeMutablePointer<Float>.allocate(capacity: 8 * tw)
            defer { q.deallocate() }
            var t = 0
            while t < count {
                let gt = t0 + t, n = gt / tilesPerImage, local = gt % tilesPerImage
                let ty = local / tw, tx0 = local % tw
                let run = min(tw - tx0, count - t)
                // A^T M: q[row][j][k] for rows 0, 1 and tile columns j = 0..3.
                for j in 0..<4 {
                    let m0 = m + j * stream + o * count + t
                    let m1 = m0 + 4 * stream, m2 = m1 + 4 * stream, m3 = m2 + 4 * stream
                    let qa = q + j * tw, qb = q + (4 + j) * tw
                    for k in 0..<run {
                        qa[k] = m0[k] + m1[k] + m2[k]
                        qb[k] = m1[k] - m2[k] - m3[k]
                    }
                }
                let dst = output + (n * O + o) * oh * ow
                for i in 0..<2 {
                    let y = 2 * ty + i
                    if y >= oh { break }
                    let a0 = q + (4 * i) * tw, a1 = a0 + tw, a2 = a1 + tw, a3 = a2 + tw
                    let row = dst + y * ow
                    if accumulate {
                        for k in 0..<run {
                            let x = 2 * (tx0 + k)
                            row[x] += a0[k] + a1[k] + a2[k] + bo
                            if x + 1 < ow { row[x + 1] += a1[k] - a2[k] - a3[k] + bo }
                        }
                    } else {
                        for k in 0..<run {
                            let x = 2 * (tx0 + k)
                            row[x] = a0[k] + a1[k] + a2[k] + bo
                            if x + 1 < ow { row[x + 1] = a1[k] - a2[k] - a3[k] + bo }
                        }
                    }
                }
                t += run
            }
        }
        t0 += count
    }
}
