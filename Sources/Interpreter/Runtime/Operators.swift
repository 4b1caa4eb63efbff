// Operators.swift: arithmetic, comparison, indexing and member access on script values, with
// Python 3's number rules and NumPy broadcasting for tensors.

import Foundation
import Core

extension Interpreter {
    /// `a ** b` on floats by Python's rules: an error where Python raises (zero to a negative
    /// power, a negative number to a fractional power, which Python makes complex, and a finite
    /// result too large for a float) instead of inf or nan.
    func floatPower(_ a: Double, _ b: Double, _ file: SourceFile, _ loc: SourceLocation) throws -> Double {
        if a == 0 && b < 0 { throw fail("0.0 cannot be raised to a negative power (ZeroDivisionError in Python)", file, loc) }
        if a < 0 && a.isFinite && b.isFinite && b != b.rounded() {
            throw fail("a negative number cannot be raised to a fractional power (Python gives a complex number)", file, loc)
        }
        let p = Foundation.pow(a, b)
        if p.isInfinite && a.isFinite && b.isFinite { throw fail("result of ** too large for a float (OverflowError in Python)", file, loc) }
        return p
    }

    func fail(_ msg: String, _ file: SourceFile, _ loc: SourceLocation, length: Int = 1) -> ScriptError {
        ScriptError(.runtime, msg, file: file, at: loc, length: length)
    }

    /// The tensor a value stands for in tensor arithmetic (numbers become scalars).
    func asTensor(_ v: Value) -> Tensor? {
        switch v {
        case .tensor(let t): return t.value
        case .intTensor(let t): return t.value.float()
        case .int(let i): return Tensor(scalar: Float(i))
        case .float(let d): return Tensor(scalar: Float(d))
        case .bool(let b): return Tensor(scalar: b ? 1 : 0)
        default: return nil
        }
    }

    func binary(_ op: String, _ l: Value, _ r: Value, file: SourceFile, at loc: SourceLocation) throws -> Value {
        // Booleans in arithmetic count as the integers 0 and 1, as in Python.
        if case .bool(let b) = l, op != "==" && op != "!=" && op != "and" && op != "or", isIntLike(r) {
            return try binary(op, .int(b ? 1 : 0), r, file: file, at: loc)
        }
        if case .bool(let b) = r, op != "==" && op != "!=", isIntLike(l), !isBool(l) {
            return try binary(op, l, .int(b ? 1 : 0), file: file, at: loc)
        }
        switch (l, r) {
        case (.int(let a), .int(let b)):
            switch op {
            case "+": let (s, o) = a.addingReportingOverflow(b); if !o { return .int(s) }; return .float(Double(a) + Double(b))
            case "-": let (s, o) = a.subtractingReportingOverflow(b); if !o { return .int(s) }; return .float(Double(a) - Double(b))
            case "*": let (s, o) = a.multipliedReportingOverflow(by: b); if !o { return .int(s) }; return .float(Double(a) * Double(b))
            case "/":
                if b == 0 { throw fail("division by zero", file, loc) }
                return .float(Double(a) / Double(b))
            case "%":
                if b == 0 { throw fail("integer modulo by zero", file, loc) }
                let m = a % b
                return .int(m != 0 && (m < 0) != (b < 0) ? m + b : m)
            case "**":
                if b < 0 {
                    if a == 0 { throw fail("0 cannot be raised to a negative power (ZeroDivisionError in Python)", file, loc) }
                    return .float(Foundation.pow(Double(a), Double(b)))
                }
                var result = 1, base = a, e = b
                while e > 0 {
                    if e & 1 == 1 { let (m, o) = result.multipliedReportingOverflow(by: base); if o { return .float(try floatPower(Double(a), Double(b), file, loc)) }; result = m }
                    e >>= 1
                    if e > 0 { let (m, o) = base.multipliedReportingOverflow(by: base); if o { return .float(try floatPower(Double(a), Double(b), file, loc)) }; base = m }
                }
                return .int(result)
            default: if let c = comparison(op, a, b) { return c }
            }
        case (.int, .float), (.float, .int), (.float, .float), (.bool, .int), (.int, .bool), (.bool, .float), (.float, .bool), (.bool, .bool):
            if let a = number(l), let b = number(r) {
                if case .bool = l, case .bool = r, op == "==" || op == "!=" { break }
                switch op {
                case "+": return .float(a + b)
                case "-": return .float(a - b)
                case "*": return .float(a * b)
                case "/":
                    if b == 0 { throw fail("division by zero", file, loc) }
                    return .float(a / b)
                case "%":
                    if b == 0 { throw fail("float modulo by zero", file, loc) }
                    // Python's float remainder: the divisor's sign, a zero result included (-0.0).
                    let m = Foundation.fmod(a, b)
                    if m == 0 { return .float(b < 0 ? -0.0 : 0.0) }
                    return .float((m < 0) != (b < 0) ? m + b : m)
                case "**": return .float(try floatPower(a, b, file, loc))
                default: if let c = comparison(op, a, b) { return c }
                }
            }
        case (.string(let a), .string(let b)):
            switch op {
            case "+": return .string(a + b)
            case "in": return .bool(b.contains(a))
            default: if let c = comparison(op, a, b) { return c }
            }
        case (.string(let s), .int(let n)) where op == "*":
            try checkRepetition(of: s.utf8.count, "a string of \(s.utf8.count) bytes", times: n, elementSize: 1)
            return .string(s.isEmpty ? "" : String(repeating: s, count: max(0, n)))
        case (.list(let a), .list(let b)) where op == "+": return .list(ListBox(a.items + b.items))
        case (.list(let a), .int(let n)) where op == "*":
            try checkRepetition(of: a.items.count, "a list of \(a.items.count) items", times: n, elementSize: MemoryLayout<Value>.stride)
            var items: [Value] = []
            if n > 0 && !a.items.isEmpty {
                items.reserveCapacity(a.items.count * n)
                for _ in 0..<n { items.append(contentsOf: a.items) }
            }
            return .list(ListBox(items))
        default: break
        }
        switch op {
        case "==": return .bool(valuesEqual(l, r))
        case "!=": return .bool(!valuesEqual(l, r))
        case "in": return .bool(try contains(r, l, file: file, at: loc))
        default: break
        }
        // Tensors (with numbers broadcast as scalars).
        if isTensor(l) || isTensor(r), let a = asTensor(l), let b = asTensor(r) {
            do {
                let t: Tensor
                switch op {
                case "+": t = try a.add(b)
                case "-": t = try a.sub(b)
                case "*": t = try a.mul(b)
                case "/": t = try a.div(b)
                case "**": t = try a.pow(b)
                case "@": t = try a.matmul(b)
                case "<", "<=", ">", ">=", "==", "!=":
                    t = try Tensor.compare(a, b, op)
                default:
                    throw fail("unsupported operator '\(op)' for tensors", file, loc)
                }
                return .tensor(TensorBox(t))
            } catch let e as CoreError {
                throw fail(e.description, file, loc)
            }
        }
        throw fail("unsupported operand types for '\(op)': \(l.typeName) and \(r.typeName)", file, loc)
    }

    /// `a op b` for the six comparison operators, nil for any other operator.
    @inline(__always) func comparison<T: Comparable>(_ op: String, _ a: T, _ b: T) -> Value? {
        switch op {
        case "==": return .bool(a == b)
        case "!=": return .bool(a != b)
        case "<": return .bool(a < b)
        case "<=": return .bool(a <= b)
        case ">": return .bool(a > b)
        case ">=": return .bool(a >= b)
        default: return nil
        }
    }

    func isIntLike(_ v: Value) -> Bool {
        switch v { case .int, .bool: return true; default: return false }
    }

    func isBool(_ v: Value) -> Bool { if case .bool = v { return true }; return false }

    func isTensor(_ v: Value) -> Bool {
        if case .tensor = v { return true }
        if case .intTensor = v { return true }
        return false
    }

    func number(_ v: Value) -> Double? {
        switch v {
        case .int(let i): return Double(i)
        case .float(let d): return d
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    func contains(_ container: Value, _ item: Value, file: SourceFile, at loc: SourceLocation) throws -> Bool {
        switch container {
        case .list(let l): return l.items.contains { valuesEqual($0, item) }
        case .dict(let d): return d.get(item) != nil
        case .range(let lo, let hi): if case .int(let i) = item { return i >= lo && i < hi }; return false
        case .string(let s): if case .string(let x) = item { return s.contains(x) }; fallthrough
        default: throw fail("'in' needs a list, dict, range or string on its right, got \(container.typeName)", file, loc)
        }
    }

    func negate(_ v: Value, file: SourceFile, at loc: SourceLocation) throws -> Value {
        switch v {
        case .int(let i): return i == .min ? .float(-Double(i)) : .int(-i)
        case .float(let d): return .float(-d)
        case .bool(let b): return .int(b ? -1 : 0)
        case .tensor(let t): return .tensor(TensorBox(t.value.negated()))
        case .intTensor(let t): return .intTensor(IntTensorBox(try IntTensor(t.value.scalars.map { -$0 }, shape: t.value.shape)))
        default: throw fail("bad operand type for unary '-': \(v.typeName)", file, loc)
        }
    }

    // MARK: Indexing

    /// Resolves a possibly negative index against `count`.
    func position(_ v: Value, count: Int, file: SourceFile, at loc: SourceLocation, what: String) throws -> Int {
        guard case .int(let i) = v else { throw fail("\(what) indices must be integers, not \(v.typeName)", file, loc) }
        let j = i < 0 ? i + count : i
        guard j >= 0 && j < count else { throw fail("\(what) index \(i) out of range (length \(count))", file, loc) }
        return j
    }

    /// Python slice bounds over `count` elements.
    func sliceIndices(_ s: SliceValue, count: Int, file: SourceFile, at loc: SourceLocation) throws -> [Int] {
        func int(_ v: Value?) throws -> Int? {
            guard let v = v else { return nil }
            if case .nilValue = v { return nil }
            guard case .int(let i) = v else { throw fail("slice bounds must be integers, not \(v.typeName)", file, loc) }
            return i
        }
        let step = try int(s.step) ?? 1
        if step == 0 { throw fail("slice step cannot be zero", file, loc) }
        func clip(_ v: Int?, _ def: Int, lower: Int, upper: Int) -> Int {
            guard var x = v else { return def }
            if x < 0 { x += count }
            return min(max(x, lower), upper)
        }
        if step > 0 {
            let lo = clip(try int(s.start), 0, lower: 0, upper: count), hi = clip(try int(s.end), count, lower: 0, upper: count)
            return lo < hi ? Array(stride(from: lo, to: hi, by: step)) : []
        }
        let lo = clip(try int(s.start), count - 1, lower: -1, upper: count - 1), hi = clip(try int(s.end), -1, lower: -1, upper: count - 1)
        return lo > hi ? Array(stride(from: lo, to: hi, by: step)) : []
    }

    func index(_ obj: Value, _ items: [Value], file: SourceFile, at loc: SourceLocation) throws -> Value {
        if case .tensor(let t) = obj { return .tensor(TensorBox(try tensorIndex(t.value, items, file: file, at: loc))) }
        if case .intTensor(let t) = obj {
            let r = try tensorIndex(t.value.float(), items, file: file, at: loc).long()
            return r.rank == 0 ? .int(r.scalars[0]) : .intTensor(IntTensorBox(r))
        }
        guard items.count == 1 else { throw fail("\(an(obj.typeName)) takes one index", file, loc) }
        let item = items[0]
        switch obj {
        case .list(let l):
            if case .object(let s as SliceValue) = item {
                return .list(ListBox(try sliceIndices(s, count: l.items.count, file: file, at: loc).map { l.items[$0] }))
            }
            return l.items[try position(item, count: l.items.count, file: file, at: loc, what: "list")]
        case .string(let str):
            let chars = Array(str)
            if case .object(let s as SliceValue) = item {
                return .string(String(try sliceIndices(s, count: chars.count, file: file, at: loc).map { chars[$0] }))
            }
            return .string(String(chars[try position(item, count: chars.count, file: file, at: loc, what: "string")]))
        case .dict(let d):
            guard let v = d.get(item) else { throw fail("key \(render(item, quoted: true)) not in dict", file, loc) }
            return v
        case .range(let lo, let hi):
            return .int(lo + (try position(item, count: max(0, hi - lo), file: file, at: loc, what: "range")))
        case .object(let o):
            if let indexable = o as? IndexableObject { return try indexable.index(item, self) }
            fallthrough
        default:
            throw fail("\(an(obj.typeName)) cannot be indexed", file, loc)
        }
    }

    /// `t[i]`, `t[:, 1]`, `t[1:3, ::2]`: integers select (dropping the dimension), slices keep it.
    func tensorIndex(_ t: Tensor, _ items: [Value], file: SourceFile, at loc: SourceLocation) throws -> Tensor {
        guard items.count <= t.rank else { throw fail("too many indices for a tensor of rank \(t.rank)", file, loc) }
        var result = t
        var dim = 0
        for item in items {
            let size = result.shape[dim]
            if case .object(let s as SliceValue) = item {
                let picked = try sliceIndices(s, count: size, file: file, at: loc)
                result = try result.gather(dim: dim, picked)
                dim += 1
            } else {
                let i = try position(item, count: size, file: file, at: loc, what: "tensor")
                result = try result.select(dim: dim, i)
            }
        }
        return result
    }

    func setIndex(_ obj: Value, _ items: [Value], _ v: Value, file: SourceFile, at loc: SourceLocation) throws {
        switch obj {
        case .list(let l):
            guard items.count == 1 else { throw fail("a list takes one index", file, loc) }
            l.items[try position(items[0], count: l.items.count, file: file, at: loc, what: "list")] = v
        case .dict(let d):
            guard items.count == 1 else { throw fail("a dict takes one key", file, loc) }
            if !d.set(items[0], v) { throw fail("\(an(items[0].typeName)) cannot be a dict key", file, loc) }
        case .tensor(let box):
            guard let value = number(v) else { throw fail("tensor elements can be set to numbers only", file, loc) }
            var t = box.value
            guard items.count == t.rank else { throw fail("set one element at a time: give \(t.rank) indices", file, loc) }
            var flat = 0
            for (d, item) in items.enumerated() {
                flat = flat * t.shape[d] + (try position(item, count: t.shape[d], file: file, at: loc, what: "tensor"))
            }
            t[flat: flat] = Float(value)
            box.value = t
        case .object(let o as IndexAssignableObject):
            guard items.count == 1 else { throw fail("\(an(obj.typeName)) takes one index", file, loc) }
            do { try o.setIndex(items[0], v, self) } catch let e as ScriptError {
                throw located(e, file: file, at: loc)
            } catch let e as CoreError {
                throw fail(e.description, file, loc)
            }
        default:
            throw fail("\(an(obj.typeName)) does not support item assignment", file, loc)
        }
    }

    // MARK: Members

    func member(_ obj: Value, _ name: String, file: SourceFile, at loc: SourceLocation, length: Int) throws -> Value {
        do {
            if let v = try memberValue(obj, name) { return v }
        } catch let e as ScriptError {
            throw located(e, file: file, at: loc)
        } catch let e as CoreError {
            throw fail(e.description, file, loc, length: length)
        }
        var msg = "\(an(obj.typeName)) has no member '\(name)'"
        if let s = closestName(to: name, in: memberNames(obj)) { msg += "; did you mean '\(s)'?" }
        throw fail(msg, file, loc, length: length)
    }

    func setMember(_ obj: Value, _ name: String, _ v: Value, file: SourceFile, at loc: SourceLocation) throws {
        do {
            if try setMemberValue(obj, name, v) { return }
        } catch let e as ScriptError {
            throw located(e, file: file, at: loc)
        } catch let e as CoreError {
            throw fail(e.description, file, loc)
        }
        var msg = "cannot set member '\(name)' of \(an(obj.typeName))"
        if let s = closestName(to: name, in: memberNames(obj)) { msg += "; did you mean '\(s)'?" }
        throw fail(msg, file, loc)
    }
}

/// A host object that supports `x[i] = v`.
public protocol IndexAssignableObject {
    func setIndex(_ i: Value, _ v: Value, _ interp: Interpreter) throws
}

/// A host object that supports `x[i]`.
public protocol IndexableObject {
    func index(_ i: Value, _ interp: Interpreter) throws -> Value
}

extension Tensor {
    /// Elementwise comparison giving 1.0 / 0.0.
    static func compare(_ a: Tensor, _ b: Tensor, _ op: String) throws -> Tensor {
        guard let c = Comparison(rawValue: op) else { throw ScriptError(.runtime, "'\(op)' is not a comparison") }
        return try Tensor.compare(a.detached(), b.detached(), c)
    }
}

/// Deep equality: numbers by value, lists and dicts element by element, objects by identity.
/// Containers that hold themselves are equal where their structures match: a pair of containers
/// met again while being compared is taken as equal (the comparison of the rest decides).
func valuesEqual(_ a: Value, _ b: Value) -> Bool {
    var comparing = Set<[ObjectIdentifier]>()
    return valuesEqual(a, b, comparing: &comparing)
}

private func valuesEqual(_ a: Value, _ b: Value, comparing: inout Set<[ObjectIdentifier]>) -> Bool {
    switch (a, b) {
    case (.list(let x), .list(let y)):
        if x === y { return true }
        guard x.items.count == y.items.count else { return false }
        let pair = [ObjectIdentifier(x), ObjectIdentifier(y)]
        guard comparing.insert(pair).inserted else { return true }
        defer { comparing.remove(pair) }
        for (p, q) in zip(x.items, y.items) where !valuesEqual(p, q, comparing: &comparing) { return false }
        return true
    case (.dict(let x), .dict(let y)):
        if x === y { return true }
        guard x.count == y.count else { return false }
        let pair = [ObjectIdentifier(x), ObjectIdentifier(y)]
        guard comparing.insert(pair).inserted else { return true }
        defer { comparing.remove(pair) }
        for (k, v) in zip(x.keys, x.values) {
            guard let w = y.get(k), valuesEqual(v, w, comparing: &comparing) else { return false }
        }
        return true
    default: break
    }
    switch (a, b) {
    case (.int(let x), .int(let y)): return x == y
    case (.int, .float), (.float, .int), (.float, .float), (.bool, .int), (.int, .bool), (.bool, .float), (.float, .bool):
        func n(_ v: Value) -> Double { switch v { case .int(let i): return Double(i); case .float(let d): return d; case .bool(let b): return b ? 1 : 0; default: return .nan } }
        return n(a) == n(b)
    case (.bool(let x), .bool(let y)): return x == y
    case (.string(let x), .string(let y)): return x == y
    case (.nilValue, .nilValue): return true
    case (.range(let a1, let b1), .range(let a2, let b2)): return a1 == a2 && b1 == b2
    case (.function(let x), .function(let y)): return x === y
    case (.tensor(let x), .tensor(let y)): return x === y || (x.value.shape == y.value.shape && x.value.scalars == y.value.scalars)
    case (.intTensor(let x), .intTensor(let y)): return x === y || x.value == y.value
    case (.object(let x), .object(let y)): return x === y
    default: return false
    }
}

/// Refuses `x * n` for a string or list whose result could not fit in memory (Python's
/// MemoryError), before anything is allocated.
func checkRepetition(of count: Int, _ what: String, times n: Int, elementSize: Int) throws {
    guard n > 0, count > 0 else { return }
    let (items, o1) = count.multipliedReportingOverflow(by: n)
    let (bytes, o2) = items.multipliedReportingOverflow(by: elementSize)
    guard o1 || o2 || bytes > Memory.limitBytes else { return }
    throw ScriptError(.runtime, "cannot repeat \(what) \(n) times: the result would need \(o1 || o2 ? "more than 2^63 bytes" : Memory.describe(bytes: bytes)), more than this machine can hold (\(Memory.describe(bytes: Memory.limitBytes)))")
}
