// KernelTests.swift: BLAS-backed kernels against their plain reference loops, and bit-identical
// results whatever the thread count.

import XCTest
import CKernels
@testable import Core
import TestSupport

final class KernelTests: XCTestCase {
    func testGemmMatchesReferenceLoop() throws {
        RandomGenerator.seed(3)
        for (m, n, k, ta, tb) in [(3, 5, 4, false, false), (70, 300, 90, true, false), (257, 65, 129, false, true),
                                  (130, 140, 150, true, true), (20, 30, 20_000, true, false), (9, 7, 9000, false, true)] {
            let a = try Tensor.randn([m * k]), b = try Tensor.randn([k * n])
            var c1 = try Tensor.randn([m * n]), c2 = c1
            let lda = ta ? m : k, ldb = tb ? k : n
            a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in
                c1.withUnsafeMutableBufferPointer { cp in
                    gemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.5, a: ap.baseAddress!, lda: lda,
                         b: bp.baseAddress!, ldb: ldb, beta: 0.25, c: cp.baseAddress!, ldc: n)
                }
                c2.withUnsafeMutableBufferPointer { cp in
                    referenceGemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.5, a: ap.baseAddress!, lda: lda,
                                  b: bp.baseAddress!, ldb: ldb, beta: 0.25, c: cp.baseAddress!, ldc: n)
                }
            } }
            assertClose(c1, c2, tolerance: 1e-5, "gemm \(m)x\(n)x\(k) \(ta) \(tb)")
        }
    }

    /// The convolution tiles' product: row-kernel chunks, the sgemm tail of `n % 16` columns, and
    /// the sgemm fallback above `smallKLimit`, on operands with rows wider than the product.
    func testSmallKProductMatchesReferenceLoop() throws {
        RandomGenerator.seed(5)
        for (m, n, k) in [(1, 16, 1), (7, 45, 3), (64, 300, 147), (13, 1000, 64), (5, 9, 40), (6, 48, smallKLimit + 1)] {
            let lda = k + 3, ldb = n + 5, ldc = n + 7
            let a = try Tensor.randn([m * lda]), b = try Tensor.randn([k * ldb])
            var c1 = try Tensor.full([m * ldc], 7), c2 = c1
            a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in
                c1.withUnsafeMutableBufferPointer { cp in
                    smallKProduct(m: m, n: n, k: k, a: ap.baseAddress!, lda: lda, b: bp.baseAddress!, ldb: ldb,
                                  c: cp.baseAddress!, ldc: ldc)
                }
                c2.withUnsafeMutableBufferPointer { cp in
                    referenceGemm(transA: false, transB: false, m: m, n: n, k: k, a: ap.baseAddress!, lda: lda,
                                  b: bp.baseAddress!, ldb: ldb, c: cp.baseAddress!, ldc: ldc)
                }
            } }
            // Columns past n in each row of C stay as they were.
            assertClose(c1, c2, tolerance: 1e-5, "smallKProduct \(m)x\(n)x\(k)")
        }
    }

    /// The row kernel adding its product into every other float of each row: blocks of 6 rows and
    /// every tail of 1-5, -0 in the odd floats kept bit for bit, nothing touched past a row's
    /// last odd float.
    func testRowsGemmAddEvenMatchesReferenceLoop() throws {
        try XCTSkipIf(smil_has_avx2_fma() == 0, "smil_rows_gemm_add_even needs AVX2 + FMA")
        var rng = RandomGenerator(seed: 12)
        for (m, n, k) in [(1, 16, 5), (2, 32, 9), (3, 16, 1), (4, 48, 64), (5, 16, 130), (6, 32, 7), (13, 64, 20)] {
            let lda = k + 3, ldb = n + 5, ldd = 2 * n + 3
            let a = (0..<m * lda).map { _ in Float(rng.nextNormal()) }, b = (0..<k * ldb).map { _ in Float(rng.nextNormal()) }
            // Even floats of each row random, odd ones -0, the 3 past the row's 2n a sentinel.
            var dst = (0..<m * ldd).map { i -> Float in i % ldd >= 2 * n ? 7 : i % ldd % 2 == 1 ? -0.0 : Float(rng.nextNormal()) }
            let before = dst
            XCTAssertEqual(smil_rows_gemm_add_even(Int32(m), Int32(n), Int32(k), a, Int32(lda), b, Int32(ldb), &dst, ldd), 1)
            for i in 0..<m {
                for j in 0..<ldd {
                    let at = i * ldd + j
                    if j < 2 * n && j % 2 == 0 {
                        let sum = (0..<k).reduce(0.0) { $0 + Double(a[i * lda + $1]) * Double(b[$1 * ldb + j / 2]) }
                        XCTAssertEqual(Double(dst[at]), Double(before[at]) + sum, accuracy: 1e-4 * max(1, abs(sum)), "m \(m) row \(i) column \(j / 2)")
                    } else {
                        XCTAssertEqual(dst[at].bitPattern, before[at].bitPattern, "m \(m) row \(i): float \(j) changed")
                    }
                }
            }
        }
        // Columns that are not whole vectors are refused, with nothing written.
        var dst = [Float](repeating: 1, count: 40)
        XCTAssertEqual(smil_rows_gemm_add_even(1, 20, 1, [1], 1, [Float](repeating: 1, count: 20), 20, &dst, 40), 0)
        XCTAssertEqual(dst, [Float](repeating: 1, count: 40))
    }

    /// A copy carried out between the row kernels' blocks (`smil_side_copy`): runs of whole and
    /// even floats, in (outer, inner) order, nothing written outside them; and the kernels that
    /// carry it give the same bits as without it, whatever part of it they take.
    func testSideCopiesInsideTheRowKernels() throws {
        try XCTSkipIf(smil_has_avx2_fma() == 0, "the side copies run inside the AVX2 row kernels")
        var rng = RandomGenerator(seed: 31)
        let source = (0..<4000).map { _ in Float(rng.nextNormal()) }
        /// A copy of 3 x `inners` runs of `count` floats, `step` apart in the source, into a
        /// destination of sentinels; and what it must hold afterwards.
        func copy(step: Int, inners: Int, count: Int) -> (smil_side_copy, [Float]) {
            let srcOuter = 900, srcInner = 2 * count + 5, dstOuter = inners * (count + 3) + 2, dstInner = count + 3
            var expected = [Float](repeating: 7, count: 3 * dstOuter)
            for outer in 0..<3 { for inner in 0..<inners { for i in 0..<count {
                expected[outer * dstOuter + inner * dstInner + i] = source[outer * srcOuter + inner * srcInner + i * step]
            } } }
            let side = smil_side_copy(src: nil, srcOuter: srcOuter, srcInner: srcInner, dst: nil, dstOuter: dstOuter,
                                      dstInner: dstInner, runs: Int32(3 * inners), inners: Int32(inners), count: Int32(count),
                                      step: Int32(step), ahead: 2, done: 0)
            return (side, expected)
        }
        for (step, inners, count) in [(1, 1, 8), (2, 1, 16), (2, 3, 24), (1, 2, 40)] {
            var (side, expected) = copy(step: step, inners: inners, count: count)
            var dst = [Float](repeating: 7, count: expected.count)
            source.withUnsafeBufferPointer { src in dst.withUnsafeMutableBufferPointer { d in
                side.src = src.baseAddress!
                side.dst = d.baseAddress!
                smil_side_copy_some(&side, 2)
                XCTAssertEqual(side.done, 2)
                smil_side_copy_some(&side, 100)
            } }
            XCTAssertEqual(side.done, side.runs)
            XCTAssertEqual(dst, expected, "step \(step), \(inners) inner runs of \(count)")
        }
        // The kernels: the product's bits as without a copy, the copy complete after the rest is
        // taken, and some of it taken between the blocks.
        for (m, n, k, accumulate) in [(13, 48, 20, 0), (6, 16, 3, 1), (64, 128, 64, 1), (5, 32, 9, 0)] {
            let lda = k + 3, ldb = n + 5, ldc = n + 7
            let a = (0..<m * lda).map { _ in Float(rng.nextNormal()) }, b = (0..<k * ldb).map { _ in Float(rng.nextNormal()) }
            let c0 = (0..<m * ldc).map { _ in Float(rng.nextNormal()) }
            var plain = c0, carried = c0
            var (side, expected) = copy(step: 2, inners: 2, count: 16)
            var dst = [Float](repeating: 7, count: expected.count)
            XCTAssertEqual(smil_rows_gemm(Int32(m), Int32(n), Int32(k), a, nil, Int32(lda), b, Int32(ldb), &plain, nil,
                                          Int32(ldc), Int32(accumulate)), 1)
            source.withUnsafeBufferPointer { src in dst.withUnsafeMutableBufferPointer { d in
                side.src = src.baseAddress!
                side.dst = d.baseAddress!
                XCTAssertEqual(smil_rows_gemm_side(Int32(m), Int32(n), Int32(k), a, Int32(lda), b, Int32(ldb), &carried,
                                                   Int32(ldc), Int32(accumulate), &side, 1), 1)
                XCTAssertEqual(side.done, Int32(min(6, m / 6 * n / 16)), "runs taken between the blocks, \(m) x \(n)")
                smil_side_copy_some(&side, side.runs)
            } }
            XCTAssertEqual(plain.map(\.bitPattern), carried.map(\.bitPattern), "smil_rows_gemm_side \(m) x \(n) x \(k)")
            XCTAssertEqual(dst, expected, "copy beside \(m) x \(n) x \(k)")

            let ldd = 2 * n + 3
            let d0 = (0..<m * ldd).map { _ in Float(rng.nextNormal()) }
            var evenPlain = d0, evenCarried = d0
            (side, expected) = copy(step: 1, inners: 1, count: 8)
            dst = [Float](repeating: 7, count: expected.count)
            XCTAssertEqual(smil_rows_gemm_add_even(Int32(m), Int32(n), Int32(k), a, Int32(lda), b, Int32(ldb), &evenPlain, ldd), 1)
            source.withUnsafeBufferPointer { src in dst.withUnsafeMutableBufferPointer { d in
                side.src = src.baseAddress!
                side.dst = d.baseAddress!
                XCTAssertEqual(smil_rows_gemm_add_even_side(Int32(m), Int32(n), Int32(k), a, Int32(lda), b, Int32(ldb),
                                                            &evenCarried, ldd, &side, 2), 1)
                smil_side_copy_some(&side, side.runs)
            } }
            XCTAssertEqual(evenPlain.map(\.bitPattern), evenCarried.map(\.bitPattern), "smil_rows_gemm_add_even_side \(m) x \(n) x \(k)")
            XCTAssertEqual(dst, expected, "copy beside the even adds, \(m) x \(n) x \(k)")
        }
    }

    /// Max pooling against PyTorch's rule written as a loop (each window scanned row by row from
    /// its first position, a value taking over when greater or NaN): windows clipped at every
    /// edge, rows of 8-window blocks with scalar ends, ties, runs of -inf, and NaN in one, two and
    /// all of a window's rows; with and without the positions, which the gradient follows.
    func testMaxPoolMatchesPyTorchRule() throws {
        var rng = RandomGenerator(seed: 21)
        let geometries = [PoolGeometry(height: 9, width: 53, kernel: 3, stride: 2, padding: 1),
                          PoolGeometry(height: 12, width: 40, kernel: 2, stride: 2, padding: 0),
                          PoolGeometry(height: 7, width: 30, kernel: 5, stride: 2, padding: 2),
                          PoolGeometry(height: 6, width: 11, kernel: 3, stride: 1, padding: 1),
                          PoolGeometry(height: 8, width: 13, kernel: 4, stride: 3, padding: 2)]
        for g in geometries {
            let planes = 3, count = planes * g.height * g.width
            // Few distinct values, so windows tie; -inf, and NaN in some windows' rows.
            var x = (0..<count).map { _ in Float(Int(rng.nextUniform() * 4)) }
            for i in 0..<count where rng.nextUniform() < 0.08 { x[i] = -.infinity }
            for i in 0..<count where rng.nextUniform() < 0.04 { x[i] = .nan }
            for i in 0..<(2 * g.width) { x[g.height * g.width + i] = -.infinity }  // plane 1 starts with two rows of -inf
            let oh = g.outHeight, ow = g.outWidth, cells = planes * oh * ow
            var y = [Float](repeating: 0, count: cells), at = [Int32](repeating: -1, count: cells)
            var yAlone = [Float](repeating: 0, count: cells)
            x.withUnsafeBufferPointer { xp in
                maxPoolForward(xp.baseAddress!, &y, argmax: &at, planes: planes, g)
                maxPoolForward(xp.baseAddress!, &yAlone, argmax: nil, planes: planes, g)
            }
            for p in 0..<planes { for oy in 0..<oh { for ox in 0..<ow {
                let ys = max(oy * g.stride - g.padding, 0), ye = min(oy * g.stride - g.padding + g.kernel, g.height)
                let xs = max(ox * g.stride - g.padding, 0), xe = min(ox * g.stride - g.padding + g.kernel, g.width)
                var m = -Float.infinity, mi = ys * g.width + xs
                for iy in ys..<ye { for ix in xs..<xe {
                    let v = x[p * g.height * g.width + iy * g.width + ix]
                    if v > m || v.isNaN { m = v; mi = iy * g.width + ix }
                } }
                let cell = (p * oh + oy) * ow + ox
                XCTAssertEqual(y[cell].bitPattern, m.bitPattern, "\(g) plane \(p) cell (\(oy), \(ox))")
                XCTAssertEqual(yAlone[cell].bitPattern, m.bitPattern, "\(g) without positions, cell (\(oy), \(ox))")
                XCTAssertEqual(Int(at[cell]), mi, "\(g) plane \(p) position of cell (\(oy), \(ox))")
            } } }
        }
    }

    /// Batch normalisation's channel sums (several chains side by side) against the single chain
    /// they replace: runs that are not whole vectors, rows apart; the float statistics made from
    /// them bit for bit.
    func testChannelSumsMatchSerialLoops() {
        var rng = RandomGenerator(seed: 31)
        for (runs, n) in [(1, 5), (3, 16), (2, 37), (4, 1000), (10, 3136)] {
            let stride = n + 7
            let x = (0..<runs * stride).map { _ in Float(rng.nextNormal() * 3 + 1) }
            let g = (0..<runs * stride).map { _ in Float(rng.nextNormal()) }
            var sum = 0.0
            for r in 0..<runs { for i in 0..<n { sum += Double(x[r * stride + i]) } }
            let count = Double(runs * n), mean = sum / count
            var squares = 0.0, sumG = 0.0, sumGX = 0.0
            for r in 0..<runs {
                for i in 0..<n {
                    let v = Double(x[r * stride + i]) - mean
                    squares += v * v
                    sumG += Double(g[r * stride + i])
                    sumGX += Double(g[r * stride + i]) * Double(x[r * stride + i] - Float(mean))
                }
            }
            let s1 = smil_channel_sum(x, Int32(runs), stride, n, 0, 0), s2 = smil_channel_sum(x, Int32(runs), stride, n, mean, 1)
            var g1 = 0.0, g2 = 0.0
            smil_channel_gradient_sums(g, x, Int32(runs), stride, n, Float(mean), &g1, &g2)
            XCTAssertEqual(s1, sum, accuracy: 1e-12 * abs(sum) + 1e-9, "sum, \(runs) x \(n)")
            XCTAssertEqual(s2, squares, accuracy: 1e-12 * squares, "squares, \(runs) x \(n)")
            XCTAssertEqual(g1, sumG, accuracy: 1e-12 * abs(sumG) + 1e-9, "gradient sum, \(runs) x \(n)")
            XCTAssertEqual(g2, sumGX, accuracy: 1e-12 * abs(sumGX) + 1e-9, "gradient-times-x sum, \(runs) x \(n)")
            XCTAssertEqual(Float(s1 / count).bitPattern, Float(mean).bitPattern, "mean, \(runs) x \(n)")
            XCTAssertEqual(Float(s2 / count).bitPattern, Float(squares / count).bitPattern, "variance, \(runs) x \(n)")
        }
    }

    func testConvolutionMatchesReferenceLoop() throws {
        RandomGenerator.seed(4)
        let cases: [ConvGeometry] = [
            ConvGeometry(batch: 2, inChannels: 3, height: 9, width: 11, outChannels: 4, kernelH: 3, kernelW: 3, stride: 1, padding: 1),
            ConvGeometry(batch: 3, inChannels: 2, height: 10, width: 7, outChannels: 5, kernelH: 5, kernelW: 5, stride: 2, padding: 2),
            ConvGeometry(batch: 1, inChannels: 4, height: 8, width: 8, outChannels: 2, kernelH: 1, kernelW: 1),
            ConvGeometry(batch: 2, inChannels: 4, height: 8, width: 8, outChannels: 3, kernelH: 1, kernelW: 1, stride: 2),
            // Output rows of 21: the row kernel's 16 columns and a tail of 5, read from the input in place.
            ConvGeometry(batch: 2, inChannels: 5, height: 37, width: 41, outChannels: 7, kernelH: 1, kernelW: 1, stride: 2),
            ConvGeometry(batch: 2, inChannels: 2, height: 9, width: 9, outChannels: 3, kernelH: 3, kernelW: 3, stride: 1, padding: 2, dilation: 2),
            ConvGeometry(batch: 5, inChannels: 3, height: 16, width: 16, outChannels: 6, kernelH: 7, kernelW: 7, stride: 2, padding: 3),
            // Several bands of the windowed route, rows straddling chunks, a short last band.
            ConvGeometry(batch: 2, inChannels: 3, height: 90, width: 70, outChannels: 18, kernelH: 7, kernelW: 7, stride: 2, padding: 3),
            // Output rows of whole vectors: the panel read from padded phase planes in place, for
            // kernels that reach past the image on both sides, one side, and with stride 3.
            ConvGeometry(batch: 2, inChannels: 3, height: 70, width: 64, outChannels: 13, kernelH: 7, kernelW: 7, stride: 2, padding: 3),
            ConvGeometry(batch: 1, inChannels: 2, height: 33, width: 64, outChannels: 8, kernelH: 5, kernelW: 4, stride: 2, padding: 1),
            ConvGeometry(batch: 2, inChannels: 4, height: 20, width: 96, outChannels: 7, kernelH: 3, kernelW: 3, stride: 3, padding: 1),
            ConvGeometry(batch: 2, inChannels: 5, height: 70, width: 150, outChannels: 20, kernelH: 1, kernelW: 1, stride: 2),
            // The strided 1x1 whose output rows are whole vectors (each band's panel packed by
            // the one before it): one band per worker; six bands per image of 4 rows and a last
            // of 1, a worker's bands crossing images, 13 output channels (a row after the 6s).
            ConvGeometry(batch: 2, inChannels: 7, height: 23, width: 64, outChannels: 9, kernelH: 1, kernelW: 1, stride: 2),
            ConvGeometry(batch: 3, inChannels: 64, height: 42, width: 128, outChannels: 13, kernelH: 1, kernelW: 1, stride: 2),
            // Winograd over many tiles, and with many input channels.
            ConvGeometry(batch: 3, inChannels: 4, height: 37, width: 37, outChannels: 6, kernelH: 3, kernelW: 3, stride: 1, padding: 1),
            ConvGeometry(batch: 1, inChannels: 330, height: 6, width: 7, outChannels: 3, kernelH: 3, kernelW: 3, stride: 1, padding: 1),
        ]
        if smil_has_avx2_fma() != 0 {
            XCTAssertEqual(cases.filter { InputGradientTarget.addsOnStores($0) }.count, 2, "cases of the packed-ahead forward")
        }
        for g in cases {
            let x = try Tensor.randn([g.batch, g.inChannels, g.height, g.width])
            let w = try Tensor.randn([g.outChannels, g.inChannels, g.kernelH, g.kernelW]), b = try Tensor.randn([g.outChannels])
            let y = try Functional.conv2d(x, weight: w, bias: b, stride: g.stride, padding: g.padding, dilation: g.dilation)
            let expected = try Tensor(referenceConv2d(input: x.scalars, weight: w.scalars, bias: b.scalars, g), shape: y.shape)
            assertClose(y, expected, tolerance: 1e-5, "\(g)")
        }
    }

    /// The im2col path's backward (tiles, phase planes for strided convolutions, the strided 1x1
    /// path) against gradients written out as loops, on odd sizes and shapes with several tiles.
    func testConvolutionBackwardMatchesReferenceLoops() throws {
        RandomGenerator.seed(7)
        let cases: [ConvGeometry] = [
            ConvGeometry(batch: 2, inChannels: 3, height: 17, width: 13, outChannels: 4, kernelH: 7, kernelW: 7, stride: 2, padding: 3),
            ConvGeometry(batch: 1, inChannels: 2, height: 10, width: 11, outChannels: 3, kernelH: 3, kernelW: 3, stride: 3, padding: 1),
            ConvGeometry(batch: 2, inChannels: 5, height: 9, width: 7, outChannels: 4, kernelH: 1, kernelW: 1, stride: 2),
            ConvGeometry(batch: 2, inChannels: 2, height: 12, width: 12, outChannels: 3, kernelH: 3, kernelW: 3, stride: 2, padding: 2, dilation: 2),
            ConvGeometry(batch: 2, inChannels: 64, height: 41, width: 40, outChannels: 3, kernelH: 3, kernelW: 3, stride: 2, padding: 1),
            ConvGeometry(batch: 3, inChannels: 40, height: 30, width: 30, outChannels: 5, kernelH: 5, kernelW: 5, stride: 1, padding: 2),
            // The windowed route over several bands: rows that straddle chunks, a last band
            // shorter than the others, and (7x7/2) input-gradient stripes in two passes.
            ConvGeometry(batch: 2, inChannels: 3, height: 90, width: 70, outChannels: 18, kernelH: 7, kernelW: 7, stride: 2, padding: 3),
            ConvGeometry(batch: 2, inChannels: 5, height: 70, width: 150, outChannels: 20, kernelH: 1, kernelW: 1, stride: 2),
            // 16 output channels: the weight gradient reads padded phase planes in place.
            ConvGeometry(batch: 2, inChannels: 3, height: 37, width: 40, outChannels: 16, kernelH: 7, kernelW: 7, stride: 2, padding: 3),
            // More output channels than the row kernel takes: the input gradient's columns on sgemm.
            ConvGeometry(batch: 1, inChannels: 4, height: 20, width: 40, outChannels: 330, kernelH: 1, kernelW: 1, stride: 2),
            // The strided 1x1 adding its input gradient on the row kernel's stores: one band of 12
            // rows and a last row of A alone (7 channels); bands of 2 rows and 4 rows of A after
            // the blocks of 6 (64 channels); an odd input width, which keeps the columns route.
            ConvGeometry(batch: 2, inChannels: 7, height: 23, width: 64, outChannels: 9, kernelH: 1, kernelW: 1, stride: 2),
            ConvGeometry(batch: 2, inChannels: 64, height: 40, width: 128, outChannels: 20, kernelH: 1, kernelW: 1, stride: 2),
            ConvGeometry(batch: 2, inChannels: 11, height: 15, width: 63, outChannels: 5, kernelH: 1, kernelW: 1, stride: 2),
            // ... with whole vectors of output channels, each band's operands brought in by the one
            // before it: bands of 1 row in groups of 5; bands of 8 rows and a last of 2, groups of
            // 2 and 3 bands crossing images.
            ConvGeometry(batch: 2, inChannels: 64, height: 40, width: 128, outChannels: 32, kernelH: 1, kernelW: 1, stride: 2),
            ConvGeometry(batch: 3, inChannels: 5, height: 100, width: 64, outChannels: 16, kernelH: 1, kernelW: 1, stride: 2),
            // Winograd's input gradient (a Winograd convolution of its own) over many tiles, with
            // many channels on either side, and at ResNet-18's layer 2 on a 64 x 64 image.
            ConvGeometry(batch: 3, inChannels: 4, height: 37, width: 37, outChannels: 6, kernelH: 3, kernelW: 3, stride: 1, padding: 1),
            ConvGeometry(batch: 1, inChannels: 330, height: 6, width: 7, outChannels: 3, kernelH: 3, kernelW: 3, stride: 1, padding: 1),
            ConvGeometry(batch: 1, inChannels: 3, height: 7, width: 6, outChannels: 330, kernelH: 3, kernelW: 3, stride: 1, padding: 1),
            ConvGeometry(batch: 2, inChannels: 128, height: 8, width: 8, outChannels: 128, kernelH: 3, kernelW: 3, stride: 1, padding: 1),
        ]
        if smil_has_avx2_fma() != 0 {
            XCTAssertEqual(cases.filter { InputGradientTarget.addsOnStores($0) }.count, 4)
            XCTAssertEqual(cases.filter { InputGradientTarget.addsOnStores($0) && $0.outChannels % 16 == 0 }.count, 2)
        }
        for g in cases {
            XCTAssertTrue(winogradApplies(g) || g.tileCount(rows: g.tileRows) >= g.batch)
            if windowedApplies(g) && g.height == 90 {
                XCTAssertGreaterThanOrEqual(g.outHeight / inputGradientBandRows(g), 3, "input-gradient stripes in both passes")
            }
            let x = try Tensor.randn([g.batch, g.inChannels, g.height, g.width])
            let w = try Tensor.randn([g.outChannels, g.inChannels, g.kernelH, g.kernelW])
            let gy = try Tensor.randn([g.batch, g.outChannels, g.outHeight, g.outWidth])
            // Both gradients (in one pass, where the windowed route fuses them), and each alone;
            // into buffers of NaN, which every float written over shows.
            var gx = [Float](repeating: .nan, count: x.count), gw = [Float](repeating: .nan, count: w.count)
            var gxAlone = gx, gwAlone = gw
            // Both again, the input gradient added into a sum already held (as for a leaf's grad).
            let held = try Tensor.randn(x.shape).scalars
            var gxHeld = held, gwHeld = gw
            x.withUnsafeBufferPointer { xp in
                w.withUnsafeBufferPointer { wp in
                    gy.withUnsafeBufferPointer { gp in
                        conv2dBackward(input: xp.baseAddress!, gradOutput: gp.baseAddress!, weight: wp.baseAddress!,
                                       gradInput: &gx, gradWeight: &gw, gradBias: nil, g)
                        conv2dBackward(input: xp.baseAddress!, gradOutput: gp.baseAddress!, weight: wp.baseAddress!,
                                       gradInput: &gxAlone, gradWeight: nil, gradBias: nil, g)
                        conv2dBackward(input: xp.baseAddress!, gradOutput: gp.baseAddress!, weight: wp.baseAddress!,
                                       gradInput: nil, gradWeight: &gwAlone, gradBias: nil, g)
                        conv2dBackward(input: xp.baseAddress!, gradOutput: gp.baseAddress!, weight: wp.baseAddress!,
                                       gradInput: &gxHeld, gradWeight: &gwHeld, gradBias: nil, g, accumulateInput: true)
                    }
                }
            }
            var ex = [Double](repeating: 0, count: x.count), ew = [Double](repeating: 0, count: w.count)
            let xs = x.scalars, ws = w.scalars, gs = gy.scalars
            for n in 0..<g.batch { for o in 0..<g.outChannels { for y in 0..<g.outHeight { for xx in 0..<g.outWidth {
                let d = Double(gs[((n * g.outChannels + o) * g.outHeight + y) * g.outWidth + xx])
                for c in 0..<g.inChannels { for i in 0..<g.kernelH { for j in 0..<g.kernelW {
                    let iy = y * g.stride - g.padding + i * g.dilation, ix = xx * g.stride - g.padding + j * g.dilation
                    if iy < 0 || iy >= g.height || ix < 0 || ix >= g.width { continue }
                    let xi = ((n * g.inChannels + c) * g.height + iy) * g.width + ix
                    let wi = ((o * g.inChannels + c) * g.kernelH + i) * g.kernelW + j
                    ex[xi] += d * Double(ws[wi])
                    ew[wi] += d * Double(xs[xi])
                } } }
            } } } }
            assertClose(try Tensor(gx, shape: x.shape), try Tensor(ex.map { Float($0) }, shape: x.shape), tolerance: 1e-4, "input gradient \(g)")
            assertClose(try Tensor(gw, shape: w.shape), try Tensor(ew.map { Float($0) }, shape: w.shape), tolerance: 1e-4, "weight gradient \(g)")
            assertClose(try Tensor(gxAlone, shape: x.shape), try Tensor(ex.map { Float($0) }, shape: x.shape), tolerance: 1e-4,
                        "input gradient alone \(g)")
            assertClose(try Tensor(gwAlone, shape: w.shape), try Tensor(ew.map { Float($0) }, shape: w.shape), tolerance: 1e-4,
                        "weight gradient alone \(g)")
            assertClose(try Tensor(gxHeld, shape: x.shape), try Tensor(zip(held, ex).map { Float(Double($0) + $1) }, shape: x.shape),
                        tolerance: 1e-4, "input gradient added to a held sum \(g)")
            XCTAssertEqual(gwHeld, gw, "weight gradient beside a held input sum \(g)")
        }
    }

    /// The downsample through the autograd, which keeps the sampled input pixels from the forward
    /// for the weight gradient: the output as the kernel writes it without keeping them, bit for
    /// bit; the gradients as taken from the input (the same bits with bands of one row, within
    /// rounding with bands of 8 rows, whose weight gradient is summed a row at a time).
    func testKeptSubsampleGivesTheSameGradients() throws {
        try XCTSkipIf(smil_has_avx2_fma() == 0, "the kept subsample goes with the AVX2 row kernel's route")
        RandomGenerator.seed(17)
        for (g, bitwise) in [(ConvGeometry(batch: 2, inChannels: 64, height: 40, width: 128, outChannels: 32, kernelH: 1, kernelW: 1, stride: 2), true),
                             (ConvGeometry(batch: 3, inChannels: 5, height: 100, width: 64, outChannels: 16, kernelH: 1, kernelW: 1, stride: 2), false)] {
            XCTAssertTrue(keepsSubsample(g), "\(g)")
            var x = try Tensor.randn([g.batch, g.inChannels, g.height, g.width]), w = try Tensor.randn([g.outChannels, g.inChannels, 1, 1])
            let gy = try Tensor.randn([g.batch, g.outChannels, g.outHeight, g.outWidth])
            x.requiresGrad = true
            w.requiresGrad = true
            let y = try Functional.conv2d(x, weight: w, bias: nil, stride: 2)
            try y.backward(gy)
            var direct = [Float](repeating: .nan, count: y.count)
            var gx = [Float](repeating: .nan, count: x.count), gw = [Float](repeating: .nan, count: w.count)
            x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in gy.withUnsafeBufferPointer { gp in
                conv2dForward(input: xp.baseAddress!, output: &direct, weight: wp.baseAddress!, bias: nil, g)
                conv2dBackward(input: xp.baseAddress!, gradOutput: gp.baseAddress!, weight: wp.baseAddress!,
                               gradInput: &gx, gradWeight: &gw, gradBias: nil, g)
            } } }
            XCTAssertEqual(y.scalars.map(\.bitPattern), direct.map(\.bitPattern), "output \(g)")
            XCTAssertEqual(x.grad!.scalars.map(\.bitPattern), gx.map(\.bitPattern), "input gradient \(g)")
            if bitwise {
                XCTAssertEqual(w.grad!.scalars.map(\.bitPattern), gw.map(\.bitPattern), "weight gradient \(g)")
            } else {
                assertClose(w.grad!, try Tensor(gw, shape: w.shape), tolerance: 1e-5, "weight gradient \(g)")
            }
        }
    }

    /// The downsample's route with its operands brought in by the band before (each worker's
    /// bands forward, fixed groups backward): the same bits on 1, 2 and 3 threads.
    func testDownsampleDoesNotDependOnThreadCount() throws {
        RandomGenerator.seed(19)
        let g = ConvGeometry(batch: 2, inChannels: 64, height: 40, width: 128, outChannels: 32, kernelH: 1, kernelW: 1, stride: 2)
        let x0 = try Tensor.randn([g.batch, g.inChannels, g.height, g.width]), w0 = try Tensor.randn([g.outChannels, g.inChannels, 1, 1])
        let gy = try Tensor.randn([g.batch, g.outChannels, g.outHeight, g.outWidth])
        let saved = Parallel.threads
        defer { Parallel.threads = saved }
        var results: [[Float]] = []
        for threads in [1, 2, 3] {
            Parallel.threads = threads
            var x = x0, w = w0
            x.requiresGrad = true
            w.requiresGrad = true
            let y = try Functional.conv2d(x, weight: w, bias: nil, stride: 2)
            try y.backward(gy)
            results.append(y.scalars + x.grad!.scalars + w.grad!.scalars)
        }
        for k in 1...2 {
            XCTAssertEqual(zip(results[0], results[k]).filter { $0.bitPattern != $1.bitPattern }.count, 0,
                           "output or gradients differ between 1 and \(k + 1) threads")
        }
    }

    func testResultsDoNotDependOnThreadCount() throws {
        RandomGenerator.seed(5)
        let model = try resnet18(embedder: true)
        let x = try Tensor.rand([2, 3, 64, 64])
        let saved = Parallel.threads
        defer { Parallel.threads = saved }
        var outputs: [[Float]] = [], grads: [[Float]] = []
        for threads in [1, 2, 3] {
            Parallel.threads = threads
            for p in model.allParameters() { p.grad = nil }
            let y = try model(x)
            try y.sum().backward()
            outputs.append(y.scalars)
            grads.append(model.allParameters()[0].grad!.scalars)
        }
        for k in 1...2 {
            XCTAssertEqual(zip(outputs[0], outputs[k]).filter { $0 != $1 }.count, 0, "outputs differ between 1 and \(k + 1) threads")
            XCTAssertEqual(zip(grads[0], grads[k]).filter { $0 != $1 }.count, 0, "gradients differ between 1 and \(k + 1) threads")
        }
    }
}

final class WinogradTests: XCTestCase {
    /// 3x3 stride-1 convolutions (the Winograd path) against the direct loop, forward and backward,
    /// on odd sizes, every padding it takes, and batches that span several tile chunks.
    func testWinogradPathMatchesDirectConvolution() throws {
        RandomGenerator.seed(11)
        for (n, c, o, h, w, pad) in [(2, 3, 5, 7, 9, 1), (1, 4, 2, 6, 5, 0), (3, 2, 3, 5, 8, 2), (2, 8, 4, 1, 1, 1)] {
            let g = ConvGeometry(batch: n, inChannels: c, height: h, width: w, outChannels: o, kernelH: 3, kernelW: 3, padding: pad)
            XCTAssertTrue(winogradApplies(g))
            var x = try Tensor.randn([n, c, h, w]), wt = try Tensor.randn([o, c, 3, 3])
            x.requiresGrad = true
            wt.requiresGrad = true
            let y = try Functional.conv2d(x, weight: wt, bias: nil, padding: pad)
            let expected = try Tensor(referenceConv2d(input: x.scalars, weight: wt.scalars, bias: nil, g), shape: y.shape)
            assertClose(y, expected, tolerance: 1e-5, "forward \(g)")
            try assertGradientsMatch([x.detached(), wt.detached()]) { try Functional.conv2d($0[0], weight: $0[1], bias: nil, padding: pad) }
        }
    }
}
