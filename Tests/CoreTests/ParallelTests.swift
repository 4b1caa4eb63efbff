// ParallelTests.swift: the compute pool behind Parallel.forEach runs every item exactly once, on
// more than one thread, nested and from several threads at once, and after its helpers slept.

import Dispatch
import Foundation
import Synchronization
import XCTest
@testable import Core

final class ParallelTests: XCTestCase {
    /// Runs `body` with `Parallel.threads` set to `threads`, restoring it after.
    func withThreads(_ threads: Int, _ body: () throws -> Void) rethrows {
        let saved = Parallel.threads
        defer { Parallel.threads = saved }
        Parallel.threads = threads
        try body()
    }

    final class Counter: Sendable {
        let value = Atomic<Int>(0)
    }

    /// How many times each item ran.
    func counts(_ count: Int, _ run: (_ item: (Int) -> Void) -> Void) -> [Int] {
        let hits = (0..<count).map { _ in Counter() }
        run { hits[$0].value.add(1, ordering: .relaxed) }
        return hits.map { $0.value.load(ordering: .relaxed) }
    }

    func testEveryItemRunsOnceWhateverTheThreadCount() {
        for threads in [1, 2, 3, 5] {
            withThreads(threads) {
                for count in [0, 1, 2, 3, 7, 64, 1000] {
                    let hits = counts(count) { item in Parallel.forEach(count, item) }
                    XCTAssertEqual(hits, Array(repeating: 1, count: count), "\(count) items on \(threads) threads")
                }
                // Many short jobs back to back: each offer is taken, or taken back, exactly once.
                for job in 0..<2000 {
                    let count = 1 + job % 5
                    let hits = counts(count) { item in Parallel.forEach(count, item) }
                    if hits != Array(repeating: 1, count: count) {
                        XCTFail("job \(job) on \(threads) threads ran its items \(hits) times")
                        return
                    }
                }
            }
        }
    }

    func testClaimedUnitsGoOnceEachToWorkersInRange() {
        for threads in [1, 2, 3] {
            withThreads(threads) {
                for count in [1, 2, 5, 100] {
                    let workers = Mutex<Set<Int>>([])
                    let hits = counts(count) { item in
                        Parallel.forEachClaimed(count) { worker, claim in
                            workers.withLock { _ = $0.insert(worker) }
                            // Claim one ahead, as the kernels do.
                            var current = claim()
                            while let unit = current {
                                current = claim()
                                item(unit)
                            }
                        }
                    }
                    XCTAssertEqual(hits, Array(repeating: 1, count: count), "\(count) units on \(threads) threads")
                    let seen = workers.withLock { $0 }
                    XCTAssertTrue(seen.allSatisfy { (0..<min(threads, count)).contains($0) }, "workers \(seen.sorted())")
                }
            }
        }
    }

    /// Two items that each wait for the other to start can only finish on two threads: a helper
    /// must take one, also once the helpers have slept (longer than they spin).
    func testHelpersTakeItemsAfterSleeping() {
        withThreads(2) {
            for pause in [0.0, ComputePool.spinSeconds * 5] {
                Thread.sleep(forTimeInterval: pause)
                let started = Atomic<Int>(0), gaveUp = Atomic<Bool>(false), threadsSeen = Mutex<Set<UInt>>([])
                Parallel.forEach(2) { _ in
                    threadsSeen.withLock { _ = $0.insert(UInt(pthread_self())) }
                    started.add(1, ordering: .relaxed)
                    let deadline = Date().addingTimeInterval(5)
                    while started.load(ordering: .relaxed) < 2 {
                        if Date() > deadline { gaveUp.store(true, ordering: .relaxed); return }
                    }
                }
                XCTAssertFalse(gaveUp.load(ordering: .relaxed), "no helper took the second item (after \(pause) s idle)")
                XCTAssertEqual(threadsSeen.withLock { $0.count }, 2)
            }
        }
    }

    func testNestedAndConcurrentCallsRunEveryItem() {
        withThreads(2) {
            // Nested: the inner calls run on the thread that makes them.
            let hits = counts(12) { item in
                Parallel.forEach(3) { i in Parallel.forEach(4) { j in item(i * 4 + j) } }
            }
            XCTAssertEqual(hits, Array(repeating: 1, count: 12))
            // From several threads at once: one holds the pool, the others wait for it.
            let totals = (0..<4).map { _ in Counter() }
            DispatchQueue.concurrentPerform(iterations: 4) { caller in
                for _ in 0..<200 {
                    Parallel.forEach(10) { i in totals[caller].value.add(i, ordering: .relaxed) }
                }
            }
            XCTAssertEqual(totals.map { $0.value.load(ordering: .relaxed) }, Array(repeating: 200 * 45, count: 4))
        }
    }
}
