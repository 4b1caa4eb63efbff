// PythonDifferentialTests.swift: SMILScript's numbers against CPython's on random expressions —
// arithmetic, comparisons, printing and format specs (scripts/python/numbers_oracle.py writes the
// expressions and CPython's answers). Skipped, with the reason printed, where python3 is missing.

import XCTest
import Foundation
@testable import Interpreter

final class PythonDifferentialTests: XCTestCase {
    /// CPython's lines `EXPRESSION<TAB>RESULT` for a seed.
    func oracle(seed: Int, count: Int) throws -> [(String, String)] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        guard let python = ["/usr/bin/python3", "/usr/local/bin/python3"].first(where: { FileManager.default.isExecutableFile(atPath: $0) })
                ?? which("python3") else {
            let reason = "skipped: no python3 on PATH to compare numbers with"
            print(reason)
            throw XCTSkip(reason)
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [root.appendingPathComponent("scripts/python/numbers_oracle.py").path, String(seed), String(count)]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "the oracle ran")
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map { line in
            let parts = line.split(separator: "\t", maxSplits: 1, omittingEmptySubsequences: false)
            return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
        }
    }

    func which(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let path = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    func testNumbersPrintAndFormatAsCPythonDoes() throws {
        let cases = try [2026, 7, 11].flatMap { try oracle(seed: $0, count: 3000) }
        XCTAssertGreaterThan(cases.count, 7500)
        let interp = Interpreter()
        interp.output = { _ in }
        var mismatches: [String] = []
        for (expression, expected) in cases {
            let got: String
            do {
                got = try interp.run(expression, name: "<diff>").map { render($0, quoted: false) } ?? "nil"
            } catch {
                got = "error"
            }
            if got != expected { mismatches.append("\(expression)  smil: \(got)  CPython: \(expected)") }
        }
        XCTAssertEqual(mismatches.count, 0, "\(mismatches.count) of \(cases.count) differ:\n" + mismatches.prefix(25).joined(separator: "\n"))
    }
}
