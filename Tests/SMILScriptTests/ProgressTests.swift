// ProgressTests.swift: the progress bar's text (drawn only on a terminal).

import XCTest
@testable import SMILScript

final class ProgressTests: XCTestCase {
    func testNoRateUntilTwoItemsThenItPerSecondOrSecondsPerIt() {
        let first = progressLine(done: 1, total: 10, elapsed: 1e-6, loss: nil)
        XCTAssertFalse(first.contains("it/s") || first.contains("s/it"), "no rate from one item: \(first)")
        XCTAssertTrue(first.hasSuffix("] 1/10"), first)
        // Three items 4 s after the first: 0.5 it/s, shown as 2.00 s/it, ETA 14 s.
        let slow = progressLine(done: 3, total: 10, elapsed: 4, loss: 0.6931)
        XCTAssertTrue(slow.contains("  2.00 s/it  ETA 14s  loss 0.6931"), slow)
        let fast = progressLine(done: 11, total: 20, elapsed: 0.5, loss: nil)
        XCTAssertTrue(fast.contains("  20.00 it/s  ETA 0s"), fast)
        XCTAssertTrue(fast.contains("[#############...........] 11/20"), fast)
    }
}
