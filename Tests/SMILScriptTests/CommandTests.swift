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

extension CommandTests {
    /// A typo in CI's test path, or a folder with no test in it, fails the run instead of passing
    /// with nothing tested.
    func testTestRunnerRefusesMissingPathsAndRunsWithNoTest() throws {
        let (s1, out1, err1) = try runSmil(["test", "/no/such/path"])
        XCTAssertEqual(s1, 1)
        XCTAssertTrue(err1.contains("smil test: no such file or folder: /no/such/path"), err1)
        XCTAssertFalse(out1.contains("0 passed, 0 failed"), out1)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smil-empty-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let (s2, _, err2) = try runSmil(["test", dir.path])
        XCTAssertEqual(s2, 1)
        XCTAssertTrue(err2.contains("no .smil files under"), err2)
        try "let x = 1\n".write(to: dir.appendingPathComponent("plain.smil"), atomically: true, encoding: .utf8)
        let (s3, out3, err3) = try runSmil(["test", dir.path])
        XCTAssertEqual(s3, 1)
        XCTAssertTrue(out3.hasSuffix("0 passed, 0 failed\n") && err3.contains("no test ran"), out3 + err3)
    }

    /// An empty script runs nothing and succeeds; a binary file is refused as not UTF-8, naming
    /// the first bad byte; an unreadable one says why.
    func testEmptyAndBinaryScripts() throws {
        let (s1, out1, err1) = try runSmil(["/dev/null"])
        XCTAssertEqual(s1, 0, err1)
        XCTAssertEqual(out1 + err1, "")
        let bin = FileManager.default.temporaryDirectory.appendingPathComponent("smil-bin-\(UUID().uuidString).smil")
        defer { try? FileManager.default.removeItem(at: bin) }
        try Data([0x70, 0x72, 0x69, 0x6E, 0x74, 0xFF, 0xFE, 0x00]).write(to: bin)
        let (s2, _, err2) = try runSmil([bin.path])
        XCTAssertEqual(s2, 1)
        XCTAssertTrue(err2.contains("is not UTF-8 text (byte 0xFF at offset 5)"), err2)
        XCTAssertFalse(err2.contains("cannot read"), err2)
        let (s3, _, err3) = try runSmil(["/root"])
        XCTAssertEqual(s3, 1)
        XCTAssertTrue(err3.contains("cannot read /root"), err3)
    }

    /// Printed lines reach a pipe as they are printed, not in 4 KB bursts at exit: the first line
    /// is read while the script still sleeps.
    func testPrintReachesAPipeAtEachNewline() throws {
        let binary = Bundle.main.bundleURL.appendingPathComponent("smil")
        guard FileManager.default.isExecutableFile(atPath: binary.path) else { throw XCTSkip("smil binary not found") }
        let p = Process()
        p.executableURL = binary
        p.arguments = ["-e", "print(\"first\")\nlet t0 = time()\nwhile time() - t0 < 20 { }\nprint(\"second\")"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        defer { p.terminate(); p.waitUntilExit() }
        let fd = out.fileHandleForReading.fileDescriptor
        var got = ""
        let deadline = Date().addingTimeInterval(10)
        var buffer = [UInt8](repeating: 0, count: 256)
        while !got.contains("\n") && Date() < deadline {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 100) > 0 {
                let n = read(fd, &buffer, buffer.count)
                if n <= 0 { break }
                got += String(decoding: buffer[0..<n], as: UTF8.self)
            }
        }
        XCTAssertEqual(got, "first\n", "the first line, while the script is still running")
        XCTAssertTrue(p.isRunning)
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
