// Interpreter.swift: runs SMILScript — compiles a file, executes it in the global frame, and
// implements the operators, calls, indexing and iteration the compiled code uses. It never
// touches the terminal: output goes to a sink the host provides.

import Foundation
import Core

public final class Interpreter {
    /// Receives everything `print` writes (a whole line, newline included).
    public var output: (String) -> Void = { Swift.print($0, terminator: "") }
    /// Values of expression statements in interactive mode (the REPL prints them; scripts do not).
    public var onExpressionValue: ((Value) -> Void)? = nil
    /// Script arguments (`args`).
    public var scriptArguments: [String] = []
    /// Whether Ctrl-C asked the running code to stop: Core's process-wide `Interrupt` flag, which
    /// the interpreter reads between statements, loop iterations and calls, and Core between
    /// layers, autograd nodes and kernel tiles. A signal handler sets it with `Interrupt.request()`.
    public var interruptRequested: Bool {
        get { Interrupt.isRequested }
        set { newValue ? Interrupt.request() : Interrupt.clear() }
    }
    /// Progress of a loop over a data loader: (done, total, finished). The host draws a bar on a
    /// terminal; the interpreter only reports.
    public var progress: ((Int, Int, Bool) -> Void)? = nil
    /// Images written by plot() and write_image(), in order (the notebook report embeds them).
    public var imagesWritten: [String] = []
    /// The last training loss reported during an epoch (shown beside the progress).
    public var progressLoss: Double? = nil
    /// Deepest call nesting allowed before "recursion depth exceeded". Read on every call:
    /// unchecked for exclusivity, like `callDepth`.
    @exclusivity(unchecked) public var maxCallDepth = 800

    let globals = FrameContext(parent: nil, isFunction: false)
    var globalFrame = Frame.make(size: 0, parent: nil)
    var builtins: [String: Builtin] = [:]
    /// Tensor methods, called with the tensor first.
    var tensorMethods: [String: Builtin] = [:]
    /// The current call nesting. Read and written on every call: unchecked for exclusivity (a
    /// dynamic check per access cost fib(32) a fifth of its time), which is sound because it is
    /// only ever read or assigned whole, never passed inout or held across a call.
    @exclusivity(unchecked) var callDepth = 0
    var imports: [String: Value] = [:]
    var importing: Set<String> = []
    /// Test-runner state: results of `test` blocks and `#>` checks.
    public var testResults: [TestResult] = []
    /// Whether `#>` expectations are checked (smil test).
    public var checkExpectations = false
    var expectations: [String: [Int: String]] = [:]
    var currentTest: String? = nil

    public init() {
        registerLibrary()
    }

    // MARK: Running

    /// Runs source text as a script. Throws `ScriptErrors` (syntax) or `ScriptError` (runtime).
    @discardableResult
    public func run(_ source: String, name: String = "<script>") throws -> Value? {
        let file = SourceFile(name: name, text: source)
        let program = try Parser.parse(file)
        if globals.scopes[0]["args"] == nil {
            let slot = globals.declare("args", constant: true)
            globalsGrew(globals.size)
            globalFrame.slots[slot] = .list(ListBox(scriptArguments.map { .string($0) }))
        }
        if checkExpectations { expectations[name] = Self.scanExpectations(file) }
        var compiler = Compiler(interp: self, file: file, context: globals, globals: globals)
        // The value of a final expression statement is the result (for -e and the REPL).
        var body = program
        var last: Eval? = nil
        if case .expression(let e, true, _)? = program.last, onExpressionValue == nil {
            body.removeLast()
            last = try compiler.expression(e)
        }
        let exec = try compiler.block(body, newScope: false)
        globalsGrew(globals.size)
        interruptRequested = false
        _ = try exec(globalFrame)
        return try last?(globalFrame)
    }

    /// Runs a file.
    @discardableResult
    public func runFile(_ path: String) throws -> Value? {
        try run(try Interpreter.readScript(path), name: path)
    }

    /// A script's text. Read through a file handle, so that /dev/null (an empty script, which runs
    /// nothing) and named pipes work; a file that is not UTF-8 is refused with the first bad byte.
    public static func readScript(_ path: String) throws -> String {
        let data: Data
        do {
            let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            data = try handle.readToEnd() ?? Data()
        } catch {
            let reason = (error as NSError).localizedFailureReason ?? (error as NSError).localizedDescription
            throw ScriptError(.runtime, "cannot read \(path): \(reason)")
        }
        if let text = String(data: data, encoding: .utf8) { return text }
        throw ScriptError(.runtime, "\(path) is not UTF-8 text (\(firstInvalidUTF8(data)))")
    }

    /// Where UTF-8 decoding of `data` first fails, as "byte 0xNN at offset N".
    private static func firstInvalidUTF8(_ data: Data) -> String {
        let bytes = [UInt8](data)
        var decoder = UTF8()
        var offset = 0, start = 0
        var input = AnyIterator<UInt8> {
            guard offset < bytes.count else { return nil }
            offset += 1
            return bytes[offset - 1]
        }
        while true {
            switch decoder.decode(&input) {
            case .scalarValue: start = offset
            case .emptyInput: return "a sequence cut short at its end"
            case .error: return String(format: "byte 0x%02X at offset %d", bytes[start], start)
            }
        }
    }

    func globalsGrew(_ size: Int) { globalFrame.grow(to: size) }

    /// Top-level names and their values (for `:vars`).
    public var workspace: [(String, Value)] {
        globals.scopes[0].sorted { $0.value.slot < $1.value.slot }.map { ($0.key, globalFrame.slots[$0.value.slot]) }
    }

    /// Every name visible at top level: globals and builtins (completion, suggestions).
    public var globalNames: [String] { Array(globals.scopes[0].keys) + builtins.keys }

    func visibleNames(_ ctx: FrameContext) -> [String] {
        var names: [String] = []
        var c: FrameContext? = ctx
        while let x = c { for s in x.scopes { names += s.keys }; c = x.parent }
        return names + builtins.keys
    }

    /// Clears the workspace.
    public func reset() {
        globals.scopes = [[:]]
        globals.size = 0
        globalFrame = Frame.make(size: 0, parent: nil)
        imports = [:]
    }

    func interruption() -> ScriptError { ScriptError(.runtime, "interrupted") }

    func lateGlobal(_ name: String, file: SourceFile, at loc: SourceLocation, length: Int, context: FrameContext) throws -> Value {
        if let r = globals.scopes[0][name] { return globalFrame.slots[r.slot] }
        var msg = "undefined name '\(name)'"
        if let s = closestName(to: name, in: visibleNames(context)) { msg += "; did you mean '\(s)'?" }
        throw ScriptError(.runtime, msg, file: file, at: loc, length: length)
    }

    func assignLateGlobal(_ name: String, _ v: Value, file: SourceFile, at loc: SourceLocation, length: Int) throws {
        guard let r = globals.scopes[0][name] else {
            var msg = "assignment to undeclared name '\(name)' (declare it first with 'var')"
            if let s = closestName(to: name, in: globalNames) { msg += "; did you mean '\(s)'?" }
            throw ScriptError(.runtime, msg, file: file, at: loc, length: length)
        }
        if r.constant { throw ScriptError(.runtime, "cannot assign to '\(name)': it was declared with 'let'", file: file, at: loc, length: length) }
        globalFrame.slots[r.slot] = v
    }

    func expressionStatement(_ v: Value, printed: Bool, file: SourceFile, line: Int) {
        if checkExpectations, let expected = expectations[file.name]?[line] {
            let got = render(v, quoted: false)
            if got != expected {
                testResults.append(TestResult(name: currentTest ?? "#> line \(line)", file: file.name, line: line,
                                              failure: "expected \(expected), got \(got)"))
            } else if currentTest == nil {
                testResults.append(TestResult(name: "#> line \(line)", file: file.name, line: line, failure: nil))
            }
            return
        }
        if printed, let sink = onExpressionValue { sink(v) }
    }

    /// Lines `L` whose next line is `#> text`: the expression statement on line L must print as text.
    static func scanExpectations(_ file: SourceFile) -> [Int: String] {
        var out: [Int: String] = [:]
        for (i, line) in file.lines.enumerated() {
            let t = line.drop { $0 == " " || $0 == "\t" }
            if t.hasPrefix("#>") {
                var text = String(t.dropFirst(2))
                if text.hasPrefix(" ") { text.removeFirst() }
                // Attach to the nearest preceding non-comment line.
                var j = i - 1
                while j >= 0, file.lines[j].drop(while: { $0 == " " }).hasPrefix("#") || file.lines[j].allSatisfy({ $0 == " " }) { j -= 1 }
                if j >= 0 { out[j + 1] = text }
            }
        }
        return out
    }

    // MARK: Modules

    func importModule(_ path: String, from file: SourceFile, at loc: SourceLocation) throws -> Value {
        let base = URL(fileURLWithPath: file.name).deletingLastPathComponent()
        let full = path.hasPrefix("/") ? path : base.appendingPathComponent(path).standardized.path
        if let v = imports[full] { return v }
        if importing.contains(full) {
            throw ScriptError(.runtime, "import cycle: \(path) is already being imported", file: file, at: loc, length: 6)
        }
        guard let text = try? String(contentsOfFile: full, encoding: .utf8) else {
            throw ScriptError(.runtime, "cannot import \"\(path)\": no readable file at \(full)", file: file, at: loc, length: 6)
        }
        importing.insert(full)
        defer { importing.remove(full) }
        // A module runs in its own interpreter state sharing the builtins; its globals become members.
        let sub = Interpreter()
        sub.output = output
        sub.imports = imports
        try sub.run(text, name: full)
        let module = ModuleValue(name: path, names: sub.workspace)
        imports[full] = .object(module)
        return .object(module)
    }

    // MARK: Tests

    func runTest(_ name: String, file: SourceFile, at loc: SourceLocation, _ body: () throws -> Void) throws {
        let saved = currentTest
        currentTest = name
        defer { currentTest = saved }
        let before = testResults.count
        RandomGenerator.seed(0)
        do {
            try body()
            if !testResults[before...].contains(where: { $0.failure != nil && $0.name == name }) {
                testResults.append(TestResult(name: name, file: file.name, line: loc.line, failure: nil))
            }
        } catch let e as ScriptError where e.kind == .skip {
            testResults.append(TestResult(name: name, file: file.name, line: loc.line, failure: nil, skipped: e.message))
        } catch let e as ScriptError {
            let line = e.location?.line ?? loc.line
            testResults.append(TestResult(name: name, file: e.file?.name ?? file.name, line: line, failure: e.message))
        }
    }

    // MARK: Calls

    func call(_ callee: Value, _ args: Arguments, file: SourceFile, at loc: SourceLocation) throws -> Value {
        switch callee {
        case .function(let f):
            switch f.kind {
            case .user:
                return try callUser(f, args, file: file, at: loc)
            case .builtin(let b):
                return try callBuiltin(b, receiver: nil, args, file: file, at: loc)
            case .method(let receiver, let b):
                return try callBuiltin(b, receiver: receiver, args, file: file, at: loc)
            }
        case .object(let o):
            do {
                if let v = try o.call(args, self) { return v }
            } catch let e as ScriptError {
                throw located(e, file: file, at: loc)
            } catch {
                throw ScriptError(.runtime, "\(error)", file: file, at: loc)
            }
            throw ScriptError(.runtime, "\(an(o.typeName)) is not callable", file: file, at: loc)
        default:
            throw ScriptError(.runtime, "\(an(callee.typeName)) is not callable", file: file, at: loc)
        }
    }

    /// Gives an error without a location the call's location (Core and builtin errors).
    func located(_ e: ScriptError, file: SourceFile, at loc: SourceLocation) -> ScriptError {
        // Host calls (callValue) have no place in a script: the script's call site supplies it.
        guard e.location == nil, file.name != "<host>" else { return e }
        var x = e
        x.file = file
        x.location = loc
        return x
    }

    /// Runs host code for the script expression at `loc`: errors from builtins and from Core
    /// (which carry no place of their own) are given that place.
    @inline(__always)
    func locatingErrors<T>(file: SourceFile, at loc: SourceLocation, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let e as ScriptError {
            throw located(e, file: file, at: loc)
        } catch let e as CoreError {
            throw ScriptError(.runtime, e.description, file: file, at: loc)
        }
    }

    /// Runs a builtin on values already bound to its parameters (the receiver first for a method).
    @inline(__always)
    func runBuiltin(_ b: Builtin, _ values: [Value], extra: [Value] = [], file: SourceFile, at loc: SourceLocation) throws -> Value {
        try locatingErrors(file: file, at: loc) { try b.body(values, extra, self) }
    }

    func callBuiltin(_ b: Builtin, receiver: Value?, _ args: Arguments, file: SourceFile, at loc: SourceLocation) throws -> Value {
        let (values, extra) = try locatingErrors(file: file, at: loc) { try b.signature.bind(args) }
        return try runBuiltin(b, receiver.map { [$0] + values } ?? values, extra: extra, file: file, at: loc)
    }

    func callUser(_ function: Function, _ args: Arguments, file: SourceFile, at loc: SourceLocation) throws -> Value {
        let f = function.compiled!, captured = function.captured
        let params = f.decl.parameters
        if args.positional.count > params.count {
            throw ScriptError(.runtime, "\(f.decl.name)() takes \(params.count) argument\(params.count == 1 ? "" : "s") but \(args.positional.count) were given", file: file, at: loc)
        }
        return try callFast(function, file: file, at: loc) { slots in
            var given = [Bool](repeating: false, count: params.count)
            for (i, v) in args.positional.enumerated() { slots[i] = v; given[i] = true }
            for (label, v) in args.labelled {
                guard let i = params.firstIndex(where: { $0.name == label }) else {
                    var msg = "\(f.decl.name)() has no parameter '\(label)'"
                    if let s = closestName(to: label, in: params.map(\.name)) { msg += "; did you mean '\(s)'?" }
                    throw ScriptError(.runtime, msg, file: file, at: loc)
                }
                if given[i] { throw ScriptError(.runtime, "\(f.decl.name)() got two values for parameter '\(label)'", file: file, at: loc) }
                slots[i] = v
                given[i] = true
            }
            for i in 0..<params.count where !given[i] {
                guard let d = f.defaults[i], let c = captured ?? Optional(globalFrame) else {
                    throw ScriptError(.runtime, "\(f.decl.name)() is missing the argument '\(params[i].name)'", file: file, at: loc)
                }
                slots[i] = try d.run(c)
            }
        }
    }

    /// Calls a user function: takes a frame for it, lets `fill` write the arguments into its
    /// slots, runs the body and keeps the frame for the next call. No reference is counted on the
    /// way; a failing call lets its frame go.
    @inline(__always)
    func callFast(_ function: Function, file: SourceFile, at loc: SourceLocation,
                  _ fill: (UnsafeMutablePointer<Value>) throws -> Void) throws -> Value {
        let frame = function.takeFrame()
        do {
            let result = try frame._withUnsafeGuaranteedRef { f -> Value in
                try fill(f.slots)
                return try enter(function, f, file: file, at: loc)
            }
            function.giveBack(frame)
            return result
        } catch {
            frame.release()
            throw error
        }
    }

    /// Runs a user function's body in its prepared frame, keeping the call depth and the stack
    /// trace of errors.
    @inline(__always)
    func enter(_ f: Function, _ frame: Frame, file: SourceFile, at loc: SourceLocation) throws -> Value {
        callDepth += 1
        defer { callDepth -= 1 }
        if callDepth > maxCallDepth || interruptRequested { throw cannotEnter(file: file, at: loc) }
        do {
            if case .returnValue(let v) = try f.body(frame) { return v }
            return .nilValue
        } catch {
            throw withStackEntry(error, f, file: file, at: loc)
        }
    }

    @inline(never)
    func cannotEnter(file: SourceFile, at loc: SourceLocation) -> ScriptError {
        if interruptRequested { return interruption() }
        return ScriptError(.runtime, "recursion depth exceeded (more than \(maxCallDepth) nested calls)", file: file, at: loc)
    }

    /// A runtime error leaving a function, with the call added to its stack trace.
    @inline(never)
    func withStackEntry(_ error: Error, _ f: Function, file: SourceFile, at loc: SourceLocation) -> Error {
        guard var e = error as? ScriptError, e.kind == .runtime, e.stack.count < 50 else { return error }
        e.stack.insert(StackFrame(function: f.name, file: file.name, location: loc), at: 0)
        return e
    }

    /// Calls a script value from host code (map, filter, sorted keys, no_grad...).
    public func callValue(_ f: Value, _ args: [Value]) throws -> Value {
        let file = SourceFile(name: "<host>", text: "")
        return try call(f, Arguments(args), file: file, at: SourceLocation(line: 0, column: 0))
    }

    // MARK: Iteration

    func iterate(_ seq: Value, file: SourceFile, at loc: SourceLocation, _ body: (Value) throws -> Flow) throws -> Flow {
        func run(_ v: Value) throws -> Flow? {
            if interruptRequested { throw interruption() }
            switch try body(v) {
            case .breakLoop: return .normal
            case .returnValue(let r): return .returnValue(r)
            default: return nil
            }
        }
        switch seq {
        case .range(let lo, let hi):
            var i = lo
            while i < hi { if let f = try run(.int(i)) { return f }; i += 1 }
        case .list(let l):
            var i = 0
            while i < l.items.count { if let f = try run(l.items[i]) { return f }; i += 1 }
        case .dict(let d):
            for k in d.keys { if let f = try run(k) { return f } }
        case .string(let s):
            for c in s { if let f = try run(.string(String(c))) { return f } }
        case .tensor(let t):
            let v = t.value
            guard v.rank > 0 else { throw ScriptError(.runtime, "cannot iterate over a 0-d tensor", file: file, at: loc) }
            for i in 0..<v.shape[0] { if let f = try run(.tensor(TensorBox(try v.select(dim: 0, i)))) { return f } }
        case .intTensor(let t):
            let v = t.value
            guard v.rank > 0 else { throw ScriptError(.runtime, "cannot iterate over a 0-d tensor", file: file, at: loc) }
            let inner = v.count / max(v.shape[0], 1)
            for i in 0..<v.shape[0] {
                let item: Value = v.rank == 1 ? .int(v.scalars[i])
                    : .intTensor(IntTensorBox(try IntTensor(Array(v.scalars[(i * inner)..<((i + 1) * inner)]), shape: Array(v.shape.dropFirst()))))
                if let f = try run(item) { return f }
            }
        case .object(let o):
            guard let it = o as? IterableObject else { fallthrough }
            let iterator = try it.makeIterator(self)
            while let v = try iterator() { if let f = try run(v) { return f } }
        default:
            throw ScriptError(.runtime, "\(an(seq.typeName)) is not iterable", file: file, at: loc)
        }
        return .normal
    }
}

/// A host object that `for` can iterate (data loaders, modules' children).
public protocol IterableObject {
    func makeIterator(_ interp: Interpreter) throws -> () throws -> Value?
}

/// One test's outcome.
public struct TestResult {
    public var name: String
    public var file: String
    public var line: Int
    /// nil when it passed.
    public var failure: String?
    /// The reason, when the test skipped itself.
    public var skipped: String? = nil
}

/// An imported file: its top-level names as members.
final class ModuleValue: HostObject {
    let name: String
    let names: [(String, Value)]
    init(name: String, names: [(String, Value)]) { self.name = name; self.names = names }
    override var typeName: String { "module" }
    override func member(_ n: String, _ interp: Interpreter) throws -> Value? { names.first { $0.0 == n }?.1 }
    override var memberNames: [String] { names.map(\.0) }
    override var description: String { "<module \"\(name)\">" }
}
