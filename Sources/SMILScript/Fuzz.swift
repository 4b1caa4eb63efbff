// Fuzz.swift: `smil fuzz` — random calls of every binding with edge-case arguments, run in a child
// process so that a crash (a trap, a segfault, an allocation the machine refused) is caught, named
// with the call that caused it, and the run goes on from the next call.

import Foundation
import Core
import Interpreter

/// The parent: starts workers, watches their progress log, and reports crashes and hangs.
struct FuzzRunner {
    var calls = 20_000
    var seed: UInt64 = 1
    var start = 0
    /// Seconds one call may run before the worker's watchdog interrupts it (Ctrl-C's flag).
    var callBudget = 5.0
    /// Seconds without progress after which the worker is killed and the call reported as a hang.
    var hangTimeout = 60.0
    /// SMIL_MEMORY_LIMIT in the workers: sizes the calls choose fail fast instead of filling memory.
    var memoryLimit = "512M"
    var verbose = false

    struct Finding { let index: Int; let kind: String; let call: String; let detail: String }

    func run() -> Int32 {
        let fm = FileManager.default
        let scratch = fm.temporaryDirectory.appendingPathComponent("smil-fuzz-\(getpid())")
        try? fm.removeItem(at: scratch)
        do { try fm.createDirectory(at: scratch, withIntermediateDirectories: true) } catch {
            printError("smil fuzz: cannot create \(scratch.path): \(error)")
            return 1
        }
        defer { try? fm.removeItem(at: scratch) }
        let exe = (try? fm.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let began = Date()
        var findings: [Finding] = []
        var ok = 0, raised = 0, restarts = 0
        var slowest: [(ms: Double, index: Int)] = []
        var next = start
        let end = start + calls
        while next < end {
            // Each worker starts in an empty folder: a crashed one may have left anything behind.
            let work = scratch.appendingPathComponent("worker-\(restarts)")
            try? fm.createDirectory(at: work, withIntermediateDirectories: true)
            defer { try? fm.removeItem(at: work) }
            let log = scratch.appendingPathComponent("progress.log"), errors = scratch.appendingPathComponent("stderr.txt")
            _ = fm.createFile(atPath: log.path, contents: nil)
            _ = fm.createFile(atPath: errors.path, contents: nil)
            let worker = Process()
            worker.executableURL = URL(fileURLWithPath: exe)
            worker.arguments = ["fuzz-worker", String(seed), String(next), String(end), log.path, String(callBudget)]
            worker.currentDirectoryURL = work
            var env = ProcessInfo.processInfo.environment
            env["SMIL_MEMORY_LIMIT"] = memoryLimit
            worker.environment = env
            worker.standardInput = FileHandle.nullDevice
            worker.standardOutput = FileHandle.nullDevice
            worker.standardError = try? FileHandle(forWritingTo: errors)
            do { try worker.run() } catch {
                printError("smil fuzz: cannot start \(exe): \(error)")
                return 1
            }
            var lastIndex = next - 1, lastChange = Date(), reading = Progress()
            while worker.isRunning {
                usleep(50_000)
                if let text = try? String(contentsOf: log, encoding: .utf8) {
                    reading = Progress(text)
                    if reading.current != lastIndex { lastIndex = reading.current; lastChange = Date() }
                }
                if Date().timeIntervalSince(lastChange) > hangTimeout {
                    kill(worker.processIdentifier, SIGKILL)
                    worker.waitUntilExit()
                    break
                }
            }
            worker.waitUntilExit()
            reading = Progress((try? String(contentsOf: log, encoding: .utf8)) ?? "")
            ok += reading.ok
            raised += reading.raised
            slowest = Array((slowest + reading.times).sorted { $0.ms > $1.ms }.prefix(5))
            if reading.done && worker.terminationReason == .exit && worker.terminationStatus == 0 { break }
            if worker.terminationReason == .exit && worker.terminationStatus == Fuzzer.setupFailed {
                printError("smil fuzz: the worker could not set up its workspace:\n" + ((try? String(contentsOf: errors, encoding: .utf8)) ?? ""))
                return 1
            }
            // The call in flight when the worker ended (or was killed) is the culprit.
            let culprit = reading.inFlight ?? max(next, reading.current)
            let hung = Date().timeIntervalSince(lastChange) > hangTimeout
            let stderr = (try? String(contentsOf: errors, encoding: .utf8)) ?? ""
            let kind = hung ? "hang" : worker.terminationReason == .uncaughtSignal
                ? "crash (signal \(worker.terminationStatus))" : "crash (exit status \(worker.terminationStatus))"
            findings.append(Finding(index: culprit, kind: kind, call: Fuzzer.call(culprit, seed: seed), detail: Self.essence(of: stderr)))
            print("\(kind) at call \(culprit): \(findings.last!.call)\n    \(findings.last!.detail)")
            restarts += 1
            next = culprit + 1
        }
        let seconds = Date().timeIntervalSince(began)
        let crashes = findings.filter { $0.kind.hasPrefix("crash") }.count, hangs = findings.count - crashes
        print(String(format: "smil fuzz: %d calls (seed %llu, from %d) in %.1f s: %d crashes, %d hangs; %d returned, %d raised an error; %d worker restarts",
                     calls, seed, start, seconds, crashes, hangs, ok, raised, restarts))
        if verbose || !findings.isEmpty {
            for s in slowest { print(String(format: "  slowest: %.0f ms  call %d: %@", s.ms, s.index, Fuzzer.call(s.index, seed: seed))) }
        }
        return findings.isEmpty ? 0 : 1
    }

    /// The lines of a crash report that say what happened (Swift's "Fatal error" or runtime
    /// failure line, or the signal), not the backtrace.
    static func essence(of stderr: String) -> String {
        let lines = stderr.split(separator: "\n").map(String.init)
        let telling = lines.filter { $0.contains("Fatal error") || $0.contains("runtime failure") || $0.contains("Program crashed") || $0.contains("Killed") }
        return (telling.isEmpty ? Array(lines.suffix(2)) : telling).joined(separator: " | ")
    }

    /// What a worker's progress log says: `> i` before call i, `= i ok|err MS` after it, `done` at the end.
    struct Progress {
        var current = -1, ok = 0, raised = 0, done = false
        var inFlight: Int? = nil
        var times: [(ms: Double, index: Int)] = []
        init() {}
        init(_ text: String) {
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: " ")
                switch parts.first {
                case ">": if parts.count > 1, let i = Int(parts[1]) { current = i; inFlight = i }
                case "=":
                    guard parts.count > 3, let i = Int(parts[1]), let ms = Double(parts[3]) else { continue }
                    if parts[2] == "ok" { ok += 1 } else { raised += 1 }
                    inFlight = nil
                    current = i
                    if times.count < 5 || ms > (times.last?.ms ?? 0) {
                        times.append((ms, i))
                        times.sort { $0.ms > $1.ms }
                        if times.count > 5 { times.removeLast() }
                    }
                case "done": done = true
                default: break
                }
            }
        }
    }
}

/// The child: runs calls `from..<to` in one interpreter, logging each before and after it runs.
enum Fuzzer {
    /// The worker's exit status when its fixtures fail (not a finding: the run cannot go on).
    static let setupFailed: Int32 = 3
    /// The interpreter the calls run in, with the fixtures; also the source of the call texts.
    static func makeInterpreter() throws -> Interpreter {
        let interp = Interpreter()
        interp.output = { _ in }
        try interp.run(CallFuzzer.datasetFixtures, name: "<fuzz fixtures>")
        try interp.run(CallFuzzer.fixtures, name: "<fuzz fixtures>")
        return interp
    }

    nonisolated(unsafe) static var cachedSequence: (seed: UInt64, fuzzer: CallFuzzer)? = nil

    /// The text of call `index` (the parent rebuilds the sequence to name a culprit).
    static func call(_ index: Int, seed: UInt64) -> String {
        if let c = cachedSequence, c.seed == seed { return c.fuzzer.call(index) }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("smil-fuzz-names-\(getpid())")
        try? FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let here = FileManager.default.currentDirectoryPath
        _ = FileManager.default.changeCurrentDirectoryPath(scratch.path)
        defer {
            _ = FileManager.default.changeCurrentDirectoryPath(here)
            try? FileManager.default.removeItem(at: scratch)
        }
        guard let interp = try? makeInterpreter() else { return "<call \(index)>" }
        let fuzzer = CallFuzzer(seed: seed, bindings: interp)
        cachedSequence = (seed, fuzzer)
        return fuzzer.call(index)
    }

    static func work(seed: UInt64, from: Int, to: Int, log path: String, budget: Double) -> Int32 {
        let fd = open(path, O_WRONLY | O_APPEND)
        guard fd >= 0 else { printError("smil fuzz-worker: cannot open \(path)"); return 2 }
        func say(_ s: String) { _ = s.withCString { write(fd, $0, strlen($0)) } }
        let interp: Interpreter
        do { interp = try makeInterpreter() } catch {
            printError("smil fuzz-worker: the fixtures failed: \(error)")
            return setupFailed
        }
        let fuzzer = CallFuzzer(seed: seed, bindings: interp)
        // For the harness's own test: abort at this call, as a crash would.
        let plant = ProcessInfo.processInfo.environment["SMIL_FUZZ_PLANT"].flatMap { Int($0) }
        let watchdog = Watchdog(budget: budget)
        watchdog.start()
        for i in from..<to {
            if (i - from) > 0 && i % CallFuzzer.resetInterval == 0 {
                _ = try? interp.run(CallFuzzer.fixtures, name: "<fuzz fixtures>")
            }
            let source = fuzzer.call(i)
            say("> \(i)\n")
            if i == plant { abort() }
            let t0 = DispatchTime.now().uptimeNanoseconds
            watchdog.begin()
            var failed = false
            do { try interp.run(source, name: "<fuzz \(i)>") } catch { failed = true }
            watchdog.end()
            let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
            say("= \(i) \(failed ? "err" : "ok") \(String(format: "%.2f", ms))\n")
        }
        say("done\n")
        close(fd)
        return 0
    }
}

/// Interrupts a call that runs longer than its budget, through the interrupt flag Ctrl-C sets, so
/// a slow call (a huge loop, a long training run) stops at a safe point instead of hanging the run.
final class Watchdog: @unchecked Sendable {
    let budget: Double
    private let lock = NSLock()
    private var started: Date? = nil

    init(budget: Double) { self.budget = budget }

    func begin() { lock.lock(); started = Date(); lock.unlock() }
    func end() { lock.lock(); started = nil; lock.unlock(); Interrupt.clear() }

    func start() {
        let thread = Thread { [self] in
            while true {
                usleep(20_000)
                lock.lock()
                if let s = started, Date().timeIntervalSince(s) > budget {
                    Interrupt.request()
                    started = nil
                }
                lock.unlock()
            }
        }
        thread.start()
    }
}
