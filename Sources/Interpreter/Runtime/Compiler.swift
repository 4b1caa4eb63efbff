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
    /// The slots of the functions hoisted in each block being compiled, innermost last: a
    /// top-level `var` of the same name gets a slot of its own rather than overwrite the function.
    var hoistedSlots: [Set<Int>] = []

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
        var inits: [(slot: Int, make: EvalCode)] = []
        var compiled: [ExecCode] = []
        hoistedSlots.append(Set(hoisted.map(\.0)))
        defer { hoistedSlots.removeLast() }
        for s in stmts {
            if case .function(let f) = s {
                // From here on the name means the function again, even if a declaration
                // above this point took the name for a variable of its own.
                if let slot = hoisted.first(where: { $0.1 === f })?.0 {
                    context.scopes[context.scopes.count - 1][f.name] = (slot, true)
                    // Compiled here, so that its body sees the block's variables declared above
                    // it; the function value is still made on entry to the block, so calls that
                    // come before the declaration work.
                    inits.append((slot, EvalCode(run: try function(f))))
                }
                continue
            }
            compiled.append(ExecCode(run: try statement(s)))
        }
        let interp = self.interp
        let body = compiled
        // The interrupt flag is checked between top-level statements, on entry to every function
        // and on every loop iteration (the loops check it themselves): that reaches every long
        // computation without a check per statement in a function body.
        let checks = functionDepth == 0 && loopDepth == 0
        if inits.isEmpty && !checks {
            switch body.count {
            case 0: return { _ in .normal }
            case 1: return body[0].run
            case 2:
                let s0 = body[0].run, s1 = body[1].run
                return { frame in
                    let flow = try s0(frame)
                    if case .normal = flow { return try s1(frame) }
                    return flow
                }
            case 3:
                let s0 = body[0].run, s1 = body[1].run, s2 = body[2].run
                return { frame in
                    var flow = try s0(frame)
                    guard case .normal = flow else { return flow }
                    flow = try s1(frame)
                    guard case .normal = flow else { return flow }
                    return try s2(frame)
                }
            default:
                return { frame in
                    for s in body {
                        let flow = try s.run(frame)
                        if case .normal = flow { continue }
                        return flow
                    }
                    return .normal
                }
            }
        }
        return { frame in
            for i in inits { frame.slots[i.slot] = try i.make.run(frame) }
            for s in body {
                if checks && interp.interruptRequested { throw interp.interruption() }
                let flow = try s.run(frame)
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
            if functionDepth == 0 && context === globals, let existing = context.lookupLocal(name), context.scopes.count == 1,
               !(hoistedSlots.last?.contains(existing.slot) ?? false) {
                // Redeclaring a top-level name (the REPL, or a script run twice) replaces it.
                context.scopes[0][name] = (existing.slot, constant)
                let slot = existing.slot
                return { frame in frame.slots[slot] = try ev(frame); return .normal }
            }
            if let existing = context.scopes[context.scopes.count - 1][name],
               !(functionDepth == 0 && context === globals && hoistedSlots.last?.contains(existing.slot) == true) {
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
            if branches.count == 1, otherwise == nil, branches[0].1.count == 1,
               case .returnValue(let e?, _) = branches[0].1[0], functionDepth > 0 {
                // `if c { return e }`, the guard clause: one closure, not three.
                let c = try condition(branches[0].0), ev = eval(try operand(e))
                return { frame in try c(frame) ? .returnValue(try ev(frame)) : .normal }
            }
            if branches.count == 1 {
                let c = try condition(branches[0].0), b = try block(branches[0].1)
                if let otherwise = otherwise {
                    let o = try block(otherwise)
                    return { frame in try c(frame) ? try b(frame) : try o(frame) }
                }
                return { frame in try c(frame) ? try b(frame) : .normal }
            }
            struct Branch { let cond: Cond; let body: Exec }
            var arms: [Branch] = []
            for (c, b) in branches { arms.append(Branch(cond: try condition(c), body: try block(b))) }
            let otherwiseArm: Exec = try otherwise.map { try block($0) } ?? { _ in .normal }
            return { frame in
                for arm in arms where try arm.cond(frame) { return try arm.body(frame) }
                return try otherwiseArm(frame)
            }
        case .whileLoop(let cond, let body, _):
            let c = try condition(cond)
            loopDepth += 1
            let b = try block(body)
            loopDepth -= 1
            let interp = self.interp
            return { frame in
                while try c(frame) {
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
            switch try operand(e) {
            case .constant(let v): return { _ in .returnValue(v) }
            case .local(let slot): return { frame in .returnValue(frame.slots[slot]) }
            case .general(let ev): return { frame in .returnValue(try ev(frame)) }
            }
        case .assertion(let cond, let message, let loc):
            let c = try condition(cond), m = try message.map { EvalCode(run: try expression($0)) }
            let file = self.file
            return { frame in
                if try c(frame) { return .normal }
                let text = try m.map { render(try $0.run(frame), quoted: false) } ?? "assertion failed"
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
                    let f = Frame.make(size: inner.size, parent: frame)
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
                if let o = binop, let fast = IntOp(o), !fast.isComparison {
                    // `x += e` and the like on ints, in place.
                    return { frame in
                        let v = try rhs(frame)
                        let target = frame.ancestorSlots(depth) + slot
                        if case .int(let a) = target.pointee, case .int(let b) = v, let r = fast.apply(a, b) {
                            target.pointee = r
                        } else {
                            let r = try interp.binary(o, target.pointee, v, file: file, at: loc)
                            frame.ancestorSlots(depth)[slot] = r
                        }
                        return .normal
                    }
                }
                return { frame in
                    var v = try rhs(frame)
                    if let o = binop { v = try interp.binary(o, try current(frame), v, file: file, at: loc) }
                    frame.ancestorSlots(depth)[slot] = v
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
            let idx = try items.map { EvalCode(run: try indexItem($0)) }
            let current = try expression(target)
            return { frame in
                var v = try rhs(frame)
                if let op = binop { v = try interp.binary(op, try current(frame), v, file: file, at: loc) }
                try interp.setIndex(try o(frame), try idx.map { try $0.run(frame) }, v, file: file, at: iloc)
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
            struct Piece { let text: String?; let value: Eval; let format: String?; let location: SourceLocation }
            var compiled: [Piece] = []
            for p in parts {
                switch p {
                case .text(let s): compiled.append(Piece(text: s, value: { _ in .nilValue }, format: nil, location: e.location))
                case .expression(let x, let format): compiled.append(Piece(text: nil, value: try expression(x), format: format, location: x.location))
                }
            }
            return { frame in
                var out = ""
                for piece in compiled {
                    if let t = piece.text { out += t; continue }
                    let v = try piece.value(frame), format = piece.format, loc = piece.location
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
            let cs = try items.map { EvalCode(run: try expression($0)) }
            return { frame in .list(ListBox(try cs.map { try $0.run(frame) })) }
        case .dict(let pairs, let loc):
            struct Pair { let key: Eval; let value: Eval }
            let cs = try pairs.map { Pair(key: try expression($0.0), value: try expression($0.1)) }
            return { frame in
                let d = DictBox()
                for pair in cs {
                    let key = try pair.key(frame)
                    if !d.set(key, try pair.value(frame)) {
                        throw ScriptError(.runtime, "\(an(key.typeName)) cannot be a dict key", file: file, at: loc)
                    }
                }
                return .dict(d)
            }
        case .name(let name, let loc, let length):
            switch resolve(name) {
            case .local(0, let slot, _): return { frame in frame.slots[slot] }
            case .local(1, let slot, _): return { frame in frame.ancestorSlots(1)[slot] }
            case .local(let depth, let slot, _): return { frame in frame.ancestorSlots(depth)[slot] }
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
            if let fast = IntOp(op) { return try intBinary(fast, op, a, b, loc) }
            let x = try expression(a), y = try expression(b)
            return { frame in try interp.binary(op, try x(frame), try y(frame), file: file, at: loc) }
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
            if items.count == 1 {
                let i0 = try indexItem(items[0])
                return { frame in try interp.index(try o(frame), [try i0(frame)], file: file, at: loc) }
            }
            let idx = try items.map { EvalCode(run: try indexItem($0)) }
            return { frame in try interp.index(try o(frame), try idx.map { try $0.run(frame) }, file: file, at: loc) }
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
        let positional = try args.filter { $0.label == nil }.map { EvalCode(run: try expression($0.value)) }
        struct Labelled { let label: String; let value: Eval }
        let labelled = try args.filter { $0.label != nil }.map { Labelled(label: $0.label!, value: try expression($0.value)) }
        /// For a builtin taking these arguments positionally (no labels, not variadic, no more
        /// arguments than parameters, every missing one with a default): its values in one array,
        /// bound here instead of through `Arguments` and `Signature.bind`.
        func directBinding(_ b: Builtin, receiver: Bool) -> ((Frame, Value?) throws -> [Value])? {
            let params = b.signature.parameters
            guard labelled.isEmpty, !b.signature.variadic, positional.count <= params.count,
                  params[positional.count...].allSatisfy({ $0.defaultValue != nil }) else { return nil }
            let defaults = params[positional.count...].map { $0.defaultValue! }
            let capacity = params.count + (receiver ? 1 : 0)
            return { frame, r in
                var values: [Value] = []
                values.reserveCapacity(capacity)
                if let r = r { values.append(r) }
                for p in positional { values.append(try p.run(frame)) }
                values.append(contentsOf: defaults)
                return values
            }
        }
        func arguments(_ frame: Frame) throws -> Arguments {
            var values: [Value] = []
            values.reserveCapacity(positional.count)
            for p in positional { values.append(try p.run(frame)) }
            if labelled.isEmpty { return Arguments(values, [], at: loc) }
            return Arguments(values, try labelled.map { ($0.label, try $0.value(frame)) }, at: loc)
        }
        // `x.method(...)`: evaluate the receiver once and call the method on it.
        if case .member(let obj, let name, let mloc, let length) = callee {
            let o = try expression(obj)
            // A tensor method is known when the script is compiled: called straight away, without
            // a bound method in between. Host objects may answer their hot methods directly too.
            let tensorMethod = interp.tensorMethods[name]
            let methodBinding = tensorMethod.flatMap { directBinding($0, receiver: true) }
            return { frame in
                let receiver = try o(frame)
                if let m = tensorMethod, let bind = methodBinding {
                    switch receiver {
                    case .tensor, .intTensor: return try interp.runBuiltin(m, try bind(frame, receiver), file: file, at: loc)
                    default: break
                    }
                }
                let a = try arguments(frame)
                switch receiver {
                case .tensor, .intTensor:
                    if let m = tensorMethod { return try interp.callBuiltin(m, receiver: receiver, a, file: file, at: loc) }
                case .object(let host):
                    if let v = try interp.locatingErrors(file: file, at: loc, { try host.callMethod(name, a, interp) }) { return v }
                default: break
                }
                let f = try interp.member(receiver, name, file: file, at: mloc, length: length)
                return try interp.call(f, a, file: file, at: loc)
            }
        }
        // A builtin named directly (not shadowed by a script name): called without a function
        // value in between.
        if case .name(let name, _, _) = callee, case .lateGlobal = resolve(name), let b = interp.builtins[name] {
            if let bind = directBinding(b, receiver: false) {
                return { frame in try interp.runBuiltin(b, try bind(frame, nil), file: file, at: loc) }
            }
            return { frame in try interp.callBuiltin(b, receiver: nil, try arguments(frame), file: file, at: loc) }
        }
        let count = positional.count
        guard labelled.isEmpty else {
            let f = try expression(callee)
            return { frame in try interp.call(try f(frame), try arguments(frame), file: file, at: loc) }
        }
        // A user function called with exactly its parameters, positionally: the arguments go
        // straight into its frame (a spare one from its last call when it has one). The first
        // two argument closures are captured one by one: a closure read out of an array is
        // retained for its call.
        let none: Eval = { _ in .nilValue }
        let p0 = count > 0 ? positional[0].run : none
        let p1 = count > 1 ? positional[1].run : none
        @inline(__always) func fill(_ frame: Frame, _ slots: UnsafeMutablePointer<Value>) throws {
            switch count {
            case 0: break
            case 1: slots[0] = try p0(frame)
            case 2: slots[0] = try p0(frame); slots[1] = try p1(frame)
            default: for i in 0..<count { slots[i] = try positional[i].run(frame) }
            }
        }
        // The callee named by a variable of this frame or an enclosing one (the usual call,
        // recursion included): found through the call site's cache, without reading the value out
        // of its slot.
        if case .name(let name, _, _) = callee, case .local(let depth, let slot, _) = resolve(name) {
            let cache = CallSiteCache()
            return { frame in
                let at = frame.ancestorSlots(depth) + slot
                if !cache.hit(at) {
                    let fn = at.pointee
                    guard case .function(let function) = fn, function.parameterCount == count else {
                        return try interp.call(fn, try arguments(frame), file: file, at: loc)
                    }
                    cache.remember(at, function)
                }
                return try cache.withFunction { function in
                    try interp.callFast(function, file: file, at: loc) { slots in try fill(frame, slots) }
                }
            }
        }
        let f = try expression(callee)
        return { frame in
            let fn = try f(frame)
            guard case .function(let function) = fn, function.parameterCount == count else {
                return try interp.call(fn, try arguments(frame), file: file, at: loc)
            }
            return try interp.callFast(function, file: file, at: loc) { slots in try fill(frame, slots) }
        }
    }

    /// Compiles a function; the result makes a closure over the frame it is evaluated in.
    mutating func function(_ decl: FunctionDecl) throws -> Eval {
        let compiled = CompiledFunction(decl: decl, file: file)
        let saved = context, savedLoop = loopDepth
        // Defaults are evaluated in the defining frame, at call time.
        compiled.defaults = try decl.parameters.map { p in try p.defaultValue.map { EvalCode(run: try expression($0)) } }
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
        compiled.reusesFrames = !containsFunction(decl.body)
        return { frame in .function(Function(.user(compiled, frame))) }
    }
}

/// A slice `a:b:c` inside a subscript.
final class SliceValue: HostObject {
    let start, end, step: Value?
    init(start: Value?, end: Value?, step: Value?) { self.start = start; self.end = end; self.step = step }
    override var typeName: String { "slice" }
}
