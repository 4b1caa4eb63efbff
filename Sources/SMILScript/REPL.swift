// REPL.swift: the interactive session on GNU readline — line editing, persistent history
// (multi-line entries kept whole), Tab completion from static metadata, continuation lines,
// automatic printing with `_`, `?name` and `:commands`, and Ctrl-C that stops the running
// statement at a safe point without losing the workspace.

import Foundation
import CReadline
import Core
import Interpreter

/// The session's interpreter, reachable from C callbacks (signal handler, completion).
nonisolated(unsafe) var replInterpreter: Interpreter? = nil
/// True while an entry runs (Ctrl-C then interrupts it instead of clearing the line).
nonisolated(unsafe) var replRunning = false
nonisolated(unsafe) var completionCandidates: [String] = []

struct REPL {
    let interp: Interpreter
    let historyPath: String
    var lastFile: String? = nil

    init(interp: Interpreter) {
        self.interp = interp
        historyPath = (ProcessInfo.processInfo.environment["HOME"] ?? ".") + "/.smil_history"
    }

    /// History entries are stored one per line, newlines inside an entry written as \u{1}.
    func loadHistory() {
        guard let text = try? String(contentsOfFile: historyPath, encoding: .utf8) else { return }
        for line in text.split(separator: "\n") where !line.isEmpty {
            add_history(line.replacingOccurrences(of: "\u{1}", with: "\n"))
        }
    }

    func appendHistory(_ entry: String) {
        add_history(entry)
        let line = entry.replacingOccurrences(of: "\n", with: "\u{1}") + "\n"
        if let h = FileHandle(forWritingAtPath: historyPath) {
            h.seekToEndOfFile()
            h.write(line.data(using: .utf8)!)
            h.closeFile()
        } else {
            _ = FileManager.default.createFile(atPath: historyPath, contents: line.data(using: .utf8))
        }
    }

    mutating func run() -> Int32 {
        replInterpreter = interp
        interp.onExpressionValue = { [interp] v in
            if case .nilValue = v { return }
            print(interp.displayText(v))
            interp.setUnderscore(v)
        }
        installSignalHandler()
        installCompletion()
        loadHistory()
        print("smil \(smilVersion) — SMILScript REPL. :help NAME or ?NAME for docs, :vars, :time, :load FILE, :cell N, :reset, :quit. Ctrl-D exits.")
        while true {
            guard var entry = readLine(prompt: "smil> ") else { print(""); return 0 }
            if entry.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            // Keep reading while a bracket or block is open.
            while !entry.hasPrefix(":") && !entry.hasPrefix("?") && interp.needsMoreInput(entry) {
                guard let more = readLine(prompt: "  ... ") else { break }
                entry += "\n" + more
            }
            appendHistory(entry)
            if !handle(entry) { return 0 }
        }
    }

    func readLine(prompt: String) -> String? {
        guard let p = readline(prompt) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// Runs one entry; false ends the session.
    mutating func handle(_ entry: String) -> Bool {
        let trimmed = entry.trimmingCharacters(in: .whitespaces)
        if trimmed.hasPrefix("?") { print(interp.documentation(String(trimmed.dropFirst()).trimmingCharacters(in: .whitespaces))); return true }
        if trimmed.hasPrefix(":") {
            let parts = trimmed.split(separator: " ", maxSplits: 1).map(String.init)
            let arg = parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
            switch parts[0] {
            case ":quit", ":q": return false
            case ":help": print(arg.isEmpty ? "commands: :help NAME, ?NAME, :vars, :time STATEMENT, :load FILE, :cell N, :reset, :quit" : interp.documentation(arg))
            case ":vars": interp.describeWorkspace().forEach { print($0) }
            case ":reset": interp.reset(); print("workspace cleared")
            case ":time":
                let t0 = Date()
                execute(arg, name: "<input>")
                print(String(format: "time: %.4f s", Date().timeIntervalSince(t0)))
            case ":load":
                guard let text = try? String(contentsOfFile: arg, encoding: .utf8) else { print("cannot read \(arg)"); return true }
                lastFile = arg
                execute(text, name: arg)
            case ":cell":
                guard let file = lastFile, let text = try? String(contentsOfFile: file, encoding: .utf8) else { print(":cell needs a file loaded with :load"); return true }
                let cells = splitCells(text)
                guard let n = Int(arg), n >= 1, n <= cells.count else { print(":cell takes a number from 1 to \(cells.count)"); return true }
                let cell = cells[n - 1]
                execute(String(repeating: "\n", count: cell.firstLine - 1) + cell.source, name: file)
            default:
                var msg = "unknown command \(parts[0])"
                if let s = closestName(to: parts[0], in: [":help", ":vars", ":time", ":load", ":cell", ":reset", ":quit"]) { msg += "; did you mean \(s)?" }
                print(msg)
            }
            return true
        }
        execute(entry, name: "<input>")
        return true
    }

    func execute(_ source: String, name: String) {
        interp.interruptRequested = false
        replRunning = true
        defer { replRunning = false; interp.interruptRequested = false }
        do {
            try interp.run(source, name: name)
        } catch let e as ScriptError where e.kind == .exit {
            exit(e.exitCode)
        } catch {
            FileHandle.standardError.write("\(error)\n".data(using: .utf8)!)
        }
        fflush(stdout)
    }

    func installSignalHandler() {
        signal(SIGINT) { _ in
            if replRunning {
                Interrupt.request()
            } else {
                // At the prompt: drop the line, start a fresh prompt.
                rl_replace_line("", 0)
                write(1, "\n", 1)
                rl_on_new_line()
                rl_redisplay()
            }
        }
        rl_catch_signals = 0
    }

    func installCompletion() {
        rl_attempted_completion_function = { text, start, end in
            guard let interp = replInterpreter, let bufferPointer = rl_line_buffer else { return nil }
            let line = String(cString: bufferPointer)
            let upto = String(line.utf8.prefix(Int(end))) ?? line
            // Nothing is added after a completed name or member (a '.' or '(' usually follows, as
            // in IPython and the Julia REPL); a keyword gets a space, a folder its '/' (readline
            // marks directories itself), and a file name nothing, before the closing quote.
            rl_completion_append_character = 0
            // Inside an open string literal: complete file paths.
            if upto.filter({ $0 == "\"" }).count % 2 == 1 {
                return rl_completion_matches(text, rl_filename_completion_function)
            }
            rl_attempted_completion_over = 1
            completionCandidates = interp.completions(upto).candidates
            if completionCandidates.count == 1, Interpreter.isKeyword(completionCandidates[0]) {
                rl_completion_append_character = 32
            }
            return rl_completion_matches(text) { _, state in
                let i = Int(state)
                guard i < completionCandidates.count else { return nil }
                return strdup(completionCandidates[i])
            }
        }
        rl_basic_word_break_characters = UnsafePointer(strdup(" \t\n\"\\'`@$><=;|&{(.[,:+-*/%"))
    }
}
