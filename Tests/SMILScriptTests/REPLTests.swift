// REPLTests.swift: the real `smil` binary driven through a pseudo-terminal, as a person would:
// completion of a member after '.', a multi-line function, an error followed by a working command,
// Ctrl-C stopping `while true { }` with the variables intact, and history after a restart.

import XCTest
import Foundation

// glibc's pseudo-terminal calls, which Swift's Glibc module leaves out (they need _XOPEN_SOURCE).
@_silgen_name("posix_openpt") func posixOpenpt(_ flags: Int32) -> Int32
@_silgen_name("grantpt") func grantPT(_ fd: Int32) -> Int32
@_silgen_name("unlockpt") func unlockPT(_ fd: Int32) -> Int32
@_silgen_name("ptsname") func ptsName(_ fd: Int32) -> UnsafeMutablePointer<CChar>?

/// A `smil` REPL on a pseudo-terminal.
final class PTYSession {
    let process = Process()
    let master: FileHandle
    var screen = ""

    init(home: String) throws {
        let fd = posixOpenpt(O_RDWR | O_NOCTTY)
        guard fd >= 0, grantPT(fd) == 0, unlockPT(fd) == 0, let name = ptsName(fd) else { throw XCTSkip("no pseudo-terminal available") }
        let slavePath = String(cString: name)
        let slave = FileHandle(forUpdatingAtPath: slavePath)!
        master = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        let binary = Bundle.main.bundleURL.appendingPathComponent("smil")
        guard FileManager.default.isExecutableFile(atPath: binary.path) else { throw XCTSkip("smil binary not found") }
        // util-linux's `script` gives smil a terminal of its own as its controlling terminal, so
        // Ctrl-C typed here reaches it as SIGINT, as in a real terminal.
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/script") else { throw XCTSkip("/usr/bin/script not found") }
        process.executableURL = URL(fileURLWithPath: "/usr/bin/script")
        process.arguments = ["-qfec", binary.path, "/dev/null"]
        process.environment = ["HOME": home, "TERM": "dumb", "PATH": "/usr/bin:/bin"]
        process.standardInput = slave
        process.standardOutput = slave
        process.standardError = slave
        try process.run()
    }

    /// Reads what the terminal shows until `text` appears (or a timeout).
    @discardableResult
    func waitFor(_ text: String, timeout: Double = 10) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        let fd = master.fileDescriptor
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            if screen.contains(text) { return true }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 100) > 0 {
                let n = read(fd, &buffer, buffer.count)
                if n > 0 { screen += String(decoding: buffer[0..<n], as: UTF8.self) }
            }
        }
        return screen.contains(text)
    }

    func send(_ text: String) {
        master.write(text.data(using: .utf8)!)
    }

    func close() {
        send("\u{4}")
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning { process.terminate() }
    }

    deinit { if process.isRunning { process.terminate() } }
}

final class REPLTests: XCTestCase {
    /// A fresh HOME for one session (its own ~/.smil_history); the caller removes it.
    func temporaryHome() throws -> String {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("smil-home-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        return home
    }

    func testInteractiveSession() throws {
        let home = try temporaryHome()
        defer { try? FileManager.default.removeItem(atPath: home) }
        let s = try PTYSession(home: home)
        XCTAssertTrue(s.waitFor("smil> "), s.screen)

        // Completion of a member after '.': "model.wei<Tab>" becomes "model.weight".
        s.send("let model = Linear(3, 2)\n")
        s.send("model.wei\t")
        XCTAssertTrue(s.waitFor("model.weight"), s.screen)
        s.send(".shape\n")
        XCTAssertTrue(s.waitFor("[2, 3]"), s.screen)

        // A multi-line function with continuation prompts.
        s.send("fn add(a, b) {\n")
        XCTAssertTrue(s.waitFor("... "), s.screen)
        s.send("return a + b\n}\nadd(20, 22)\n")
        XCTAssertTrue(s.waitFor("42"), s.screen)

        // An error, then a working command: the session goes on.
        s.send("nope + 1\n")
        XCTAssertTrue(s.waitFor("undefined name 'nope'"), s.screen)
        s.send("add(1, 1) * 50\n")
        XCTAssertTrue(s.waitFor("100"), s.screen)

        // Ctrl-C stops a running loop at a safe point; the variables are still there.
        s.send("var n = 0\nwhile true { n += 1 }\n")
        Thread.sleep(forTimeInterval: 0.5)
        s.send("\u{3}")
        XCTAssertTrue(s.waitFor("interrupted"), s.screen)
        s.send("n > 0 and model.weight.shape == [2, 3]\n")
        XCTAssertTrue(s.waitFor("true"), s.screen)
        s.send(":vars\n")
        XCTAssertTrue(s.waitFor("model  Linear"), s.screen)

        // A module typed alone shows its summary table; summary(input:) adds output shapes.
        s.send("Sequential([model, ReLU()])\n")
        XCTAssertTrue(s.waitFor("Total params: 8"), s.screen)
        XCTAssertTrue(s.screen.contains("├─0 (Linear)"), s.screen)
        s.send("model.summary(input: [5, 3])\n")
        XCTAssertTrue(s.waitFor("Input size: [5, 3]"), s.screen)
        XCTAssertTrue(s.screen.contains("Output shape"), s.screen)
        XCTAssertFalse(s.screen.contains("\\n"), s.screen)
        s.close()

        // History survives a restart, multi-line entries whole.
        let history = try String(contentsOfFile: home + "/.smil_history", encoding: .utf8)
        XCTAssertTrue(history.contains("fn add(a, b) {\u{1}return a + b\u{1}}"), history)
        let again = try PTYSession(home: home)
        XCTAssertTrue(again.waitFor("smil> "))
        again.send("\u{1B}[A")   // up arrow: the last entry
        XCTAssertTrue(again.waitFor(":vars"), again.screen)
        again.close()
    }

    /// Completion flows: a completed name gets nothing after it, so `.` and a member completion
    /// follow at once; a keyword gets its space.
    func testCompletionAddsNothingAfterANameOrMember() throws {
        let home = try temporaryHome()
        defer { try? FileManager.default.removeItem(atPath: home) }
        let s = try PTYSession(home: home)
        XCTAssertTrue(s.waitFor("smil> "), s.screen)
        s.send("var alpha_value = tensor([1.5, 2.0])\n")
        s.send("alpha_val\t")
        XCTAssertTrue(s.waitFor("alpha_value"), s.screen)
        s.send(".su\t")
        XCTAssertTrue(s.waitFor("alpha_value.sum"), s.screen)
        s.send("()\n")
        // The line as completed and entered, then its value.
        XCTAssertTrue(s.waitFor("alpha_value.sum()\r\ntensor(3.5"), s.screen.debugDescription)
        XCTAssertFalse(s.screen.contains("alpha_value .su"), s.screen)
        XCTAssertFalse(s.screen.contains("error"), s.screen)
        // A keyword is followed by a space: "whi<Tab>true {}" is a loop header.
        s.send("var k = 0\n")
        s.send("whi\t")
        XCTAssertTrue(s.waitFor("while "), s.screen)
        s.send("k < 3 { k += 1 }\nk * 10\n")
        XCTAssertTrue(s.waitFor("while k < 3 { k += 1 }"), s.screen.debugDescription)
        XCTAssertTrue(s.waitFor("k * 10\r\n30"), s.screen.debugDescription)
        s.close()
    }

    /// Ctrl-C stops one long library call (a ResNet-50 forward of a minute's work) between its
    /// layers and kernel tiles: the prompt is back within seconds and the workspace is intact.
    func testCtrlCStopsALongForwardBetweenLayers() throws {
        let home = try temporaryHome()
        defer { try? FileManager.default.removeItem(atPath: home) }
        let s = try PTYSession(home: home)
        XCTAssertTrue(s.waitFor("smil> "), s.screen)
        s.send("let m = resnet50(embedder: true)\nlet w = m.conv1.weight.clone()\n")
        s.send("let x = randn([32, 3, 512, 512])\n")
        s.send("print(\"g\" + \"o!\")\nlet y = no_grad(fn() => m(x))\n")
        XCTAssertTrue(s.waitFor("go!", timeout: 60), s.screen)
        Thread.sleep(forTimeInterval: 1.0)
        let sent = Date()
        s.send("\u{3}")
        XCTAssertTrue(s.waitFor("interrupted", timeout: 10), s.screen)
        let took = Date().timeIntervalSince(sent)
        XCTAssertLessThan(took, 5, "the forward stops at the next layer, not at its end")
        s.send("[allclose(m.conv1.weight, w), x.shape]\n")
        XCTAssertTrue(s.waitFor("[true, [32, 3, 512, 512]]"), s.screen.debugDescription)
        // The interrupted statement bound nothing: `y` holds no half-computed tensor.
        s.send("y == nil\n")
        XCTAssertTrue(s.waitFor("y == nil\r\ntrue"), s.screen.debugDescription)
        s.close()
    }
}
