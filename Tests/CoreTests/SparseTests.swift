// SparseTests.swift: the sparse engine against SparseConvNet's output (golden), against dense
// convolution and pooling over the zero-filled map (property tests on random maps), finite
// differences, and its errors.

import XCTest
@testable import Core
import TestSupport

/// Random distinct-or-not sites: `n` rows of (row, col, batch) in an h x w map with `batch` samples.
func randomSites(_ n: Int, h: Int, w: Int, batch: Int, duplicates: Bool, seed: UInt64) -> IntTensor {
    var rng = RandomGenerator(seed: seed)
    var flat: [Int] = []
    var seen = Set<[Int]>()
    while flat.count < 3 * n {
        let site = [rng.nextInt(0, h), rng.nextInt(0, w), rng.nextInt(0, batch)]
        if !duplicates && !seen.insert(site).inserted { continue }
        flat += site
    }
    if duplicates {
        for k in stride(from: 0, to: n, by: 5) where k + 1 < n {   // every fifth row repeats its predecessor
            for j in 0..<3 { flat[3 * (k + 1) + j] = flat[3 * k + j] }
        }
    }
    return try! IntTensor(flat, shape: [n, 3])
}

/// Reads a dense `[B, C, H, W]` map at the given sites: `[N, C]`.
func readDense(_ dense: Tensor, at sites: SiteSet) throws -> Tensor {
    let c = dense.shape[1], h = dense.shape[2], w = dense.shape[3]
    var out = try Tensor.zeros([sites.count, c])
    for i in 0..<sites.count {
        for j in 0..<c {
            out[flat: i * c + j] = dense[flat: ((Int(sites.batches[i]) * c + j) * h + Int(sites.rows[i])) * w + Int(sites.cols[i])]
        }
    }
    return out
}

/// SparseConvNet's `[k, in, out]` weight as a dense `[out, in, f, f]` kernel.
func denseKernel(_ weight: Tensor, filter f: Int) throws -> Tensor {
    let cin = weight.shape[1], cout = weight.shape[2]
    var w = try Tensor.zeros([cout, cin, f, f])
    for k in 0..<(f * f) { for i in 0..<cin { for o in 0..<cout {
        w[flat: ((o * cin + i) * f + k / f) * f + k % f] = weight[flat: (k * cin + i) * cout + o]
    } } }
    return w
}

final class SparseGoldenTests: XCTestCase {
    func testSubmanifoldConvolutionMatchesSparseConvNet() throws {
        let g = try golden("submanifold3x3.safetensors")
        var features = try g.float("features")
        features.requiresGrad = true
        let input = try InputLayer(mode: .mean)(g.int("coords"), features, spatialSize: (12, 12))
        // Rows compared by coordinate (and, as it happens, in the same first-appearance order).
        XCTAssertEqual(input.coordinates, try g.int("input_layer.coords"))
        try assertMatchesGolden(input.features, g, "input_layer.features", tolerance: 1e-6)
        try assertMatchesGolden(try input.toDense(), g, "input_layer.dense", tolerance: 1e-6)

        let conv = try SubmanifoldConv2d(8, 5, filter: 3)
        try conv.loadStateDict(["weight": .float(g.float("weight")), "bias": .float(g.float("bias"))])
        let out = try SparseReLU()(conv(input))
        XCTAssertEqual(out.coordinates, try g.int("out.coords"))
        try assertMatchesGolden(out.features, g, "out.features", tolerance: 1e-4)
        try assertMatchesGolden(try out.toDense(), g, "out.dense", tolerance: 1e-4)

        try out.features.mul(g.float("r")).sum().backward()
        try assertMatchesGolden(features.grad!, g, "grad.features", tolerance: 1e-3)
        try assertMatchesGolden(try conv.weight.grad!.reshaped([9, 1, 8, 5]), g, "grad.weight", tolerance: 1e-3)
        try assertMatchesGolden(conv.bias!.grad!, g, "grad.bias", tolerance: 1e-3)
    }
}

final class SparsePropertyTests: XCTestCase {
    func testSubmanifoldEqualsDenseConvolutionAtActiveSites() throws {
        // 4 and 6 channels run on the BLAS path: sparse maps offset by offset, nearly full ones as
        // the implicit GEMM.
        for (filter, seed, n, dense) in [(1, 1, 60, false), (3, 2, 60, false), (5, 3, 60, false),
                                         (3, 4, 270, true), (5, 5, 280, true)] as [(Int, UInt64, Int, Bool)] {
            RandomGenerator.seed(seed)
            let coords = randomSites(n, h: 9, w: 11, batch: 3, duplicates: !dense, seed: seed)
            var feats = try Tensor.randn([n, 4])
            feats.requiresGrad = true
            let x = try InputLayer()(coords, feats, spatialSize: (9, 11))
            let conv = try SubmanifoldConv2d(4, 6, filter: filter)
            conv.bias!.value.assign(try Tensor.randn([6]))
            let y = try conv(x)
            XCTAssertTrue(y.sites === x.sites, "submanifold keeps the site set")
            let book = x.sites.submanifoldRulebook(filter: filter)
            XCTAssertEqual(book.isDense, dense || filter == 1, "path for filter \(filter), \(n) sites")
            XCTAssertEqual(book.pairCount, book.neighbours!.filter { $0 >= 0 }.count, "pairs for filter \(filter)")
            let dense = try Functional.conv2d(x.toDense(), weight: denseKernel(conv.weight.value.detached(), filter: filter),
                                              bias: conv.bias!.value.detached(), padding: filter / 2)
            assertClose(y.features, try readDense(dense, at: x.sites), tolerance: 1e-5, "forward, filter \(filter)")

            // Backward: the same loss through the dense route gives the same feature gradient.
            let r = try Tensor.randn(y.features.shape)
            try y.features.mul(r).sum().backward()
            let sparseGrad = feats.grad!
            feats.grad = nil
            var f2 = feats.detached()
            f2.requiresGrad = true
            let x2 = try InputLayer()(coords, f2, spatialSize: (9, 11))
            var wd = try denseKernel(conv.weight.value.detached(), filter: filter)
            wd.requiresGrad = true
            let d2 = try Functional.conv2d(x2.toDense(), weight: wd, bias: conv.bias!.value.detached(), padding: filter / 2)
            try readDenseDifferentiable(d2, at: x2.sites).mul(r).sum().backward()
            assertClose(sparseGrad, f2.grad!, tolerance: 1e-5, "feature gradient, filter \(filter)")
            assertClose(try denseKernel(conv.weight.grad!, filter: filter), wd.grad!, tolerance: 1e-5, "weight gradient, filter \(filter)")
        }
    }

    func testStridedConvolutionAndPoolingEqualDense() throws {
        RandomGenerator.seed(7)
        let coords = randomSites(40, h: 10, w: 9, batch: 2, duplicates: false, seed: 7)
        let x = try InputLayer()(coords, Tensor.randn([40, 3]), spatialSize: (10, 9))
        for (filter, stride) in [(2, 2), (3, 2), (3, 1)] {
            let conv = try SparseConv2d(3, 4, filter: filter, stride: stride)
            let y = try conv(x)
            let dense = try Functional.conv2d(x.toDense(), weight: denseKernel(conv.weight.value, filter: filter), bias: nil, stride: stride)
            XCTAssertEqual([y.spatialSize.rows, y.spatialSize.cols], [dense.shape[2], dense.shape[3]])
            assertClose(y.features, try readDense(dense, at: y.sites), tolerance: 1e-5, "conv f\(filter) s\(stride)")
            // Every output site where the dense result is nonzero is active.
            let active = try y.toDense()
            for i in 0..<dense.count where dense[flat: i] != 0 { XCTAssertNotEqual(active[flat: i], 0) }

            // Max pooling over active sites only: the dense route fills inactive cells with -inf.
            let pooled = try SparseMaxPool2d(filter, stride: stride)(x)
            let holes = try Tensor.where(try InputLayer()(coords, Tensor.ones([40, 3]), spatialSize: (10, 9)).toDense(),
                                         x.toDense(), Tensor.full([1], -.infinity))
            let densePool = try Functional.maxPool2d(holes, kernel: filter, stride: stride)
            assertClose(pooled.features, try readDense(densePool, at: pooled.sites), tolerance: 1e-6, "max pool f\(filter) s\(stride)")
        }
    }

    func testGradientsByFiniteDifferences() throws {
        RandomGenerator.seed(8)
        let coords = randomSites(25, h: 6, w: 6, batch: 2, duplicates: true, seed: 8)
        let sub = try SubmanifoldConv2d(3, 2, filter: 3)
        let strided = try SparseConv2d(3, 2, filter: 2, stride: 2)
        for mode in DuplicateMode.allCases {
            try assertGradientsMatch([Tensor.randn([25, 3])]) { try InputLayer(mode: mode)(coords, $0[0], spatialSize: (6, 6)).features }
        }
        try assertGradientsMatch([Tensor.randn([25, 3]), sub.weight.value, sub.bias!.value]) { v in
            let conv = try SubmanifoldConv2d(3, 2, filter: 3)
            try conv.loadStateDict(["weight": .float(v[1]), "bias": .float(v[2])])
            // Parameters are leaves of their own; route the probe values through them.
            let x = try InputLayer()(coords, v[0], spatialSize: (6, 6))
            return try sparseConvolution(x, weight: v[1], bias: v[2], conv: conv)
        }
        try assertGradientsMatch([Tensor.randn([25, 3])]) { try strided(InputLayer()(coords, $0[0], spatialSize: (6, 6))).features }
        try assertGradientsMatch([Tensor.randn([25, 3])]) { try SparseMaxPool2d(2)(InputLayer()(coords, $0[0], spatialSize: (6, 6))).features }
        try assertGradientsMatch([Tensor.randn([25, 3])]) { try SparseGlobalAvgPool().pool(InputLayer()(coords, $0[0], spatialSize: (6, 6))) }
        try assertGradientsMatch([Tensor.randn([25, 3])]) { try SparseGlobalMaxPool().pool(InputLayer()(coords, $0[0], spatialSize: (6, 6))) }
        try assertGradientsMatch([Tensor.randn([25, 3])]) {
            try SparseBatchNorm(3)(InputLayer()(coords, $0[0], spatialSize: (6, 6))).features
        }
        try assertGradientsMatch([Tensor.randn([25, 3])]) { try InputLayer()(coords, $0[0], spatialSize: (6, 6)).toDense() }
    }

    func testGlobalPoolingHandComputed() throws {
        let coords = try IntTensor([0, 0, 0, 1, 1, 0, 2, 2, 1], shape: [3, 3])
        let x = try InputLayer()(coords, Tensor(rows: [[1, 4], [3, -2], [5, 6]]))
        XCTAssertEqual(try SparseGlobalAvgPool().pool(x).scalars, [2, 1, 5, 6])
        XCTAssertEqual(try SparseGlobalMaxPool().pool(x).scalars, [3, 4, 5, 6])
        // Duplicates averaged (mean), summed, first, last.
        let dup = try IntTensor([0, 0, 0, 0, 0, 0], shape: [2, 3])
        let f = try Tensor(rows: [[2], [4]])
        XCTAssertEqual(try InputLayer(mode: .mean)(dup, f).features.scalars, [3])
        XCTAssertEqual(try InputLayer(mode: .sum)(dup, f).features.scalars, [6])
        XCTAssertEqual(try InputLayer(mode: .first)(dup, f).features.scalars, [2])
        XCTAssertEqual(try InputLayer(mode: .last)(dup, f).features.scalars, [4])
    }

    func testDeterministicWhateverTheThreadCount() throws {
        RandomGenerator.seed(9)
        // Over 4,096 sites: the weight gradient is summed in several segments. The full 60 x 60
        // map takes the Winograd route, its 900 tiles in two segments.
        var full: [Int] = []
        for r in 0..<60 { for c in 0..<60 { full += [r, c, 0] } }
        let maps = [randomSites(6000, h: 150, w: 150, batch: 2, duplicates: true, seed: 9), try IntTensor(full, shape: [3600, 3])]
        let conv = try SubmanifoldConv2d(16, 16, filter: 3)
        let saved = Parallel.threads
        defer { Parallel.threads = saved }
        for coords in maps {
            let feats = try Tensor.randn([coords.shape[0], 16])
            var results: [[Float]] = []
            for t in [1, 2, 3] {
                Parallel.threads = t
                var f = feats
                f.requiresGrad = true
                conv.weight.grad = nil
                let y = try conv(InputLayer()(coords, f))
                try y.features.sum().backward()
                results.append(y.features.scalars + f.grad!.scalars + conv.weight.grad!.scalars)
            }
            XCTAssertEqual(zip(results[0], results[1]).filter { $0 != $1 }.count, 0, "\(coords.shape[0]) sites")
            XCTAssertEqual(zip(results[0], results[2]).filter { $0 != $1 }.count, 0, "\(coords.shape[0]) sites")
        }
    }

    /// The fused AVX2 kernels (channels multiples of 16) against the BLAS path: outputs and every
    /// gradient, for sparse and nearly full maps, submanifold and strided convolutions.
    func testFusedKernelsMatchBLASPath() throws {
        guard SparseKernels.available else {
            print("skipped: this processor has no AVX2 + FMA, so the fused sparse kernels never run")
            return
        }
        defer { SparseKernels.fused = true }
        // Sparse maps take the neighbour-table route (5,000 sites: several weight-gradient segments;
        // 48 channels: the kernels' 16-column tails), and nearly full ones (on the BLAS path, the
        // implicit GEMM; fused, the segments sum every offset's weight gradient: 3,000 sites
        // make several segments).
        for (n, size, cin, cout) in [(400, 60, 16, 32), (5000, 300, 48, 16), (600, 80, 16, 48), (700, 30, 32, 16),
                                     (880, 30, 16, 16), (3000, 56, 16, 32)] {
            RandomGenerator.seed(UInt64(n))
            let coords = randomSites(n, h: size, w: size, batch: 1, duplicates: false, seed: UInt64(n))
            let feats = try Tensor.randn([n, cin])
            let subm = try SubmanifoldConv2d(cin, cout, filter: 3)
            subm.bias!.value.assign(try Tensor.randn([cout]))
            let strided = try SparseConv2d(cin, cout, filter: 3, stride: 2)
            SparseKernels.fused = true
            XCTAssertTrue(SparseKernels.apply(cin: cin, cout: cout), "the fused kernels take \(cin) -> \(cout)")
            var results: [[Tensor]] = []
            for fused in [true, false] {
                SparseKernels.fused = fused
                for layer in [subm, strided] as [SparseModule] {
                    for p in layer.allParameters() { p.grad = nil }
                    var f = feats
                    f.requiresGrad = true
                    let y = try layer.forward(InputLayer()(coords, f, spatialSize: (size, size)))
                    let count = Float(y.features.count)
                    let ramp = try Tensor.arange(0, count).div(Tensor(scalar: count)).reshaped(y.features.shape)
                    try y.features.mul(ramp).sum().backward()
                    results.append([y.features, f.grad!] + layer.allParameters().map { $0.grad! })
                }
            }
            for (a, b) in zip(results[0..<2], results[2..<4]) {
                for (x, y) in zip(a, b) { assertClose(x, y, tolerance: 1e-5, "fused vs BLAS, \(n) sites, \(cin) -> \(cout)") }
            }
        }
    }

    /// The Winograd route (2 x 2 tiles, F(2x2, 3x3) and F(3x3, 2x2)) against the neighbour-table
    /// route: outputs and every gradient. Full disks in a batch of two, a full rectangle with odd
    /// sides (tiles cut by the map's edge), and random maps forced onto the route, where tiles
    /// miss sites and patches reach past the map.
    func testSparseConvolutionsAddIntoHeldGradientSums() throws {
        defer { SparseKernels.fused = true }
        var disk: [Int] = []
        for r in 0...12 { for c in 0...12 where (r - 6) * (r - 6) + (c - 6) * (c - 6) <= 36 { disk += [r, c, 0] } }
        let dense = try IntTensor(disk, shape: [disk.count / 3, 3])
        let sparse = randomSites(80, h: 15, w: 15, batch: 2, duplicates: false, seed: 41)
        let cases: [(String, IntTensor, Int, Int, Int, Int, Bool)] = [
            ("submanifold, sparse map (neighbour table)", sparse, 16, 16, 3, 1, true),
            ("submanifold, dense map (Winograd)", dense, 16, 32, 3, 1, true),
            ("submanifold, dense map, no fused kernels (implicit GEMM)", dense, 3, 5, 3, 1, false),
            ("submanifold, offset by offset", sparse, 3, 5, 3, 1, false),
            ("strided, fused kernels", sparse, 16, 16, 2, 2, true),
            ("strided, offset by offset", sparse, 3, 5, 3, 2, false)]
        for (name, coords, cin, cout, filter, stride, fused) in cases {
            SparseKernels.fused = fused
            RandomGenerator.seed(7)
            let conv: SparseModule = stride == 1 ? try SubmanifoldConv2d(cin, cout, filter: filter)
                                                 : try SparseConv2d(cin, cout, filter: filter, stride: stride)
            try assertAddsIntoHeldSums(Tensor.randn([coords.shape[0], cin]), name) {
                try conv(InputLayer()(coords, $0, spatialSize: (15, 15))).features
            }
        }
    }

    func testWinogradMatchesTableRoute() throws {
        guard SparseKernels.available else {
            print("skipped: this processor has no AVX2 + FMA, so the Winograd route never runs")
            return
        }
        defer { SparseKernels.winograd = true; SparseKernels.winogradTileCost = 18 }
        func disk(_ radius: Int, batch: Int) -> ([Int], Int) {
            var flat: [Int] = []
            for b in 0..<batch { for r in 0...(2 * radius) { for c in 0...(2 * radius)
                where (r - radius) * (r - radius) + (c - radius) * (c - radius) <= radius * radius { flat += [r, c, b] } } }
            return (flat, 2 * radius + 1)
        }
        var cases: [(coords: IntTensor, size: Int, cin: Int, cout: Int, forced: Bool)] = []
        let (d, ds) = disk(14, batch: 2)
        cases.append((try IntTensor(d, shape: [d.count / 3, 3]), ds, 16, 32, false))
        var rect: [Int] = []
        for r in 0..<15 { for c in 0..<17 { rect += [c, r, 0] } }   // 17 rows, 15 columns, column-major order
        cases.append((try IntTensor(rect, shape: [rect.count / 3, 3]), 17, 32, 16, false))
        cases.append((randomSites(700, h: 30, w: 30, batch: 2, duplicates: false, seed: 31), 30, 16, 16, true))
        cases.append((randomSites(90, h: 20, w: 20, batch: 1, duplicates: false, seed: 32), 20, 48, 16, true))
        for (coords, size, cin, cout, forced) in cases {
            let n = coords.shape[0]
            RandomGenerator.seed(UInt64(n))
            let feats = try Tensor.randn([n, cin])
            let subm = try SubmanifoldConv2d(cin, cout, filter: 3)
            subm.bias!.value.assign(try Tensor.randn([cout]))
            var results: [[Tensor]] = []
            for winograd in [true, false] {
                SparseKernels.winograd = winograd
                SparseKernels.winogradTileCost = forced ? 0 : 18
                for p in subm.allParameters() { p.grad = nil }
                var f = feats
                f.requiresGrad = true
                let x = try InputLayer()(coords, f, spatialSize: (size, size))
                let book = x.sites.submanifoldRulebook(filter: 3)
                XCTAssertEqual(x.sites.winogradTiles(book) != nil, true, "\(n) sites take the Winograd route when allowed")
                let y = try subm(x)
                let ramp = try Tensor.arange(0, Float(y.features.count)).div(Tensor(scalar: Float(y.features.count)))
                try y.features.mul(ramp.reshaped(y.features.shape)).sum().backward()
                results.append([y.features, f.grad!, subm.weight.grad!, subm.bias!.grad!])
            }
            for (name, (a, b)) in zip(["output", "feature gradient", "weight gradient", "bias gradient"], zip(results[0], results[1])) {
                assertClose(a, b, tolerance: 1e-5, "Winograd vs table, \(n) sites, \(cin) -> \(cout): \(name)")
            }
        }
        // Features that need no gradient: the backward skips the input gradient, and the weight
        // gradient is still the table route's.
        SparseKernels.winogradTileCost = 18
        let diskCoords = try IntTensor(d, shape: [d.count / 3, 3])
        let plainFeatures = try Tensor.randn([diskCoords.shape[0], 16])
        let layer = try SubmanifoldConv2d(16, 16, filter: 3)
        var weightGrads: [Tensor] = []
        for winograd in [true, false] {
            SparseKernels.winograd = winograd
            layer.weight.grad = nil
            try layer(InputLayer()(diskCoords, plainFeatures, spatialSize: (ds, ds))).features.sum().backward()
            weightGrads.append(layer.weight.grad!)
        }
        assertClose(weightGrads[0], weightGrads[1], tolerance: 1e-5, "Winograd vs table, no input gradient: weight gradient")
        SparseKernels.winograd = true

        // A hand-made plan: sites (0,0), (0,1), (1,1) share the first tile, (2,2) starts the
        // second; patches start one row and column before their tiles, -1 where no site is.
        SparseKernels.winogradTileCost = 0
        let small = try InputLayer()(try IntTensor([0, 0, 0, 0, 1, 0, 1, 1, 0, 2, 2, 0], shape: [4, 3]), Tensor.zeros([4, 16]),
                                     spatialSize: (4, 4))
        let plan = try XCTUnwrap(small.sites.winogradTiles(small.sites.submanifoldRulebook(filter: 3)))
        XCTAssertEqual(plan.count, 2)
        XCTAssertEqual(plan.cells, [0, 1, -1, 2, 3, -1, -1, -1])
        var patch = [Int32](repeating: -1, count: 32)
        (patch[5], patch[6], patch[10], patch[15]) = (0, 1, 2, 3)
        (patch[16], patch[21]) = (2, 3)
        XCTAssertEqual(plan.patch, patch)
        // At the default cost, a sparse map never builds the tiles.
        SparseKernels.winogradTileCost = 18
        let sparse = try InputLayer()(randomSites(300, h: 100, w: 100, batch: 1, duplicates: false, seed: 33), Tensor.zeros([300, 16]))
        XCTAssertNil(sparse.sites.winogradTiles(sparse.sites.submanifoldRulebook(filter: 3)))
        XCTAssertNil(sparse.sites.winogradPlan, "tiles built for a sparse map")
    }

    func testEmptyMapGivesZeroGradients() throws {
        // No site at all: an empty output, and weight and bias gradients of zero (not whatever
        // memory the gradient tensors were given), on every route.
        defer { SparseKernels.fused = true }
        for fused in [true, false] {
            SparseKernels.fused = fused
            let subm = try SubmanifoldConv2d(16, 16, filter: 3)
            var f = try Tensor.zeros([0, 16])
            f.requiresGrad = true
            let y = try subm.forward(InputLayer()(try IntTensor([], shape: [0, 3]), f, spatialSize: (10, 10)))
            XCTAssertEqual(y.features.shape, [0, 16])
            try y.features.sum().backward()
            XCTAssertTrue(subm.weight.grad!.scalars.allSatisfy { $0 == 0 }, "fused \(fused): weight gradient")
            XCTAssertTrue(subm.bias!.grad!.scalars.allSatisfy { $0 == 0 }, "fused \(fused): bias gradient")
        }
    }

    func testHugeMapNeedsNoDenseGrid() throws {
        // 10,000 sites on a 100,000 x 100,000 map: nothing the size of the grid is allocated.
        RandomGenerator.seed(10)
        var flat: [Int] = []
        var rng = RandomGenerator(seed: 10)
        for _ in 0..<10_000 { flat += [rng.nextInt(0, 100_000), rng.nextInt(0, 100_000), 0] }
        let x = try InputLayer()(try IntTensor(flat, shape: [10_000, 3]), Tensor.randn([10_000, 8]), spatialSize: (100_000, 100_000))
        let net = try SparseSequential([SubmanifoldConv2d(8, 8, filter: 3), SparseReLU(), SparseConv2d(8, 8, filter: 2, stride: 2),
                                        SparseMaxPool2d(2), SparseGlobalAvgPool()])
        XCTAssertEqual(try net.pooled(x).shape, [1, 8])
        XCTAssertThrowsError(try x.toDense()) { e in XCTAssertTrue("\(e)".contains("would hold")) }
    }

    func testErrorsNameTheCulprit() throws {
        XCTAssertThrowsError(try InputLayer()(try IntTensor([0, -1, 0], shape: [1, 3]), Tensor.zeros([1, 2]))) { e in
            XCTAssertEqual("\(e)", "InputLayer: coordinate row 0 is (0, -1, 0): coordinates must be non-negative")
        }
        XCTAssertThrowsError(try InputLayer()(try IntTensor([0, 5, 0], shape: [1, 3]), Tensor.zeros([1, 2]), spatialSize: (4, 4))) { e in
            XCTAssertTrue("\(e)".contains("outside the 4 x 4 map"), "\(e)")
        }
        XCTAssertThrowsError(try InputLayer()(try IntTensor([0, 0, 0], shape: [1, 3]), Tensor.zeros([2, 2]))) { e in
            XCTAssertTrue("\(e)".contains("do not match 1 coordinate rows"), "\(e)")
        }
        // Sample 1 of 3 has no site.
        let x = try InputLayer()(try IntTensor([0, 0, 0, 1, 1, 2], shape: [2, 3]), Tensor.ones([2, 2]))
        XCTAssertThrowsError(try SparseGlobalAvgPool().pool(x)) { e in
            XCTAssertEqual("\(e)", "SparseGlobalAvgPool: sample 1 of the batch has no active site to pool")
        }
        XCTAssertThrowsError(try SubmanifoldConv2d(3, 2, filter: 3)(x)) { e in
            XCTAssertTrue("\(e)".contains("expects 3 input channels"), "\(e)")
        }
        XCTAssertThrowsError(try SubmanifoldConv2d(3, 2, filter: 2))
        XCTAssertThrowsError(try SubmanifoldConv2d(3, 2, filter: 3).forward(Tensor.zeros([2, 3]))) { e in
            XCTAssertTrue("\(e)".contains("expects a sparse map"), "\(e)")
        }
    }

    func testSparseConvNetWeightLayoutLoads() throws {
        let conv = try SubmanifoldConv2d(2, 3, filter: 3)
        let w = try Tensor.randn([9, 1, 2, 3])
        try conv.loadStateDict(["weight": .float(w), "bias": .float(.zeros([3]))])
        XCTAssertEqual(conv.weight.value.shape, [9, 2, 3])
        XCTAssertEqual(conv.weight.value.scalars, w.scalars)
        XCTAssertThrowsError(try conv.loadStateDict(["weight": .float(.zeros([9, 2, 2, 3])), "bias": .float(.zeros([3]))]))
        // SparseConvNet initialisation: std sqrt(2 / (in * filter^2)), bias zero.
        RandomGenerator.seed(0)
        let big = try SubmanifoldConv2d(64, 64, filter: 3)
        XCTAssertEqual(Double(try big.weight.value.pow(2).mean().item()).squareRoot(), (2.0 / (64 * 9)).squareRoot(), accuracy: 0.002)
        XCTAssertTrue(big.bias!.value.scalars.allSatisfy { $0 == 0 })
    }
}

/// Reads a dense map at sites, differentiably (for comparing gradients).
func readDenseDifferentiable(_ dense: Tensor, at sites: SiteSet) throws -> Tensor {
    let c = dense.shape[1], h = dense.shape[2], w = dense.shape[3]
    let flat = try dense.permuted([0, 2, 3, 1]).reshaped([-1, c])
    let idx = (0..<sites.count).map { (Int(sites.batches[$0]) * h + Int(sites.rows[$0])) * w + Int(sites.cols[$0]) }
    return try flat.gather(dim: 0, idx)
}

/// The submanifold convolution of `x` with explicit weight and bias tensors (for gradient checks).
func sparseConvolution(_ x: SparseTensor, weight: Tensor, bias: Tensor, conv: SubmanifoldConv2d) throws -> Tensor {
    conv.weight.value = weight
    conv.bias!.value = bias
    return try conv(x).features
}
