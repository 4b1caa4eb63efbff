// Module.swift: the base of every layer — named parameters, buffers and children, train/eval,
// and PyTorch-compatible state dicts.

/// A trainable tensor owned by a module and shared with optimizers: `opt.step()` updates the very
/// tensor the module computes with. Its value always requires gradients.
public final class Parameter {
    /// The current value, a leaf of the autograd graph. Update it in place (`assign`, optimizers)
    /// so that it keeps its gradient.
    public var value: Tensor

    public init(_ value: Tensor) {
        var v = value.detached()
        v.requiresGrad = true
        self.value = v
    }

    /// The gradient accumulated by `backward()`, or nil.
    public var grad: Tensor? {
        get { value.grad }
        set { value.grad = newValue }
    }

    public var shape: [Int] { value.shape }
}

/// A non-trainable tensor saved in the state dict (running statistics, counters).
public final class Buffer {
    public var value: AnyTensor
    public init(_ value: AnyTensor) { self.value = value }
}

/// A layer or a network of layers, as `torch.nn.Module`: children, parameters and buffers are
/// registered by name, in order, and make up the dotted names of `stateDict()`.
open class Module {
    /// Whether the module is in training mode (`train()`) or evaluation mode (`eval()`).
    public private(set) var training = true
    public private(set) var parameters: [(name: String, parameter: Parameter)] = []
    public private(set) var buffers: [(name: String, buffer: Buffer)] = []
    public private(set) var children: [(name: String, module: Module)] = []

    public init() {}

    /// The layer's computation. Subclasses override it.
    open func forward(_ input: Tensor) throws -> Tensor {
        throw CoreError.invalidArgument(op: typeName, "this module does not take a single tensor")
    }

    /// Runs `forward`, with a safe point for Ctrl-C (`Interrupt`) before and after: a network's
    /// forward stops within one layer, and a layer whose kernel stopped early is never returned.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try Interrupt.check()
        let output = try forward(input)
        try Interrupt.check()
        ModelSummary.observe(self, shapeString(output.shape))
        return output
    }

    /// The class name shown in summaries and errors.
    open var typeName: String { String(describing: type(of: self)) }

    /// Constructor arguments shown in summaries (as PyTorch's `extra_repr`).
    open var extraDescription: String { "" }

    @discardableResult
    public func registerParameter(_ name: String, _ value: Tensor) -> Parameter {
        registerParameter(name, Parameter(value))
    }

    @discardableResult
    public func registerParameter(_ name: String, _ parameter: Parameter) -> Parameter {
        parameters.append((name, parameter))
        return parameter
    }

    @discardableResult
    public func registerBuffer(_ name: String, _ buffer: Buffer) -> Buffer {
        buffers.append((name, buffer))
        return buffer
    }

    @discardableResult
    public func registerChild<M: Module>(_ name: String, _ module: M) -> M {
        if let i = children.firstIndex(where: { $0.name == name }) {
            children[i] = (name, module)
        } else {
            children.append((name, module))
        }
        return module
    }

    /// The child registered under `name`.
    public func child(_ name: String) -> Module? { children.first { $0.name == name }?.module }

    /// Every parameter of this module and its descendants, by dotted name, in registration order.
    public func namedParameters(prefix: String = "") -> [(String, Parameter)] {
        var out = parameters.map { (prefix + $0.name, $0.parameter) }
        for (name, m) in children { out += m.namedParameters(prefix: prefix + name + ".") }
        return out
    }

    /// Every buffer of this module and its descendants, by dotted name.
    public func namedBuffers(prefix: String = "") -> [(String, Buffer)] {
        var out = buffers.map { (prefix + $0.name, $0.buffer) }
        for (name, m) in children { out += m.namedBuffers(prefix: prefix + name + ".") }
        return out
    }

    /// All parameters (each once), for optimizers.
    public func allParameters() -> [Parameter] {
        var seen = Set<ObjectIdentifier>()
        return namedParameters().map(\.1).filter { seen.insert(ObjectIdentifier($0)).inserted }
    }

    /// The number of trainable scalars.
    public func numParameters() -> Int { allParameters().reduce(0) { $0 + $1.value.count } }

    /// Parameters and buffers by dotted name, in PyTorch's order (own parameters, own buffers,
    /// then each child's).
    public func stateDict(prefix: String = "") -> [(String, AnyTensor)] {
        var out = parameters.map { (prefix + $0.name, AnyTensor.float($0.parameter.value.detached())) }
        out += buffers.map { (prefix + $0.name, $0.buffer.value) }
        for (name, m) in children { out += m.stateDict(prefix: prefix + name + ".") }
        return out
    }

    /// Converts a tensor loaded for the parameter or buffer `key` to this module's layout, or throws.
    /// Subclasses override it to accept other layouts (SparseConvNet's weights, for example).
    open func adapt(_ value: AnyTensor, forLocal name: String, expected: [Int], key: String) throws -> AnyTensor {
        guard value.shape == expected else {
            throw CoreError.stateDict("size mismatch for \(key): copying a param with shape \(shapeString(value.shape)) from checkpoint, the shape in current model is \(shapeString(expected))")
        }
        return value
    }

    /// Copies values from `dict` into parameters and buffers. With `strict`, a missing or unexpected
    /// key is an error naming it; shapes must always match. Returns (missing, unexpected) keys.
    @discardableResult
    public func loadStateDict(_ dict: [String: AnyTensor], strict: Bool = true) throws -> (missing: [String], unexpected: [String]) {
        var slots: [String: (Module, String)] = [:]
        var order: [String] = []
        func collect(_ m: Module, _ prefix: String) {
            for (n, _) in m.parameters { slots[prefix + n] = (m, n); order.append(prefix + n) }
            for (n, _) in m.buffers { slots[prefix + n] = (m, n); order.append(prefix + n) }
            for (n, c) in m.children { collect(c, prefix + n + ".") }
        }
        collect(self, "")
        let missing = order.filter { dict[$0] == nil }
        let unexpected = dict.keys.filter { slots[$0] == nil }.sorted()
        if strict && (!missing.isEmpty || !unexpected.isEmpty) {
            var parts: [String] = []
            // PyTorch's words; past a dozen keys, the first ones and a count (a wrong architecture
            // misses hundreds).
            func listed(_ keys: [String]) -> String {
                let shown = keys.prefix(12).map { "\"\($0)\"" }.joined(separator: ", ")
                return keys.count > 12 ? shown + " and \(keys.count - 12) more" : shown
            }
            if !missing.isEmpty { parts.append("missing key(s) in state_dict: " + listed(missing)) }
            if !unexpected.isEmpty { parts.append("unexpected key(s) in state_dict: " + listed(unexpected)) }
            throw CoreError.stateDict("error(s) in loading state_dict for \(typeName): " + parts.joined(separator: "; "))
        }
        // Check everything before writing anything, so a failed load leaves the module unchanged.
        var writes: [() -> Void] = []
        for key in order {
            guard let value = dict[key], let (m, local) = slots[key] else { continue }
            if let p = m.parameters.first(where: { $0.name == local })?.parameter {
                let v = try m.adapt(value, forLocal: local, expected: p.value.shape, key: key)
                guard case .float = v else { throw CoreError.stateDict("\(key) must be a float tensor") }
                writes.append { p.value.assign(v.asFloat) }
            } else if let b = m.buffers.first(where: { $0.name == local })?.buffer {
                let v = try m.adapt(value, forLocal: local, expected: b.value.shape, key: key)
                writes.append {
                    switch b.value {
                    case .float: b.value = .float(v.asFloat)
                    case .int: if case .int(let t) = v { b.value = .int(t) } else { b.value = .int(v.asFloat.long()) }
                    }
                }
            }
        }
        writes.forEach { $0() }
        return (missing, unexpected)
    }

    /// Sets training mode on this module and all descendants.
    @discardableResult public func train(_ on: Bool = true) -> Self {
        training = on
        for (_, c) in children { c.train(on) }
        return self
    }

    /// Sets evaluation mode (`train(false)`).
    @discardableResult public func eval() -> Self { train(false) }

    /// A PyTorch-style tree of the module and its children.
    public func summary(indent: Int = 0) -> String {
        guard !children.isEmpty else { return "\(typeName)(\(extraDescription))" }
        let pad = String(repeating: "  ", count: indent + 1)
        let lines = children.map { "\(pad)(\($0.name)): \($0.module.summary(indent: indent + 1))" }
        return "\(typeName)(\n" + lines.joined(separator: "\n") + "\n" + String(repeating: "  ", count: indent) + ")"
    }
}

extension Tensor {
    /// Replaces the values in place, keeping this tensor's autograd identity (for parameters).
    mutating func assign(_ other: Tensor) {
        precondition(other.shape == shape)
        let src = other.storage.pointer, n = count
        withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: src, count: n) }
    }
}
