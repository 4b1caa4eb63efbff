// Lexer.swift: SMILScript's lexer — source text to tokens. Newlines end statements except inside
// (), [] and {} literals; strings carry their interpolated parts.

/// The kinds of token.
public enum TokenKind: Equatable {
    case int(Int)
    case float(Double)
    case string([StringPart])
    case identifier(String)
    case keyword(String)
    case symbol(String)
    case newline
    case eof
}

/// A piece of a string literal: text, or an interpolated expression with an optional format spec.
public enum StringPart: Equatable {
    case text(String)
    case expression(source: String, format: String?, location: SourceLocation)
}

public struct Token: Equatable {
    public var kind: TokenKind
    public var location: SourceLocation
    public var length: Int
}

let keywords: Set<String> = ["let", "var", "fn", "return", "if", "else", "while", "for", "in", "break", "continue",
                             "true", "false", "nil", "and", "or", "not", "assert", "import", "as"]

/// Symbols, longest first so that `...` wins over `..`.
let symbols = ["...", "..<", "**", "==", "!=", "<=", ">=", "+=", "-=", "*=", "/=", "=>",
               "+", "-", "*", "/", "%", "@", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ":", ".", ";", "?"]

struct Lexer {
    let file: SourceFile
    private let chars: [Character]
    private var i = 0, line = 1, column = 1
    private(set) var errors: [ScriptError] = []
    /// Nesting of (), [] and {}: newlines inside () and [] are not statement ends.
    private var brackets: [Character] = []

    init(_ file: SourceFile, startLine: Int = 1, startColumn: Int = 1) {
        self.file = file
        chars = Array(file.text)
        line = startLine
        column = startColumn
    }

    private var here: SourceLocation { SourceLocation(line: line, column: column) }
    private func peek(_ o: Int = 0) -> Character? { i + o < chars.count ? chars[i + o] : nil }

    private mutating func advance() -> Character {
        let c = chars[i]
        i += 1
        if c == "\n" { line += 1; column = 1 } else { column += 1 }
        return c
    }

    private mutating func error(_ msg: String, at loc: SourceLocation, length: Int = 1) {
        errors.append(ScriptError(.syntax, msg, file: file, at: loc, length: length))
    }

    mutating func tokenize() -> [Token] {
        var tokens: [Token] = []
        while true {
            // Skip spaces and comments.
            while let c = peek() {
                if c == " " || c == "\t" || c == "\r" { _ = advance() }
                else if c == "#" { while let d = peek(), d != "\n" { _ = advance() } }
                else { break }
            }
            let start = here
            guard let c = peek() else {
                tokens.append(Token(kind: .eof, location: start, length: 1))
                return tokens
            }
            if c == "\n" {
                _ = advance()
                // Newlines inside () and [] do not end statements; inside {} they do (blocks).
                if let top = brackets.last, top == "(" || top == "[" { continue }
                if tokens.last?.kind != .newline { tokens.append(Token(kind: .newline, location: start, length: 1)) }
                continue
            }
            if c.isNumber || (c == "." && (peek(1)?.isNumber ?? false) && !(tokens.last.map { isValueEnd($0) } ?? false)) {
                tokens.append(number(start))
                continue
            }
            if c.isLetter || c == "_" {
                var word = ""
                while let d = peek(), d.isLetter || d.isNumber || d == "_" { word.append(advance()) }
                tokens.append(Token(kind: keywords.contains(word) ? .keyword(word) : .identifier(word), location: start, length: word.count))
                continue
            }
            if c == "\"" {
                tokens.append(string(start))
                continue
            }
            var matched = false
            for s in symbols where matches(s) {
                for _ in 0..<s.count { _ = advance() }
                switch s {
                case "(", "[", "{": brackets.append(s.first!)
                case ")", "]", "}": if !brackets.isEmpty { brackets.removeLast() }
                default: break
                }
                tokens.append(Token(kind: .symbol(s), location: start, length: s.count))
                matched = true
                break
            }
            if !matched {
                _ = advance()
                error("unexpected character '\(c)'", at: start)
            }
        }
    }

    private func isValueEnd(_ t: Token) -> Bool {
        switch t.kind {
        case .identifier, .int, .float, .string: return true
        case .symbol(let s): return s == ")" || s == "]"
        default: return false
        }
    }

    private func matches(_ s: String) -> Bool {
        var k = 0
        for ch in s {
            guard peek(k) == ch else { return false }
            k += 1
        }
        return true
    }

    private mutating func number(_ start: SourceLocation) -> Token {
        var text = ""
        var isFloat = false
        while let d = peek(), d.isNumber || d == "_" { let ch = advance(); if ch != "_" { text.append(ch) } }
        // A '.' starts a fraction unless it begins a range operator or a member access.
        if peek() == ".", let next = peek(1), next.isNumber {
            isFloat = true
            text.append(advance())
            while let d = peek(), d.isNumber || d == "_" { let ch = advance(); if ch != "_" { text.append(ch) } }
        }
        if let e = peek(), e == "e" || e == "E" {
            let sign = peek(1)
            if let s = sign, s.isNumber || ((s == "+" || s == "-") && (peek(2)?.isNumber ?? false)) {
                isFloat = true
                text.append(advance())
                if peek() == "+" || peek() == "-" { text.append(advance()) }
                while let d = peek(), d.isNumber { text.append(advance()) }
            }
        }
        let length = column - start.column
        if isFloat || text.hasPrefix(".") {
            return Token(kind: .float(Double(text) ?? .nan), location: start, length: length)
        }
        guard let v = Int(text) else {
            error("integer literal \(text) is too large", at: start, length: length)
            return Token(kind: .int(0), location: start, length: length)
        }
        return Token(kind: .int(v), location: start, length: length)
    }

    private mutating func string(_ start: SourceLocation) -> Token {
        _ = advance()   // opening quote
        var parts: [StringPart] = []
        var text = ""
        while true {
            guard let c = peek(), c != "\n" else {
                error("unterminated string", at: start, length: max(1, column - start.column))
                break
            }
            if c == "\"" { _ = advance(); break }
            if c == "\\" {
                let escLoc = here
                _ = advance()
                guard let e = peek(), e != "\n" else { continue }
                _ = advance()
                switch e {
                case "n": text.append("\n")
                case "t": text.append("\t")
                case "r": text.append("\r")
                case "\"": text.append("\"")
                case "\\": text.append("\\")
                case "{": text.append("{")
                case "}": text.append("}")
                case "0": text.append("\0")
                default: error("unknown escape sequence '\\\(e)'", at: escLoc, length: 2)
                }
                continue
            }
            if c == "{" {
                let exprStart = here
                _ = advance()
                var depth = 0, source = "", format: String? = nil, inString = false
                let partLoc = here
                while let d = peek(), d != "\n" {
                    if inString {
                        if d == "\\" { source.append(advance()); if peek() != nil && peek() != "\n" { source.append(advance()) }; continue }
                        if d == "\"" { inString = false }
                        source.append(advance())
                        continue
                    }
                    if d == "\"" { inString = true; source.append(advance()); continue }
                    if d == "{" || d == "(" || d == "[" { depth += 1 }
                    if d == ")" || d == "]" { depth -= 1 }
                    if d == "}" {
                        if depth == 0 { break }
                        depth -= 1
                    }
                    if d == ":" && depth == 0 && format == nil {
                        _ = advance()
                        var spec = ""
                        while let f = peek(), f != "}", f != "\n", f != "\"" { spec.append(advance()) }
                        format = spec
                        break
                    }
                    source.append(advance())
                }
                guard peek() == "}" else {
                    error("unterminated interpolation in string (missing '}')", at: exprStart)
                    continue
                }
                _ = advance()
                if source.trimmingCharacters(in: .whitespaces).isEmpty {
                    error("empty interpolation '{}' in string (write \\{ for a brace)", at: exprStart, length: 2)
                    continue
                }
                if !text.isEmpty { parts.append(.text(text)); text = "" }
                parts.append(.expression(source: source, format: format, location: partLoc))
                continue
            }
            text.append(advance())
        }
        if !text.isEmpty || parts.isEmpty { parts.append(.text(text)) }
        return Token(kind: .string(parts), location: start, length: max(1, column - start.column))
    }
}

extension String {
    func trimmingCharacters(in set: CharacterSetLite) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

/// The few character classes the lexer needs, without Foundation.
struct CharacterSetLite {
    let contains: (Character) -> Bool
    static let whitespaces = CharacterSetLite { $0 == " " || $0 == "\t" }
    func contains(_ c: Character) -> Bool { contains(c) }
}
