// Pickle.swift: a restricted unpickler and a small pickler for PyTorch files. A pickle is a
// program; this one runs only the opcodes of protocols 2-5 that build data, and constructs only an
// allow-list of globals (the idea of `torch.load(weights_only=True)`). Any other global is an
// error naming it, raised when the opcode is read, before anything is constructed.

import Foundation

/// What a PyTorch file holds, once read: plain data and tensors.
public indirect enum TorchValue: Equatable {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case list([TorchValue])
    case tuple([TorchValue])
    /// Keys in the file's order (an OrderedDict's).
    case dict([(key: TorchValue, value: TorchValue)])
    case tensor(AnyTensor)

    public static func == (a: TorchValue, b: TorchValue) -> Bool {
        switch (a, b) {
        case (.none, .none): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.int(let x), .int(let y)): return x == y
        case (.float(let x), .float(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.bytes(let x), .bytes(let y)): return x == y
        case (.list(let x), .list(let y)), (.tuple(let x), .tuple(let y)): return x == y
        case (.dict(let x), .dict(let y)): return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case (.tensor(.float(let x)), .tensor(.float(let y))): return x.shape == y.shape && x.scalars == y.scalars
        case (.tensor(.int(let x)), .tensor(.int(let y))): return x == y
        default: return false
        }
    }

    /// The value under `key` of a dict with string keys.
    public subscript(key: String) -> TorchValue? {
        guard case .dict(let items) = self else { return nil }
        return items.first { $0.key == .string(key) }?.value
    }

    /// Every tensor under this value, by dotted path (`model.0.weight`, `optimizer.state.0.exp_avg`),
    /// as the safetensors twins of PyTorch files are flattened.
    public func flattenedTensors(prefix: String = "") -> [(String, AnyTensor)] {
        func join(_ k: String) -> String { prefix.isEmpty ? k : prefix + "." + k }
        switch self {
        case .tensor(let t): return [(prefix, t)]
        case .dict(let items):
            return items.flatMap { item -> [(String, AnyTensor)] in
                let k: String
                switch item.key {
                case .string(let s): k = s
                case .int(let i): k = String(i)
                default: return []
                }
                return item.value.flattenedTensors(prefix: join(k))
            }
        case .list(let xs), .tuple(let xs):
            return xs.enumerated().flatMap { $0.element.flattenedTensors(prefix: join(String($0.offset))) }
        default: return []
        }
    }
}

/// Element types of PyTorch storages, by their storage class names.
public enum TorchDType: String, CaseIterable, Sendable {
    case float32 = "FloatStorage", float64 = "DoubleStorage", float16 = "HalfStorage", bfloat16 = "BFloat16Storage"
    case int64 = "LongStorage", int32 = "IntStorage", int16 = "ShortStorage", int8 = "CharStorage", uint8 = "ByteStorage"
    case bool = "BoolStorage"

    public var size: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .float16, .bfloat16, .int16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }

    public var isFloatingPoint: Bool { [.float32, .float64, .float16, .bfloat16].contains(self) }

    /// The element type a persistent id's storage class stands for: `torch.FloatStorage` and the
    /// other typed classes, or `torch.storage.UntypedStorage` (bytes: torch.load reads it as uint8,
    /// with the element count in bytes). Nil for any other name.
    public init?(storageClass name: String) {
        if name == "torch.storage.UntypedStorage" || name == "torch.UntypedStorage" { self = .uint8; return }
        guard name.hasPrefix("torch."), let t = TorchDType(rawValue: String(name.dropFirst("torch.".count))) else { return nil }
        self = t
    }
}

/// A storage's bytes, little-endian, as read from the file (shared by the tensors that view it).
public final class TorchStorage {
    public let dtype: TorchDType
    public let bytes: Data
    public var count: Int { bytes.count / dtype.size }
    public init(dtype: TorchDType, bytes: Data) { self.dtype = dtype; self.bytes = bytes }
}

/// The restricted unpickler.
struct Unpickler {
    /// Objects on the stack and in the memo. Lists, dicts and sets are boxes, so that a container
    /// memoised before it was filled (as pickle does) is the filled one when fetched again.
    indirect enum Object {
        case none, bool(Bool), int(Int), float(Double), string(String), bytes([UInt8])
        case list(Box), tuple(Box), dict(DictBox), set(Box)
        case global(String)
        case storage(TorchStorage)
        case tensor(AnyTensor)
        case mark
    }
    final class Box { var items: [Object] = []; init(_ items: [Object] = []) { self.items = items } }
    final class DictBox { var items: [(Object, Object)] = [] }

    /// Every container the program built. A hostile pickle can nest them 100,000 deep; freeing
    /// such a chain would recurse once per level and overflow the stack, so `dismantle` empties
    /// them all while the arena still holds each one, and each is then freed empty.
    final class Arena {
        var boxes: [Box] = []
        var dicts: [DictBox] = []
        func box(_ items: [Object] = []) -> Box { let b = Box(items); boxes.append(b); return b }
        func dict() -> DictBox { let d = DictBox(); dicts.append(d); return d }
        func dismantle() {
            for b in boxes { b.items = [] }
            for d in dicts { d.items = [] }
            boxes = []
            dicts = []
        }
    }
    let arena = Arena()

    /// Globals that may be named; anything else stops the load with its name.
    static let allowedGlobals: Set<String> = {
        var s: Set<String> = ["collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor",
                              "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
                              "torch.Size", "torch.device", "builtins.set", "__builtin__.set", "builtins.frozenset",
                              "__builtin__.frozenset", "_codecs.encode", "torch.storage.UntypedStorage"]
        for t in TorchDType.allCases { s.insert("torch." + t.rawValue) }
        return s
    }()

    let data: Data
    let file: String
    /// Resolves a persistent id (the storages of a torch file).
    let persistentLoad: (Object) throws -> Object
    var position: Int
    /// Runs the program without building tensors (the legacy format's first pass, before the
    /// storages' bytes are known).
    var dryRun = false

    /// Bounds that keep a hostile pickle from exhausting memory or time.
    static let maxStack = 1 << 22
    static let maxNesting = 1000

    init(data: Data, file: String, start: Int = 0, persistentLoad: @escaping (Object) throws -> Object) {
        self.data = data
        self.file = file
        self.position = start
        self.persistentLoad = persistentLoad
    }

    func fail(_ message: String) -> CoreError { .file(path: file, "pickle: \(message) (at byte \(position))") }

    mutating func byte() throws -> UInt8 {
        guard position < data.count else { throw fail("ends in the middle of an opcode (truncated file?)") }
        defer { position += 1 }
        return data[data.startIndex + position]
    }

    mutating func bytes(_ n: Int) throws -> Data {
        guard n >= 0, n <= data.count - position else { throw fail("claims \(n) bytes, but only \(data.count - position) remain") }
        defer { position += n }
        return data.subdata(in: (data.startIndex + position)..<(data.startIndex + position + n))
    }

    mutating func littleEndian(_ n: Int) throws -> UInt64 {
        let d = try bytes(n)
        return d.reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    mutating func line() throws -> String {
        guard let end = data[(data.startIndex + position)...].firstIndex(of: 0x0A) else { throw fail("a text argument has no end of line") }
        let s = String(decoding: data[(data.startIndex + position)..<end], as: UTF8.self)
        position = end - data.startIndex + 1
        return s
    }

    /// Runs the pickle to its STOP and converts what it built (then frees it without recursion).
    mutating func loadValue() throws -> TorchValue {
        defer { arena.dismantle() }
        return try value(try load())
    }

    /// Runs the pickle to its STOP and returns the object it built; the caller dismantles the arena.
    mutating func load() throws -> Object {
        var stack: [Object] = []
        var memo: [Int: Object] = [:]
        func pop() throws -> Object {
            guard let v = stack.popLast() else { throw fail("pops an empty stack") }
            return v
        }
        func popMark() throws -> [Object] {
            guard let m = stack.lastIndex(where: { if case .mark = $0 { return true }; return false }) else { throw fail("has no MARK to pop to") }
            let items = Array(stack[(m + 1)...])
            stack.removeSubrange(m...)
            return items
        }
        func push(_ o: Object) throws {
            guard stack.count < Self.maxStack else { throw fail("has more than \(Self.maxStack) values on its stack") }
            stack.append(o)
        }
        while true {
            let op = try byte()
            switch op {
            case 0x80: // PROTO
                let v = try byte()
                guard (2...5).contains(v) else { throw fail("protocol \(v) is not supported (2 to 5 are)") }
            case 0x95: _ = try bytes(8)                         // FRAME: a hint only
            case 0x2E: return try pop()                         // STOP
            case 0x28: try push(.mark)                          // MARK
            case 0x30: _ = try pop()                            // POP
            case 0x31: _ = try popMark()                        // POP_MARK
            case 0x32: guard let top = stack.last else { throw fail("DUP on an empty stack") }; try push(top)
            case 0x4E: try push(.none)                          // NONE
            case 0x88: try push(.bool(true))
            case 0x89: try push(.bool(false))
            case 0x4A: try push(.int(Int(Int32(truncatingIfNeeded: try littleEndian(4)))))   // BININT
            case 0x4B: try push(.int(Int(try byte())))                                         // BININT1
            case 0x4D: try push(.int(Int(try littleEndian(2))))                                // BININT2
            case 0x8A, 0x8B:                                                                   // LONG1, LONG4
                let n = op == 0x8A ? Int(try byte()) : Int(Int32(truncatingIfNeeded: try littleEndian(4)))
                guard n >= 0 && n <= 8 else { throw fail("an integer of \(n) bytes is beyond 64 bits") }
                let d = try bytes(n)
                var v: UInt64 = 0
                for (i, b) in d.enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
                if n > 0 && n < 8 && d[d.startIndex + n - 1] & 0x80 != 0 { v |= ~0 << (8 * UInt64(n)) }   // sign-extend
                try push(.int(Int(bitPattern: UInt(v))))
            case 0x47: try push(.float(Double(bitPattern: try bytes(8).reduce(0) { $0 << 8 | UInt64($1) })))  // BINFLOAT, big-endian
            case 0x58, 0x8C, 0x8D:                                                             // BINUNICODE, SHORT_, 8
                let n = op == 0x8C ? Int(try byte()) : Int(clamping: try littleEndian(op == 0x58 ? 4 : 8))
                guard let s = String(data: try bytes(n), encoding: .utf8) else { throw fail("a string is not UTF-8") }
                try push(.string(s))
            case 0x55, 0x54:                                                                   // SHORT_BINSTRING, BINSTRING
                let n = op == 0x55 ? Int(try byte()) : Int(Int32(truncatingIfNeeded: try littleEndian(4)))
                try push(.string(String(decoding: try bytes(n), as: UTF8.self)))
            case 0x43, 0x42, 0x8E:                                                             // SHORT_BINBYTES, BINBYTES, 8
                let n = op == 0x43 ? Int(try byte()) : Int(clamping: try littleEndian(op == 0x42 ? 4 : 8))
                try push(.bytes([UInt8](try bytes(n))))
            case 0x5D: try push(.list(arena.box()))                                            // EMPTY_LIST
            case 0x6C: try push(.list(arena.box(try popMark())))                               // LIST
            case 0x61:                                                                         // APPEND
                let v = try pop()
                guard case .list(let b)? = stack.last else { throw fail("APPEND to something that is not a list") }
                b.items.append(v)
            case 0x65:                                                                         // APPENDS
                let vs = try popMark()
                guard case .list(let b)? = stack.last else { throw fail("APPENDS to something that is not a list") }
                b.items += vs
            case 0x29: try push(.tuple(arena.box()))                                           // EMPTY_TUPLE
            case 0x74: try push(.tuple(arena.box(try popMark())))                              // TUPLE
            case 0x85, 0x86, 0x87:                                                             // TUPLE1-3
                let n = Int(op - 0x84)
                guard stack.count >= n else { throw fail("TUPLE\(n) with \(stack.count) values on the stack") }
                let items = Array(stack.suffix(n))
                stack.removeLast(n)
                try push(.tuple(arena.box(items)))
            case 0x7D: try push(.dict(arena.dict()))                                           // EMPTY_DICT
            case 0x64:                                                                         // DICT
                let items = try popMark()
                guard items.count % 2 == 0 else { throw fail("DICT with an odd number of values") }
                let d = arena.dict()
                d.items = stride(from: 0, to: items.count, by: 2).map { (items[$0], items[$0 + 1]) }
                try push(.dict(d))
            case 0x73:                                                                         // SETITEM
                let v = try pop(), k = try pop()
                guard case .dict(let d)? = stack.last else { throw fail("SETITEM on something that is not a dict") }
                d.items.append((k, v))
            case 0x75:                                                                         // SETITEMS
                let items = try popMark()
                guard items.count % 2 == 0, case .dict(let d)? = stack.last else { throw fail("SETITEMS on something that is not a dict, or with an odd number of values") }
                for i in stride(from: 0, to: items.count, by: 2) { d.items.append((items[i], items[i + 1])) }
            case 0x8F: try push(.set(arena.box()))                                             // EMPTY_SET
            case 0x90:                                                                         // ADDITEMS
                let vs = try popMark()
                guard case .set(let b)? = stack.last else { throw fail("ADDITEMS to something that is not a set") }
                b.items += vs
            case 0x91: try push(.set(arena.box(try popMark())))                                // FROZENSET
            case 0x71, 0x72:                                                                   // BINPUT, LONG_BINPUT
                let i = op == 0x71 ? Int(try byte()) : Int(try littleEndian(4))
                guard let top = stack.last else { throw fail("PUT with an empty stack") }
                memo[i] = top
            case 0x94:                                                                         // MEMOIZE
                guard let top = stack.last else { throw fail("MEMOIZE with an empty stack") }
                memo[memo.count] = top
            case 0x68, 0x6A:                                                                   // BINGET, LONG_BINGET
                let i = op == 0x68 ? Int(try byte()) : Int(try littleEndian(4))
                guard let v = memo[i] else { throw fail("GET of memo entry \(i), which was never PUT") }
                try push(v)
            case 0x63:                                                                         // GLOBAL
                let module = try line(), name = try line()
                try push(try global(module, name))
            case 0x93:                                                                         // STACK_GLOBAL
                let n = try pop(), m = try pop()
                guard case .string(let name) = n, case .string(let module) = m else { throw fail("STACK_GLOBAL needs two strings") }
                try push(try global(module, name))
            case 0x52:                                                                         // REDUCE
                let args = try pop(), f = try pop()
                guard case .global(let name) = f, case .tuple(let a) = args else { throw fail("REDUCE of something that is not an allowed global") }
                try push(try call(name, a.items))
            case 0x81:                                                                         // NEWOBJ
                let args = try pop(), cls = try pop()
                guard case .global(let name) = cls, case .tuple(let a) = args else { throw fail("NEWOBJ of something that is not an allowed class") }
                try push(try call(name, a.items))
            case 0x62:                                                                         // BUILD
                _ = try pop()
                // Sets an object's attributes: an OrderedDict's `_metadata` (state_dict
                // versions), a tensor's Python attributes. Neither is data smil keeps.
                guard let target = stack.last else { throw fail("BUILD with an empty stack") }
                switch target {
                case .dict, .tensor: break
                default: throw fail("BUILD on \(describe(target)), which is not a dict or a tensor")
                }
            case 0x51:                                                                         // BINPERSID
                try push(try persistentLoad(try pop()))
            default:
                throw fail("opcode 0x\(String(op, radix: 16)) (\(Self.opcodeName(op))) is not allowed in a weights file")
            }
        }
    }

    func global(_ module: String, _ name: String) throws -> Object {
        let full = module + "." + name
        guard Self.allowedGlobals.contains(full) else {
            // Python pickles os.system as posix.system (nt.system on Windows): say both names.
            let shown = ["posix", "nt"].contains(module) ? "\(full) (os.\(name))" : full
            throw CoreError.file(path: file, "refused to load \(shown): the file would construct it, and only tensors, containers and numbers are allowed (a pickle can run code; torch.load(weights_only=True) refuses it too)")
        }
        return .global(full)
    }

    func describe(_ o: Object) -> String {
        switch o {
        case .none: return "None"
        case .bool: return "a bool"
        case .int: return "an int"
        case .float: return "a float"
        case .string: return "a string"
        case .bytes: return "bytes"
        case .list: return "a list"
        case .tuple: return "a tuple"
        case .dict: return "a dict"
        case .set: return "a set"
        case .global(let g): return g
        case .storage: return "a storage"
        case .tensor: return "a tensor"
        case .mark: return "a MARK"
        }
    }

    /// What an allowed global builds from its arguments.
    func call(_ name: String, _ a: [Object]) throws -> Object {
        switch name {
        case "collections.OrderedDict":
            guard a.isEmpty else { throw fail("OrderedDict with arguments") }
            return .dict(DictBox())
        case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
            guard a.count >= 4, case .storage(let s) = a[0], case .int(let offset) = a[1], case .tuple(let sizeBox) = a[2], case .tuple(let strideBox) = a[3] else {
                throw fail("\(name) needs (storage, offset, size, stride)")
            }
            if dryRun { return .tensor(.int(IntTensor([]))) }
            return .tensor(try Self.tensor(s, offset: offset, size: try ints(sizeBox.items), stride: try ints(strideBox.items), file: file))
        case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
            guard let first = a.first, case .tensor = first else { throw fail("\(name) needs a tensor") }
            return first
        case "torch.Size":
            guard a.count == 1, case .tuple = a[0] else { throw fail("torch.Size needs a tuple") }
            return a[0]
        case "torch.device":
            guard let first = a.first, case .string = first else { throw fail("torch.device needs a string") }
            return first
        case "builtins.set", "__builtin__.set", "builtins.frozenset", "__builtin__.frozenset":
            let b = arena.box()
            if let first = a.first {
                switch first {
                case .list(let l): b.items = l.items
                case .tuple(let t): b.items = t.items
                default: throw fail("set of \(describe(first))")
                }
            }
            return .set(b)
        case "_codecs.encode":
            // Protocol 2 writes bytes as encode(text, "latin1").
            guard a.count == 2, case .string(let text) = a[0], case .string(let codec) = a[1], codec == "latin1" || codec == "latin-1" else {
                throw fail("_codecs.encode other than latin1 text")
            }
            return .bytes(text.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) })
        default:
            // Storage classes are named in persistent ids, never called.
            throw fail("\(name) cannot be called")
        }
    }

    func ints(_ xs: [Object]) throws -> [Int] {
        try xs.map { x in
            guard case .int(let i) = x else { throw fail("a size or stride that is not an integer") }
            return i
        }
    }

    /// A contiguous tensor from a storage view: elements `offset + sum(i_k * stride_k)`, each
    /// checked to lie inside the storage before anything is read.
    static func tensor(_ s: TorchStorage, offset: Int, size: [Int], stride: [Int], file: String) throws -> AnyTensor {
        guard size.count == stride.count, offset >= 0, size.allSatisfy({ $0 >= 0 }), stride.allSatisfy({ $0 >= 0 }) else {
            throw CoreError.file(path: file, "a tensor has size \(shapeString(size)), stride \(shapeString(stride)) and offset \(offset): sizes, strides and offset must be non-negative and match")
        }
        let count = try Memory.checkAllocation(size, elementSize: s.dtype.isFloatingPoint ? 4 : 8, op: "load")
        if count > 0 {
            var last = offset
            for (n, st) in zip(size, stride) {
                let (span, o1) = (n - 1).multipliedReportingOverflow(by: st)
                let (sum, o2) = last.addingReportingOverflow(span)
                guard !o1 && !o2 else { last = Int.max; break }
                last = sum
            }
            guard last < s.count else {
                throw CoreError.file(path: file, "a tensor of size \(shapeString(size)), stride \(shapeString(stride)) at offset \(offset) reaches element \(last), past its storage of \(s.count) elements")
            }
        }
        // Element positions in row-major order over the view.
        let contiguous = stride == contiguousStrides(size)
        return s.bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> AnyTensor in
            let base = raw.baseAddress!
            func index(_ flat: Int) -> Int {
                if contiguous { return offset + flat }
                var rest = flat, at = offset
                for d in stride.indices.reversed() {
                    let n = size[d]
                    at += (rest % n) * stride[d]
                    rest /= n
                }
                return at
            }
            if s.dtype.isFloatingPoint {
                var t = Tensor(uninitializedShape: size)
                t.withUnsafeMutableBufferPointer { out in
                    switch s.dtype {
                    case .float32:
                        if contiguous, count > 0 { memcpy(out.baseAddress!, base + offset * 4, count * 4) }
                        else { for i in 0..<count { out[i] = base.loadUnaligned(fromByteOffset: index(i) * 4, as: Float.self) } }
                    case .float64: for i in 0..<count { out[i] = Float(base.loadUnaligned(fromByteOffset: index(i) * 8, as: Double.self)) }
                    case .float16: for i in 0..<count { out[i] = Float(Float16(bitPattern: base.loadUnaligned(fromByteOffset: index(i) * 2, as: UInt16.self))) }
                    case .bfloat16:
                        for i in 0..<count { out[i] = Float(bitPattern: UInt32(base.loadUnaligned(fromByteOffset: index(i) * 2, as: UInt16.self)) << 16) }
                    default: break
                    }
                }
                return .float(t)
            }
            var values = [Int](repeating: 0, count: count)
            for i in 0..<count {
                let at = index(i)
                switch s.dtype {
                case .int64: values[i] = Int(base.loadUnaligned(fromByteOffset: at * 8, as: Int64.self))
                case .int32: values[i] = Int(base.loadUnaligned(fromByteOffset: at * 4, as: Int32.self))
                case .int16: values[i] = Int(base.loadUnaligned(fromByteOffset: at * 2, as: Int16.self))
                case .int8: values[i] = Int(base.load(fromByteOffset: at, as: Int8.self))
                case .uint8: values[i] = Int(base.load(fromByteOffset: at, as: UInt8.self))
                case .bool: values[i] = base.load(fromByteOffset: at, as: UInt8.self) != 0 ? 1 : 0
                default: break
                }
            }
            return .int(try! IntTensor(values, shape: size))
        }
    }

    /// Converts the built object into a `TorchValue`, refusing nesting deeper than `maxNesting`
    /// (and so a container that holds itself).
    func value(_ o: Object, depth: Int = 0) throws -> TorchValue {
        guard depth < Self.maxNesting else { throw fail("nests deeper than \(Self.maxNesting) levels") }
        switch o {
        case .none: return .none
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .float(let d): return .float(d)
        case .string(let s): return .string(s)
        case .bytes(let b): return .bytes(b)
        case .list(let b), .set(let b): return .list(try b.items.map { try value($0, depth: depth + 1) })
        case .tuple(let t): return .tuple(try t.items.map { try value($0, depth: depth + 1) })
        case .dict(let d): return .dict(try d.items.map { (try value($0.0, depth: depth + 1), try value($0.1, depth: depth + 1)) })
        case .tensor(let t): return .tensor(t)
        case .global(let g): throw fail("the file holds the class \(g) itself, not data")
        case .storage(let s):
            // torch.load gives a storage object; its nearest value here is the 1-D tensor of all
            // its elements (bytes, as uint8, for an untyped storage).
            if dryRun { return .tensor(.int(IntTensor([]))) }
            return .tensor(try Self.tensor(s, offset: 0, size: [s.count], stride: [1], file: file))
        case .mark: throw fail("a MARK left on the stack")
        }
    }

    static func opcodeName(_ op: UInt8) -> String {
        let names: [UInt8: String] = [0x63: "GLOBAL", 0x69: "INST", 0x6F: "OBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4",
                                      0x92: "NEWOBJ_EX", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
                                      0x50: "PERSID", 0x49: "INT", 0x4C: "LONG", 0x46: "FLOAT", 0x53: "STRING", 0x56: "UNICODE",
                                      0x70: "PUT", 0x67: "GET"]
        return names[op] ?? "unknown"
    }
}
