// Winograd.swift: 3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3)
// (Lavin & Gray, 2016): 16 multiplications per 2x2 output instead of 36, as 16 GEMMs.
//
// With U = G g G^T (weights), V = B^T d B (4x4 input tiles) and Y = A^T (sum_c U .* V) A:
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1].
// For each of the 16 tile positions the channel sum is one GEMM: M[xi] (O x T) = U[xi] (O x C) V[xi] (C x T).

/// Whether a convolution can take the Winograd path (3x3, stride 1, dilation 1).
func winogradApplies(_ g: ConvGeometry) -> Bool {
    g.kernelH == 3 && g.kernelW == 3 && g.stride == 1 && g.dilation == 1 && g.padding <= 2
        && g.outHeight > 0 && g.outWidth > 0
}

/// Transforms weights `[O, C, 3, 3]` into `u` laid out `[16][O][C]`.
func winogradWeightTransform(_ w: UnsafePointer<Float>, _ u: UnsafeMutablePointer<Float>, outChannels: Int, inChannels: Int) {
    let oc = outChannels * inChannels
    Parallel.forRanges(oc, grain: 4096) { r in
        for idx in r {
            let k = w + idx * 9
            // Gg: 4 x 3 (rows of G applied to the kernel's rows).
            var t = [Float](repeating: 0, count: 12)
            for j in 0..<3 {
                let g0 = k[j], g1 = k[3 + j], g2 = k[6 + j]
                t[j] = g0
                t[3 + j] = 0.5 * (g0 + g1 + g2)
                t[6 + j] = 0.5 * (g0 - g1 + g2)
                t[9 + j] = g2
            }
            for i in 0..<4 {
                let r0 = t[3 * i], r1 = t[3 * i + 1], r2 = t[3 * i + 2]
                let row = [r0, 0.5 * (r0 + r1 + r2), 0.5 * (r0 - r1 + r2), r2]
                for j in 0..<4 { u[(4 * i + j) * oc + idx] = row[j] }
            }
        }
    }
}

/// Forward 3x3 stride-1 convolution by F(2x2, 3x3). `u` is the transformed weight
/// (`winogradWeightTransform`); input `[N, C, H, W]`, output `[N, O, OH, OW]`.
func winogradConvolution(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                         u: UnsafePointer<Float>, bias: UnsafePointer<Float>?, _ g: ConvGeometry) {
    let C = g.inChannels, O = g.outChannels, p = g.padding
    let oh = g.outHeight, ow = g.outWidth
    let th = (oh + 1) / 2, tw = (ow + 1) / 2, tilesPerImage = th * tw
    let total = g.batch * tilesPerImage
    // Tiles per chunk: bounded so that V and M together stay near 8M floats; fixed by the shape.
    let chunk = max(1, min(total, (1 << 23) / (16 * (C + O))))
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
            let plane = UnsafeMutablePointer<Float>.allocate(capacity: ph * pw + 16)
            defer { plane.deallocate() }
            let b = plane + ph * pw
            var loaded = -1
            for t in 0..<count {
                let gt = t0 + t, n = gt / tilesPerImage, local = gt % tilesPerImage
                if n != loaded {
                    plane.update(repeating: 0, count: ph * pw)
                    let src = input + (n * C + c) * g.height * g.width
                    for y in 0..<g.height where y + p < ph {
                        let cols = min(g.width, pw - p)
                        (plane + (y + p) * pw + p).update(from: src + y * g.width, count: cols)
                    }
                    loaded = n
                }
                let ty = local / tw, tx = local % tw
                let d = plane + (2 * ty) * pw + 2 * tx
                // B^T d (rows), then (B^T d) B (columns), written to the 16 streams V[xi][c][t].
                for j in 0..<4 {
                    let d0 = d[j], d1 = d[pw + j], d2 = d[2 * pw + j], d3 = d[3 * pw + j]
                    b[j] = d0 - d2
                    b[4 + j] = d1 + d2
                    b[8 + j] = d2 - d1
                    b[12 + j] = d1 - d3
                }
                let base = v + c * count + t
                let stride = C * count
                for i in 0..<4 {
                    let r0 = b[4 * i], r1 = b[4 * i + 1], r2 = b[4 * i + 2], r3 = b[4 * i + 3]
                    base[(4 * i) * stride] = r0 - r2
                    base[(4 * i + 1) * stride] = r1 + r2
                    base[(4 * i + 2) * stride] = r2 - r1
                    base[(4 * i + 3) * stride] = r1 - r3
                }
            }
        }
        // 16 GEMMs: M[xi] = U[xi] V[xi].
        for xi in 0..<16 {
            gemm(transA: false, transB: false, m: O, n: count, k: C, a: u + xi * O * C, lda: C,
                 b: v + xi * C * count, ldb: count, c: m + xi * O * count, ldc: count)
        }
        // Output transform, split by output channel.
        Parallel.forEach(O) { o in
            let b = bias?[o] ?? 0
            let stride = O * count
            let q = UnsafeMutablePointer<Float>.allocate(capacity: 8)
            defer { q.deallocate() }
            for t in 0..<count {
                let gt = t0 + t, n = gt / tilesPerImage, local = gt % tilesPerImage
                let ty = local / tw, tx = local % tw
                let base = m + o * count + t
                // A^T M: 2 x 4.
                for j in 0..<4 {
                    let m0 = base[j * stride], m1 = base[(4 + j) * stride], m2 = base[(8 + j) * stride], m3 = base[(12 + j) * stride]
                    q[j] = m0 + m1 + m2
                    q[4 + j] = m1 - m2 - m3
                }
                let dst = output + (n * O + o) * oh * ow
                for i in 0..<2 {
                    let y = 2 * ty + i
                    if y >= oh { break }
                    let r0 = q[4 * i], r1 = q[4 * i + 1], r2 = q[4 * i + 2], r3 = q[4 * i + 3]
                    let x = 2 * tx
                    dst[y * ow + x] = r0 + r1 + r2 + b
                    if x + 1 < ow { dst[y * ow + x + 1] = r1 - r2 - r3 + b }
                }
            }
        }
        t0 += count
    }
}
