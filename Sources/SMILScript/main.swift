// main.swift: the `smil` command. Only this target prints or exits.

import Foundation
import Core
import Interpreter

let usage = """
usage: smil demo [--steps N] [--seed N]   train a small ResNet on random tensors, printing the loss
       smil --version                      print the version
       smil --help                         print this help

Coming with the SMILScript interpreter: smil (REPL), smil FILE.smil [ARGS...], smil -e CODE,
smil test [PATH...], smil notebook FILE.smil -o OUT.html.
Environment: SMIL_THREADS (compute threads, default all cores), SMIL_SEED (default seed).
"""

func fail(_ message: String) -> Never {
    FileHandle.standardError.write((message + "\n").data(using: .utf8)!)
    exit(1)
}

var arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "--version", "-V":
    print("smil \(smilVersion)")
case "--help", "-h", nil:
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
default:
    fail("smil: '\(arguments[0])' is not available yet: scripts, the REPL, tests and notebooks arrive with the SMILScript interpreter\n\n\(usage)")
}
