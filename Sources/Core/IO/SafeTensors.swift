// SafeTensors.swift: reading and writing the safetensors format (F32, F16, BF16, I64, I32), with
// every header field checked against the file before anything is allocated.

import Foundation

/// A safetensors file: named tensors in file order plus the free-form `__metadata__` strings.
public struct SafeTensors {
    public var tensors: [(name: String, tensor: AnyTensor)]
    public var metadata: [String: String]

    public init(tensors: [(name: String, tensor: AnyTensor)] = [], metadata: [String: String] = [:]) {
        self.tensors = tensors
        self.metadata = metadata
    }

    /// The tensors by name.
    public var dictionary: [String: AnyTensor] {
        Dictionary(tensors.map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
    }

    /// The float tensor `name`, or an error naming the file and the key.
    public func float(_ name: String, file: String = "safetensors") throws -> Tensor {
        guard let t = tensors.first(where: { $0.name == name })?.tensor else {
            throw CoreError.file(path: file, "no tensor named \"\(name)\"")
        }
        return t.asFloat
    }

    /// The integer tensor `name`.
    public func int(_ name: String, file: String = "safetensors") throws -> IntTensor {
        guard let t = tensors.first(where: { $0.name == name })?.tensor else {
            throw CoreError.file(path: file, "no tensor named \"\(name)\"")
        }
        switch t {
        case .int(let i): return i
        case .float(let f): return f.long()
        }
    }

    /// The largest header accepted (100 MB, as the reference implementation).
    static let maxHeader = 100_000_000

    /// Reads and validates a file.
    public static func read(_ path: String) throws -> SafeTensors {
        guard let data = FileManager.default.contents(atPath: path) else {
            var folder: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &folder) {
                throw CoreError.file(path: path, folder.boolValue ? "is a folder, not a file" : "cannot read the file (permission?)")
            }
            throw CoreError.file(path: path, "no such file")
        }
        return try parse(data, path: path)
    }

    /// Parses the bytes of a safetensors file; `path` is used in error messages.
    public static func parse(_ data: Data, path: String = "<data>") throws -> SafeTensors {
        func fail(_ msg: String) -> CoreError { .file(path: path, "not a valid safetensors file: \(msg)") }
        guard data.count >= 8 else { throw fail("\(data.count) bytes is shorter than the 8-byte header length") }
        let n = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard n <= UInt64(maxHeader) else { throw fail("header length \(n) exceeds the 100 MB limit") }
        guard n <= UInt64(data.count - 8) else { throw fail("header length \(n) is longer than the \(data.count - 8) bytes after it") }
        let headerBytes = data.subdata(in: 8..<(8 + Int(n)))
        guard let json = try? JSONSerialization.jsonObject(with: headerBytes), let header = json as? [String: Any] else {
            throw fail("the header is not a JSON object")
        }
        let body = data.subdata(in: (8 + Int(n))..<data.count)
        var metadata: [String: String] = [:]
        if let meta = header["__metadata__"] {
            guard let m = meta as? [String: Any] else { throw fail("__metadata__ is not an object") }
            for (k, v) in m {
                guard let s = v as? String else { throw fail("__metadata__ value for \"\(k)\" is not a string") }
                metadata[k] = s
            }
        }
        var entries: [(name: String, begin: Int, tensor: AnyTensor)] = []
        for (name, value) in header where name != "__metadata__" {
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                  let shapeAny = info["shape"] as? [Any], let offsetsAny = info["data_offsets"] as? [Any] else {
                throw fail("entry \"\(name)\" needs dtype, shape and data_offsets")
            }
            let shape = try shapeAny.map { v -> Int in
                guard let i = (v as? NSNumber)?.intValue, i >= 0, Double(i) == (v as? NSNumber)?.doubleValue else {
                    throw fail("entry \"\(name)\" has a bad shape \(shapeAny)")
                }
                return i
            }
            let offsets = try offsetsAny.map { v -> Int in
                guard let i = (v as? NSNumber)?.intValue, i >= 0 else { throw fail("entry \"\(name)\" has bad data_offsets \(offsetsAny)") }
                return i
            }
            guard offsets.count == 2, offsets[0] <= offsets[1] else { throw fail("entry \"\(name)\" has bad data_offsets \(offsetsAny)") }
            guard offsets[1] <= body.count else {
                throw fail("entry \"\(name)\" ends at byte \(offsets[1]) but the data is \(body.count) bytes long")
            }
            let width: Int
            switch dtype {
            case "F32", "I32": width = 4
            case "F16", "BF16": width = 2
            case "I64": width = 8
            default: throw fail("entry \"\(name)\" has unsupported dtype \(dtype) (F32, F16, BF16, I64, I32 are supported)")
            }
            // Overflow-checked element count, so a lying shape cannot cause a huge allocation.
            var count = 1
            for d in shape {
                let (p, o) = count.multipliedReportingOverflow(by: d)
                guard !o, p <= body.count else { throw fail("entry \"\(name)\" shape \(shapeString(shape)) does not fit the data") }
                count = p
            }
            guard count * width == offsets[1] - offsets[0] else {
                throw fail("entry \"\(name)\" has \(offsets[1] - offsets[0]) bytes but \(dtype) \(shapeString(shape)) needs \(count * width)")
            }
            let bytes = body.subdata(in: offsets[0]..<offsets[1])
            let tensor: AnyTensor = try bytes.withUnsafeBytes { raw in
                switch dtype {
                case "F32":
                    var t = Tensor(uninitializedShape: shape)
                    t.withUnsafeMutableBufferPointer { dst in
                        for i in 0..<count { dst[i] = Float(bitPattern: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self).littleEndian) }
                    }
                    return .float(t)
                case "F16":
                    var t = Tensor(uninitializedShape: shape)
                    t.withUnsafeMutableBufferPointer { dst in
                        for i in 0..<count { dst[i] = Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian)) }
                    }
                    return .float(t)
                case "BF16":
                    var t = Tensor(uninitializedShape: shape)
                    t.withUnsafeMutableBufferPointer { dst in
                        for i in 0..<count {
                            dst[i] = Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) << 16)
                        }
                    }
                    return .float(t)
                case "I64":
                    return .int(try IntTensor((0..<count).map { Int(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))) }, shape: shape))
                default:
                    return .int(try IntTensor((0..<count).map { Int(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }, shape: shape))
                }
            }
            entries.append((name, offsets[0], tensor))
        }
        entries.sort { ($0.begin, $0.name) < ($1.begin, $1.name) }
        return SafeTensors(tensors: entries.map { ($0.name, $0.tensor) }, metadata: metadata)
    }

    /// How float tensors are stored.
    public enum FloatFormat: String { case f32 = "F32", f16 = "F16", bf16 = "BF16" }

    /// The file's bytes: float tensors as `floatFormat` (F32 by default), integer tensors as I64,
    /// header padded to 8 bytes. BF16 rounds to nearest even.
    public func serialized(floatFormat: FloatFormat = .f32) throws -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var body = Data()
        var seen = Set<String>()
        for (name, t) in tensors {
            guard seen.insert(name).inserted else { throw CoreError.invalidArgument(op: "save", "duplicate tensor name \"\(name)\"") }
            let begin = body.count
            switch t {
            case .float(let f):
                f.withUnsafeBufferPointer { p in
                    for v in p {
                        switch floatFormat {
                        case .f32: withUnsafeBytes(of: v.bitPattern.littleEndian) { body.append(contentsOf: $0) }
                        case .f16: withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { body.append(contentsOf: $0) }
                        case .bf16:
                            let bits = v.bitPattern
                            let rounded = v.isNaN ? UInt16(0x7FC0) : UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
                            withUnsafeBytes(of: rounded.littleEndian) { body.append(contentsOf: $0) }
                        }
                    }
                }
                header[name] = ["dtype": floatFormat.rawValue, "shape": f.shape, "data_offsets": [begin, body.count]]
            case .int(let i):
                for v in i.scalars { withUnsafeBytes(of: Int64(v).littleEndian) { body.append(contentsOf: $0) } }
                header[name] = ["dtype": "I64", "shape": i.shape, "data_offsets": [begin, body.count]]
            }
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        out.append(body)
        return out
    }

    /// Writes the file atomically: to a temporary file beside it, then renamed over the target.
    public func write(to path: String, floatFormat: FloatFormat = .f32) throws {
        let data = try serialized(floatFormat: floatFormat)
        try writeAtomically(data, to: path)
    }
}

/// Writes `data` to a temporary file in the target's folder, syncs it, renames it into place and
/// syncs the folder (SQLite's rule), so that neither a crash nor a power cut leaves a half-written
/// file, or a new name pointing at an empty one, where a good file was.
public func writeAtomically(_ data: Data, to path: String) throws {
    try writeAtomically(data, to: path, sync: { fsync($0) })
}

/// `writeAtomically`, with the sync call given (tests record which descriptors are synced, and when).
func writeAtomically(_ data: Data, to requested: String, sync: (Int32) -> Int32) throws {
    func failure(_ what: String) -> CoreError { CoreError.file(path: requested, "\(what): \(String(cString: strerror(errno)))") }
    func writeAll(_ fd: Int32) throws {
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            var done = 0
            while done < raw.count {
                let n = write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw failure("cannot write") }
                done += n
            }
        }
    }
    // A symbolic link is followed, so that the link stays and its target is replaced.
    let path = (try? FileManager.default.destinationOfSymbolicLink(atPath: requested)).map {
        $0.hasPrefix("/") ? $0 : (URL(fileURLWithPath: requested).deletingLastPathComponent().path as NSString).appendingPathComponent($0)
    } ?? requested
    var st = stat()
    if stat(path, &st) == 0 {
        let kind = st.st_mode & S_IFMT
        if kind == S_IFDIR { throw CoreError.file(path: requested, "is a folder, not a file") }
        if kind != S_IFREG {
            // A device or a pipe (/dev/null, /dev/stdout): written into, never replaced by a rename.
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { throw failure("cannot open") }
            defer { close(fd) }
            try writeAll(fd)
            return
        }
    }
    let url = URL(fileURLWithPath: path)
    let folder = url.deletingLastPathComponent().path
    let tmp = (folder as NSString).appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw failure("cannot create a temporary file in \(folder)") }
    var renamed = false
    defer { if !renamed { unlink(tmp) } }
    do {
        defer { close(fd) }
        try writeAll(fd)
        guard sync(fd) == 0 else { throw failure("cannot sync the temporary file") }
    }
    guard rename(tmp, path) == 0 else { throw failure("cannot rename the temporary file into place") }
    renamed = true
    let dir = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard dir >= 0 else { throw failure("cannot open the folder to sync the new name") }
    defer { close(dir) }
    guard sync(dir) == 0 else { throw failure("cannot sync the folder") }
}

extension Module {
    /// Loads a safetensors file into this module (see `loadStateDict`).
    @discardableResult
    public func load(safetensors path: String, strict: Bool = true) throws -> (missing: [String], unexpected: [String]) {
        try loadStateDict(SafeTensors.read(path).dictionary, strict: strict)
    }

    /// Saves the state dict as safetensors, with optional metadata.
    public func save(safetensors path: String, metadata: [String: String] = [:]) throws {
        try SafeTensors(tensors: stateDict().map { ($0.0, $0.1) }, metadata: metadata).write(to: path)
    }
}
