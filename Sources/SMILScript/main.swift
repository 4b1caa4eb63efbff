// main.swift: the `smil` command — scripts, -e, the test runner and the demo. Only this target
// prints or exits.

import Foundation
import Core
import Interpreter

let usage = """
usage: smil                         interactive REPL (readline, history in ~/.smil_history)
       smil FILE.smil [ARGS...]     run a script (args holds ARGS as strings)
       smil -e CODE                 run CODE and print the value of a final expression
       smil test [PATH...]          run test scripts (default: tests/); ends with "N passed, N failed"
       smil notebook FILE.smil -o OUT.html|OUT.md   run cells (# %% lines), write a report
       smil tile SLIDE... -o DIR [--size 256] [--level L | --mpp M] [--step N] [--preset tcga] [--png] [--workers N]
                                    find tissue and tile slides into CLAM's patch files (smil tile --help)
       smil extract SOURCES... -o DIR [--encoder resnet50_trunc] [--weights FILE] [--patches DIR] [--batch 64] [--workers N]
                                    embed every tile into CLAM's feature bags (smil extract --help)
       smil demo [--steps N] [--seed N]   train a small ResNet on random tensors, printing the loss
       smil fuzz [--calls N] [--seed N] [--start I]   random library calls with edge-case arguments
                                    in a child process; reports every crash and hang with its call
       smil --version | --help

Environment: SMIL_THREADS (compute threads, default all cores), SMIL_SEED (default seed),
SMIL_MEMORY_LIMIT (largest tensor, e.g. 8G; default memory + swap or the cgroup limit).
"""

func printError(_ message: String) {
    FileHandle.standardError.write((message + "\n").data(using: .utf8)!)
}

func fail(_ message: String) -> Never {
    printError(message)
    exit(1)
}

/// Runs `body` on a thread with a large stack (deep script recursion), then exits with its status.
func runWithLargeStack(_ body: @escaping () -> Int32) -> Never {
    let thread = Thread { exit(body()) }
    thread.stackSize = 512 << 20
    thread.start()
    while true { sleep(1000) }
}

/// An interpreter wired to this terminal: a one-line progress bar for data loader loops when
/// stdout is a terminal (count, rate, ETA, last loss), nothing otherwise.
func makeInterpreter(arguments: [String]) -> Interpreter {
    let interp = Interpreter()
    interp.scriptArguments = arguments
    guard isatty(1) != 0 else { return interp }
    var start = Date()
    interp.progress = { [unowned interp] done, total, finished in
        if done <= 1 { start = Date() }
        if finished {
            print("\r\u{1B}[K", terminator: "")
            fflush(stdout)
            return
        }
        print(progressLine(done: done, total: total, elapsed: Date().timeIntervalSince(start), loss: interp.progressLoss),
              terminator: "")
        fflush(stdout)
    }
    return interp
}

/// The progress bar's line: count, rate and ETA once two items are done (the clock starts at the
/// first, so one item gives no rate), in s/it below one item a second as tqdm shows it, and the
/// last loss.
func progressLine(done: Int, total: Int, elapsed: Double, loss: Double?) -> String {
    let width = 24, filled = total > 0 ? width * min(done, total) / total : 0
    var line = "\r[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] \(done)/\(total)"
    if done >= 2 && elapsed > 0 {
        // Items since the clock started at the first one.
        let rate = Double(done - 1) / elapsed
        line += rate >= 1 ? String(format: "  %.2f it/s", rate) : String(format: "  %.2f s/it", 1 / rate)
        line += String(format: "  ETA %.0fs", Double(max(total - done, 0)) / rate)
    }
    if let loss { line += String(format: "  loss %.4f", loss) }
    return line
}

/// Reports a script error on stderr; returns the exit status.
func report(_ error: Error) -> Int32 {
    if let e = error as? ScriptError, e.kind == .exit { return e.exitCode }
    printError("\(error)")
    return 1
}

// Standard output reaches a file or a pipe at each newline, as it does a terminal: a script's lines
// show in `> log.txt`, under `| tee`, nohup or a batch scheduler as they are printed, and are not
// lost in a 4 KB buffer when the job is killed.
setvbuf(stdout, nil, _IOLBF, 0)
// Settles the compute threads first (this also stops OpenBLAS's own pool from spinning).
_ = Parallel.threads
var arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "--version", "-V":
    print("smil \(smilVersion)")
case "--help", "-h":
    print(usage)
case "demo":
    var demo = Demo()
    if let env = ProcessInfo.processInfo.environment["SMIL_SEED"], let s = UInt64(env) { demo.seed = s }
    var i = 1
    while i < arguments.count {
        let flag = arguments[i]
        guard i + 1 < arguments.count, let value = Int(arguments[i + 1]), value >= 0 else {
            fail("smil demo: \(flag) needs a non-negative whole number")
        }
        switch flag {
        case "--steps": demo.steps = max(1, value)
        case "--seed": demo.seed = UInt64(value)
        default: fail("smil demo: unknown option \(flag)\n\n\(usage)")
        }
        i += 2
    }
    do { try demo.run() } catch { fail("smil demo: \(error)") }
case "-e":
    guard arguments.count >= 2 else { fail("smil -e: give the code to run\n\n\(usage)") }
    let code = arguments[1]
    runWithLargeStack {
        let interp = makeInterpreter(arguments: Array(arguments.dropFirst(2)))
        do {
            if let v = try interp.run(code, name: "<-e>"), !v.isNilValue { print(render(v, quoted: false)) }
            return 0
        } catch { return report(error) }
    }
case "fuzz":
    var runner = FuzzRunner()
    var i = 1
    while i < arguments.count {
        let flag = arguments[i]
        if flag == "--verbose" { runner.verbose = true; i += 1; continue }
        guard i + 1 < arguments.count, let value = Int(arguments[i + 1]), value >= 0 else {
            fail("smil fuzz: \(flag) needs a non-negative whole number\n\n\(usage)")
        }
        switch flag {
        case "--calls": runner.calls = value
        case "--seed": runner.seed = UInt64(value)
        case "--start": runner.start = value
        case "--budget": runner.callBudget = Double(max(1, value))
        default: fail("smil fuzz: unknown option \(flag)\n\n\(usage)")
        }
        i += 2
    }
    exit(runner.run())
case "fuzz-worker":
    // smil fuzz-worker SEED FROM TO LOG BUDGET: the child `smil fuzz` starts.
    guard arguments.count == 6, let seed = UInt64(arguments[1]), let from = Int(arguments[2]), let to = Int(arguments[3]),
          let budget = Double(arguments[5]) else { fail("smil fuzz-worker: started by smil fuzz, not by hand") }
    let log = arguments[4]
    runWithLargeStack { Fuzzer.work(seed: seed, from: from, to: to, log: log, budget: budget) }
case "notebook":
    let rest = Array(arguments.dropFirst())
    guard let file = rest.first, let o = rest.firstIndex(of: "-o"), o + 1 < rest.count else {
        fail("smil notebook: usage: smil notebook FILE.smil -o OUT.html|OUT.md")
    }
    let out = rest[o + 1]
    runWithLargeStack { NotebookRunner(file: file, output: out).run() }
case "tile":
    exit(runTile(Array(arguments.dropFirst())))
case "extract":
    exit(runExtract(Array(arguments.dropFirst())))
case "test":
    let paths = arguments.count > 1 ? Array(arguments.dropFirst()) : ["tests"]
    runWithLargeStack { TestRunner(paths: paths).run() }
case nil:
    if isatty(0) == 0 {
        // Not a terminal: run standard input as a script.
        let source = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        runWithLargeStack {
            do { try makeInterpreter(arguments: []).run(source, name: "<stdin>"); return 0 } catch { return report(error) }
        }
    }
    runWithLargeStack {
        var repl = REPL(interp: makeInterpreter(arguments: []))
        return repl.run()
    }
default:
    let path = arguments[0]
    if path.hasPrefix("-") { fail("smil: unknown option \(path)\n\n\(usage)") }
    guard FileManager.default.fileExists(atPath: path) else { fail("smil: no such file: \(path)") }
    runWithLargeStack {
        let interp = makeInterpreter(arguments: Array(arguments.dropFirst()))
        do {
            try interp.runFile(path)
            return 0
        } catch { return report(error) }
    }
}

extension Value {
    var isNilValue: Bool { if case .nilValue = self { return true }; return false }
}
