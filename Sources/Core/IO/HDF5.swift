// HDF5.swift: HDF5 files through the C library (CSlideIO's wrappers), laid out as h5py lays them
// out, and CLAM's patch files (`patches/SLIDE.h5`: dataset `coords` with the tiling attributes).

import Foundation
import CSlideIO

/// An attribute value as h5py would give it back.
public enum H5Attribute: Equatable, Sendable {
    case int(Int)
    case float(Double)
    case ints([Int])
    case floats([Double])
    case string(String)
}

/// An open HDF5 file. HDF5's serial library is not thread-safe: every call holds one lock.
public final class HDF5File {
    public let path: String
    let id: Int64
    static let lock = NSLock()

    public enum Mode { case read, readWrite, create }

    public init(_ path: String, mode: Mode = .read) throws {
        self.path = path
        if mode != .create && !FileManager.default.fileExists(atPath: path) { throw CoreError.file(path: path, "no such HDF5 file") }
        var message = [CChar](repeating: 0, count: 512)
        let m: Int32 = mode == .read ? 0 : (mode == .readWrite ? 1 : 2)
        let id = Self.lock.withLock { smil_h5_open(path, m, &message, Int32(message.count)) }
        guard id >= 0 else { throw CoreError.file(path: path, String(cString: message)) }
        self.id = id
    }

    deinit { _ = Self.lock.withLock { smil_h5_close(id) } }

    func call<R>(_ body: (UnsafeMutablePointer<CChar>, Int32) -> R, failed: (R) -> Bool) throws -> R {
        var message = [CChar](repeating: 0, count: 512)
        let r = Self.lock.withLock { message.withUnsafeMutableBufferPointer { body($0.baseAddress!, Int32($0.count)) } }
        if failed(r) { throw CoreError.file(path: path, String(cString: message)) }
        return r
    }

    /// Writes a float32 dataset (replacing one of the same name).
    public func write(_ name: String, _ t: Tensor, chunkRows: Int = 4096) throws {
        let dims = t.shape.map(Int64.init)
        guard !dims.isEmpty else { throw CoreError.invalidArgument(op: "h5", "dataset \(name) needs at least one dimension") }
        _ = try t.withUnsafeBufferPointer { p in
            try call({ smil_h5_write_dataset(id, name, Int32(SMIL_H5_F32), Int32(dims.count), dims, p.baseAddress, Int64(max(1, min(chunkRows, t.shape[0]))), $0, $1) }, failed: { $0 == 0 })
        }
    }

    /// Writes an int64 dataset.
    public func write(_ name: String, _ t: IntTensor, chunkRows: Int = 4096) throws {
        let dims = t.shape.map(Int64.init)
        guard !dims.isEmpty else { throw CoreError.invalidArgument(op: "h5", "dataset \(name) needs at least one dimension") }
        let values = t.scalars.map(Int64.init)
        _ = try values.withUnsafeBufferPointer { p in
            try call({ smil_h5_write_dataset(id, name, Int32(SMIL_H5_I64), Int32(dims.count), dims, p.baseAddress, Int64(max(1, min(chunkRows, t.shape[0]))), $0, $1) }, failed: { $0 == 0 })
        }
    }

    /// Appends rows to a float32 or int64 dataset (its first dimension grows).
    public func append(_ name: String, _ t: Tensor) throws {
        _ = try t.withUnsafeBufferPointer { p in
            try call({ smil_h5_append_rows(id, name, Int32(SMIL_H5_F32), Int64(t.shape.first ?? 0), p.baseAddress, $0, $1) }, failed: { $0 == 0 })
        }
    }

    public func append(_ name: String, _ t: IntTensor) throws {
        let values = t.scalars.map(Int64.init)
        _ = try values.withUnsafeBufferPointer { p in
            try call({ smil_h5_append_rows(id, name, Int32(SMIL_H5_I64), Int64(t.shape.first ?? 0), p.baseAddress, $0, $1) }, failed: { $0 == 0 })
        }
    }

    public func has(_ name: String) -> Bool { Self.lock.withLock { smil_h5_has_dataset(id, name) == 1 } }

    /// The datasets at the root, sorted.
    public var datasetNames: [String] {
        get throws {
            let text = try listing { smil_h5_dataset_names(id, $0, $1, $2, $3) }
            return text.split(separator: "\n").map(String.init).sorted()
        }
    }

    func listing(_ body: (UnsafeMutablePointer<CChar>?, Int64, UnsafeMutablePointer<CChar>, Int32) -> Int64) throws -> String {
        var size: Int64 = 1024
        while true {
            var buffer = [CChar](repeating: 0, count: Int(size))
            let needed = try call({ m, n in buffer.withUnsafeMutableBufferPointer { body($0.baseAddress, size, m, n) } }, failed: { $0 < 0 })
            if needed <= size { return String(decoding: buffer.prefix(Int(needed)).map { UInt8(bitPattern: $0) }, as: UTF8.self) }
            size = needed
        }
    }

    /// A dataset's shape and whether it holds floating-point numbers.
    public func shape(_ name: String) throws -> (shape: [Int], isFloat: Bool) {
        var dims = [Int64](repeating: 0, count: 8)
        var isFloat: Int32 = 0, size: Int32 = 0
        let rank = try call({ smil_h5_dataset_shape(id, name, &dims, &isFloat, &size, $0, $1) }, failed: { $0 < 0 })
        guard isFloat >= 0 else { throw CoreError.file(path: path, "dataset \(name) holds neither integers nor floating-point numbers") }
        return (dims.prefix(Int(rank)).map { Int($0) }, isFloat == 1)
    }

    func checkedCount(_ shape: [Int], _ name: String) throws -> Int {
        guard shape.allSatisfy({ $0 >= 0 }) else { throw CoreError.file(path: path, "dataset \(name) has a negative dimension") }
        return try Memory.checkAllocation(shape, elementSize: 8, op: "h5 dataset \(name)")
    }

    /// Reads a dataset as float32 (integers converted).
    public func readFloats(_ name: String) throws -> Tensor {
        let (shape, _) = try self.shape(name)
        let n = try checkedCount(shape, name)
        var values = [Float](repeating: 0, count: n)
        if n > 0 { _ = try values.withUnsafeMutableBytes { p in try call({ smil_h5_read_dataset(id, name, Int32(SMIL_H5_F32), p.baseAddress, $0, $1) }, failed: { $0 == 0 }) } }
        return try Tensor(values, shape: shape)
    }

    /// Reads a dataset as int64 (an error for floating-point data).
    public func readInts(_ name: String) throws -> IntTensor {
        let (shape, isFloat) = try self.shape(name)
        guard !isFloat else { throw CoreError.file(path: path, "dataset \(name) holds floating-point numbers, integers expected") }
        let n = try checkedCount(shape, name)
        var values = [Int64](repeating: 0, count: n)
        if n > 0 { _ = try values.withUnsafeMutableBytes { p in try call({ smil_h5_read_dataset(id, name, Int32(SMIL_H5_I64), p.baseAddress, $0, $1) }, failed: { $0 == 0 }) } }
        return try IntTensor(values.map { Int($0) }, shape: shape)
    }

    /// Sets an attribute on a dataset (or on the file, with `object: "/"`).
    public func setAttribute(_ name: String, _ value: H5Attribute, on object: String = "/") throws {
        switch value {
        case .string(let s):
            _ = try call({ smil_h5_write_string_attribute(id, object, name, s, $0, $1) }, failed: { $0 == 0 })
        case .int(let v):
            var x = Int64(v)
            _ = try call({ smil_h5_write_attribute(id, object, name, Int32(SMIL_H5_I64), 0, &x, $0, $1) }, failed: { $0 == 0 })
        case .float(let v):
            var x = v
            _ = try call({ smil_h5_write_attribute(id, object, name, Int32(SMIL_H5_F64), 0, &x, $0, $1) }, failed: { $0 == 0 })
        case .ints(let vs):
            let xs = vs.map(Int64.init)
            _ = try call({ smil_h5_write_attribute(id, object, name, Int32(SMIL_H5_I64), Int64(xs.count), xs, $0, $1) }, failed: { $0 == 0 })
        case .floats(let vs):
            _ = try call({ smil_h5_write_attribute(id, object, name, Int32(SMIL_H5_F64), Int64(vs.count), vs, $0, $1) }, failed: { $0 == 0 })
        }
    }

    /// Every attribute of an object, by name.
    public func attributes(of object: String = "/") throws -> [String: H5Attribute] {
        let names = try listing { smil_h5_attribute_names(id, object, $0, $1, $2, $3) }.split(separator: "\n").map(String.init)
        var out: [String: H5Attribute] = [:]
        for name in names {
            var kind: Int32 = 0, count: Int64 = 0
            _ = try call({ smil_h5_attribute_info(id, object, name, &kind, &count, $0, $1) }, failed: { $0 == 0 })
            switch kind {
            case 2:
                out[name] = .string(try listing { buffer, size, m, n in smil_h5_read_string_attribute(id, object, name, buffer, size, m, n) }
                    .trimmingCharacters(in: CharacterSet(charactersIn: "\0")))
            case 0, 1:
                guard count >= 1, count <= 1 << 20 else { continue }
                var values = [Double](repeating: 0, count: Int(count))
                _ = try call({ smil_h5_read_attribute(id, object, name, &values, $0, $1) }, failed: { $0 == 0 })
                // A one-element attribute is read back as a scalar, as h5py gives numpy scalars.
                if kind == 0 {
                    let ints = values.map { Int($0) }
                    out[name] = ints.count == 1 ? .int(ints[0]) : .ints(ints)
                } else {
                    out[name] = values.count == 1 ? .float(values[0]) : .floats(values)
                }
            default: continue
            }
        }
        return out
    }
}

/// Writes a file that a C library produces at a path: into a temporary file beside it, synced,
/// then renamed over the destination, so a crash never leaves half a file under the real name.
func replaceAtomically(_ path: String, _ produce: (String) throws -> Void) throws {
    let url = URL(fileURLWithPath: path)
    let folder = url.deletingLastPathComponent().path
    let tmp = (folder as NSString).appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    var renamed = false
    defer { if !renamed { unlink(tmp) } }
    try produce(tmp)
    let fd = open(tmp, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw CoreError.file(path: path, "cannot reopen the temporary file to sync it") }
    let synced = fsync(fd) == 0
    close(fd)
    guard synced else { throw CoreError.file(path: path, "cannot sync the temporary file: \(String(cString: strerror(errno)))") }
    guard rename(tmp, path) == 0 else { throw CoreError.file(path: path, "cannot rename the temporary file into place: \(String(cString: strerror(errno)))") }
    renamed = true
    let dir = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dir >= 0 { _ = fsync(dir); close(dir) }
}

/// Writing a whole HDF5 file atomically.
public enum H5Writing {
    /// Creates a fresh file beside `path`, lets `body` fill it, closes and syncs it, and renames it
    /// over `path`.
    public static func replace(_ path: String, _ body: (HDF5File) throws -> Void) throws {
        try replaceAtomically(path) { tmp in
            let file = try HDF5File(tmp, mode: .create)
            try body(file)
        }
    }
}

/// CLAM's patch file: `coords` (int64 `[N, 2]`, level-0 x, y) with the tiling's attributes.
public struct PatchFile {
    public var coords: IntTensor
    public var attributes: [String: H5Attribute]

    public init(coords: IntTensor, attributes: [String: H5Attribute]) {
        self.coords = coords
        self.attributes = attributes
    }

    /// The attributes CLAM's create_patches_fp.py writes, for tiles of `geometry` on `slide`.
    public static func attributes(slide: WholeSlideImage, geometry g: TileGeometry, savePath: String) -> [String: H5Attribute] {
        let (lw, lh) = slide.levelDimensions[g.level]
        var a: [String: H5Attribute] = [
            "patch_size": .int(g.readSize), "patch_level": .int(g.level),
            "downsample": .floats([g.downsample.x, g.downsample.y]),
            "downsampled_level_dim": .ints([lw, lh]), "level_dim": .ints([lw, lh]),
            "name": .string(slide.slideID), "save_path": .string(savePath),
        ]
        if g.outputSize != g.readSize { a["target_patch_size"] = .int(g.outputSize) }
        if g.stride != g.extent { a["step_size"] = .int(g.stride / max(1, Int(g.downsample.x))) }
        return a
    }

    public var patchSize: Int? { if case .int(let v)? = attributes["patch_size"] { return v }; return nil }
    public var patchLevel: Int? { if case .int(let v)? = attributes["patch_level"] { return v }; return nil }

    /// The tiles' level-0 (x, y).
    public var points: [Point] { (0..<coords.shape[0]).map { Point(coords.scalars[2 * $0], coords.scalars[2 * $0 + 1]) } }

    /// How the file's tiles are read from `slide`: `patch_size` pixels at `patch_level`, resized to
    /// `target_patch_size` and `step_size` apart where the file says so. `path` names the file in errors.
    public func geometry(on slide: WholeSlideImage, path: String) throws -> TileGeometry {
        guard let size = patchSize, let level = patchLevel else {
            throw CoreError.file(path: path, "patch file has no patch_size or patch_level attribute on coords")
        }
        var g = try TileGeometry(slide: slide, size: size, level: level)
        if case .int(let target)? = attributes["target_patch_size"] { g.outputSize = target }
        if case .int(let step)? = attributes["step_size"] { g.stride = step * Int(g.downsample.x) }
        return g
    }

    /// Writes the file atomically.
    public func write(to path: String) throws {
        guard coords.rank == 2, coords.shape[1] == 2 else {
            throw CoreError.shapeMismatch(op: "write_patches_h5", "coords must be [N, 2], got \(shapeString(coords.shape))")
        }
        try replaceAtomically(path) { tmp in
            let file = try HDF5File(tmp, mode: .create)
            try file.write("coords", coords, chunkRows: 1024)
            for (k, v) in attributes.sorted(by: { $0.key < $1.key }) { try file.setAttribute(k, v, on: "coords") }
        }
    }

    /// Reads CLAM's patch file (or any h5 with an integer `coords` [N, 2] dataset).
    public static func read(_ path: String) throws -> PatchFile {
        let file = try HDF5File(path)
        guard file.has("coords") else { throw CoreError.file(path: path, "no coords dataset (not a CLAM patch file)") }
        let coords = try file.readInts("coords")
        guard coords.rank == 2, coords.shape[1] == 2 else {
            throw CoreError.file(path: path, "coords must be [N, 2], got \(shapeString(coords.shape))")
        }
        return PatchFile(coords: coords, attributes: try file.attributes(of: "coords"))
    }
}
