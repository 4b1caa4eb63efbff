// SafeTensorsTests.swift: round trips, every dtype, and corrupt files that must give errors.

import XCTest
import Foundation
@testable import Core
import TestSupport

final class SafeTensorsTests: XCTestCase {
    var dir: URL!

    override func setUp() {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("smil-st-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    /// A file with a hand-written header and body.
    func raw(_ header: String, _ body: [UInt8]) -> Data {
        var d = Data()
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { d.append(contentsOf: $0) }
        d.append(contentsOf: Array(header.utf8))
        d.append(contentsOf: body)
        return d
    }

    /// A checkpoint survives a power cut: the new bytes are synced before the rename, and the
    /// folder (which holds the name) after it; nothing is left beside the target.
    /// A device is written into, never replaced (a rename onto /dev/null would make it a file
    /// for every program on the machine); a symbolic link stays a link; a folder is refused.
    func testAtomicWriteKeepsDevicesLinksAndFolders() throws {
        try writeAtomically(Data("discarded".utf8), to: "/dev/null")
        var st = stat()
        XCTAssertEqual(stat("/dev/null", &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFCHR, "/dev/null is still a device")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smil-atomic-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("old".utf8).write(to: URL(fileURLWithPath: dir + "/target"))
        try FileManager.default.createSymbolicLink(atPath: dir + "/link", withDestinationPath: "target")
        try writeAtomically(Data("new".utf8), to: dir + "/link")
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: dir + "/link"), "target")
        XCTAssertEqual(try String(contentsOfFile: dir + "/target", encoding: .utf8), "new")
        XCTAssertThrowsError(try writeAtomically(Data("x".utf8), to: dir)) { XCTAssertTrue("\($0)".contains("is a folder"), "\($0)") }
    }

    func testAtomicWriteSyncsTheFileBeforeTheRenameAndTheFolderAfter() throws {
        let path = dir.appendingPathComponent("model.safetensors").path
        try Data("old".utf8).write(to: URL(fileURLWithPath: path))
        var synced: [String] = []
        try writeAtomically(Data("new".utf8), to: path, sync: { fd in
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")) ?? "?"
            let current = (try? String(contentsOfFile: path, encoding: .utf8)) ?? "?"
            let what = target == self.dir.path ? "folder" : target.contains(".model.safetensors.tmp-") ? "temporary file" : target
            synced.append("\(what), target holds \(current)")
            return fsync(fd)
        })
        XCTAssertEqual(synced, ["temporary file, target holds old", "folder, target holds new"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["model.safetensors"])
        // A failed sync is an error that names the file, and the old file stays.
        XCTAssertThrowsError(try writeAtomically(Data("newer".utf8), to: path, sync: { _ in errno = EIO; return -1 })) { e in
            XCTAssertTrue("\(e)".contains("model.safetensors") && "\(e)".contains("cannot sync"), "\(e)")
        }
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "new")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["model.safetensors"])
    }

    func testRoundTripWithMetadataAndRankZero() throws {
        let path = dir.appendingPathComponent("a.safetensors").path
        let st = SafeTensors(tensors: [("w", .float(try Tensor([1, -2.5, 3e-8, 4], shape: [2, 2]))),
                                       ("count", .int(try IntTensor([7], shape: []))),
                                       ("empty", .float(try Tensor.zeros([0, 3])))],
                             metadata: ["seed": "0", "note": "hi"])
        try st.write(to: path)
        let back = try SafeTensors.read(path)
        XCTAssertEqual(back.metadata, ["seed": "0", "note": "hi"])
        XCTAssertEqual(try back.float("w").scalars, [1, -2.5, 3e-8, 4])
        XCTAssertEqual(try back.int("count").shape, [])
        XCTAssertEqual(try back.int("count").scalars, [7])
        XCTAssertEqual(try back.float("empty").shape, [0, 3])
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        XCTAssertEqual(leftovers, ["a.safetensors"], "no temporary file is left behind")
    }

    func testHalfBFloatAndInt32() throws {
        // 1.0 and -2.0 in F16 (0x3C00, 0xC000) and BF16 (0x3F80, 0xC000); I32 5 and -1.
        let header = #"{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[4,8]},"i":{"dtype":"I32","shape":[2],"data_offsets":[8,16]}}"#
        let body: [UInt8] = [0x00, 0x3C, 0x00, 0xC0, 0x80, 0x3F, 0x00, 0xC0, 5, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]
        let st = try SafeTensors.parse(raw(header, body))
        XCTAssertEqual(try st.float("h").scalars, [1, -2])
        XCTAssertEqual(try st.float("b").scalars, [1, -2])
        XCTAssertEqual(try st.int("i").scalars, [5, -1])
    }

    func testWritesHalfAndBFloat16() throws {
        let t = Tensor([1, -2.5, 0.1, 65504])
        for format in [SafeTensors.FloatFormat.f16, .bf16] {
            let data = try SafeTensors(tensors: [("t", .float(t))]).serialized(floatFormat: format)
            let back = try SafeTensors.parse(data).float("t")
            XCTAssertEqual(back[flat: 0], 1)
            XCTAssertEqual(back[flat: 1], -2.5)
            XCTAssertEqual(Double(back[flat: 2]), 0.1, accuracy: format == .f16 ? 1e-4 : 1e-3, "\(format)")
            XCTAssertEqual(Double(back[flat: 3]), 65504, accuracy: 256, "\(format)")
        }
    }

    func expectError(_ data: Data, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensors.parse(data, path: "bad.safetensors"), file: file, line: line) { e in
            let text = "\(e)"
            XCTAssertTrue(text.hasPrefix("bad.safetensors: "), text, file: file, line: line)
            XCTAssertTrue(text.contains(fragment), "\(text) should mention \(fragment)", file: file, line: line)
        }
    }

    func testCorruptFilesGiveErrors() throws {
        let good = try SafeTensors(tensors: [("x", .float(Tensor([1, 2, 3, 4])))]).serialized()
        expectError(good.prefix(5), "shorter than the 8-byte header")
        expectError(good.prefix(good.count - 3), "ends at byte 16 but the data is 13 bytes")
        var lying = good
        lying[0] = 0xFF; lying[1] = 0xFF; lying[2] = 0x0F
        expectError(lying, "header length")
        var huge = good
        for i in 0..<8 { huge[i] = 0xFF }
        expectError(huge, "exceeds the 100 MB limit")
        expectError(raw("not json", []), "not a JSON object")
        expectError(raw(#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, [0, 0, 0, 0]), "needs 8")
        expectError(raw(#"{"x":{"dtype":"F32","shape":[1000000000,1000000000,1000],"data_offsets":[0,4]}}"#, [0, 0, 0, 0]), "does not fit")
        expectError(raw(#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, [0, 0, 0, 0]), "bad data_offsets")
        expectError(raw(#"{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, [0]), "unsupported dtype U8")
        expectError(raw(#"{"x":{"shape":[1]}}"#, []), "needs dtype, shape and data_offsets")
        XCTAssertThrowsError(try SafeTensors.read(dir.appendingPathComponent("missing.safetensors").path)) { e in
            XCTAssertTrue("\(e)".contains("missing.safetensors: no such file"), "\(e)")
        }
    }
}
