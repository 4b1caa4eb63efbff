// Value.swift: SMILScript's values. Numbers, strings, booleans and nil are values; lists, dicts,
// functions, tensors and host objects are references, as in Python.

import Core

/// A script value.
public enum Value {
    case int(Int)
    case float(Double)
    case bool(Bool)
    case string(String)
    case nilValue
    case list(ListBox)
    case dict(DictBox)
    /// `lo ..< hi` (an inclusive range is stored with hi + 1).
    case range(Int, Int)
    case function(Function)
    case tensor(TensorBox)
    case intTensor(IntTensorBox)
    case object(HostObject)

    /// The type name `type(x)` returns.
    public var typeName: String {
        switch self {
        case .int: return "int"
        case .float: return "float"
        case .bool: return "bool"
        case .string: return "string"
        case .nilValue: return "nil"
        case .list: return "list"
        case .dict: return "dict"
        case .range: return "range"
        case .function: return "function"
        case .tensor, .intTensor: return "tensor"
        case .object(let o): return o.typeName
        }
    }

    /// Truthiness: false, nil, 0, 0.0, "" and empty collections are false.
    public var isTruthy: Bool {
        switch self {
        case .bool(let b): return b
        case .nilValue: return false
        case .int(let i): return i != 0
        case .float(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .list(let l): return !l.items.isEmpty
        case .dict(let d): return !d.keys.isEmpty
        case .range(let lo, let hi): return hi > lo
        default: return true
        }
    }
}

/// A mutable list shared by reference.
public final class ListBox {
    public var items: [Value]
    public init(_ items: [Value]) { self.items = items }
}

/// A hashable key for dicts: numbers, strings, booleans and nil.
public enum DictKey: Hashable {
    case int(Int), float(Double), string(String), bool(Bool), nilValue

    init?(_ v: Value) {
        switch v {
        case .int(let i): self = .int(i)
        case .float(let d): self = d == d.rounded() && abs(d) < 9e15 ? .int(Int(d)) : .float(d)
        case .string(let s): self = .string(s)
        case .bool(let b): self = .bool(b)
        case .nilValue: self = .nilValue
        default: return nil
        }
    }
}

/// An insertion-ordered dict shared by reference.
public final class DictBox {
    public private(set) var keys: [Value] = []
    public private(set) var values: [Value] = []
    private var index: [DictKey: Int] = [:]

    public init() {}

    public func get(_ k: Value) -> Value? {
        guard let dk = DictKey(k), let i = index[dk] else { return nil }
        return values[i]
    }

    /// Inserts or replaces; returns false for an unhashable key.
    @discardableResult public func set(_ k: Value, _ v: Value) -> Bool {
        guard let dk = DictKey(k) else { return false }
        if let i = index[dk] { values[i] = v } else { index[dk] = keys.count; keys.append(k); values.append(v) }
        return true
    }

    public func remove(_ k: Value) -> Value? {
        guard let dk = DictKey(k), let i = index.removeValue(forKey: dk) else { return nil }
        let v = values[i]
        keys.remove(at: i); values.remove(at: i)
        for (key, j) in index where j > i { index[key] = j - 1 }
        return v
    }

    public var count: Int { keys.count }
}

/// A tensor held by reference: a script's own tensor, or a module's parameter (so that optimizer
/// steps and scripts see the same values).
public final class TensorBox {
    public private(set) var parameter: Parameter?
    private var own: Tensor

    public init(_ t: Tensor) { own = t; parameter = nil }
    public init(parameter: Parameter) { self.parameter = parameter; own = Tensor(repeating: 0, shape: [0]) }

    /// The parameter this tensor is, made from it the first time a script's own leaf tensor is
    /// handed to an optimizer (as torch.optim takes any leaf tensor): from then on the script's
    /// tensor and the optimizer's parameter are one, so `opt.step()` updates what the script holds.
    /// Its gradient so far is kept. A tensor that does not require grad, or that an operation
    /// computed (not a leaf), is refused: nothing could ever reach it through `backward()`.
    public func asParameter(function: String, index: Int) throws -> Parameter {
        if let p = parameter { return p }
        guard own.requiresGrad else {
            throw CoreError.invalidArgument(op: "\(function)()", "params[\(index)] does not require grad (set its requires_grad = true first)")
        }
        guard own.isLeaf else {
            throw CoreError.invalidArgument(op: "\(function)()", "params[\(index)] is not a leaf tensor (it was computed by an operation; optimize the tensors it came from, or a .detach() of it)")
        }
        let p = Parameter(own)
        p.grad = own.grad
        parameter = p
        own = try Tensor.zeros([0])
        return p
    }

    public var value: Tensor {
        get { parameter?.value ?? own }
        set { if let p = parameter { p.value = newValue } else { own = newValue } }
    }
}

/// An int64 tensor held by reference.
public final class IntTensorBox {
    public var value: IntTensor
    public init(_ t: IntTensor) { value = t }
}

/// Something from the host (a module, an optimizer, a record...) with members and methods.
open class HostObject {
    public init() {}
    open var typeName: String { "object" }
    /// A member's value, or nil if there is none.
    open func member(_ name: String, _ interp: Interpreter) throws -> Value? { nil }
    /// Sets a member; false if it cannot be set.
    open func setMember(_ name: String, _ value: Value, _ interp: Interpreter) throws -> Bool { false }
    /// Names for completion and "did you mean".
    open var memberNames: [String] { [] }
    /// Calling the object (modules are callable).
    open func call(_ args: Arguments, _ interp: Interpreter) throws -> Value? { nil }
    /// `x.name(args)` without building a bound method first, for the methods an inner loop calls;
    /// nil means "look the member up and call it".
    open func callMethod(_ name: String, _ args: Arguments, _ interp: Interpreter) throws -> Value? { nil }
    open var description: String { "<\(typeName)>" }
}

/// A record: named fields, printed as `name(field=value, ...)` (metrics, batches).
public final class Record: HostObject {
    public let name: String
    public var fields: [(String, Value)]
    public init(_ name: String, _ fields: [(String, Value)]) { self.name = name; self.fields = fields }
    public override var typeName: String { name }
    public override func member(_ n: String, _ interp: Interpreter) throws -> Value? { fields.first { $0.0 == n }?.1 }
    public override var memberNames: [String] { fields.map(\.0) }
}

/// "an int", "a tensor": the indefinite article for a type name in messages.
func an(_ typeName: String) -> String {
    guard let c = typeName.first?.lowercased() else { return typeName }
    return ("aeiou".contains(c) ? "an " : "a ") + typeName
}
