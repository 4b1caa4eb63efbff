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

/// What a call site `name(...)` found in the callee's slot last time: the slot's bytes and the user
/// function they held. The same bytes in the slot mean the same value, so the next call skips
/// reading the value out of the slot (a reference count on the function and a switch over the
/// value's cases) and the checks of its kind and parameter count. Bytes that differ only mean a
/// miss (the slow path then fills the cache again), never a wrong function: the cache keeps the
/// function alive, so no other object can take its address while it is remembered.
///
/// Calls go through the remembered function without retaining it. That is sound because the
/// cache never lets go of a function while a call through it is running: a function replaced
/// then (a script that reassigns the name inside the call, recursion included) is retired and
/// released when the last running call through this site returns.
final class CallSiteCache {
    private static let size = MemoryLayout<Value>.size
    private var bytes: (UInt64, UInt64, UInt64) = (0, 0, 0)
    private var function: Function? = nil
    @exclusivity(unchecked) private var running = 0
    private var retired: [Function] = []

    /// Whether `slot` holds exactly what it held when its function was remembered.
    @inline(__always) func hit(_ slot: UnsafePointer<Value>) -> Bool {
        guard function != nil else { return false }
        let p = UnsafeRawPointer(slot)
        return withUnsafeBytes(of: &bytes) { key in
            var i = 0
            while i + 8 <= Self.size {
                if p.loadUnaligned(fromByteOffset: i, as: UInt64.self) != key.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
                i += 8
            }
            while i < Self.size {
                if p.load(fromByteOffset: i, as: UInt8.self) != key[i] { return false }
                i += 1
            }
            return true
        }
    }

    /// Remembers `function`, read from `slot` just now.
    func remember(_ slot: UnsafePointer<Value>, _ function: Function) {
        if running > 0, let old = self.function { retired.append(old) }
        self.function = function
        bytes = (0, 0, 0)
        withUnsafeMutableBytes(of: &bytes) { key in
            key.copyMemory(from: UnsafeRawBufferPointer(start: UnsafeRawPointer(slot), count: Self.size))
        }
    }

    /// Runs `body` with the remembered function (there must be one), unretained.
    @inline(__always) func withFunction(_ body: (Function) throws -> Value) rethrows -> Value {
        let reference = Unmanaged.passUnretained(function.unsafelyUnwrapped)
        running += 1
        defer {
            running -= 1
            if running == 0 && !retired.isEmpty { retired.removeAll() }
        }
        return try reference._withUnsafeGuaranteedRef(body)
    }
}
