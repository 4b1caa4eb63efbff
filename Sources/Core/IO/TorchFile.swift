// TorchFile.swift: PyTorch's `torch.save` files, read and written without Python. Reading takes
// the zip format (PyTorch >= 1.6: `NAME/data.pkl`, `NAME/data/KEY` storages, `NAME/byteorder`) and
// the legacy format (one pickle stream with the storages after it), through the restricted
// unpickler in Pickle.swift and the zip reader in ZipReader.swift; writing gives the zip format that
// `torch.load(weights_only=True)` reads (put together with ZIPFoundation).

import Foundation
import ZIPFoundation

public enum TorchFile {
    /// What a file's first bytes say it is.
    public enum Format: Equatable { case zip, legacy, safetensors, unknown }

    /// Recognises a zip archive (`PK\x03\x04`), a legacy torch file (a pickle whose first value is
    /// the magic number 0x1950a86a20f9469cfc6c) or safetensors (an 8-byte header length and `{`).
    public static func format(of path: String) -> Format {
        guard let h = FileHandle(forReadingAtPath: path) else { return .unknown }
        defer { try? h.close() }
        // The throwing read: Foundation's readData(ofLength:) traps on a directory.
        let head = [UInt8]((try? h.read(upToCount: 16)) ?? Data())
        if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) { return .zip }
        if head.starts(with: [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]) { return .legacy }
        if head.count >= 9, head[8] == UInt8(ascii: "{") { return .safetensors }
        return .unknown
    }

    /// Reads a `torch.save` file of either format.
    public static func read(_ path: String) throws -> TorchValue {
        switch format(of: path) {
        case .zip: return try readZip(path)
        case .legacy: return try readLegacy(path)
        case .safetensors: throw CoreError.file(path: path, "is a safetensors file, not a PyTorch pickle")
        case .unknown:
            guard FileManager.default.fileExists(atPath: path) else { throw CoreError.file(path: path, "no such file") }
            throw CoreError.file(path: path, "is not a PyTorch file (neither torch.save's zip format nor its legacy format)")
        }
    }

    // MARK: Zip format

    static func readZip(_ path: String) throws -> TorchValue {
        let archive = try ZipReader(path: path)
        let entries = archive.entries
        guard let pkl = entries.keys.filter({ $0.hasSuffix("/data.pkl") || $0 == "data.pkl" }).min(by: { $0.count < $1.count }) else {
            throw CoreError.file(path: path, "a zip archive without data.pkl: not a torch.save file")
        }
        let prefix = String(pkl.dropLast("data.pkl".count))
        func contents(_ name: String, verify: Bool) throws -> Data {
            guard let e = entries[prefix + name] else { throw CoreError.file(path: path, "the archive has no \(prefix + name)") }
            try Memory.checkAllocation([e.size], elementSize: 1, op: "load")
            return try archive.contents(e, verify: verify)
        }
        if let order = entries[prefix + "byteorder"], order.size < 16 {
            let text = String(decoding: try contents("byteorder", verify: true), as: UTF8.self)
            guard text == "little" else { throw CoreError.file(path: path, "byte order \"\(text)\" is not supported (only little-endian files)") }
        }
        var storages: [String: TorchStorage] = [:]
        var unpickler = Unpickler(data: try contents("data.pkl", verify: true), file: path) { pid in
            // ('storage', StorageType, key, location, numel)
            guard case .tuple(let box) = pid, case let t = box.items, t.count >= 5, case .string("storage") = t[0], case .global(let type) = t[1],
                  case .string(let key) = t[2], case .int(let numel) = t[4] else {
                throw CoreError.file(path: path, "pickle: a persistent id that is not a storage reference")
            }
            guard let dtype = TorchDType(storageClass: type) else {
                throw CoreError.file(path: path, "storage type \(type) is not supported")
            }
            if let s = storages[key] { return .storage(s) }
            guard numel >= 0, key.allSatisfy({ $0.isNumber || $0.isLetter || $0 == "_" }) else {
                throw CoreError.file(path: path, "a storage reference with key \"\(key)\" and \(numel) elements")
            }
            let bytes = try contents("data/" + key, verify: false)
            guard bytes.count >= numel * dtype.size else {
                throw CoreError.file(path: path, "storage \(key) holds \(bytes.count) bytes, fewer than its \(numel) \(dtype.rawValue) elements need")
            }
            let s = TorchStorage(dtype: dtype, bytes: bytes)
            storages[key] = s
            return .storage(s)
        }
        return try unpickler.loadValue()
    }

    // MARK: Legacy format

    /// PyTorch < 1.6: pickles of the magic number, the protocol version, system information and
    /// the object (storages as persistent ids), then a pickled list of storage keys, then each
    /// storage as an 8-byte element count and its bytes, in that list's order.
    static func readLegacy(_ path: String) throws -> TorchValue {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw CoreError.file(path: path, "cannot read: \(error.localizedDescription)")
        }
        // The magic number is an 80-bit LONG1 (beyond the unpickler's 64 bits): `format(of:)`
        // matched its bytes; it ends with STOP at byte 14.
        guard data.count > 15, data[data.startIndex + 14] == 0x2E else { throw CoreError.file(path: path, "malformed legacy header") }
        var position = 15
        func next(dryRun: Bool = false, _ load: @escaping (Unpickler.Object) throws -> Unpickler.Object) throws -> TorchValue {
            var u = Unpickler(data: data, file: path, start: position, persistentLoad: load)
            u.dryRun = dryRun
            let v = try u.loadValue()
            position = u.position
            return v
        }
        let noStorage: (Unpickler.Object) throws -> Unpickler.Object = { _ in throw CoreError.file(path: path, "pickle: an unexpected storage reference") }
        _ = try next(noStorage)   // protocol version
        _ = try next(noStorage)   // sys_info: byte order and type sizes
        // The object refers to storages whose bytes come after it: a first pass finds them (and
        // the object's end) without building tensors.
        let objectStart = position
        var dtypes: [String: (dtype: TorchDType, numel: Int)] = [:]
        typealias Reference = (key: String, dtype: TorchDType, numel: Int, view: (key: String, offset: Int, count: Int)?)
        func reference(_ pid: Unpickler.Object) throws -> Reference {
            // ('storage', StorageType, root_key, location, size, view_metadata), where
            // view_metadata is None or (view_key, offset, size) in elements of the root storage
            // (PyTorch before 1.0 saved storage views so; later versions always write None).
            guard case .tuple(let box) = pid, case let t = box.items, t.count >= 5, case .string("storage") = t[0], case .global(let type) = t[1],
                  case .string(let key) = t[2], case .int(let numel) = t[4], numel >= 0 else {
                throw CoreError.file(path: path, "pickle: a persistent id that is not a storage reference")
            }
            guard let dtype = TorchDType(storageClass: type) else {
                throw CoreError.file(path: path, "storage type \(type) is not supported")
            }
            guard t.count > 5, case .tuple(let viewBox) = t[5] else { return (key, dtype, numel, nil) }
            guard viewBox.items.count == 3, case .string(let viewKey) = viewBox.items[0], case .int(let offset) = viewBox.items[1],
                  case .int(let count) = viewBox.items[2], offset >= 0, count >= 0, offset <= numel, count <= numel - offset else {
                throw CoreError.file(path: path, "storage \(key): a view (view_metadata) that is not (key, offset, size) inside its \(numel) elements")
            }
            return (key, dtype, numel, (viewKey, offset, count))
        }
        _ = try next(dryRun: true) { pid in
            let r = try reference(pid)
            if let known = dtypes[r.key], known.dtype != r.dtype || known.numel != r.numel {
                throw CoreError.file(path: path, "storage \(r.key) is referred to as \(known.numel) \(known.dtype.rawValue) and as \(r.numel) \(r.dtype.rawValue)")
            }
            dtypes[r.key] = (r.dtype, r.numel)
            return .storage(TorchStorage(dtype: r.dtype, bytes: Data()))
        }
        guard case .list(let keys) = try next(noStorage) else { throw CoreError.file(path: path, "the storage key list is missing") }
        var storages: [String: TorchStorage] = [:]
        for k in keys {
            guard case .string(let key) = k, let (dtype, numel) = dtypes[key] else {
                throw CoreError.file(path: path, "the storage key list names a storage the object does not use")
            }
            guard data.count - position >= 8 else { throw CoreError.file(path: path, "truncated before storage \(key)") }
            let count = Int(truncatingIfNeeded: data[(data.startIndex + position)..<(data.startIndex + position + 8)].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
            position += 8
            let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.size)
            guard count >= numel, !overflow, bytes <= data.count - position else {
                throw CoreError.file(path: path, "storage \(key) claims \(count) elements, past the end of the file (truncated?)")
            }
            storages[key] = TorchStorage(dtype: dtype, bytes: data.subdata(in: (data.startIndex + position)..<(data.startIndex + position + bytes)))
            position += bytes
        }
        var views: [String: TorchStorage] = [:]
        var u = Unpickler(data: data, file: path, start: objectStart) { pid in
            let r = try reference(pid)
            guard let s = storages[r.key] else { throw CoreError.file(path: path, "storage \(r.key) has no bytes in the file") }
            guard let view = r.view else { return .storage(s) }
            // A view shares its root's bytes; each view key is one storage, as torch.load makes it.
            if let v = views[view.key] { return .storage(v) }
            let v = TorchStorage(dtype: s.dtype, bytes: s.bytes.subdata(in: (s.bytes.startIndex + view.offset * s.dtype.size)..<(s.bytes.startIndex + (view.offset + view.count) * s.dtype.size)))
            views[view.key] = v
            return .storage(v)
        }
        return try u.loadValue()
    }

    // MARK: Writing

    /// Writes `value` in torch.save's zip format (protocol 2 pickle, one storage per tensor:
    /// float tensors as float32, integer tensors as int64), readable by
    /// `torch.load(path, weights_only=True)`. Written to a temporary file, synced and renamed.
    public static func write(_ value: TorchValue, to path: String) throws {
        var storages: [Data] = []
        var pickle = Pickler()
        try pickle.write(value, storages: &storages)
        pickle.op(0x2E)   // STOP
        try writeArchive(pickle: pickle.bytes, storages: storages, to: path)
    }

    /// Puts a pickle and its storages (`data/0`, `data/1`, ...) into torch.save's archive layout.
    static func writeArchive(pickle: Data, storages: [Data], to path: String) throws {
        let name = "archive"
        let fm = FileManager.default
        let url = URL(fileURLWithPath: path)
        // The archive is put together in the temporary folder, then written in one piece.
        let temp = fm.temporaryDirectory.appendingPathComponent("smil-\(getpid())-\(UInt32.random(in: 0...UInt32.max))-\(url.lastPathComponent).zip")
        try? fm.removeItem(at: temp)
        defer { try? fm.removeItem(at: temp) }
        do {
            let archive = try Archive(url: temp, accessMode: .create)
            func add(_ entry: String, _ data: Data) throws {
                try archive.addEntry(with: "\(name)/\(entry)", type: .file, uncompressedSize: Int64(data.count), compressionMethod: .none) { pos, size in
                    data.subdata(in: Int(pos)..<(Int(pos) + size))
                }
            }
            try add("data.pkl", pickle)
            try add("byteorder", Data("little".utf8))
            for (i, s) in storages.enumerated() { try add("data/\(i)", s) }
            try add("version", Data("3\n".utf8))
        } catch {
            throw CoreError.file(path: path, "cannot write: \(error)")
        }
        let data = try Data(contentsOf: temp)
        try writeAtomically(data, to: path)
    }
}

/// Writes protocol-2 pickles of `TorchValue`s, tensors as `torch._utils._rebuild_tensor_v2` calls
/// on storages referenced by persistent id, as torch.save does.
struct Pickler {
    var bytes = Data([0x80, 0x02])
    var memoCount = 0

    mutating func op(_ b: UInt8) { bytes.append(b) }
    mutating func int32(_ v: Int) { withUnsafeBytes(of: Int32(v).littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func string(_ s: String) {
        let u = Array(s.utf8)
        op(0x58); int32(u.count); bytes.append(contentsOf: u)
    }
    mutating func int(_ v: Int) {
        if v >= 0 && v < 256 { op(0x4B); op(UInt8(v)) }
        else if v >= Int(Int32.min) && v <= Int(Int32.max) { op(0x4A); int32(v) }
        else { op(0x8A); op(8); withUnsafeBytes(of: Int64(v).littleEndian) { bytes.append(contentsOf: $0) } }
    }
    mutating func global(_ module: String, _ name: String) {
        op(0x63); bytes.append(contentsOf: Array((module + "\n" + name + "\n").utf8))
    }
    mutating func tuple(_ items: [Int]) {
        op(0x28); for i in items { int(i) }; op(0x74)
    }

    mutating func write(_ v: TorchValue, storages: inout [Data], depth: Int = 0) throws {
        guard depth < 1000 else { throw CoreError.invalidArgument(op: "save", "the value nests deeper than 1000 levels") }
        switch v {
        case .none: op(0x4E)
        case .bool(let b): op(b ? 0x88 : 0x89)
        case .int(let i): int(i)
        case .float(let d): op(0x47); withUnsafeBytes(of: d.bitPattern.bigEndian) { bytes.append(contentsOf: $0) }
        case .string(let s): string(s)
        case .bytes(let b):
            // Protocol 2 has no bytes opcode that Python 3 reads as bytes: encode(text, "latin1").
            global("_codecs", "encode")
            string(String(String.UnicodeScalarView(b.map { Unicode.Scalar($0) })))
            string("latin1")
            op(0x86); op(0x52)
        case .list(let xs):
            op(0x5D)
            if !xs.isEmpty { op(0x28); for x in xs { try write(x, storages: &storages, depth: depth + 1) }; op(0x65) }
        case .tuple(let xs):
            op(0x28); for x in xs { try write(x, storages: &storages, depth: depth + 1) }; op(0x74)
        case .dict(let items):
            op(0x7D)
            if !items.isEmpty {
                op(0x28)
                for (k, x) in items { try write(k, storages: &storages, depth: depth + 1); try write(x, storages: &storages, depth: depth + 1) }
                op(0x75)
            }
        case .tensor(let t):
            let key = storages.count
            let type: String
            switch t {
            case .float(let f):
                type = "FloatStorage"
                storages.append(f.withUnsafeBufferPointer { Data(buffer: $0) })
            case .int(let i):
                type = "LongStorage"
                storages.append(i.scalars.map { Int64($0).littleEndian }.withUnsafeBufferPointer { Data(buffer: $0) })
            }
            global("torch._utils", "_rebuild_tensor_v2")
            op(0x28)
            // Persistent id: ('storage', torch.FloatStorage, 'KEY', 'cpu', numel).
            op(0x28); string("storage"); global("torch", type); string(String(key)); string("cpu"); int(t.shape.reduce(1, *)); op(0x74); op(0x51)
            int(0)
            tuple(t.shape)
            tuple(contiguousStrides(t.shape))
            op(0x89)
            global("collections", "OrderedDict"); op(0x29); op(0x52)
            op(0x74); op(0x52)
        }
    }
}
