// Source.swift: source text, positions, and diagnostics — errors are data with a location; one
// renderer turns them into `file:line:col`, the source line and a caret.

/// A position in a source file (1-based line and column).
public struct SourceLocation: Equatable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public init(line: Int, column: Int) { self.line = line; self.column = column }
    public var description: String { "\(line):\(column)" }
}

/// A named source text.
public final class SourceFile {
    public let name: String
    public let text: String
    public let lines: [Substring]

    public init(name: String, text: String) {
        self.name = name
        self.text = text
        lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    }

    public func line(_ n: Int) -> String { n >= 1 && n <= lines.count ? String(lines[n - 1]) : "" }
}

/// One frame of a runtime call stack: the function called and where the call was.
public struct StackFrame: Equatable {
    public var function: String
    public var file: String
    public var location: SourceLocation
}

/// A syntax or runtime error with where it happened.
public struct ScriptError: Error, CustomStringConvertible {
    public enum Kind: String { case syntax = "syntax error", runtime = "error", exit, skip = "skipped" }
    public var kind: Kind
    public var message: String
    public var file: SourceFile?
    public var location: SourceLocation?
    /// Width of the culprit, for the caret line.
    public var length: Int
    /// Calls that led here, outermost first.
    public var stack: [StackFrame]
    /// For `exit(code)`.
    public var exitCode: Int32 = 0

    public init(_ kind: Kind, _ message: String, file: SourceFile? = nil, at location: SourceLocation? = nil, length: Int = 1) {
        self.kind = kind
        self.message = message
        self.file = file
        self.location = location
        self.length = max(1, length)
        self.stack = []
    }

    /// `file:line:col: error: message`, the source line, a caret under the culprit, and the
    /// call stack (innermost last) when there is one.
    public var description: String {
        var out = ""
        if let f = file, let loc = location {
            out = "\(f.name):\(loc.line):\(loc.column): \(kind.rawValue): \(message)"
            let text = f.line(loc.line)
            if !text.isEmpty {
                out += "\n    " + text + "\n    " + String(repeating: " ", count: max(0, loc.column - 1))
                    + String(repeating: "^", count: min(length, max(1, text.count - loc.column + 1)))
            }
        } else {
            out = "\(kind.rawValue): \(message)"
        }
        if !stack.isEmpty {
            out += "\ncall stack (innermost last):"
            for frame in stack { out += "\n    \(frame.file):\(frame.location.line):\(frame.location.column) in \(frame.function)" }
        }
        return out
    }
}

/// Several errors from one file (the parser reports them all).
public struct ScriptErrors: Error, CustomStringConvertible {
    public var errors: [ScriptError]
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

/// The candidate closest to `name` by edit distance, if close enough to be a likely typo.
public func closestName(to name: String, in candidates: [String]) -> String? {
    func distance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count), cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            cur[0] = i
            for j in 1...b.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }
    let target = Array(name.lowercased())
    var best: (String, Int)? = nil
    for c in Set(candidates) where c != name {
        let d = distance(target, Array(c.lowercased()))
        if best == nil || d < best!.1 || (d == best!.1 && c < best!.0) { best = (c, d) }
    }
    guard let (c, d) = best else { return nil }
    return d <= max(1, min(3, name.count / 3 + 1)) ? c : nil
}
