// LanguageTests.swift: the script-based language tests (tests/language) run through the
// interpreter from the test suite, so `swift test` covers them as well as `smil test`.

import XCTest
import Foundation
@testable import Interpreter

final class LanguageTests: XCTestCase {
    func testLanguageScriptsPass() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = root.appendingPathComponent("tests/language")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".smil") }.sorted()
        XCTAssertGreaterThanOrEqual(files.count, 8)
        var checks = 0
        for f in files {
            let interp = Interpreter()
            interp.checkExpectations = true
            interp.output = { _ in }
            do { try interp.runFile(dir.appendingPathComponent(f).path) } catch { XCTFail("\(f): \(error)") }
            for r in interp.testResults where r.skipped == nil {
                checks += 1
                if let failure = r.failure { XCTFail("\(r.file):\(r.line): \(r.name): \(failure)") }
            }
        }
        XCTAssertGreaterThan(checks, 80, "the expectations were checked")
    }

    func testExpressionValueAndPrinting() throws {
        let interp = Interpreter()
        var printed = ""
        interp.output = { printed += $0 }
        let v = try interp.run("print(\"a\", 1, [\"b\"], 2.50)\n3 * 4")
        XCTAssertEqual(printed, "a 1 [\"b\"] 2.5\n")
        guard case .int(12)? = v else { return XCTFail("value \(String(describing: v))") }
    }

    func testWorkspacePersistsAcrossRuns() throws {
        let interp = Interpreter()
        try interp.run("var x = 1\nfn bump() { x += 1 }")
        try interp.run("bump()\nbump()")
        guard case .int(3)? = try interp.run("x") else { return XCTFail() }
        XCTAssertTrue(interp.workspace.contains { $0.0 == "bump" })
    }
}
