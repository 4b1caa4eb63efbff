// Parallel.swift: splitting kernel work over the compute threads.

import Dispatch
import Foundation
import COpenBLAS

/// The compute thread pool's size and the one way kernels split work. Work is always cut into
/// pieces whose bounds depend only on the problem, never on the thread count, so results are
/// bit-identical whatever `SMIL_THREADS` says.
public enum Parallel {
    /// Compute threads: `SMIL_THREADS`, else every core.
    nonisolated(unsafe) public static var threads: Int = {
        // OpenBLAS runs single-threaded inside each piece; smil does the splitting itself.
        openblas_set_num_threads(1)
        // The pthread build of OpenBLAS starts a pool when it is loaded, and setting one thread
        // does not stop it: its idle threads spin on sched_yield for the whole run, taking a core
        // from smil's own threads. Shut the pool down when the library has one (the serial and
        // OpenMP builds do not export the function).
        if let shutdown = dlsym(nil, "blas_thread_shutdown_") {
            _ = unsafeBitCast(shutdown, to: (@convention(c) () -> Int32).self)()
        }
        if let s = ProcessInfo.processInfo.environment["SMIL_THREADS"], let n = Int(s), n > 0 { return n }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    /// Calls `body(i)` for every `i` in `0..<count`, spread over the threads. Each `i` must write
    /// to its own memory.
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        let t = threads
        if count <= 1 || t == 1 {
            for i in 0..<count { body(i) }
            return
        }
        withoutActuallyEscaping(body) { body in
            DispatchQueue.concurrentPerform(iterations: count) { body($0) }
        }
    }

    /// Cuts `0..<total` into pieces of about `grain` (a size fixed by the problem) and calls
    /// `body` on each, spread over the threads.
    public static func forRanges(_ total: Int, grain: Int, _ body: (Range<Int>) -> Void) {
        guard total > 0 else { return }
        let g = max(1, grain)
        let pieces = (total + g - 1) / g
        forEach(pieces) { p in
            body((p * g)..<min(total, (p + 1) * g))
        }
    }
}
