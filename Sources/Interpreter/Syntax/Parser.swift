// Parser.swift: recursive descent, one function per grammar rule; binary operator precedence in
// one table. Errors are collected and parsing resumes at the next statement, so one file reports
// all its syntax errors without cascades.

/// Binary operators by precedence level, lowest first (after `or`, `and`, `not`).
let binaryPrecedence: [[String]] = [
    ["==", "!=", "<", "<=", ">", ">=", "in"],
    ["..<", "..."],
    ["+", "-"],
    ["*", "/", "%", "@"],
]

/// The deepest nesting the parser accepts before reporting an error instead of overflowing.
let maxParseDepth = 200

public struct Parser {
    let file: SourceFile
    var tokens: [Token]
    var p = 0
    var errors: [ScriptError] = []
    var depth = 0

    struct Bail: Error {}

    /// Parses a whole file; throws `ScriptErrors` with every syntax error found.
    public static func parse(_ file: SourceFile) throws -> [Stmt] {
        var lexer = Lexer(file)
        let tokens = lexer.tokenize()
        var parser = Parser(file: file, tokens: tokens)
        parser.errors = lexer.errors
        let program = parser.program()
        if !parser.errors.isEmpty { throw ScriptErrors(errors: parser.errors) }
        return program
    }

    /// Parses one expression from `source` (an interpolated part), reporting errors at `location`.
    static func parseExpression(_ source: String, file: SourceFile, at location: SourceLocation) -> (Expr?, [ScriptError]) {
        // Lex the fragment as if it stood at its place in the file, so locations are right.
        var lexer = Lexer(SourceFile(name: file.name, text: source), startLine: location.line, startColumn: location.column)
        var toks = lexer.tokenize()
        toks = toks.map { var t = $0; return t.kind == .newline ? { t.kind = .eof; return t }() : t }
        var parser = Parser(file: file, tokens: toks)
        parser.errors = lexer.errors.map { var e = $0; e.file = file; return e }
        let e = try? parser.expression()
        if e != nil, parser.peek.kind != .eof { parser.report("unexpected \(parser.describe(parser.peek)) in interpolation", parser.peek) }
        return (e, parser.errors)
    }

    var peek: Token { tokens[p] }

    func describe(_ t: Token) -> String {
        switch t.kind {
        case .int(let v): return "number \(v)"
        case .float(let v): return "number \(v)"
        case .string: return "string"
        case .identifier(let s): return "name '\(s)'"
        case .keyword(let s): return "'\(s)'"
        case .symbol(let s): return "'\(s)'"
        case .newline: return "end of line"
        case .eof: return "end of file"
        }
    }

    mutating func report(_ message: String, _ t: Token) {
        errors.append(ScriptError(.syntax, message, file: file, at: t.location, length: t.length))
    }

    mutating func fail(_ message: String, _ t: Token? = nil) -> Bail {
        report(message, t ?? peek)
        return Bail()
    }

    @discardableResult mutating func advance() -> Token {
        let t = tokens[p]
        if p < tokens.count - 1 { p += 1 }
        return t
    }

    func isSymbol(_ s: String) -> Bool { if case .symbol(s) = peek.kind { return true }; return false }
    func isKeyword(_ s: String) -> Bool { if case .keyword(s) = peek.kind { return true }; return false }

    mutating func accept(_ s: String) -> Bool {
        if isSymbol(s) || isKeyword(s) { advance(); return true }
        return false
    }

    mutating func expect(_ s: String, _ context: String) throws -> Token {
        if isSymbol(s) || isKeyword(s) { return advance() }
        throw fail("expected '\(s)' \(context), found \(describe(peek))")
    }

    mutating func skipNewlines() { while peek.kind == .newline { advance() } }

    mutating func identifier(_ context: String) throws -> (String, Token) {
        if case .identifier(let s) = peek.kind { return (s, advance()) }
        throw fail("expected a name \(context), found \(describe(peek))")
    }

    // program -> { statement NEWLINE }
    mutating func program() -> [Stmt] {
        var out: [Stmt] = []
        skipNewlines()
        while peek.kind != .eof {
            if let s = statementOrRecover() { out.append(s) }
            while isSymbol(";") { advance() }
            skipNewlines()
        }
        return out
    }

    /// Parses a statement; on error, skips to the next line at the same nesting and returns nil.
    mutating func statementOrRecover() -> Stmt? {
        let start = p
        do {
            let s = try statement()
            if !(peek.kind == .newline || peek.kind == .eof || isSymbol("}") || isSymbol(";")) {
                throw fail("expected end of line after statement, found \(describe(peek))")
            }
            return s
        } catch {
            // Skip to the end of the statement: the next newline outside any brace opened here.
            var braces = 0
            if p == start { advance() }
            while peek.kind != .eof {
                if isSymbol("{") { braces += 1 }
                if isSymbol("}") { if braces == 0 { break }; braces -= 1 }
                if peek.kind == .newline && braces == 0 { break }
                advance()
            }
            return nil
        }
    }

    // block -> '{' { statement } '}'
    mutating func block(_ context: String) throws -> [Stmt] {
        _ = try expect("{", context)
        var out: [Stmt] = []
        skipNewlines()
        while !isSymbol("}") {
            if peek.kind == .eof { throw fail("expected '}' to close the block \(context)") }
            if let s = statementOrRecover() { out.append(s) }
            while isSymbol(";") { advance() }
            skipNewlines()
        }
        advance()
        return out
    }

    mutating func enter() throws {
        depth += 1
        if depth > maxParseDepth { throw fail("expression or block nested too deeply (more than \(maxParseDepth) levels)") }
    }

    // statement -> let | var | fn | if | while | for | break | continue | return | assert | import | test | simple
    mutating func statement() throws -> Stmt {
        try enter()
        defer { depth -= 1 }
        let t = peek
        switch t.kind {
        case .keyword("let"), .keyword("var"):
            advance()
            let (name, _) = try identifier("after '\(t.kind == .keyword("let") ? "let" : "var")'")
            _ = try expect("=", "after the name in a declaration")
            return .declare(name, try expression(), constant: t.kind == .keyword("let"), t.location)
        case .keyword("fn"):
            if case .identifier = tokens[min(p + 1, tokens.count - 1)].kind {
                advance()
                let (name, _) = try identifier("after 'fn'")
                return .function(try functionRest(name: name, at: t.location))
            }
        case .keyword("if"):
            return try ifStatement()
        case .keyword("while"):
            advance()
            let cond = try expression()
            return .whileLoop(cond, try block("of the while loop"), t.location)
        case .keyword("for"):
            advance()
            let (name, _) = try identifier("after 'for'")
            _ = try expect("in", "after the loop variable")
            let seq = try expression()
            return .forLoop(name, seq, try block("of the for loop"), t.location)
        case .keyword("break"): advance(); return .breakLoop(t.location)
        case .keyword("continue"): advance(); return .continueLoop(t.location)
        case .keyword("return"):
            advance()
            if peek.kind == .newline || peek.kind == .eof || isSymbol("}") { return .returnValue(nil, t.location) }
            return .returnValue(try expression(), t.location)
        case .keyword("assert"):
            advance()
            let cond = try expression()
            var message: Expr? = nil
            if accept(",") { message = try expression() }
            return .assertion(cond, message, t.location)
        case .keyword("import"):
            advance()
            guard case .string(let parts) = peek.kind, parts.count == 1, case .text(let path) = parts[0] else {
                throw fail("expected a plain string path after 'import'")
            }
            advance()
            _ = try expect("as", "after the imported path")
            let (alias, _) = try identifier("after 'as'")
            return .importFile(path, alias: alias, t.location)
        case .identifier("test") where { if case .string = tokens[min(p + 1, tokens.count - 1)].kind { return true }; return false }():
            // `test "name" { ... }`: 'test' is a keyword only in front of a string.
            advance()
            guard case .string(let parts) = peek.kind, parts.count == 1, case .text(let name) = parts[0] else {
                throw fail("expected the test's name as a plain string after 'test'")
            }
            advance()
            return .testBlock(name, try block("of the test"), t.location)
        default:
            break
        }
        return try simpleStatement()
    }

    // ifstat -> 'if' expr block { 'else' 'if' expr block } [ 'else' block ]
    mutating func ifStatement() throws -> Stmt {
        let start = advance()
        var branches: [(Expr, [Stmt])] = []
        var otherwise: [Stmt]? = nil
        let cond = try expression()
        branches.append((cond, try block("of the if statement")))
        while true {
            // `else` may follow the closing brace on the same line or the next.
            let save = p
            skipNewlines()
            guard accept("else") else { p = save; break }
            if accept("if") {
                let c = try expression()
                branches.append((c, try block("of the else-if branch")))
            } else {
                otherwise = try block("of the else branch")
                break
            }
        }
        return .ifElse(branches, otherwise, start.location)
    }

    // simple -> expr [ ('=' | '+=' | '-=' | '*=' | '/=') expr ] [';']
    mutating func simpleStatement() throws -> Stmt {
        let e = try expression()
        for op in ["=", "+=", "-=", "*=", "/="] where isSymbol(op) {
            let t = advance()
            switch e {
            case .name, .member, .index: break
            default: throw fail("cannot assign to this expression", t)
            }
            return .assign(e, op, try expression(), t.location)
        }
        let silenced = accept(";")
        return .expression(e, printed: !silenced, expect: nil)
    }

    // function -> '(' params ')' ( block | '=>' expr )
    mutating func functionRest(name: String, at location: SourceLocation) throws -> FunctionDecl {
        _ = try expect("(", "to start the parameter list")
        var params: [FunctionParameter] = []
        var seenDefault = false
        while !isSymbol(")") {
            let (pname, ptok) = try identifier("for a parameter")
            if params.contains(where: { $0.name == pname }) { throw fail("duplicate parameter '\(pname)'", ptok) }
            var def: Expr? = nil
            if accept("=") { def = try expression(); seenDefault = true }
            else if seenDefault { throw fail("parameter '\(pname)' without a default follows one with a default", ptok) }
            params.append(FunctionParameter(name: pname, defaultValue: def))
            if !accept(",") { break }
        }
        _ = try expect(")", "to close the parameter list")
        if accept("=>") {
            let e = try expression()
            return FunctionDecl(name: name, parameters: params, body: [.returnValue(e, e.location)], location: location)
        }
        return FunctionDecl(name: name, parameters: params, body: try block("of the function"), location: location)
    }

    // expr -> or
    mutating func expression() throws -> Expr {
        try enter()
        defer { depth -= 1 }
        return try orExpr()
    }

    // or -> and { 'or' and }
    mutating func orExpr() throws -> Expr {
        var e = try andExpr()
        while isKeyword("or") { let t = advance(); e = .logical("or", e, try andExpr(), t.location) }
        return e
    }

    // and -> not { 'and' not }
    mutating func andExpr() throws -> Expr {
        var e = try notExpr()
        while isKeyword("and") { let t = advance(); e = .logical("and", e, try notExpr(), t.location) }
        return e
    }

    // not -> 'not' not | binary(0)
    mutating func notExpr() throws -> Expr {
        if isKeyword("not") {
            let t = advance()
            try enter()
            defer { depth -= 1 }
            return .unary("not", try notExpr(), t.location)
        }
        return try binary(0)
    }

    // binary(level) -> binary(level+1) { op(level) binary(level+1) }   (ranges do not chain)
    mutating func binary(_ level: Int) throws -> Expr {
        if level == binaryPrecedence.count { return try unary() }
        var e = try binary(level + 1)
        while true {
            var op: String? = nil
            for candidate in binaryPrecedence[level] where isSymbol(candidate) || isKeyword(candidate) { op = candidate }
            guard let o = op else { return e }
            let t = advance()
            let rhs = try binary(level + 1)
            if o == "..<" || o == "..." { return .range(e, rhs, inclusive: o == "...", t.location) }
            e = .binary(o, e, rhs, t.location)
        }
    }

    // unary -> '-' unary | power
    mutating func unary() throws -> Expr {
        if isSymbol("-") {
            let t = advance()
            try enter()
            defer { depth -= 1 }
            return .unary("-", try unary(), t.location)
        }
        return try power()
    }

    // power -> postfix [ '**' unary ]   (right associative, binds tighter than unary minus on its left)
    mutating func power() throws -> Expr {
        let base = try postfix()
        if isSymbol("**") {
            let t = advance()
            try enter()
            defer { depth -= 1 }
            return .binary("**", base, try unary(), t.location)
        }
        return base
    }

    // postfix -> primary { '(' args ')' | '[' subscripts ']' | '.' name }
    mutating func postfix() throws -> Expr {
        var e = try primary()
        while true {
            if isSymbol("(") {
                let t = advance()
                e = .call(e, try arguments(), t.location)
            } else if isSymbol("[") {
                let t = advance()
                var items: [IndexItem] = []
                repeat {
                    if isSymbol("]") { break }
                    items.append(try indexItem())
                } while accept(",")
                _ = try expect("]", "to close the subscript")
                if items.isEmpty { throw fail("empty subscript '[]'", t) }
                e = .index(e, items, t.location)
            } else if isSymbol(".") {
                advance()
                // A member may be spelt as a keyword (x.var(), as in PyTorch): after '.' only a
                // name can follow, so there is nothing to confuse it with.
                let (name, nt): (String, Token)
                if case .keyword(let k) = peek.kind { (name, nt) = (k, advance()) } else { (name, nt) = try identifier("after '.'") }
                e = .member(e, name, nt.location, length: nt.length)
            } else {
                return e
            }
        }
    }

    // subscript -> expr | [expr] ':' [expr] [':' [expr]]
    mutating func indexItem() throws -> IndexItem {
        var lo: Expr? = nil
        if !isSymbol(":") { lo = try expression() }
        guard accept(":") else { return .single(lo!) }
        var hi: Expr? = nil, step: Expr? = nil
        if !isSymbol(":") && !isSymbol("]") && !isSymbol(",") { hi = try expression() }
        if accept(":") && !isSymbol("]") && !isSymbol(",") { step = try expression() }
        return .slice(lo, hi, step)
    }

    // args -> [ arg { ',' arg } ] ')'   with positional arguments before labelled ones
    mutating func arguments() throws -> [Argument] {
        var args: [Argument] = []
        var labelled = false
        while !isSymbol(")") {
            let t = peek
            if case .identifier(let label) = t.kind, case .symbol(":") = tokens[min(p + 1, tokens.count - 1)].kind {
                advance(); advance()
                if args.contains(where: { $0.label == label }) { throw fail("argument '\(label)' given twice", t) }
                args.append(Argument(label: label, value: try expression(), location: t.location))
                labelled = true
            } else {
                if labelled { throw fail("positional argument after a labelled one", t) }
                args.append(Argument(label: nil, value: try expression(), location: t.location))
            }
            if !accept(",") { break }
        }
        _ = try expect(")", "to close the argument list")
        return args
    }

    // primary -> literal | name | '(' expr ')' | list | dict | 'fn' function
    mutating func primary() throws -> Expr {
        let t = peek
        switch t.kind {
        case .int(let v): advance(); return .int(v, t.location)
        case .float(let v): advance(); return .float(v, t.location)
        case .string(let parts):
            advance()
            var out: [InterpolatedPart] = []
            for part in parts {
                switch part {
                case .text(let s): out.append(.text(s))
                case .expression(let src, let format, let loc):
                    let (e, errs) = Parser.parseExpression(src, file: file, at: loc)
                    errors += errs
                    guard let e = e else { throw Bail() }
                    out.append(.expression(e, format: format))
                }
            }
            return .string(out, t.location)
        case .keyword("true"): advance(); return .bool(true, t.location)
        case .keyword("false"): advance(); return .bool(false, t.location)
        case .keyword("nil"): advance(); return .nilLiteral(t.location)
        case .identifier(let name): advance(); return .name(name, t.location, length: t.length)
        case .keyword("fn"):
            advance()
            return .function(try functionRest(name: "<anonymous>", at: t.location))
        case .symbol("("):
            advance()
            let e = try expression()
            _ = try expect(")", "to close the parenthesis")
            return e
        case .symbol("["):
            advance()
            var items: [Expr] = []
            while !isSymbol("]") {
                items.append(try expression())
                if !accept(",") { break }
            }
            _ = try expect("]", "to close the list")
            return .list(items, t.location)
        case .symbol("{"):
            advance()
            var pairs: [(Expr, Expr)] = []
            skipNewlines()
            while !isSymbol("}") {
                let k = try expression()
                _ = try expect(":", "between a dict key and its value")
                skipNewlines()
                pairs.append((k, try expression()))
                skipNewlines()
                if !accept(",") { break }
                skipNewlines()
            }
            skipNewlines()
            _ = try expect("}", "to close the dict")
            return .dict(pairs, t.location)
        default:
            throw fail("expected an expression, found \(describe(t))")
        }
    }
}
