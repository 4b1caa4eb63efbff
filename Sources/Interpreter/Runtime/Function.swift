// Function.swift: callable values — user functions (compiled closures over their defining frame)
// and builtins (host functions with a declared signature and a doc string) — and argument binding
// with errors that name the parameter and the function.

import Core

/// Activation record: the slots of one function call (or one loop iteration that closures capture).
/// The slots live in the same allocation as the object (one malloc per call, not two); only the
/// global frame, which grows as a session declares names, moves them to a separate buffer.
final class Frame: ManagedBuffer<FrameHeader, Value> {
    /// A frame of `size` slots, all nil.
    static func make(size: Int, parent: Frame?) -> Frame {
        let buffer = Frame.create(minimumCapacity: max(size, 1)) { buffer in
            let slots = buffer.withUnsafeMutablePointerToElements { $0 }
            slots.initialize(repeating: .nilValue, count: size)
            return FrameHeader(slots: slots, count: size, separate: false, parent: parent,
                               parentReference: parent.map { Unmanaged.passUnretained($0) })
        }
        return unsafeDowncast(buffer, to: Frame.self)
    }

    // The header is read and written through its pointer, never through `header`: that is a
    // stored class property, so every access from outside the standard library goes through a
    // dynamic exclusivity check (swift_beginAccess), which cost fib(32) more than its arithmetic.
    // Nothing holds the header inout across a call, so no access can overlap another.
    @inline(__always) var slots: UnsafeMutablePointer<Value> { withUnsafeMutablePointerToHeader { $0.pointee.slots } }
    @inline(__always) var parent: Frame? { withUnsafeMutablePointerToHeader { $0.pointee.parent } }

    /// The slots of the frame `depth` levels out (0: this one), reached without retaining the
    /// frames in between: each frame owns its parent, and this one is alive for the call.
    @inline(__always) func ancestorSlots(_ depth: Int) -> UnsafeMutablePointer<Value> {
        var f = Unmanaged.passUnretained(self)
        for _ in 0..<depth {
            f = f._withUnsafeGuaranteedRef { frame in
                frame.withUnsafeMutablePointerToHeader { $0.pointee.parentReference.unsafelyUnwrapped }
            }
        }
        return f._withUnsafeGuaranteedRef { frame in frame.withUnsafeMutablePointerToHeader { $0.pointee.slots } }
    }

    /// Makes room for `size` slots (the global frame grows as a session declares names).
    func grow(to size: Int) {
        withUnsafeMutablePointerToHeader { h in
            guard size > h.pointee.count else { return }
            let bigger = UnsafeMutablePointer<Value>.allocate(capacity: size)
            bigger.moveInitialize(from: h.pointee.slots, count: h.pointee.count)
            (bigger + h.pointee.count).initialize(repeating: .nilValue, count: size - h.pointee.count)
            if h.pointee.separate { h.pointee.slots.deallocate() }
            h.pointee.slots = bigger
            h.pointee.count = size
            h.pointee.separate = true
        }
    }

    /// Sets every slot back to nil (a frame returned to its function's spare list).
    @inline(__always) func clear() {
        withUnsafeMutablePointerToHeader { h in
            let slots = h.pointee.slots
            for i in 0..<h.pointee.count { slots[i] = .nilValue }
        }
    }

    deinit {
        withUnsafeMutablePointerToHeader { h in
            let slots = h.pointee.slots
            // One value at a time: deinitialize(count:) goes through the generic array destroyer.
            for i in 0..<h.pointee.count { _ = (slots + i).move() }
            if h.pointee.separate { slots.deallocate() }
        }
    }
}

struct FrameHeader {
    var slots: UnsafeMutablePointer<Value>
    var count: Int
    /// Whether `slots` is a separate allocation (a grown frame) rather than the tail elements.
    var separate: Bool
    let parent: Frame?
    /// `parent` again, unretained, for reading its slots without reference counting.
    let parentReference: Unmanaged<Frame>?
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
        // The common case — positional arguments only, no more than the parameters — without the
        // bookkeeping of labels.
        if args.labelled.isEmpty && args.positional.count <= parameters.count {
            var out = args.positional
            if out.count < parameters.count {
                out.reserveCapacity(parameters.count)
                for p in parameters[out.count...] {
                    guard let d = p.defaultValue else { throw ScriptError(.runtime, "\(name)() is missing the argument '\(p.name)'") }
                    out.append(d)
                }
            }
            return (out, [])
        }
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

/// A host function. A class, so that passing one around costs one reference count, not one per
/// field.
public final class Builtin {
    public let signature: Signature
    public let doc: String
    public let body: ([Value], [Value], Interpreter) throws -> Value

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
    let parameterCount: Int
    /// Whether a call's frame can be reused by the next call: true when nothing in the body makes
    /// a closure, the only thing that could keep a frame alive after its call returns.
    var reusesFrames = false
    var frameSize = 0
    var body: Exec = { _ in .normal }
    /// Compiled default values (evaluated at call time in the defining frame).
    var defaults: [EvalCode?] = []
    init(decl: FunctionDecl, file: SourceFile) {
        self.decl = decl
        self.file = file
        parameterCount = decl.parameters.count
    }
}

/// A callable value.
public final class Function {
    enum Kind {
        case user(CompiledFunction, Frame?)
        case builtin(Builtin)
        case method(Value, Builtin)
    }
    let kind: Kind
    // A user function's code, parameter count and the frame it closes over, outside the enum
    // for the call path (parameterCount is -1 for builtins, so the fast path never takes them).
    let compiled: CompiledFunction?
    let captured: Frame?
    let parameterCount: Int
    let frameSize: Int
    let reusesFrames: Bool
    let body: Exec
    /// Frames of finished calls kept for the next call (see `CompiledFunction.reusesFrames`):
    /// recursion takes one per level, so the stack is as deep as the deepest recursion so far.
    /// Each entry owns one reference, moved in and out without reference counting. Unchecked for
    /// exclusivity (a dynamic check on every call otherwise): only `takeFrame`, `giveBack` and
    /// `growSpares` touch them, each reading and assigning them whole, never inout across a call.
    @exclusivity(unchecked) private var spares: UnsafeMutablePointer<Unmanaged<Frame>>? = nil
    @exclusivity(unchecked) private var spareCount = 0
    @exclusivity(unchecked) private var spareCapacity = 0

    init(_ kind: Kind) {
        self.kind = kind
        if case .user(let f, let frame) = kind {
            compiled = f
            captured = frame
            parameterCount = f.parameterCount
            frameSize = f.frameSize
            reusesFrames = f.reusesFrames
            body = f.body
        } else {
            compiled = nil
            captured = nil
            parameterCount = -1
            frameSize = 0
            reusesFrames = false
            body = { _ in .normal }
        }
    }

    /// A frame for a call of this user function, a spare one or a new one, owned by the caller as
    /// one unmanaged reference (nothing counted on the way in or out): hand it back with
    /// `giveBack`, or `release()` it if the call fails.
    @inline(__always) func takeFrame() -> Unmanaged<Frame> {
        guard spareCount > 0 else { return Unmanaged.passRetained(Frame.make(size: frameSize, parent: captured)) }
        spareCount -= 1
        return spares.unsafelyUnwrapped[spareCount]
    }

    /// Keeps a finished call's frame for the next call, its slots cleared (or lets it go, when the
    /// body makes closures that may keep it).
    @inline(__always) func giveBack(_ frame: Unmanaged<Frame>) {
        guard reusesFrames else { frame.release(); return }
        frame._withUnsafeGuaranteedRef { $0.clear() }
        if spareCount == spareCapacity { growSpares() }
        spares.unsafelyUnwrapped[spareCount] = frame
        spareCount += 1
    }

    private func growSpares() {
        let capacity = max(8, spareCapacity * 2)
        let bigger = UnsafeMutablePointer<Unmanaged<Frame>>.allocate(capacity: capacity)
        if let old = spares {
            bigger.moveInitialize(from: old, count: spareCount)
            old.deallocate()
        }
        spares = bigger
        spareCapacity = capacity
    }

    deinit {
        for i in 0..<spareCount { spares.unsafelyUnwrapped[i].release() }
        spares?.deallocate()
    }

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
