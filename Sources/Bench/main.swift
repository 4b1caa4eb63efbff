// smil-bench: the workloads of ../shared/peers/README.md, timed in a release build.
// Usage: smil-bench WORKLOAD [--iters N] [--warmup N]. Each run prints one line
// `RESULT name=... value=... unit=... peak_rss_mib=...` for scripts/bench to collect;
// run one workload per process so peak memory is that workload's.

import Foundation
import Core
import Interpreter
import COpenBLAS

// Settles the compute threads before anything is timed (this also shuts down OpenBLAS's own pool).
_ = Parallel.threads
// SMIL_SPARSE_FUSED=0 times the sparse convolution on its BLAS path instead of the fused kernels.
if ProcessInfo.processInfo.environment["SMIL_SPARSE_FUSED"] == "0" { SparseKernels.fused = false }
// SMIL_SPARSE_WINOGRAD=0 keeps densely filled maps on the neighbour-table route (W3b).
if ProcessInfo.processInfo.environment["SMIL_SPARSE_WINOGRAD"] == "0" { SparseKernels.winograd = false }

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// CPU seconds used by this process, all threads.
func processCPUTime() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Median wall time of `iters` runs after `warmup` untimed ones.
func timeMedian(iters: Int, warmup: Int, _ body: () throws -> Void) rethrows -> Double {
    for _ in 0..<warmup { try body() }
    var times: [Double] = []
    for _ in 0..<iters {
        let t0 = now()
        try body()
        times.append(now() - t0)
    }
    times.sort()
    return times[times.count / 2]
}

/// Peak resident memory of this process so far (VmHWM), in MiB.
func peakRSSMiB() -> Double {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
        return kb / 1024
    }
    return 0
}

func report(_ name: String, _ value: Double, _ unit: String, extra: String = "") {
    print("RESULT name=\(name) value=\(String(format: "%.4g", value)) unit=\(unit) peak_rss_mib=\(String(format: "%.0f", peakRSSMiB()))\(extra.isEmpty ? "" : " " + extra)")
}

var args = Array(CommandLine.arguments.dropFirst())
func option(_ name: String, _ def: Int) -> Int {
    if let i = args.firstIndex(of: name), i + 1 < args.count, let v = Int(args[i + 1]) { return v }
    return def
}
let iters = option("--iters", 5), warmup = option("--warmup", 1)
guard let workload = args.first else {
    print("usage: smil-bench sgemm|conv|w1|w2a|w2b|w3a|w3b|train|load|tile [--iters N] [--warmup N]")
    exit(2)
}
RandomGenerator.seed(0)

do {
    switch workload {
    case "sgemm":
        for n in [256, 1024, 2048] {
            let a = try Tensor.randn([n, n]), b = try Tensor.randn([n, n])
            var c = try Tensor.zeros([n, n])
            let t = timeMedian(iters: iters, warmup: warmup) {
                c.withUnsafeMutableBufferPointer { cp in
                    a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in
                        gemm(transA: false, transB: false, m: n, n: n, k: n, a: ap.baseAddress!, lda: n,
                             b: bp.baseAddress!, ldb: n, c: cp.baseAddress!, ldc: n)
                    } }
                }
            }
            report("sgemm_\(n)", 2 * Double(n * n * n) / t / 1e9, "GFLOP/s")
        }
    case "conv":
        // ResNet-18 layers at a 512 x 512 tile, batch 2: (in, out, kernel, stride, size).
        var layers = [(3, 64, 7, 2, 512), (64, 64, 3, 1, 128), (128, 128, 3, 1, 64), (256, 256, 3, 1, 32),
                      (512, 512, 3, 1, 16), (64, 128, 1, 2, 128)]
        // `--size N` times the same layers on N x N inputs instead (small sizes: in cache).
        if args.contains("--size") { layers = layers.map { ($0.0, $0.1, $0.2, $0.3, option("--size", $0.4)) } }
        // `--only TEXT` keeps the layers whose name contains TEXT (e.g. `--only k7`).
        let only = args.firstIndex(of: "--only").flatMap { $0 + 1 < args.count ? args[$0 + 1] : nil }
        for (cin, cout, k, s, size) in layers {
            if let only = only, !"conv_\(cin)x\(cout)_k\(k)s\(s)_\(size)".contains(only) { continue }
            let conv = try Conv2d(cin, cout, kernelSize: k, stride: s, padding: k / 2, bias: false)
            let x = try Tensor.randn([2, cin, size, size])
            let geometry = ConvGeometry(batch: 2, inChannels: cin, height: size, width: size, outChannels: cout,
                                        kernelH: k, kernelW: k, stride: s, padding: k / 2, dilation: 1)
            let fwd = try timeMedian(iters: iters, warmup: warmup) { _ = try GradMode.noGrad { try conv(x) } }
            var xg = x
            xg.requiresGrad = true
            let both = try timeMedian(iters: iters, warmup: warmup) {
                let y = try conv(xg)
                try y.backward(Tensor.ones(y.shape))
            }
            let name = "conv_\(cin)x\(cout)_k\(k)s\(s)_\(size)"
            report(name + "_fwd", geometry.flops / fwd / 1e9, "GFLOP/s")
            report(name + "_fwdbwd", 3 * geometry.flops / both / 1e9, "GFLOP/s")
            if args.contains("--split") {
                // The kernels alone, outside autograd: forward, weight gradient, input gradient
                // (added into a held sum, as backward does for a leaf's grad), and the seed's fill.
                var y = try Tensor.zeros([2, cout, geometry.outHeight, geometry.outWidth])
                let dy = try Tensor.randn(y.shape), w = conv.weight.value
                var gw = try Tensor.zeros(w.shape), gx = try Tensor.zeros(x.shape)
                func time(_ body: () -> Void) -> Double { timeMedian(iters: iters, warmup: warmup, body) * 1000 }
                let tf = time { x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
                    conv2dForward(input: xp.baseAddress!, output: yp.baseAddress!, weight: wp.baseAddress!, bias: nil, geometry)
                } } } }
                let tw = time { x.withUnsafeBufferPointer { xp in dy.withUnsafeBufferPointer { dp in w.withUnsafeBufferPointer { wp in
                    gw.withUnsafeMutableBufferPointer { gp in
                        conv2dBackward(input: xp.baseAddress!, gradOutput: dp.baseAddress!, weight: wp.baseAddress!, gradInput: nil,
                                       gradWeight: gp.baseAddress!, gradBias: nil, geometry)
                    } } } } }
                let ti = time { x.withUnsafeBufferPointer { xp in dy.withUnsafeBufferPointer { dp in w.withUnsafeBufferPointer { wp in
                    gx.withUnsafeMutableBufferPointer { gp in
                        conv2dBackward(input: xp.baseAddress!, gradOutput: dp.baseAddress!, weight: wp.baseAddress!,
                                       gradInput: gp.baseAddress!, gradWeight: nil, gradBias: nil, geometry, accumulateInput: true)
                    } } } } }
                // Both gradients in one call, as the autograd's backward takes them.
                let tb = time { x.withUnsafeBufferPointer { xp in dy.withUnsafeBufferPointer { dp in w.withUnsafeBufferPointer { wp in
                    gx.withUnsafeMutableBufferPointer { gp in gw.withUnsafeMutableBufferPointer { gwp in
                        conv2dBackward(input: xp.baseAddress!, gradOutput: dp.baseAddress!, weight: wp.baseAddress!,
                                       gradInput: gp.baseAddress!, gradWeight: gwp.baseAddress!, gradBias: nil, geometry,
                                       accumulateInput: true)
                    } } } } } }
                let ts = time { _ = Tensor(repeating: 1, shape: y.shape) }
                print(String(format: "split: forward %.2f ms, weight gradient %.2f ms, input gradient %.2f ms, both gradients %.2f ms, seed %.2f ms; forward + both + seed %.2f ms, fwd+bwd %.2f ms",
                             tf, tw, ti, tb, ts, tf + tb + ts, both * 1000))
            }
        }
    case "w2a":
        let model = try resnet18(embedder: true).eval()
        let x = try Tensor.rand([10, 3, 512, 512])
        let t = try timeMedian(iters: iters, warmup: warmup) { _ = try GradMode.noGrad { try model(x) } }
        report("W2a", 10 / t, "tiles/s", extra: "s_per_10=\(String(format: "%.3f", t))")
    case "w2b":
        let embedder = try resnet18(embedder: true)
        let model = Sequential([embedder, try Linear(512, 2)])
        let opt = try Adam(model.allParameters(), lr: 1e-3)
        let x = try Tensor.rand([10, 3, 224, 224])
        let labels = IntTensor((0..<10).map { $0 % 2 })
        let t = try timeMedian(iters: iters, warmup: warmup) {
            opt.zeroGrad()
            let loss = try Loss.crossEntropy(model(x), labels)
            try loss.backward()
            try opt.step()
        }
        report("W2b", t, "s/iter")
        if args.contains("--split") {
            let tf = try timeMedian(iters: iters, warmup: 0) { _ = try Loss.crossEntropy(model(x), labels) }
            let tb = try timeMedian(iters: iters, warmup: 0) { try Loss.crossEntropy(model(x), labels).backward() }
            let to = try timeMedian(iters: iters, warmup: 0) { try opt.step() }
            print(String(format: "W2b split: forward %.3f s, backward %.3f s, optimizer %.3f s", tf, tb - tf, to))
        }
    case "train":
        // A training loop in SMILScript against the same loop in Swift, in one process: rounds
        // of 300 steps alternate between the two, and each round's pair gives a ratio. (Between
        // processes this machine's speed varies by more than the few percent being measured.)
        let script = "scripts/bench-programs/train.smil"
        guard let source = try? String(contentsOfFile: script, encoding: .utf8) else {
            print("smil-bench train: run it from the repository root (cannot read \(script))")
            exit(1)
        }
        let interp = Interpreter()
        interp.scriptArguments = ["--define-only"]
        try interp.run(source, name: script)
        guard let scriptTrain = interp.workspace.first(where: { $0.0 == "train" })?.1 else {
            print("smil-bench train: \(script) defines no train(n)")
            exit(1)
        }
        let model = Sequential([try Linear(64, 128), ReLU(), try Linear(128, 10)])
        let opt = try Adam(model.allParameters(), lr: 1e-3)
        let x = try Tensor.randn([32, 64])
        let y = try IntTensor.randint(0, 10, shape: [32])
        func swiftTrain(_ n: Int) throws {
            for _ in 0..<n {
                opt.zeroGrad()
                let loss = try Loss.crossEntropy(model(x), y)
                try loss.backward()
                try opt.step()
            }
        }
        let steps = 300
        try swiftTrain(100)
        _ = try interp.callValue(scriptTrain, [.int(100)])
        var smilTimes: [Double] = [], swiftTimes: [Double] = [], ratios: [Double] = []
        // Which loop goes first alternates too, so neither always runs on the other's leftovers.
        for round in 0..<max(iters, 10) {
            var tScript = 0.0, tSwift = 0.0
            for turn in 0..<2 {
                let t0 = now()
                if (turn == 0) == (round % 2 == 0) {
                    _ = try interp.callValue(scriptTrain, [.int(steps)])
                    tScript = now() - t0
                } else {
                    try swiftTrain(steps)
                    tSwift = now() - t0
                }
            }
            smilTimes.append(tScript / Double(steps) * 1000)
            swiftTimes.append(tSwift / Double(steps) * 1000)
            ratios.append(tSwift / tScript)
        }
        func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
        report("train_loop_smil", median(smilTimes), "ms/step")
        report("train_loop_swift", median(swiftTimes), "ms/step")
        report("train_loop_swift_over_smil", median(ratios), "x")
    case "w1":
        // W1: a SparseConvMIL training step at the reference defaults on 2 slides x 5 tiles of 3x512x512.
        let model = try sparseConvMIL(classes: 2)
        let opt = try Adam(model.allParameters(), lr: 2e-3, weightDecay: 1e-6)
        let tiles = try Tensor.rand([2, 5, 3, 512, 512])
        let coords = try Tensor((0..<20).map { Float(($0 * 37) % 200) }, shape: [2, 5, 2])
        let labels = IntTensor([0, 1])
        let t = try timeMedian(iters: iters, warmup: warmup) {
            opt.zeroGrad()
            let loss = try Loss.crossEntropy(model.forward(tiles: tiles, coords: coords), labels)
            try loss.backward()
            try opt.step()
        }
        report("W1", t, "s/iter")
        if args.contains("--loading") {
            // The same step fed by a DataLoader decoding PNG tiles from disk (2 workers):
            // what data loading adds to a step when workers overlap it with compute.
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smil-w1-\(getpid())").path
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try SyntheticSlides.write(to: dir, slidesPerClass: 4, grid: 2, tileSize: 512, seed: 0)
            let loader = try DataLoader(try SlideDataset(root: dir, tilesPerSlide: 5), batchSize: 2, workers: 2)
            var steps = 0
            let t0 = now()
            for _ in 0..<2 {
                let it = loader.makeIterator()
                while let batch = try it.nextBatch() {
                    opt.zeroGrad()
                    let coords = try batch.coords.reshaped([2, 5, 2])
                    let loss = try Loss.crossEntropy(model.forward(tiles: batch.tiles, coords: coords), batch.labels)
                    try loss.backward()
                    try opt.step()
                    steps += 1
                }
            }
            let withLoading = (now() - t0) / Double(steps)
            report("W1_with_loading", withLoading, "s/iter", extra: String(format: "overhead=%.1f%%", (withLoading / t - 1) * 100))
        }
    case "w3a", "w3b":
        // W3: one submanifold 3x3 convolution, 64 -> 64 channels, no bias.
        var flat: [Int] = []
        if workload == "w3a" {
            var rng = RandomGenerator(seed: 0)
            var seen = Set<Int>()
            while seen.count < 20_000 {
                let r = rng.nextInt(0, 1000), c = rng.nextInt(0, 1000)
                if seen.insert(r * 1000 + c).inserted { flat += [r, c, 0] }
            }
        } else {
            for r in 0...200 { for c in 0...200 where (r - 100) * (r - 100) + (c - 100) * (c - 100) <= 100 * 100 { flat += [r, c, 0] } }
        }
        let n = flat.count / 3
        let coords = try IntTensor(flat, shape: [n, 3])
        let features = try Tensor.randn([n, 64])
        let conv = try SubmanifoldConv2d(64, 64, filter: 3, bias: false)
        let size = workload == "w3a" ? (1000, 1000) : (201, 201)
        let input = InputLayer()
        let cached = try input(coords, features, spatialSize: size)
        let book = cached.sites.submanifoldRulebook(filter: 3)
        let flops = 2 * Double(book.pairCount) * 64 * 64
        let fresh = try timeMedian(iters: iters, warmup: warmup) {
            _ = try GradMode.noGrad { try conv(input(coords, features, spatialSize: size)) }
        }
        var fg = features
        fg.requiresGrad = true
        let freshBoth = try timeMedian(iters: iters, warmup: warmup) {
            let y = try conv(input(coords, fg, spatialSize: size))
            try y.features.backward(Tensor.ones(y.features.shape))
        }
        let reused = try timeMedian(iters: iters, warmup: warmup) { _ = try GradMode.noGrad { try conv(cached) } }
        let cachedGrad = try input(coords, fg, spatialSize: size)
        let reusedBoth = try timeMedian(iters: iters, warmup: warmup) {
            let x = try SparseTensor(sites: cachedGrad.sites, features: fg)
            let y = try conv(x)
            try y.features.backward(Tensor.ones(y.features.shape))
        }
        if args.contains("--split") {
            let tIn = try timeMedian(iters: iters, warmup: warmup) { _ = try input(coords, features, spatialSize: size) }
            let tBook = try timeMedian(iters: iters, warmup: warmup) {
                _ = try input(coords, features, spatialSize: size).sites.submanifoldRulebook(filter: 3)
            }
            print(String(format: "split: input layer %.2f ms, rulebook %.2f ms, convolution %.2f ms", tIn * 1000, (tBook - tIn) * 1000, reused * 1000))
            var a = 0.0, bk = 0.0, cv = 0.0
            for _ in 0..<iters {
                let t0 = now()
                let x = try input(coords, features, spatialSize: size)
                let t1 = now()
                _ = x.sites.submanifoldRulebook(filter: 3)
                let t2 = now()
                _ = try GradMode.noGrad { try conv(x) }
                let t3 = now()
                a += t1 - t0; bk += t2 - t1; cv += t3 - t2
            }
            let k = 1000 / Double(iters)
            let again = try timeMedian(iters: iters, warmup: warmup) {
                _ = try GradMode.noGrad { try conv(input(coords, features, spatialSize: size)) }
            }
            print(String(format: "fresh forward measured again: %.2f ms", again * 1000))
            print(String(format: "fresh, in one pass: input layer %.2f ms, rulebook %.2f ms, convolution %.2f ms", a * k, bk * k, cv * k))
            var tf = 0.0, tg = 0.0, tb = 0.0
            for _ in 0..<iters {
                let t0 = now()
                let y = try conv(SparseTensor(sites: cachedGrad.sites, features: fg))
                let t1 = now()
                let seed = try Tensor.ones(y.features.shape)
                let t2 = now()
                try y.features.backward(seed)
                let t3 = now()
                tf += t1 - t0; tg += t2 - t1; tb += t3 - t2
            }
            print(String(format: "cached fwd+bwd, in one pass: forward %.2f ms, seed %.2f ms, backward %.2f ms", tf * k, tg * k, tb * k))
        }
        let name = workload.uppercased()
        report(name + "_fwd", fresh * 1000, "ms", extra: "sites=\(n) pairs=\(book.pairCount) gflops=\(String(format: "%.1f", flops / fresh / 1e9))")
        report(name + "_fwdbwd", freshBoth * 1000, "ms")
        report(name + "_fwd_cached", reused * 1000, "ms", extra: "gflops=\(String(format: "%.1f", flops / reused / 1e9))")
        report(name + "_fwdbwd_cached", reusedBoth * 1000, "ms")
    case "tile":
        // Slides: tissue detection per slide and tiles per second (read_region + RGB), one worker
        // and several, on a JPEG Aperio slide written here (from ../shared's sample tiles when
        // they are there, else from noise); scripts/bench-programs/tile.py reads the same tiles
        // with openslide-python. The coordinates go to an h5 file beside the slide for it.
        let folder = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        let path = folder + "/smil-bench-slide.svs", coordsPath = folder + "/smil-bench-slide-coords.h5"
        if !FileManager.default.fileExists(atPath: path) { try writeBenchSlide(path) }
        let slide = try WholeSlideImage(path)
        var seg: TissueSegmentation? = nil
        let segment = try timeMedian(iters: iters, warmup: warmup) { seg = try Tissue.segment(slide) }
        let g = try TileGeometry(slide: slide, size: 256)
        let coords = Tiling.coordinates(seg!, geometry: g, slideSize: slide.dimensions)
        try PatchFile(coords: try IntTensor(coords.flatMap { [$0.x, $0.y] }, shape: [coords.count, 2]),
                      attributes: PatchFile.attributes(slide: slide, geometry: g, savePath: folder)).write(to: coordsPath)
        report("tissue_detection", segment * 1000, "ms", extra: "level=\(seg!.level) mask=\(seg!.width)x\(seg!.height)")
        // A segmentation image of a real slide's size at CLAM's 64x (a 40x scan of 50k x 40k
        // pixels gives about 780 x 625): this slide's level 2.
        var fine = TissueParameters()
        fine.level = 2
        let segmentFine = try timeMedian(iters: iters, warmup: warmup) { _ = try Tissue.segment(slide, fine) }
        report("tissue_detection_768x640", segmentFine * 1000, "ms")
        // Each pass opens the slide afresh, so OpenSlide's tile cache starts empty as in a loader.
        func pass(workers: Int, tensor: Bool) throws -> Double {
            let s = try WholeSlideImage(path)
            let next = ManagedCounter()
            let group = DispatchGroup()
            let failure = ManagedError()
            let t0 = now()
            for _ in 0..<workers {
                group.enter()
                Thread.detachNewThread {
                    defer { group.leave() }
                    while case let i = next.take(), i < coords.count {
                        do {
                            let rgb = try s.readRGB(x: coords[i].x, y: coords[i].y, level: 0, width: 256, height: 256)
                            if tensor { _ = rgb.tensor }
                        } catch { failure.set(error); return }
                    }
                }
            }
            group.wait()
            if let e = failure.error { throw e }
            return Double(coords.count) / (now() - t0)
        }
        for (workers, tensor) in [(1, false), (1, true), (2, false), (4, false)] {
            var rates: [Double] = []
            for _ in 0..<max(1, iters) { rates.append(try pass(workers: workers, tensor: tensor)) }
            rates.sort()
            report("tiles_256_\(tensor ? "tensor" : "rgb")_workers\(workers)", rates[rates.count / 2], "tiles/s", extra: "tiles=\(coords.count)")
        }
    case "extract":
        // W5: resnet50_trunc (CLAM's 1024-D encoder) features of 256 x 256 PNG tiles, decoding by two
        // worker threads included; bench_peers.py extract runs torchvision's model on the same files.
        let folder = (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/smil-bench-tiles"
        try writeBenchTiles(folder, count: 128)
        let encoder = try FeatureExtraction.encoder("resnet50_trunc")
        let tiles = try FeatureExtraction.tiles(.tileFolder(folder))
        let t = try timeMedian(iters: iters, warmup: warmup) {
            _ = try FeatureExtraction.extract(tiles, encoder: encoder, batchSize: 64, workers: 2)
        }
        report("W5_extract_resnet50_trunc_256", Double(tiles.coords.count) / t, "tiles/s", extra: "tiles=\(tiles.coords.count)")
    case "bags":
        // W6: one epoch of SparseConvMIL on 200 bags of about 4,000 tiles x 1024-D at the coordinates
        // of tissue-like blobs (written to an h5 file that bench_peers.py bags reads too):
        // Linear(1024, 128), SubM 3x3 128 -> 128 twice with ReLUs, mean pool, MLP 128 -> 128 -> 2,
        // cross-entropy, Adam, one bag per step. Features cycle through 8 random matrices (their
        // values do not change the work).
        let path = (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/smil-bench-bags.h5"
        if !FileManager.default.fileExists(atPath: path) { try writeBenchBags(path, bags: 200, tiles: 4000) }
        let file = try HDF5File(path)
        let coords = try file.readInts("coords"), lengths = try file.readInts("lengths").scalars
        var starts: [Int] = [0]
        for n in lengths { starts.append(starts.last! + n) }
        let pool = try (0..<8).map { _ in try Tensor.randn([lengths.max()!, 1024]) }
        let sparse = try SparseSequential([try SubmanifoldConv2d(128, 128, filter: 3), SparseReLU(), try SubmanifoldConv2d(128, 128, filter: 3), SparseReLU(), SparseGlobalAvgPool()])
        let model = try SparseConvMIL(embedder: try Linear(1024, 128), sparseCNN: sparse,
                                      classifier: Sequential([try Linear(128, 128), ReLU(), try Linear(128, 2)]),
                                      downsample: 1, rotation: .none, flip: false, resize: false)
        let opt = try Adam(model.allParameters(), lr: 1e-4)
        func epoch() throws {
            for (b, n) in lengths.enumerated() {
                let features = try pool[b % 8].slice(dim: 0, start: 0, end: n)
                let c = try Tensor(coords.scalars[(2 * starts[b])..<(2 * starts[b + 1])].map(Float.init), shape: [1, n, 2])
                opt.zeroGrad()
                let logits = try model.forward(tiles: try features.reshaped([1, n, 1024]), coords: c)
                let loss = try Loss.crossEntropy(logits, IntTensor([b % 2]))
                try loss.backward()
                try opt.step()
            }
        }
        let t = try timeMedian(iters: iters, warmup: warmup, epoch)
        report("W6_bags_epoch", t, "s", extra: "bags=\(lengths.count) tiles=\(starts.last!)")
    case "load":
        // Reading torchvision's resnet50 weights (a 98 MB torch.save zip, written here by smil's own
        // writer in the same layout when it is not there yet); bench_peers.py times torch.load of
        // the same file.
        let path = (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/smil-bench-resnet50.pth"
        if !FileManager.default.fileExists(atPath: path) {
            let model = try resnet50()
            try TorchFile.write(.dict(model.stateDict().map { (.string($0.0), .tensor($0.1)) }), to: path)
        }
        let t = try timeMedian(iters: iters, warmup: warmup) { _ = try TorchFile.read(path) }
        report("load_resnet50_pth", t * 1000, "ms")
    default:
        print("unknown workload \(workload)")
        exit(2)
    }
} catch {
    print("error: \(error)")
    exit(1)
}

final class ManagedCounter: @unchecked Sendable {
    let lock = NSLock()
    var value = 0
    func take() -> Int { lock.withLock { defer { value += 1 }; return value } }
}

final class ManagedError: @unchecked Sendable {
    let lock = NSLock()
    var error: Error?
    func set(_ e: Error) { lock.withLock { if error == nil { error = e } } }
}

/// The benchmark slide: 12288 x 10240 pixels (24 x 20 slots of 512), an oval of tissue with two
/// holes and a few specks, JPEG Q80 in 256-pixel tiles, levels at 1, 4, 16 and 64, 0.5 mpp.
func writeBenchSlide(_ path: String) throws {
    var tiles: [RGBImage] = []
    let shared = ProcessInfo.processInfo.environment["SMIL_SHARED"] ?? "../shared"
    let root = shared + "/sample_data"
    if let slides = try? FileManager.default.contentsOfDirectory(atPath: root) {
        for s in slides.sorted() where !s.hasSuffix(".csv") {
            for name in ((try? FileManager.default.contentsOfDirectory(atPath: root + "/" + s)) ?? []).sorted() {
                var image = try RGBImage(ImageIO.read(root + "/" + s + "/" + name))
                let pink: [Double] = [200, 110, 170]
                for i in image.pixels.indices { image.pixels[i] = UInt8((0.65 * Double(image.pixels[i]) + 0.35 * pink[i % 3]).rounded()) }
                if image.width == 512 && image.height == 512 { tiles.append(image) }
            }
        }
    }
    if tiles.isEmpty {
        var rng = RandomGenerator(seed: 7)
        for _ in 0..<8 {
            var pixels = [UInt8](repeating: 0, count: 512 * 512 * 3)
            for i in 0..<(512 * 512) {
                let v = rng.nextUniform()
                pixels[3 * i] = UInt8(150 + 80 * v); pixels[3 * i + 1] = UInt8(60 + 60 * v); pixels[3 * i + 2] = UInt8(140 + 60 * v)
            }
            tiles.append(RGBImage(width: 512, height: 512, pixels: pixels))
        }
    }
    var layout: [String] = []
    for r in 0..<20 {
        var line = ""
        for c in 0..<24 {
            let dx = (Double(c) - 11.5) / 10.5, dy = (Double(r) - 9.5) / 8.5
            let inOval = dx * dx + dy * dy <= 1
            let hole = (r >= 6 && r < 9 && c >= 6 && c < 10) || (r >= 12 && r < 14 && c >= 14 && c < 18)
            let speck = (r == 0 && c == 0) || (r == 19 && c == 23)
            line += (inOval && !hole) || speck ? "#" : "."
        }
        layout.append(line)
    }
    try SlideWriter.write(try SlideWriter.mosaic(tiles, layout: layout), to: path, downsamples: [1, 4, 16, 64], tileSize: 256, quality: 80, mpp: 0.5)
}

/// W5's tiles: 256 x 256 crops of ../shared's sample tiles (noise where they are not there), as PNG.
func writeBenchTiles(_ folder: String, count: Int) throws {
    if ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).count == count { return }
    try? FileManager.default.removeItem(atPath: folder)
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    var sources: [RGBImage] = []
    let root = (ProcessInfo.processInfo.environment["SMIL_SHARED"] ?? "../shared") + "/sample_data"
    for s in ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted() where !s.hasSuffix(".csv") {
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: root + "/" + s)) ?? []).sorted() {
            sources.append(try RGBImage(ImageIO.read(root + "/" + s + "/" + name)))
        }
    }
    var rng = RandomGenerator(seed: 11)
    for i in 0..<count {
        let tile: RGBImage
        if sources.isEmpty {
            tile = RGBImage(width: 256, height: 256, pixels: (0..<(256 * 256 * 3)).map { _ in UInt8(rng.nextInt(0, 256)) })
        } else {
            let src = sources[i % sources.count]
            tile = src.cropped(x: (i / sources.count % 2) * 256, y: (i / sources.count / 2 % 2) * 256, width: 256, height: 256)
        }
        try ImageIO.writePNG(tile, to: folder + "/\(i / 16)_\(i % 16).png")
    }
}

/// W6's coordinates: per bag, two overlapping elliptical blobs with a hole, about `tiles` sites in
/// all, in tile units; datasets coords [N, 2] (row, col) and lengths [bags].
func writeBenchBags(_ path: String, bags: Int, tiles: Int) throws {
    var rng = RandomGenerator(seed: 6)
    var coords: [Int] = [], lengths: [Int] = []
    for _ in 0..<bags {
        var cells = Set<Int>()
        let target = tiles + rng.nextInt(-tiles / 10, tiles / 10)
        let area = Double(target) * 0.62
        let ry = (area / Double.pi / 1.6).squareRoot(), rx = ry * 1.6
        let centres = [(0.0, 0.0), (ry * 0.9, rx * 0.8)]
        let hole = (ry * 0.2, -rx * 0.2, ry * 0.25)
        for (cy, cx) in centres {
            for r in Int(cy - ry - 1)...Int(cy + ry + 1) {
                for c in Int(cx - rx - 1)...Int(cx + rx + 1) {
                    let dy = (Double(r) - cy) / ry, dx = (Double(c) - cx) / rx
                    let hy = Double(r) - hole.0, hx = Double(c) - hole.1
                    if dy * dy + dx * dx <= 1 && hy * hy + hx * hx > hole.2 * hole.2 { cells.insert((r + 1000) * 4096 + (c + 1000)) }
                }
            }
        }
        let sorted = cells.sorted().prefix(target)
        for cell in sorted { coords += [cell / 4096 - 1000 + 200, cell % 4096 - 1000 + 200] }
        lengths.append(sorted.count)
    }
    try H5Writing.replace(path) { file in
        try file.write("coords", try IntTensor(coords, shape: [coords.count / 2, 2]))
        try file.write("lengths", IntTensor(lengths))
    }
}
