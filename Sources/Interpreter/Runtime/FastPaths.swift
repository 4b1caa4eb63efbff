// FastPaths.swift: what makes the compiled closures quick on scalar code — operands read straight
// from frame slots, integer arithmetic and comparisons without a detour through the general
// operator code, and conditions that yield a Bool without building a value.

/// A compiled expression kept in an array. A closure stored directly in an array (or a tuple, or
/// an optional) is kept at its most general representation and called through a conversion thunk;
/// a struct field of function type is not.
struct EvalCode { let run: Eval }
/// A compiled statement kept in an array (see `EvalCode`).
struct ExecCode { let run: Exec }

typealias Cond = (Frame) throws -> Bool

/// The binary operators with an integer fast path.
enum IntOp {
    case add, sub, mul, lt, le, gt, ge, eq, ne

    init?(_ op: String) {
        switch op {
        case "+": self = .add
        case "-": self = .sub
        case "*": self = .mul
        case "<": self = .lt
        case "<=": self = .le
        case ">": self = .gt
        case ">=": self = .ge
        case "==": self = .eq
        case "!=": self = .ne
        default: return nil
        }
    }

    var isComparison: Bool {
        switch self {
        case .add, .sub, .mul: return false
        default: return true
        }
    }

    /// The result on two ints, or nil when it overflows (the general path then gives a float).
    @inline(__always) func apply(_ a: Int, _ b: Int) -> Value? {
        switch self {
        case .add: let (s, o) = a.addingReportingOverflow(b); return o ? nil : .int(s)
        case .sub: let (s, o) = a.subtractingReportingOverflow(b); return o ? nil : .int(s)
        case .mul: let (s, o) = a.multipliedReportingOverflow(by: b); return o ? nil : .int(s)
        default: return .bool(compare(a, b))
        }
    }

    /// A comparison's result on two ints.
    @inline(__always) func compare(_ a: Int, _ b: Int) -> Bool {
        switch self {
        case .lt: return a < b
        case .le: return a <= b
        case .gt: return a > b
        case .ge: return a >= b
        case .eq: return a == b
        default: return a != b
        }
    }
}

/// An operand as the compiler sees it: a literal, a slot of the current frame, or anything else.
enum Operand {
    case constant(Value)
    case local(Int)
    case general(Eval)
}

extension Compiler {
    mutating func operand(_ e: Expr) throws -> Operand {
        switch e {
        case .int(let v, _): return .constant(.int(v))
        case .float(let v, _): return .constant(.float(v))
        case .name(let name, _, _):
            if case .local(0, let slot, _) = resolve(name) { return .local(slot) }
            return .general(try expression(e))
        default: return .general(try expression(e))
        }
    }

    func eval(_ o: Operand) -> Eval {
        switch o {
        case .constant(let v): return { _ in v }
        case .local(let slot): return { frame in frame.slots[slot] }
        case .general(let ev): return ev
        }
    }

    /// `a op b` for an operator with an integer fast path.
    mutating func intBinary(_ op: IntOp, _ name: String, _ a: Expr, _ b: Expr, _ loc: SourceLocation) throws -> Eval {
        let interp = self.interp, file = self.file
        let l = try operand(a), r = try operand(b)
        switch (l, r) {
        case (.local(let s), .constant(.int(let c))):
            return { frame in
                if case .int(let i) = frame.slots[s], let v = op.apply(i, c) { return v }
                return try interp.binary(name, frame.slots[s], .int(c), file: file, at: loc)
            }
        case (.local(let s), .local(let t)):
            return { frame in
                if case .int(let i) = frame.slots[s], case .int(let j) = frame.slots[t], let v = op.apply(i, j) { return v }
                return try interp.binary(name, frame.slots[s], frame.slots[t], file: file, at: loc)
            }
        case (.general(let x), .constant(.int(let c))):
            return { frame in
                let lv = try x(frame)
                if case .int(let i) = lv, let v = op.apply(i, c) { return v }
                return try interp.binary(name, lv, .int(c), file: file, at: loc)
            }
        case (.local(let s), .general(let y)):
            return { frame in
                let rv = try y(frame)
                if case .int(let i) = frame.slots[s], case .int(let j) = rv, let v = op.apply(i, j) { return v }
                return try interp.binary(name, frame.slots[s], rv, file: file, at: loc)
            }
        default:
            let x = eval(l), y = eval(r)
            return { frame in
                let lv = try x(frame), rv = try y(frame)
                if case .int(let i) = lv, case .int(let j) = rv, let v = op.apply(i, j) { return v }
                return try interp.binary(name, lv, rv, file: file, at: loc)
            }
        }
    }

    /// An expression evaluated for its truth: comparisons of ints give a Bool directly.
    mutating func condition(_ e: Expr) throws -> Cond {
        let interp = self.interp, file = self.file
        switch e {
        case .bool(let b, _): return { _ in b }
        case .unary("not", let a, _):
            let c = try condition(a)
            return { frame in !(try c(frame)) }
        case .logical(let op, let a, let b, _):
            let x = try condition(a), y = try condition(b)
            if op == "and" { return { frame in try x(frame) && y(frame) } }
            return { frame in try x(frame) || y(frame) }
        case .binary(let name, let a, let b, let loc):
            guard let op = IntOp(name), op.isComparison else { break }
            let l = try operand(a), r = try operand(b)
            switch (l, r) {
            case (.local(let s), .constant(.int(let c))):
                return { frame in
                    if case .int(let i) = frame.slots[s] { return op.compare(i, c) }
                    return try interp.binary(name, frame.slots[s], .int(c), file: file, at: loc).isTruthy
                }
            case (.local(let s), .local(let t)):
                return { frame in
                    if case .int(let i) = frame.slots[s], case .int(let j) = frame.slots[t] { return op.compare(i, j) }
                    return try interp.binary(name, frame.slots[s], frame.slots[t], file: file, at: loc).isTruthy
                }
            default:
                let x = eval(l), y = eval(r)
                return { frame in
                    let lv = try x(frame), rv = try y(frame)
                    if case .int(let i) = lv, case .int(let j) = rv { return op.compare(i, j) }
                    return try interp.binary(name, lv, rv, file: file, at: loc).isTruthy
                }
            }
        default: break
        }
        let ev = try expression(e)
        return { frame in try ev(frame).isTruthy }
    }
}
