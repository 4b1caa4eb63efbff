// Parallel.swift: splitting kernel work over the compute threads.

import CKernels
import Dispatch
import COpenBLAS
import Foundation
import Synchronization

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

    /// Calls `body(i)` for every `i` in `0..<count`, spread over the threads (`ComputePool`): the
    /// calling thread and the pool's helpers take the i's one at a time, in order. Each `i` must
    /// write to its own memory. Called from inside another `forEach`, it runs on the calling
    /// thread alone; while another thread's runs, it waits for it.
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        let t = threads
        if count <= 1 || t == 1 {
            for i in 0..<count { body(i) }
            return
        }
        ComputePool.shared.run(count, threads: min(t, count), body)
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

    /// As `forRanges`, with each thread taking one contiguous share of the pieces rather than
    /// claiming them one by one: for memory-bound chains of elementwise operations, so that the
    /// pieces one operation wrote are mostly read by the same core in the next (the caller, which
    /// starts first, nearly always takes the first share). Pieces have the same bounds as
    /// `forRanges`' whatever the thread count, so results do not depend on it.
    public static func forRangesInShares(_ total: Int, grain: Int, _ body: (Range<Int>) -> Void) {
        guard total > 0 else { return }
        let g = max(1, grain)
        forEachInShares((total + g - 1) / g) { p in body((p * g)..<min(total, (p + 1) * g)) }
    }

    /// As `forEach`, with each thread taking one contiguous share of `0..<count` (see
    /// `forRangesInShares`).
    public static func forEachInShares(_ count: Int, _ body: (Int) -> Void) {
        let shares = min(threads, count)
        forEach(shares) { w in
            for i in (w * count / shares)..<((w + 1) * count / shares) { body(i) }
        }
    }

    /// Runs `min(threads, count)` workers, `body(worker, claim)` on each; `claim()` hands out the
    /// units `0..<count` in order, one at a time, to whichever worker asks first (nil when none
    /// are left). A worker that runs slower takes fewer units: this VM's two cores often differ
    /// by 20-30% for a while, and work dealt out in fixed shares waits for the slower one. A
    /// worker may claim its next unit before it runs the current one, to bring that unit's
    /// operands in meanwhile. Each unit's result must not depend on which worker runs it.
    /// Once Ctrl-C is requested (`Interrupt`), `claim()` hands out nothing more: the kernel ends
    /// early with its output unfinished, and the layer or autograd node that ran it throws at its
    /// next safe point, before the output is used.
    public static func forEachClaimed(_ count: Int, _ body: (_ worker: Int, _ claim: () -> Int?) -> Void) {
        guard count > 0 else { return }
        let next = Atomic<Int>(0)
        forEach(min(threads, count)) { worker in
            body(worker) {
                if Interrupt.isRequested { return nil }
                let unit = next.wrappingAdd(1, ordering: .relaxed).oldValue
                return unit < count ? unit : nil
            }
        }
    }
}

/// The helper threads behind `Parallel.forEach`: the caller runs its share of a job's items and
/// `threads - 1` helpers the rest. A helper that has finished a job spins for a while
/// (`spinSeconds`) before it sleeps, so that the next job, a few microseconds later in a network's
/// forward or backward, starts on both cores at once. (Dispatch's `concurrentPerform` parked its
/// threads after every job: on this VM a helper took 40-80 us to start a job and the caller as
/// long to learn that one had ended, a few times per layer.)
///
/// Each helper has a ticket: the caller offers it a job by storing the job's number there; the
/// helper takes the job by negating it and hands it back by storing 0. Once the caller has run
/// out of items, it takes back the offers not yet taken (a helper still asleep is not waited
/// for) and waits for the helpers that took theirs.
final class ComputePool: @unchecked Sendable {
    static let shared = ComputePool()

    /// How long a helper spins for the next job before it sleeps.
    static let spinSeconds = 0.002

    final class Helper: @unchecked Sendable {
        let ticket = Atomic<Int>(0)
    }

    /// Guards `helpers`' growth and the sleepers' wait.
    private let lock = NSCondition()
    private var helpers: [Helper] = []
    private let sleepers = Atomic<Int>(0)
    /// Whether a caller holds the pool, and the threads waiting for it to be free.
    private let busy = Atomic<Bool>(false)
    private let free = NSCondition()
    private let waiting = Atomic<Int>(0)
    /// The job: written by the one caller holding `busy` before it offers the job, read by a
    /// helper after it takes it.
    private var job = 0
    private var body: ((Int) -> Void)?
    private var count = 0
    private let next = Atomic<Int>(0)

    /// Runs `body(i)` for i in 0..<count on the calling thread and up to `threads - 1` helpers:
    /// inside another job on the calling thread alone; while another thread's job runs, after it.
    func run(_ count: Int, threads: Int, _ body: (Int) -> Void) {
        guard threads > 1, smil_in_pool_job() == 0 else {
            for i in 0..<count { body(i) }
            return
        }
        acquire()
        smil_set_in_pool_job(1)
        defer {
            smil_set_in_pool_job(0)
            release()
        }
        let offered = ensureHelpers(threads - 1)
        withoutActuallyEscaping(body) { body in
            job += 1
            self.body = body
            self.count = count
            next.store(0, ordering: .relaxed)
            for helper in offered { helper.ticket.store(job, ordering: .sequentiallyConsistent) }
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                lock.lock()
                lock.broadcast()
                lock.unlock()
            }
            work()
            for helper in offered where !helper.ticket.compareExchange(expected: job, desired: 0, ordering: .acquiringAndReleasing).exchanged {
                // Taken: wait until it is handed back (yielding, if it takes long, to a helper the
                // system has descheduled on a busy machine).
                var spins = 0
                while helper.ticket.load(ordering: .acquiring) != 0 {
                    smil_spin_pause()
                    spins += 1
                    if spins > 20_000 { sched_yield() }
                }
            }
            self.body = nil
        }
    }

    /// Makes the calling thread the pool's one caller, once the caller before it is done. (A data
    /// loader's thread can hand out a job while the model's thread wants one: the model's layer
    /// then waits for that job, a short one, instead of running on one core.)
    private func acquire() {
        if busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged { return }
        free.lock()
        waiting.add(1, ordering: .sequentiallyConsistent)
        while !busy.compareExchange(expected: false, desired: true, ordering: .sequentiallyConsistent).exchanged { free.wait() }
        waiting.subtract(1, ordering: .sequentiallyConsistent)
        free.unlock()
    }

    private func release() {
        busy.store(false, ordering: .sequentiallyConsistent)
        if waiting.load(ordering: .sequentiallyConsistent) > 0 {
            free.lock()
            free.broadcast()
            free.unlock()
        }
    }

    /// Takes items until none are left.
    private func work() {
        let body = self.body!, count = self.count
        while true {
            let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
            guard i < count else { return }
            body(i)
        }
    }

    /// The first `n` helpers, starting those not yet running.
    private func ensureHelpers(_ n: Int) -> ArraySlice<Helper> {
        lock.lock()
        defer { lock.unlock() }
        while helpers.count < n {
            let helper = Helper()
            helpers.append(helper)
            let thread = Thread { [unowned self] in self.serve(helper) }
            thread.name = "smil-compute-\(helpers.count)"
            thread.stackSize = 8 << 20
            thread.start()
        }
        return helpers[0..<n]
    }

    /// A helper's loop: wait for an offer (spinning, then asleep), take it, run items, hand it back.
    private func serve(_ helper: Helper) {
        smil_set_in_pool_job(1)
        while true {
            var offer = helper.ticket.load(ordering: .acquiring)
            if offer <= 0 {
                let start = DispatchTime.now().uptimeNanoseconds
                var spins = 0
                while offer <= 0 {
                    smil_spin_pause()
                    spins += 1
                    if spins & 255 == 0,
                       Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9 > ComputePool.spinSeconds { break }
                    offer = helper.ticket.load(ordering: .acquiring)
                }
                if offer <= 0 {
                    lock.lock()
                    sleepers.add(1, ordering: .sequentiallyConsistent)
                    while true {
                        offer = helper.ticket.load(ordering: .sequentiallyConsistent)
                        if offer > 0 { break }
                        lock.wait()
                    }
                    sleepers.subtract(1, ordering: .sequentiallyConsistent)
                    lock.unlock()
                }
            }
            // Take the job, unless the caller has just taken the offer back.
            guard helper.ticket.compareExchange(expected: offer, desired: -offer, ordering: .acquiringAndReleasing).exchanged else { continue }
            work()
            helper.ticket.store(0, ordering: .releasing)
        }
    }
}
