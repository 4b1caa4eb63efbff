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
        XCTAssertTrue(help.contains("smil FILE.smil [ARGS...]"), help)
        XCTAssertTrue(help.contains("smil notebook FILE.smil -o OUT.html"), help)
        XCTAssertTrue(help.contains("smil test [PATH...]"), help)
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

    func testUnknownFileAndBadOptionsFailWithMessage() throws {
        let (status, out, err) = try runSmil(["frobnicate.smil"])
        XCTAssertEqual(status, 1)
        XCTAssertEqual(out, "")
        XCTAssertTrue(err.contains("smil: no such file: frobnicate.smil"), err)
        let (s2, _, e2) = try runSmil(["demo", "--steps", "x"])
        XCTAssertEqual(s2, 1)
        XCTAssertTrue(e2.contains("--steps needs a non-negative whole number"), e2)
        let (s3, _, e3) = try runSmil(["--frob"])
        XCTAssertEqual(s3, 1)
        XCTAssertTrue(e3.contains("unknown option --frob"), e3)
    }

    func testEvaluatePrintsTheFinalValue() throws {
        let (status, out, _) = try runSmil(["-e", "let x = 20\nx * 2 + 2"])
        XCTAssertEqual(status, 0)
        XCTAssertEqual(out, "42\n")
        let (s2, _, err) = try runSmil(["-e", "1 +"])
        XCTAssertEqual(s2, 1)
        XCTAssertTrue(err.contains("<-e>:1:4: syntax error: expected an expression"), err)
    }

    func testScriptsGetArgumentsAndFailWithStatusOne() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smil-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let ok = dir.appendingPathComponent("ok.smil")
        try "print(\"args:\", args)\nexit(3)".write(to: ok, atomically: true, encoding: .utf8)
        let (status, out, _) = try runSmil([ok.path, "a", "b"])
        XCTAssertEqual(out, "args: [\"a\", \"b\"]\n")
        XCTAssertEqual(status, 3)
        let bad = dir.appendingPathComponent("bad.smil")
        try "fn f(x) { return x.nope }\nf(1)".write(to: bad, atomically: true, encoding: .utf8)
        let (s2, _, err) = try runSmil([bad.path])
        XCTAssertEqual(s2, 1)
        XCTAssertTrue(err.contains("bad.smil:1:20: error: an int has no member 'nope'"), err)
        XCTAssertTrue(err.contains("call stack (innermost last)"), err)
    }

    func testTestRunnerReportsFailuresAndCounts() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smil-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try """
        1 + 1
        #> 2
        1 + 1
        #> 3
        test "passes" { assert true }
        test "fails" {
            assert_close(1.0, 1.5)
        }
        """.write(to: dir.appendingPathComponent("a.smil"), atomically: true, encoding: .utf8)
        let (status, out, _) = try runSmil(["test", dir.path])
        XCTAssertEqual(status, 1)
        XCTAssertTrue(out.contains("a.smil:3: #> line 3: expected 3, got 2"), out)
        XCTAssertTrue(out.contains("a.smil:7: fails: not close: largest difference 0.5"), out)
        XCTAssertTrue(out.hasSuffix("2 passed, 2 failed\n"), out)
    }
}

final class ExampleTests: XCTestCase {
    /// The README's main job runs, learns the synthetic arrangement, and prints the same numbers
    /// twice for the same seed.
    func testHelloIsDeterministicAndLearns() throws {
        let root = repositoryRootForExamples()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smil-hello-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (status, out, err) = try runSmil([root + "/examples/hello.smil", dir])
        XCTAssertEqual(status, 0, err)
        XCTAssertTrue(out.contains("held-out slides: balanced accuracy 1.000"), out)
        let (_, again, _) = try runSmil([root + "/examples/hello.smil", dir], environment: ["SMIL_THREADS": "1"])
        let numbers = { (s: String) in s.split(separator: "\n").map { $0.split(separator: " ").filter { !$0.hasSuffix("s") }.joined(separator: " ") } }
        XCTAssertEqual(numbers(again), numbers(out), "same seed, same numbers")
    }

    func testBaselinesTable() throws {
        let root = repositoryRootForExamples()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smil-baselines-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (status, out, err) = try runSmil([root + "/examples/baselines.smil", dir])
        XCTAssertEqual(status, 0, err)
        let rows = out.split(separator: "\n")
        XCTAssertEqual(rows.count, 6, out)
        XCTAssertTrue(rows[1].hasPrefix("SparseConvMIL   1.000"), out)
        XCTAssertTrue(rows[2].hasPrefix("MeanMIL         0.500"), out)
    }
}

func repositoryRootForExamples() -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
}

final class NotebookTests: XCTestCase {
    func testReportHasEveryCellOutputAndEmbeddedPlot() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smil-nb-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let report = dir + "/report.html"
        let (status, _, err) = try runSmil(["notebook", repositoryRootForExamples() + "/examples/notebook.smil", "-o", report],
                                           environment: ["TMPDIR": dir])
        XCTAssertEqual(status, 0, err)
        let html = try String(contentsOfFile: report, encoding: .utf8)
        XCTAssertTrue(html.contains("Cell 2: Data"), "cell titles")
        XCTAssertTrue(html.contains("synthetic_slides(root, slides_per_class: 12"), "cell code")
        XCTAssertTrue(html.contains("<pre class=\"value\">24</pre>"), "a cell's final value")
        XCTAssertTrue(html.contains("epoch 10: loss"), "printed output")
        XCTAssertTrue(html.contains("<img src=\"data:image/png;base64,iVBORw0KGgo"), "the plot is embedded as PNG")
    }

    func testFailingCellShowsErrorAndLaterCellsNotRun() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smil-nb-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "# %% one\nprint(\"fine\")\n# %% two\nundefined_thing + 1\n# %% three\nprint(\"never\")\n"
            .write(toFile: dir + "/nb.smil", atomically: true, encoding: .utf8)
        let (status, _, _) = try runSmil(["notebook", dir + "/nb.smil", "-o", dir + "/out.md"])
        XCTAssertEqual(status, 1)
        let md = try String(contentsOfFile: dir + "/out.md", encoding: .utf8)
        XCTAssertTrue(md.contains("fine"), md)
        XCTAssertTrue(md.contains("nb.smil:4:1: error: undefined name 'undefined_thing'"), md)
        XCTAssertTrue(md.contains("## Cell 3: three (not run)"), md)
        XCTAssertFalse(md.contains("never\n```"), md)
    }
}
