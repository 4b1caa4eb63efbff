// Session.swift: what an interactive front end needs from the interpreter, without any terminal:
// whether an entry is complete, completions from static metadata, workspace listings, cells.

import Core

extension Interpreter {
    /// Whether `source` is a complete entry, or needs more lines (an open bracket, block, string
    /// interpolation or a trailing operator).
    public func needsMoreInput(_ source: String) -> Bool {
        do {
            _ = try Parser.parse(SourceFile(name: "<input>", text: source))
            return false
        } catch let e as ScriptErrors {
            return e.errors.contains { $0.message.hasSuffix("found end of file") || $0.message.contains("to close the block") }
        } catch {
            return false
        }
    }

    /// Whether `word` is a keyword that a space follows (completion adds one): not the values
    /// `true`, `false` and `nil`.
    public static func isKeyword(_ word: String) -> Bool {
        keywordList.contains(word) && !["true", "false", "nil"].contains(word)
    }

    static let keywordList = ["let", "var", "fn", "return", "if", "else", "while", "for", "in", "break", "continue",
                              "true", "false", "nil", "and", "or", "not", "assert", "import", "as", "test"]

    /// Completions for the word before the cursor in `line` (the text up to the cursor). Names,
    /// keywords and, after `name.` (or `a.b.` through module children), members — read from the
    /// workspace's values and the binding tables, never by running code. Returns the candidates
    /// and the prefix they replace.
    public func completions(_ line: String) -> (prefix: String, candidates: [String]) {
        let chars = Array(line)
        var i = chars.count
        while i > 0, chars[i - 1].isLetter || chars[i - 1].isNumber || chars[i - 1] == "_" { i -= 1 }
        let prefix = String(chars[i...])
        if i > 0, chars[i - 1] == "." {
            // Walk back over a chain of names: a.b.c.
            var path: [String] = []
            var j = i - 1
            while j >= 0, chars[j] == "." {
                var k = j
                while k > 0, chars[k - 1].isLetter || chars[k - 1].isNumber || chars[k - 1] == "_" { k -= 1 }
                guard k < j else { break }
                path.insert(String(chars[k..<j]), at: 0)
                j = k - 1
            }
            guard let first = path.first, let slot = globals.scopes[0][first]?.slot else { return (prefix, []) }
            var value = globalFrame.slots[slot]
            for name in path.dropFirst() {
                // Only pure lookups: a module's children and parameters.
                guard case .object(let m as ModuleObject) = value else { return (prefix, []) }
                if let c = m.module.child(name) { value = .object(ModuleObject(c)) } else { return (prefix, []) }
            }
            return (prefix, Array(Set(memberNames(value))).filter { $0.hasPrefix(prefix) }.sorted())
        }
        let names = Set(globalNames + Self.keywordList + [":help", ":vars", ":time", ":load", ":cell", ":reset", ":quit"])
        return (prefix, names.filter { $0.hasPrefix(prefix) && !$0.hasPrefix("_") || (prefix.hasPrefix("_") && $0.hasPrefix(prefix)) }.sorted())
    }

    /// One line per workspace variable: name, type, and shape or length.
    public func describeWorkspace() -> [String] {
        workspace.filter { $0.0 != "args" }.map { name, v in
            let detail: String
            switch v {
            case .tensor(let t): detail = "shape \(shapeString(t.value.shape))"
            case .intTensor(let t): detail = "shape \(shapeString(t.value.shape)), int64"
            case .list(let l): detail = "length \(l.items.count)"
            case .dict(let d): detail = "length \(d.count)"
            case .string(let s): detail = "length \(s.count)"
            case .object(let o as LengthObject): detail = "length \(o.length)"
            case .int, .float, .bool: detail = render(v, quoted: true)
            default: detail = ""
            }
            return "\(name)  \(v.typeName)\(detail.isEmpty ? "" : "  " + detail)"
        }
    }

    /// Documentation for `name`: a builtin or tensor method, else a workspace value's members.
    public func documentation(_ name: String) -> String {
        if let h = help(name) { return h }
        if let slot = globals.scopes[0][name]?.slot { return describeHelp(globalFrame.slots[slot]) }
        var msg = "no documentation for '\(name)'"
        if let s = closestName(to: name, in: globalNames + Array(tensorMethods.keys)) { msg += "; did you mean '\(s)'?" }
        return msg
    }

    /// How an interactive front end shows a value typed alone: a module as its summary table
    /// (torchinfo's, without output shapes), everything else as `print` would quote it.
    public func displayText(_ v: Value) -> String {
        if case .object(let m as ModuleObject) = v, let s = try? ModelSummary(m.module) { return s.description }
        return render(v, quoted: true)
    }

    /// Sets `_` to the last expression value (the REPL's convenience).
    public func setUnderscore(_ v: Value) {
        let slot = globals.scopes[0]["_"]?.slot ?? globals.declare("_", constant: false)
        globalsGrew(globals.size)
        globalFrame.slots[slot] = v
    }
}

/// A file split into cells at lines starting `# %%` (text after the marker is the title).
public struct Cell {
    public var title: String
    public var source: String
    public var firstLine: Int
}

public func splitCells(_ text: String) -> [Cell] {
    var cells: [Cell] = []
    var current = Cell(title: "", source: "", firstLine: 1)
    var lines: [String] = []
    for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        let trimmed = line.drop { $0 == " " }
        if trimmed.hasPrefix("# %%") {
            if !lines.joined().trimmingCharacters(in: .whitespaces).isEmpty || !current.title.isEmpty {
                current.source = lines.joined(separator: "\n")
                cells.append(current)
            }
            current = Cell(title: String(trimmed.dropFirst(4)).trimmingCharacters(in: .whitespaces), source: "", firstLine: n + 2)
            lines = []
        } else {
            lines.append(String(line))
        }
    }
    current.source = lines.joined(separator: "\n")
    if !current.source.trimmingCharacters(in: .whitespaces).isEmpty || !current.title.isEmpty { cells.append(current) }
    return cells
}
