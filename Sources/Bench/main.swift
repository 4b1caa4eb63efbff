// smil-bench: the workloads of ../shared/peers/README.md, timed in a release build.
// Usage: smil-bench WORKLOAD [--iters N] [--warmup N]. Each run prints one line
// `RESULT name=... value=... unit=... peak_rss_mib=...` for scripts/bench to collect;
// run one workload per process so peak memory is that workload's.

import Foundation
import Core
import COpenBLAS

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
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
    print("usage: smil-bench sgemm|conv|w2a|w2b [--iters N] [--warmup N]")
    exit(2)
}
RandomGenerator.seed(0)

do {
    switch workload {
    case "sgemm":
        for n in [256, 1024, 2048] {
            let a = Tensor.randn([n, n]), b = Tensor.randn([n, n])
            var c = Tensor.zeros([n, n])
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
        let layers = [(3, 64, 7, 2, 512), (64, 64, 3, 1, 128), (128, 128, 3, 1, 64), (256, 256, 3, 1, 32),
                      (512, 512, 3, 1, 16), (64, 128, 1, 2, 128)]
        for (cin, cout, k, s, size) in layers {
            let conv = Conv2d(cin, cout, kernelSize: k, stride: s, padding: k / 2, bias: false)
            let x = Tensor.randn([2, cin, size, size])
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
        }
    case "w2a":
        let model = resnet18(embedder: true).eval()
        let x = Tensor.rand([10, 3, 512, 512])
        let t = try timeMedian(iters: iters, warmup: warmup) { _ = try GradMode.noGrad { try model(x) } }
        report("W2a", 10 / t, "tiles/s", extra: "s_per_10=\(String(format: "%.3f", t))")
    case "w2b":
        let embedder = resnet18(embedder: true)
        let model = Sequential([embedder, Linear(512, 2)])
        let opt = Adam(model.allParameters(), lr: 1e-3)
        let x = Tensor.rand([10, 3, 224, 224])
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
    default:
        print("unknown workload \(workload)")
        exit(2)
    }
} catch {
    print("error: \(error)")
    exit(1)
}
