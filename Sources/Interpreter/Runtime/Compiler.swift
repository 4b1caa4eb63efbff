// Compiler.swift: turns the syntax tree into Swift closures over frames, with every variable
// resolved to a (depth, slot) pair at compile time — a tree of closures runs several times faster
// than walking the tree and looking names up in dictionaries.

import Core

typealias Eval = (Frame) throws -> Value
typealias Exec = (Frame) throws -> Flow

/// Compile-time view of one frame: a function body, the top level, or a loop body whose
/// iterations closures may capture.
final class FrameContext {
    let parent: FrameContext?
    var size = 0
    /// Block scopes inside this frame, innermost last: name -> (slot, constant).
    var scopes: [[String: (slot: Int, constant: Bool)]] = [[:]]
    let isFunction: Bool
    init(parent: FrameContext?, isFunction: Bool) { self.parent = parent; self.isFunction = isFunction }

    func declare(_ name: String, constant: Bool) -> Int {
        let slot = size
        size += 1
        scopes[scopes.count - 1][name] = (slot, constant)
        return slot
    }

    func lookupLocal(_ name: String) -> (slot: Int, constant: Bool)? {
        for s in scopes.reversed() { if let r = s[name] { return r } }
        return nil
    }
}

/// Where a name lives.
enum Resolved {
    case local(depth: Int, slot: Int, constant: Bool)
    /// A top-level name not declared (yet) when this code was compiled: looked up when it runs.
    case lateGlobal(String)
}

struct Compiler {
    unowned let interp: Interpreter
    let file: SourceFile
    var context: FrameContext
    /// The global frame's context (the interpreter's, persistent across REPL entries).
    let globals: FrameContext
    var loopDepth = 0
    var functionDepth = 0

    func error(_ msg: String, _ loc: SourceLocation, length: Int = 1) -> ScriptError {
        ScriptError(.runtime, msg, file: file, at: loc, length: length)
    }

    func resolve(_ name: String) -> Resolved {
        var depth = 0
        var c: FrameContext? = context
        while let ctx = c {
            if let r = ctx.lookupLocal(name) { return .local(depth: depth, slot: r.slot, constant: r.constant) }
            depth += 1
            c = ctx.parent
        }
        return .lateGlobal(name)
    }

    // MARK: Statements

    /// Compiles a block in a new scope of the current frame, hoisting its function declarations.
    mutating func block(_ stmts: [Stmt], newScope: Bool = true) throws -> Exec {
        if newScope { context.scopes.append([:]) }
        defer { if newScope { context.scopes.removeLast() } }
        // Functions declared in a block can call each other whatever their order.
        var hoisted: [(Int, FunctionDecl)] = []
        for s in stmts { if case .function(let f) = s { hoisted.append((context.declare(f.name, constant: true), f)) } }
        var inits: [(Int, Eval)] = []
        for (slot, f) in hoisted { inits.append((slot, try function(f))) }
        var compiled: [Exec] = []
        for s in stmts {
            if case .function = s { continue }
            compiled.append(try statement(s))
        }
        let interp = self.interp
        let body = compiled
        // Small blocks unrolled: iterating an array of closures costs a metadata lookup per step.
        if inits.isEmpty {
            switch body.count {
            case 0: return { _ in .normal }
            case 1:
                let s0 = body[0]
                return { frame in
                    if interp.interruptRequested { throw interp.interruption() }
                    return try s0(frame)
                }
            case 2:
                let s0 = body[0], s1 = body[1]
                return { frame in
                    if interp.interruptRequested { throw interp.interruption() }
                    let flow = try s0(frame)
                    if case .normal = flow { return try s1(frame) }
                    return flow
                }
            default: break
            }
        }
        return { frame in
            for (slot, make) in inits { frame.slots[slot] = try make(frame) }
            for s in body {
                if interp.interruptRequested { throw interp.interruption() }
                let flow = try s(frame)
                if case .normal = flow { continue }
                return flow
            }
            return .normal
        }
    }

    mutating func statement(_ s: Stmt) throws -> Exec {
        switch s {
        case .expression(let e, let printed, _):
            let ev = try expression(e)
            let line = e.location.line
            let interp = self.interp, file = self.file
            return { frame in
                let v = try ev(frame)
                interp.expressionStatement(v, printed: printed, file: file, line: line)
                return .normal
            }
        case .declare(let name, let e, let constant, let loc):
            let ev = try expression(e)
            if functionDepth == 0 && context === globals, let existing = context.lookupLocal(name), context.scopes.count == 1 {
                // Redeclaring a top-level name (the REPL, or a script run twice) replaces it.
                context.scopes[0][name] = (existing.slot, constant)
                let slot = existing.slot
                return { frame in frame.slots[slot] = try ev(frame); return .normal }
            }
            if context.scopes[context.scopes.count - 1][name] != nil {
                throw error("'\(name)' is already declared in this scope", loc)
            }
            let slot = context.declare(name, constant: constant)
            interp.globalsGrew(globals.size)
            return { frame in frame.slots[slot] = try ev(frame); return .normal }
        case .assign(let target, let op, let value, let loc):
            return try assignment(target, op, value, loc)
        case .function(let f):
            let slot = context.declare(f.name, constant: true)
            interp.globalsGrew(globals.size)
            let make = try function(f)
            return { frame in frame.slots[slot] = try make(frame); return .normal }
        case .ifElse(let branches, let otherwise, _):
            var compiled: [(Eval, Exec)] = []
            for (c, b) in branches { compiled.append((try expression(c), try block(b))) }
            let other = try otherwise.map { try block($0) }
            if compiled.count == 1 {
                let (c, b) = compiled[0]
                if let o = other { return { frame in try c(frame).isTruthy ? try b(frame) : try o(frame) } }
                return { frame in try c(frame).isTruthy ? try b(frame) : .normal }
            }
            return { frame in
                for (c, b) in compiled where try c(frame).isTruthy { return try b(frame) }
                return try other?(frame) ?? .normal
            }
        case .whileLoop(let cond, let body, _):
            let c = try expression(cond)
            loopDepth += 1
            let b = try block(body)
            loopDepth -= 1
            let interp = self.interp
            return { frame in
                while try c(frame).isTruthy {
                    if interp.interruptRequested { throw interp.interruption() }
                    switch try b(frame) {
                    case .breakLoop: return .normal
                    case .returnValue(let v): return .returnValue(v)
                    default: continue
                    }
                }
                return .normal
            }
        case .forLoop(let name, let seq, let body, let loc):
            return try forLoop(name, seq, body, loc)
        case .breakLoop(let loc):
            if loopDepth == 0 { throw error("'break' outside a loop", loc, length: 5) }
            return { _ in .breakLoop }
        case .continueLoop(let loc):
            if loopDepth == 0 { throw error("'continue' outside a loop", loc, length: 8) }
            return { _ in .continueLoop }
        case .returnValue(let e, let loc):
            if functionDepth == 0 { throw error("'return' outside a function", loc, length: 6) }
            guard let e = e else { return { _ in .returnValue(.nilValue) } }
            let ev = try expression(e)
            return { frame in .returnValue(try ev(frame)) }
        case .assertion(let cond, let message, let loc):
            let c = try expression(cond), m = try message.map { try expression($0) }
            let file = self.file
            return { frame in
                if try c(frame).isTruthy { return .normal }
                let text = try m.map { render(try $0(frame), quoted: false) } ?? "assertion failed"
                throw ScriptError(.runtime, text, file: file, at: loc, length: 6)
            }
        case .importFile(let path, let alias, let loc):
            let slot = context.lookupLocal(alias)?.slot ?? context.declare(alias, constant: true)
            interp.globalsGrew(globals.size)
            let interp = self.interp, file = self.file
            return { frame in
                frame.slots[slot] = try interp.importModule(path, from: file, at: loc)
                return .normal
            }
        case .testBlock(let name, let body, let loc):
            let b = try block(body)
            let interp = self.interp, file = self.file
            return { frame in
                try interp.runTest(name, file: file, at: loc) { _ = try b(frame) }
                return .normal
            }
        }
    }

    mutating func forLoop(_ name: String, _ seq: Expr, _ body: [Stmt], _ loc: SourceLocation) throws -> Exec {
        let sequence = try expression(seq)
        loopDepth += 1
        defer { loopDepth -= 1 }
        let interp = self.interp, file = self.file
        // A body that makes closures gets a fresh frame per iteration, so each closure keeps its
        // own iteration's variable; other loops reuse one slot.
        if containsFunction(body) {
            let saved = context
            let inner = FrameContext(parent: context, isFunction: false)
            context = inner
            let slot = inner.declare(name, constant: false)
            let b = try block(body, newScope: false)
            context = saved
            return { frame in
                try interp.iterate(try sequence(frame), file: file, at: loc) { v in
                    let f = Frame(size: inner.size, parent: frame)
                    f.slots[slot] = v
                    return try b(f)
                }
            }
        }
        context.scopes.append([:])
        let slot = context.declare(name, constant: false)
        let b = try block(body, newScope: false)
        context.scopes.removeLast()
        interp.globalsGrew(globals.size)
        return { frame in
            try interp.iterate(try sequence(frame), file: file, at: loc) { v in
                frame.slots[slot] = v
                return try b(frame)
            }
        }
    }

    func containsFunction(_ stmts: [Stmt]) -> Bool {
        func inExpr(_ e: Expr) -> Bool {
            switch e {
            case .function: return true
            case .list(let xs, _): return xs.contains(where: inExpr)
            case .dict(let ps, _): return ps.contains { inExpr($0.0) || inExpr($0.1) }
            case .unary(_, let a, _): return inExpr(a)
            case .binary(_, let a, let b, _), .logical(_, let a, let b, _), .range(let a, let b, _, _): return inExpr(a) || inExpr(b)
            case .call(let f, let args, _): return inExpr(f) || args.contains { inExpr($0.value) }
            case .index(let a, let items, _):
                return inExpr(a) || items.contains { item in
                    switch item {
                    case .single(let x): return inExpr(x)
                    case .slice(let x, let y, let z): return [x, y, z].contains { $0.map(inExpr) ?? false }
                    }
                }
            case .member(let a, _, _, _): return inExpr(a)
            case .string(let parts, _): return parts.contains { if case .expression(let x, _) = $0 { return inExpr(x) }; return false }
            default: return false
            }
        }
        for s in stmts {
            switch s {
            case .function: return true
            case .expression(let e, _, _): if inExpr(e) { return true }
            case .declare(_, let e, _, _): if inExpr(e) { return true }
            case .assign(let t, _, let v, _): if inExpr(t) || inExpr(v) { return true }
            case .ifElse(let bs, let o, _):
                if bs.contains(where: { inExpr($0.0) || containsFunction($0.1) }) || containsFunction(o ?? []) { return true }
            case .whileLoop(let c, let b, _): if inExpr(c) || containsFunction(b) { return true }
            case .forLoop(_, let e, let b, _): if inExpr(e) || containsFunction(b) { return true }
            case .returnValue(let e, _): if let e = e, inExpr(e) { return true }
            case .assertion(let c, let m, _): if inExpr(c) || (m.map(inExpr) ?? false) { return true }
            case .testBlock(_, let b, _): if containsFunction(b) { return true }
            default: break
            }
        }
        return false
    }

    mutating func assignment(_ target: Expr, _ op: String, _ value: Expr, _ loc: SourceLocation) throws -> Exec {
        let rhs = try expression(value)
        let binop = op == "=" ? nil : String(op.dropLast())
        let interp = self.interp, file = self.file
        switch target {
        case .name(let name, let nloc, let length):
            let current = try expression(target)
            switch resolve(name) {
            case .local(let depth, let slot, let constant):
                if constant { throw error("cannot assign to '\(name)': it was declared with 'let'", nloc, length: length) }
                return { frame in
                    var v = try rhs(frame)
                    if let o = binop { v = try interp.binary(o, try current(frame), v, file: file, at: loc) }
                    var f = frame
                    for _ in 0..<depth { f = f.parent! }
                    f.slots[slot] = v
                    return .normal
                }
            case .lateGlobal:
                if functionDepth == 0 {
                    var msg = "assignment to undeclared name '\(name)' (declare it first with 'var')"
                    if let s = closestName(to: name, in: interp.visibleNames(context)) { msg += "; did you mean '\(s)'?" }
                    throw error(msg, nloc, length: length)
                }
                return { frame in
                    var v = try rhs(frame)
                    if let o = binop { v = try interp.binary(o, try current(frame), v, file: file, at: loc) }
                    try interp.assignLateGlobal(name, v, file: file, at: nloc, length: length)
                    return .normal
                }
            }
        case .member(let obj, let name, let mloc, _):
            let o = try expression(obj)
            let current = try expression(target)
            return { frame in
                var v = try rhs(frame)
                if let op = binop { v = try interp.binary(op, try current(frame), v, file: file, at: loc) }
                try interp.setMember(try o(frame), name, v, file: file, at: mloc)
                return .normal
            }
        case .index(let obj, let items, let iloc):
            let o = try expression(obj)
            let idx = try items.map { try indexItem($0) }
            let current = try expression(target)
            return { frame in
                var v = try rhs(frame)
                if let op = binop { v = try interp.binary(op, try current(frame), v, file: file, at: loc) }
                try interp.setIndex(try o(frame), try idx.map { try $0(frame) }, v, file: file, at: iloc)
                return .normal
            }
        default:
            throw error("cannot assign to this expression", loc)
        }
    }

    // MARK: Expressions

    mutating func expression(_ e: Expr) throws -> Eval {
        let interp = self.interp, file = self.file
        switch e {
        case .int(let v, _): let val = Value.int(v); return { _ in val }
        case .float(let v, _): let val = Value.float(v); return { _ in val }
        case .bool(let v, _): let val = Value.bool(v); return { _ in val }
        case .nilLiteral: return { _ in .nilValue }
        case .string(let parts, _):
            if parts.count == 1, case .text(let s) = parts[0] { let val = Value.string(s); return { _ in val } }
            var compiled: [(String?, Eval?, String?, SourceLocation)] = []
            for p in parts {
                switch p {
                case .text(let s): compiled.append((s, nil, nil, e.location))
                case .expression(let x, let format): compiled.append((nil, try expression(x), format, x.location))
                }
            }
            return { frame in
                var out = ""
                for (text, ev, format, loc) in compiled {
                    if let t = text { out += t; continue }
                    let v = try ev!(frame)
                    if let f = format {
                        do { out += try formatValue(v, spec: f) } catch let err as ScriptError {
                            throw ScriptError(.runtime, err.message, file: file, at: loc)
                        }
                    } else {
                        out += render(v, quoted: false)
                    }
                }
                return .string(out)
            }
        case .list(let items, _):
            let cs = try items.map { try expression($0) }
            return { frame in .list(ListBox(try cs.map { try $0(frame) })) }
        case .dict(let pairs, let loc):
            let cs = try pairs.map { (try expression($0.0), try expression($0.1)) }
            return { frame in
                let d = DictBox()
                for (k, v) in cs {
                    let key = try k(frame)
                    if !d.set(key, try v(frame)) {
                        throw ScriptError(.runtime, "\(an(key.typeName)) cannot be a dict key", file: file, at: loc)
                    }
                }
                return .dict(d)
            }
        case .name(let name, let loc, let length):
            switch resolve(name) {
            case .local(0, let slot, _): return { frame in frame.slots[slot] }
            case .local(1, let slot, _): return { frame in frame.parent!.slots[slot] }
            case .local(let depth, let slot, _):
                return { frame in
                    var f = frame
                    for _ in 0..<depth { f = f.parent! }
                    return f.slots[slot]
                }
            case .lateGlobal:
                if let b = interp.builtins[name] { let v = Value.function(Function(.builtin(b))); return { _ in v } }
                let ctx = context
                return { _ in try interp.lateGlobal(name, file: file, at: loc, length: length, context: ctx) }
            }
        case .unary(let op, let a, let loc):
            let x = try expression(a)
            if op == "not" { return { frame in .bool(!(try x(frame).isTruthy)) } }
            return { frame in try interp.negate(try x(frame), file: file, at: loc) }
        case .logical(let op, let a, let b, _):
            let x = try expression(a), y = try expression(b)
            if op == "and" { return { frame in let l = try x(frame); return l.isTruthy ? try y(frame) : l } }
            return { frame in let l = try x(frame); return l.isTruthy ? l : try y(frame) }
        case .binary(let op, let a, let b, let loc):
            let x = try expression(a), y = try expression(b)
            // Fast paths for integer arithmetic and comparison, the interpreter's inner loops.
            switch op {
            case "+":
                return { frame in
                    let l = try x(frame), r = try y(frame)
                    if case .int(let i) = l, case .int(let j) = r { let (s, o) = i.addingReportingOverflow(j); if !o { return .int(s) } }
                    return try interp.binary(op, l, r, file: file, at: loc)
                }
            case "-":
                return { frame in
                    let l = try x(frame), r = try y(frame)
                    if case .int(let i) = l, case .int(let j) = r { let (s, o) = i.subtractingReportingOverflow(j); if !o { return .int(s) } }
                    return try interp.binary(op, l, r, file: file, at: loc)
                }
            case "<":
                return { frame in
                    let l = try x(frame), r = try y(frame)
                    if case .int(let i) = l, case .int(let j) = r { return .bool(i < j) }
                    return try interp.binary(op, l, r, file: file, at: loc)
                }
            default:
                return { frame in try interp.binary(op, try x(frame), try y(frame), file: file, at: loc) }
            }
        case .range(let a, let b, let inclusive, let loc):
            let x = try expression(a), y = try expression(b)
            return { frame in
                guard case .int(let lo) = try x(frame), case .int(let hi) = try y(frame) else {
                    throw ScriptError(.runtime, "range bounds must be integers", file: file, at: loc)
                }
                return .range(lo, inclusive ? hi + 1 : hi)
            }
        case .call(let callee, let args, let loc):
            return try call(callee, args, loc)
        case .index(let obj, let items, let loc):
            let o = try expression(obj)
            let idx = try items.map { try indexItem($0) }
            return { frame in try interp.index(try o(frame), try idx.map { try $0(frame) }, file: file, at: loc) }
        case .member(let obj, let name, let loc, let length):
            let o = try expression(obj)
            return { frame in try interp.member(try o(frame), name, file: file, at: loc, length: length) }
        case .function(let f):
            return try function(f)
        }
    }

    /// A subscript item evaluates to an index value or a slice record.
    mutating func indexItem(_ item: IndexItem) throws -> Eval {
        switch item {
        case .single(let e): return try expression(e)
        case .slice(let a, let b, let c):
            let x = try a.map { try expression($0) }, y = try b.map { try expression($0) }, z = try c.map { try expression($0) }
            return { frame in
                .object(SliceValue(start: try x?(frame), end: try y?(frame), step: try z?(frame)))
            }
        }
    }

    mutating func call(_ callee: Expr, _ args: [Argument], _ loc: SourceLocation) throws -> Eval {
        let interp = self.interp, file = self.file
        let positional = try args.filter { $0.label == nil }.map { try expression($0.value) }
        let labelled = try args.filter { $0.label != nil }.map { ($0.label!, try expression($0.value)) }
        // `x.method(...)`: evaluate the receiver once and call the method on it.
        if case .member(let obj, let name, let mloc, let length) = callee {
            let o = try expression(obj)
            return { frame in
                let receiver = try o(frame)
                let a = Arguments(try positional.map { try $0(frame) }, try labelled.map { ($0.0, try $0.1(frame)) }, at: loc)
                let f = try interp.member(receiver, name, file: file, at: mloc, length: length)
                return try interp.call(f, a, file: file, at: loc)
            }
        }
        let f = try expression(callee)
        let count = positional.count
        if labelled.isEmpty {
            // Fast path: a user function called with exactly its parameters, positionally —
            // arguments go straight into the new frame.
            // Arguments are held in separate constants, not an array of closures: indexing an
            // array of function values costs a runtime metadata lookup on every call.
            let none: Eval = { _ in .nilValue }
            let p0 = count > 0 ? positional[0] : none, p1 = count > 1 ? positional[1] : none, p2 = count > 2 ? positional[2] : none
            return { frame in
                let fn = try f(frame)
                if case .function(let function) = fn, case .user(let compiled, let captured) = function.kind,
                   compiled.decl.parameters.count == count {
                    let callee = Frame(size: compiled.frameSize, parent: captured)
                    switch count {
                    case 0: break
                    case 1: callee.slots[0] = try p0(frame)
                    case 2: callee.slots[0] = try p0(frame); callee.slots[1] = try p1(frame)
                    case 3: callee.slots[0] = try p0(frame); callee.slots[1] = try p1(frame); callee.slots[2] = try p2(frame)
                    default: for i in 0..<count { callee.slots[i] = try positional[i](frame) }
                    }
                    return try interp.enter(compiled, callee, file: file, at: loc)
                }
                let a = Arguments(try positional.map { try $0(frame) }, [], at: loc)
                return try interp.call(fn, a, file: file, at: loc)
            }
        }
        return { frame in
            let fn = try f(frame)
            let a = Arguments(try positional.map { try $0(frame) }, try labelled.map { ($0.0, try $0.1(frame)) }, at: loc)
            return try interp.call(fn, a, file: file, at: loc)
        }
    }

    /// Compiles a function; the result makes a closure over the frame it is evaluated in.
    mutating func function(_ decl: FunctionDecl) throws -> Eval {
        let compiled = CompiledFunction(decl: decl, file: file)
        let saved = context, savedLoop = loopDepth
        // Defaults are evaluated in the defining frame, at call time.
        compiled.defaults = try decl.parameters.map { p in try p.defaultValue.map { try expression($0) } }
        let inner = FrameContext(parent: context, isFunction: true)
        context = inner
        loopDepth = 0
        functionDepth += 1
        for p in decl.parameters { _ = inner.declare(p.name, constant: false) }
        let body = try block(decl.body, newScope: false)
        functionDepth -= 1
        context = saved
        loopDepth = savedLoop
        compiled.body = body
        compiled.frameSize = inner.size
        return { frame in .function(Function(.user(compiled, frame))) }
    }
}

/// A slice `a:b:c` inside a subscript.
final class SliceValue: HostObject {
    let start, end, step: Value?
    init(start: Value?, end: Value?, step: Value?) { self.start = start; self.end = end; self.step = step }
    override var typeName: String { "slice" }
}
