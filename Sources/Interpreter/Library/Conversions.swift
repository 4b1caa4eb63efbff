// Conversions.swift: checked conversions from script values to host types, with errors that name
// the function and the parameter.

import Core

struct ArgumentReader {
    /// The function's name, for messages: computed only when one is written (a module's type
    /// name is a demangled type, too slow to build on every call).
    private let name: () -> String
    var function: String { name() }

    init(function: @escaping @autoclosure () -> String) { name = function }

    func wrong(_ param: String, _ expected: String, _ v: Value) -> ScriptError {
        ScriptError(.runtime, "\(function)(): '\(param)' must be \(expected), got \(v.typeName) \(render(v, quoted: true).prefix(40))")
    }

    func int(_ v: Value, _ param: String) throws -> Int {
        switch v {
        case .int(let i): return i
        case .bool(let b): return b ? 1 : 0
        case .float(let d) where d == d.rounded() && abs(d) < 9e18: return Int(d)
        default: throw wrong(param, "an integer", v)
        }
    }

    func optionalInt(_ v: Value, _ param: String) throws -> Int? {
        if case .nilValue = v { return nil }
        return try int(v, param)
    }

    func double(_ v: Value, _ param: String) throws -> Double {
        switch v {
        case .int(let i): return Double(i)
        case .float(let d): return d
        case .bool(let b): return b ? 1 : 0
        case .tensor(let t) where t.value.count == 1: return Double(t.value[flat: 0])
        default: throw wrong(param, "a number", v)
        }
    }

    func float(_ v: Value, _ param: String) throws -> Float { Float(try double(v, param)) }

    func bool(_ v: Value, _ param: String) throws -> Bool {
        if case .bool(let b) = v { return b }
        throw wrong(param, "true or false", v)
    }

    func string(_ v: Value, _ param: String) throws -> String {
        if case .string(let s) = v { return s }
        throw wrong(param, "a string", v)
    }

    func list(_ v: Value, _ param: String) throws -> [Value] {
        switch v {
        case .list(let l): return l.items
        case .range(let lo, let hi): return (lo..<max(lo, hi)).map { .int($0) }
        default: throw wrong(param, "a list", v)
        }
    }

    /// A shape: a list of non-negative integers, or one integer.
    func shape(_ v: Value, _ param: String) throws -> [Int] {
        if case .int(let i) = v, i >= 0 { return [i] }
        let items = try list(v, param)
        return try items.map { x in
            let i = try int(x, param)
            guard i >= 0 else { throw wrong(param, "a list of non-negative sizes", v) }
            return i
        }
    }

    func tensor(_ v: Value, _ param: String) throws -> Tensor {
        switch v {
        case .tensor(let t): return t.value
        case .intTensor(let t): return t.value.float()
        case .int, .float, .bool: return Tensor(scalar: try float(v, param))
        case .list: return try tensorFromNested(v, param).asFloat
        default: throw wrong(param, "a tensor", v)
        }
    }

    func intTensor(_ v: Value, _ param: String) throws -> IntTensor {
        switch v {
        case .intTensor(let t): return t.value
        case .tensor(let t): return t.value.long()
        case .list:
            if case .int(let t) = try tensorFromNested(v, param) { return t }
            throw wrong(param, "an integer tensor", v)
        default: throw wrong(param, "an integer tensor", v)
        }
    }

    /// A tensor from nested lists; all integers give int64.
    func tensorFromNested(_ v: Value, _ param: String) throws -> AnyTensor {
        var shape: [Int] = []
        var flat: [Value] = []
        func walk(_ x: Value, depth: Int) throws {
            if case .list(let l) = x {
                // Deeper than any tensor (and than a list that contains itself would go).
                guard depth < 64 else { throw wrong(param, "a nested list at most 64 deep", v) }
                if depth == shape.count { shape.append(l.items.count) }
                else if shape[depth] != l.items.count { throw wrong(param, "a rectangular nested list", v) }
                for y in l.items { try walk(y, depth: depth + 1) }
            } else {
                guard depth == shape.count else { throw wrong(param, "a rectangular nested list", v) }
                flat.append(x)
            }
        }
        try walk(v, depth: 0)
        if flat.allSatisfy({ if case .int = $0 { return true }; if case .bool = $0 { return true }; return false }) && !flat.isEmpty {
            return .int(try IntTensor(try flat.map { try int($0, param) }, shape: shape))
        }
        return .float(try Tensor(try flat.map { try float($0, param) }, shape: shape))
    }
}

extension Value {
    static func from(_ t: Tensor) -> Value { .tensor(TensorBox(t)) }
    static func from(_ t: IntTensor) -> Value { .intTensor(IntTensorBox(t)) }
    static func from(_ t: AnyTensor) -> Value {
        switch t {
        case .float(let f): return .from(f)
        case .int(let i): return .from(i)
        }
    }
    static func ints(_ xs: [Int]) -> Value { .list(ListBox(xs.map { .int($0) })) }
}
