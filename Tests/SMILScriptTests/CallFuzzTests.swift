// CallFuzzTests.swift: `smil fuzz` — 20,000 random library calls with edge-case arguments, each run in
// a child process that the parent restarts after a crash; none may crash or hang. More calls and
// seeds: scripts/fuzz. The crashes it found are kept in InterpreterTests/FuzzRegressionTests.

import XCTest

final class CallFuzzTests: XCTestCase {
    func testTwentyThousandRandomCallsCrashNothing() throws {
        let (status, out, err) = try runSmil(["fuzz", "--calls", "20000", "--seed", "20261207"])
        XCTAssertEqual(status, 0, out + err)
        XCTAssertTrue(out.contains("20000 calls (seed 20261207, from 0)"), out)
        XCTAssertTrue(out.contains(": 0 crashes, 0 hangs;"), out)
        // The calls reached the library: a fair share returned, the rest were refused with errors.
        let returned = Int(out.components(separatedBy: "; ").dropFirst().first?.split(separator: " ").first ?? "") ?? 0
        XCTAssertGreaterThan(returned, 2000, out)
    }

    /// The harness itself: a worker that dies is reported with the call in flight, and the run
    /// goes on after it. `SMIL_FUZZ_PLANT` makes the worker abort at one call, as a crash would.
    func testACrashIsCaughtNamedAndTheRunGoesOn() throws {
        let (status, out, _) = try runSmil(["fuzz", "--calls", "30", "--seed", "5"], environment: ["SMIL_FUZZ_PLANT": "12"])
        XCTAssertEqual(status, 1, out)
        XCTAssertTrue(out.contains("crash (signal 6) at call 12: "), out)
        XCTAssertTrue(out.contains("30 calls (seed 5, from 0)") && out.contains(": 1 crashes, 0 hangs;"), out)
        XCTAssertTrue(out.contains("1 worker restarts"), out)
    }
}
