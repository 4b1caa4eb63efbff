// CommandTests.swift: the `smil` binary as a user runs it — exit status, stdout and stderr.

import XCTest
import Foundation

/// Runs the built `smil` (beside the test bundle) and returns (status, stdout, stderr).
func runSmil(_ args: [String], environment: [String: String] = [:]) throws -> (Int32, String, String) {
    let dir = Bundle.main.bundleURL
    let binary = dir.appendingPathComponent("smil")
    guard FileManager.default.isExecutableFile(atPath: binary.path) else {
        throw XCTSkip("smil binary not found at \(binary.path)")
    }
    let p = Process()
    p.executableURL = binary
    p.arguments = args
    p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

final class CommandTests: XCTestCase {
    func testVersionAndHelp() throws {
        let (status, out, _) = try runSmil(["--version"])
        XCTAssertEqual(status, 0)
        XCTAssertTrue(out.hasPrefix("smil 0."), out)
        let (hs, help, _) = try runSmil(["--help"])
        XCTAssertEqual(hs, 0)
        XCTAssertTrue(help.contains("usage: smil demo"), help)
    }

    func testDemoTrainsAndLossFalls() throws {
        let (status, out, err) = try runSmil(["demo", "--steps", "6"], environment: ["SMIL_THREADS": "2"])
        XCTAssertEqual(status, 0, err)
        let losses = out.split(separator: "\n").compactMap { line -> Double? in
            guard let r = line.range(of: "loss=") else { return nil }
            return Double(line[r.upperBound...].prefix(while: { $0 != " " }))
        }
        XCTAssertEqual(losses.count, 3, out)
        XCTAssertLessThan(losses.last!, losses.first!, out)
        // Deterministic: the same seed prints the same numbers.
        let (_, again, _) = try runSmil(["demo", "--steps", "6"], environment: ["SMIL_THREADS": "1"])
        let strip = { (s: String) in s.split(separator: "\n").map { $0.split(separator: " ").filter { !$0.hasSuffix("s") || $0.hasPrefix("loss") }.joined(separator: " ") } }
        XCTAssertEqual(strip(again).filter { $0.contains("loss=") }, strip(out).filter { $0.contains("loss=") })
    }

    func testUnknownCommandFailsWithMessage() throws {
        let (status, out, err) = try runSmil(["frobnicate"])
        XCTAssertEqual(status, 1)
        XCTAssertEqual(out, "")
        XCTAssertTrue(err.contains("'frobnicate' is not available"), err)
        let (s2, _, e2) = try runSmil(["demo", "--steps", "x"])
        XCTAssertEqual(s2, 1)
        XCTAssertTrue(e2.contains("--steps needs a non-negative whole number"), e2)
    }
}
