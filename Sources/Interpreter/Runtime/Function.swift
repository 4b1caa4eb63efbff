// Function.swift: callable values — user functions (compiled closures over their defining frame)
// and builtins (host functions with a declared signature and a doc string) — and argument binding
// with errors that name the parameter and the function.

import Core

/// Activation record: the slots of one function call (or one loop iteration that closures capture).
/// The slots are a raw buffer rather than an array: creating an array of values costs a runtime
/// metadata lookup, and a frame is made on every call.
public final class Frame {
    private(set) var slots: UnsafeMutablePointer<Value>
    private(set) var capacity: Int
    let parent: Frame?

    init(size: Int, parent: Frame?) {
        slots = .allocate(capacity: max(size, 1))
        slots.initialize(repeating: .nilValue, count: size)
        capacity = size
        self.parent = parent
    }

    /// Makes room for `size` slots (the global frame grows as a session declares names).
    func grow(to size: Int) {
        guard size > capacity else { return }
        let bigger = UnsafeMutablePointer<Value>.allocate(capacity: size)
        bigger.moveInitialize(from: slots, count: capacity)
        (bigger + capacity).initialize(repeating: .nilValue, count: size - capacity)
        slots.deallocate()
        slots = bigger
        capacity = size
    }

    deinit {
        slots.deinitialize(count: capacity)
        slots.deallocate()
    }
}

/// Arguments of a call: positional first, then labelled.
public struct Arguments {
    public var positional: [Value]
    public var labelled: [(String, Value)]
    public var location: SourceLocation?

    public init(_ positional: [Value], _ labelled: [(String, Value)] = [], at location: SourceLocation? = nil) {
        self.positional = positional
        self.labelled = labelled
        self.location = location
    }
}

/// A builtin's parameters: names with optional defaults (a parameter without one is required).
public struct Signature {
    public var name: String
    public var parameters: [(name: String, defaultValue: Value?)]
    /// Accepts any number of extra positional arguments (print, max...).
    public var variadic: Bool

    public init(_ name: String, _ parameters: [(String, Value?)] = [], variadic: Bool = false) {
        self.name = name
        self.parameters = parameters.map { (name: $0.0, defaultValue: $0.1) }
        self.variadic = variadic
    }

    /// `name(a, b = 1)`.
    public var display: String {
        let ps = parameters.map { p in p.defaultValue.map { "\(p.name): \(render($0, quoted: true))" } ?? p.name }
        return "\(name)(\(ps.joined(separator: ", "))\(variadic ? (ps.isEmpty ? "..." : ", ...") : ""))"
    }

    /// Binds `args` to the parameters: one value per parameter (defaults filled in), plus extra
    /// positional values when variadic.
    public func bind(_ args: Arguments) throws -> (values: [Value], extra: [Value]) {
        var values = [Value?](repeating: nil, count: parameters.count)
        var extra: [Value] = []
        for (i, v) in args.positional.enumerated() {
            if i < parameters.count { values[i] = v }
            else if variadic { extra.append(v) }
            else {
                throw ScriptError(.runtime, "\(name)() takes \(parameters.count) argument\(parameters.count == 1 ? "" : "s") but \(args.positional.count) were given")
            }
        }
        for (label, v) in args.labelled {
            guard let i = parameters.firstIndex(where: { $0.name == label }) else {
                var msg = "\(name)() has no parameter '\(label)'"
                if let s = closestName(to: label, in: parameters.map(\.name)) { msg += "; did you mean '\(s)'?" }
                throw ScriptError(.runtime, msg)
            }
            if values[i] != nil { throw ScriptError(.runtime, "\(name)() got two values for parameter '\(label)'") }
            values[i] = v
        }
        var out: [Value] = []
        for (i, p) in parameters.enumerated() {
            if let v = values[i] { out.append(v) }
            else if let d = p.defaultValue { out.append(d) }
            else { throw ScriptError(.runtime, "\(name)() is missing the argument '\(p.name)'") }
        }
        return (out, extra)
    }
}

/// A host function.
public struct Builtin {
    public var signature: Signature
    public var doc: String
    public var body: ([Value], [Value], Interpreter) throws -> Value

    public init(_ signature: Signature, doc: String, _ body: @escaping ([Value], [Value], Interpreter) throws -> Value) {
        self.signature = signature
        self.doc = doc
        self.body = body
    }
}

/// A compiled user function.
final class CompiledFunction {
    let decl: FunctionDecl
    let file: SourceFile
    var frameSize = 0
    var body: ((Frame) throws -> Flow)!
    /// Compiled default values (evaluated at call time in the defining frame).
    var defaults: [((Frame) throws -> Value)?] = []
    init(decl: FunctionDecl, file: SourceFile) { self.decl = decl; self.file = file }
}

/// A callable value.
public final class Function {
    enum Kind {
        case user(CompiledFunction, Frame?)
        case builtin(Builtin)
        case method(Value, Builtin)
    }
    let kind: Kind

    init(_ kind: Kind) { self.kind = kind }

    public var name: String {
        switch kind {
        case .user(let f, _): return f.decl.name
        case .builtin(let b), .method(_, let b): return b.signature.name
        }
    }

    public var doc: String {
        switch kind {
        case .user(let f, _): return "fn \(f.decl.name)(\(f.decl.parameters.map(\.name).joined(separator: ", ")))"
        case .builtin(let b), .method(_, let b): return "\(b.signature.display)\n\n\(b.doc)"
        }
    }
}

/// How a statement ended.
enum Flow {
    case normal
    case breakLoop
    case continueLoop
    case returnValue(Value)
}
