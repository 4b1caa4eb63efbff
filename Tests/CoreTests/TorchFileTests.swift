// TorchFileTests.swift: PyTorch's torch.save files (../shared/golden/torch, written by real
// PyTorch 2.15) read without Python and compared with their safetensors twins; files that must be
// refused; writing and reading back; hostile pickles refused with bounded memory and time.

import XCTest
import Foundation
@testable import Core
import TestSupport

final class TorchFileTests: XCTestCase {
    /// Every tensor of `value`, flattened with dots, equals the twin's tensor of that name exactly
    /// (conversions to float32 / int64 are the twins' too), and the twin has no other tensor.
    func assertMatchesTwins(_ value: TorchValue, _ twins: [SafeTensors], prefix: String = "", file: StaticString = #filePath, line: UInt = #line) {
        let read = Dictionary(value.flattenedTensors().map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
        var expected: [String: AnyTensor] = [:]
        for t in twins { for (n, x) in t.tensors { expected[prefix + n] = x } }
        XCTAssertEqual(Set(read.keys), Set(expected.keys), file: file, line: line)
        for (name, x) in expected {
            guard let y = read[name] else { continue }
            XCTAssertEqual(y.shape, x.shape, name, file: file, line: line)
            switch (y, x) {
            case (.float(let a), .float(let b)): XCTAssertEqual(a.scalars, b.scalars, name, file: file, line: line)
            case (.int(let a), .int(let b)): XCTAssertEqual(a.scalars, b.scalars, name, file: file, line: line)
            default: XCTFail("\(name): element type differs from the twin's", file: file, line: line)
            }
        }
    }

    func testResNet18StateDictZipFormat() throws {
        let value = try TorchFile.read(try sharedFile("golden/torch/resnet18_state_dict.pth"))
        assertMatchesTwins(value, [try golden("resnet18_weights.safetensors"), try golden("torch/resnet18_state_dict_fc.safetensors")])
        // Keys in the file's order, as torchvision's state_dict.
        guard case .dict(let items) = value else { return XCTFail("not a dict") }
        XCTAssertEqual(items.first?.key, .string("conv1.weight"))
        XCTAssertEqual(items.last?.key, .string("fc.bias"))
        // Into torchvision's architecture, unchanged.
        let model = try resnet18()
        try model.loadStateDict(Dictionary(uniqueKeysWithValues: value.flattenedTensors().map { ($0.0, $0.1) }), strict: true)
    }

    func testLegacyFormat() throws {
        let path = try sharedFile("golden/torch/small_legacy.pth")
        XCTAssertEqual(TorchFile.format(of: path), .legacy)
        assertMatchesTwins(try TorchFile.read(path), [try golden("torch/small_legacy.safetensors")])
    }

    func testReferenceSparseConvMILCheckpoint() throws {
        let value = try TorchFile.read(try sharedFile("golden/torch/sparseconvmil_reference.pth"))
        let embedder = try golden("resnet18_weights.safetensors"), head = try golden("sparseconvmil_head_weights.safetensors")
        let read = Dictionary(value.flattenedTensors().map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(read.count, embedder.tensors.count + head.tensors.count)
        for (n, t) in embedder.tensors { XCTAssertEqual(read["tile_embedder." + n].map(TorchValue.tensor), .tensor(t), n) }
        for (n, t) in head.tensors { XCTAssertEqual(read[n].map(TorchValue.tensor), .tensor(t), n) }
        XCTAssertEqual(read["sparse_cnn.0.weight"]?.shape, [9, 1, 512, 32])
    }

    func testCLAMFeatureFileIsOneTensor() throws {
        let value = try TorchFile.read(try sharedFile("golden/torch/clam_features.pt"))
        guard case .tensor(.float(let t)) = value else { return XCTFail("not a float tensor: \(value)") }
        XCTAssertEqual(t.shape, [257, 1024])
        XCTAssertEqual(TorchValue.tensor(.float(t)), try golden("torch/clam_features.safetensors").tensors.first { $0.name == "features" }.map { .tensor($0.tensor) })
    }

    func testCheckpointWithOptimizerStateAndPlainValues() throws {
        let value = try TorchFile.read(try sharedFile("golden/torch/checkpoint.pt"))
        assertMatchesTwins(value, [try golden("torch/checkpoint.safetensors")])
        XCTAssertEqual(value["epoch"], .int(3))
        XCTAssertEqual(value["best_auc"], .float(0.875))
        XCTAssertEqual(value["name"], .string("run-a"))
        XCTAssertEqual(value["history"], .list([.float(0.69), .float(0.52), .float(0.41)]))
        XCTAssertEqual(value["flags"], .tuple([.bool(true), .none]))
        // Optimizer state keyed by parameter index, and its param_groups.
        guard case .dict(let state)? = value["optimizer"]?["state"] else { return XCTFail("no optimizer state") }
        XCTAssertEqual(state.map(\.key), [.int(0), .int(1), .int(2), .int(3)])
        guard case .list(let groups)? = value["optimizer"]?["param_groups"], case .dict? = groups.first else { return XCTFail("no param_groups") }
        XCTAssertEqual(groups.first?["params"], .list([.int(0), .int(1), .int(2), .int(3)]))
    }

    /// float16, bfloat16, float64 and the integer types converted; a transposed view, a sliced view
    /// with a storage offset, two tensors on one storage, a scalar and an empty tensor.
    func testDTypesAndViews() throws {
        assertMatchesTwins(try TorchFile.read(try sharedFile("golden/torch/dtypes_views.pt")), [try golden("torch/dtypes_views.safetensors")])
    }

    func testFilesThatRunCodeOrBuildClassesAreRefused() throws {
        let marker = FileManager.default.temporaryDirectory.appendingPathComponent("smil-pwned").path
        try? FileManager.default.removeItem(atPath: marker)
        XCTAssertThrowsError(try TorchFile.read(try sharedFile("golden/torch/refuse_os_system.pt"))) {
            XCTAssertTrue("\($0)".contains("refused to load posix.system (os.system)"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "the pickle's command ran")
        XCTAssertThrowsError(try TorchFile.read(try sharedFile("golden/torch/refuse_whole_module.pt"))) {
            XCTAssertTrue("\($0)".contains("refused to load torch.nn.modules.container.Sequential"), "\($0)")
        }
    }

    func testWriteThenRead() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("smil-torchfile-\(getpid()).pt").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let w = try Tensor([1, -2.5, 3e-8, .infinity, 0, 7], shape: [2, 3])
        let value = TorchValue.dict([
            (.string("weight"), .tensor(.float(w))),
            (.string("labels"), .tensor(.int(try IntTensor([3, -1, 1 << 40], shape: [3])))),
            (.string("scalar"), .tensor(.float(Tensor(scalar: 0.5)))),
            (.string("empty"), .tensor(.float(try Tensor.zeros([0, 4])))),
            (.string("meta"), .dict([(.string("epoch"), .int(12)), (.string("big"), .int(-(1 << 50))), (.string("lr"), .float(1e-4)),
                                     (.string("name"), .string("run é")), (.string("none"), .none), (.string("ok"), .bool(true))])),
            (.string("history"), .list([.float(0.5), .int(1), .list([])])),
            (.int(7), .bytes([0, 255, 10])),
        ])
        try TorchFile.write(value, to: path)
        XCTAssertEqual(TorchFile.format(of: path), .zip)
        let back = try TorchFile.read(path)
        // Written as a list of key-value pairs in order; tuples come back as tuples, lists as lists.
        XCTAssertEqual(back, value)
    }

    /// Real PyTorch reads what smil writes (`torch.load(weights_only=True)`), where a Python with
    /// torch is installed (the benchmark peers' virtualenv); skipped with the reason otherwise.
    func testPyTorchReadsWhatSmilWrites() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("smil-roundtrip-\(getpid()).pt").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try TorchFile.write(.dict([(.string("w"), .tensor(.float(try Tensor([1, 2, 3, 4.5], shape: [2, 2])))),
                                   (.string("y"), .tensor(.int(IntTensor([5, -6])))),
                                   (.string("epoch"), .int(3)), (.string("name"), .string("a")), (.string("xs"), .list([.float(0.25), .none]))]), to: path)
        let script = """
            import torch, sys
            d = torch.load(sys.argv[1], weights_only=True)
            assert d["w"].dtype == torch.float32 and d["w"].tolist() == [[1.0, 2.0], [3.0, 4.5]], d["w"]
            assert d["y"].dtype == torch.int64 and d["y"].tolist() == [5, -6], d["y"]
            assert d["epoch"] == 3 and d["name"] == "a" and d["xs"] == [0.25, None], d
            print("torch read it")
            """
        let (status, text) = try runPeerPython(script, [path])
        XCTAssertEqual(status, 0, text)
        XCTAssertTrue(text.contains("torch read it"), text)
    }

    /// A persistent id for a storage: ('storage', CLASS, key, 'cpu', numel[, view]).
    func storageReference(_ p: inout Pickler, _ module: String, _ cls: String, key: String, numel: Int, view: (String, Int, Int)? = nil) {
        p.op(0x28); p.string("storage"); p.global(module, cls); p.string(key); p.string("cpu"); p.int(numel)
        if let view { p.op(0x28); p.string(view.0); p.int(view.1); p.int(view.2); p.op(0x74) }
        p.op(0x74); p.op(0x51)
    }

    /// `_rebuild_tensor_v2(<the storage just pushed>, offset, size, stride, False, OrderedDict())`,
    /// the storage reference written by `storage`.
    func rebuildTensor(_ p: inout Pickler, offset: Int, size: [Int], stride: [Int], storage: (inout Pickler) -> Void) {
        p.global("torch._utils", "_rebuild_tensor_v2")
        p.op(0x28); storage(&p); p.int(offset); p.tuple(size); p.tuple(stride); p.op(0x89)
        p.global("collections", "OrderedDict"); p.op(0x29); p.op(0x52)
        p.op(0x74); p.op(0x52)
    }

    /// `torch.save(t.untyped_storage())` names `torch.storage.UntypedStorage` with the size in
    /// bytes; torch.load reads it (and tensors over it) as uint8. A bare storage comes back as the
    /// 1-D tensor of its elements.
    func testUntypedAndBareStoragesInTheZipFormat() throws {
        var p = Pickler()
        p.op(0x7D); p.op(0x28)
        p.string("untyped"); storageReference(&p, "torch.storage", "UntypedStorage", key: "0", numel: 8)
        p.string("floats"); storageReference(&p, "torch", "FloatStorage", key: "1", numel: 2)
        p.string("bytes_view")
        rebuildTensor(&p, offset: 2, size: [3], stride: [1]) { storageReference(&$0, "torch.storage", "UntypedStorage", key: "0", numel: 8) }
        p.op(0x75); p.op(0x2E)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("smil-untyped-\(getpid()).pt").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let int16s: [Int16] = [0, 1, 2, -3]
        try TorchFile.writeArchive(pickle: p.bytes, storages: [int16s.withUnsafeBufferPointer { Data(buffer: $0) },
                                                               [Float(0.5), -2].withUnsafeBufferPointer { Data(buffer: $0) }], to: path)
        let value = try TorchFile.read(path)
        XCTAssertEqual(value, .dict([(.string("untyped"), .tensor(.int(IntTensor([0, 0, 1, 0, 2, 0, 253, 255])))),
                                     (.string("floats"), .tensor(.float(try Tensor([0.5, -2])))),
                                     (.string("bytes_view"), .tensor(.int(IntTensor([1, 0, 2]))))]))
    }

    /// A legacy file (PyTorch < 1.6) in the layout torch.save wrote: magic, protocol, system
    /// information, the object, the storage keys, then each storage's count and bytes.
    func legacyFile(object: (inout Pickler) -> Void, storages: [(key: String, bytes: Data, count: Int)]) -> Data {
        var bytes: [UInt8] = [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19, 0x2E]
        bytes += [0x80, 0x02, 0x4D, 0xE9, 0x03, 0x2E]   // protocol version 1001
        bytes += [0x80, 0x02, 0x7D, 0x2E]               // system information (not used)
        var p = Pickler()
        object(&p)
        p.op(0x2E)
        var keys = Pickler()
        keys.op(0x5D); keys.op(0x28); for s in storages { keys.string(s.key) }; keys.op(0x65); keys.op(0x2E)
        var data = Data(bytes) + p.bytes + keys.bytes
        for s in storages {
            withUnsafeBytes(of: Int64(s.count).littleEndian) { data.append(contentsOf: $0) }
            data.append(s.bytes)
        }
        return data
    }

    /// PyTorch before 1.0 saved storage views as (view_key, offset, size) after the root storage:
    /// each view is read as that slice of its root, and a view outside its root is refused.
    func testLegacyStorageViews() throws {
        let root = [Float(1), 2, 3, 4, 5].withUnsafeBufferPointer { Data(buffer: $0) }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("smil-legacy-views-\(getpid()).pt").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        func write(view: (String, Int, Int)) throws {
            let data = legacyFile(object: { p in
                p.op(0x5D); p.op(0x28)
                self.rebuildTensor(&p, offset: 1, size: [2], stride: [1]) { self.storageReference(&$0, "torch", "FloatStorage", key: "9", numel: 5, view: view) }
                self.storageReference(&p, "torch", "FloatStorage", key: "9", numel: 5, view: view)
                self.rebuildTensor(&p, offset: 0, size: [5], stride: [1]) { self.storageReference(&$0, "torch", "FloatStorage", key: "9", numel: 5) }
                p.op(0x65)
            }, storages: [("9", root, 5)])
            try data.write(to: URL(fileURLWithPath: path))
        }
        try write(view: ("v", 1, 3))
        XCTAssertEqual(TorchFile.format(of: path), .legacy)
        XCTAssertEqual(try TorchFile.read(path), .list([.tensor(.float(try Tensor([3, 4]))), .tensor(.float(try Tensor([2, 3, 4]))),
                                                        .tensor(.float(try Tensor([1, 2, 3, 4, 5])))]))
        try write(view: ("v", 3, 3))
        XCTAssertThrowsError(try TorchFile.read(path)) {
            XCTAssertTrue("\($0)".contains("storage 9: a view (view_metadata) that is not (key, offset, size) inside its 5 elements"), "\($0)")
            XCTAssertTrue("\($0)".contains(path), "\($0)")
        }
    }

    /// Files written by the installed PyTorch (zip and legacy formats, an untyped storage, a
    /// transposed float16 view, a tensor and a slice of it sharing one storage) read back with the
    /// values PyTorch gave them; skipped with the reason where no Python with torch is installed.
    func testSmilReadsWhatThisPyTorchWrites() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smil-torchwrites-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let script = """
            import torch, sys, warnings
            warnings.simplefilter("ignore")
            a = torch.arange(12, dtype=torch.float16).reshape(3, 4).t()
            b = torch.arange(6, dtype=torch.float32)
            d = {"half_t": a, "b": b, "b_tail": b[2:5], "u": torch.tensor([1, -2], dtype=torch.int16).untyped_storage()}
            torch.save(d, sys.argv[1] + "/zip.pt")
            torch.save({"half_t": a, "b": b, "b_tail": b[2:5]}, sys.argv[1] + "/legacy.pt", _use_new_zipfile_serialization=False)
            print("written")
            """
        let (status, text) = try runPeerPython(script, [dir])
        XCTAssertEqual(status, 0, text)
        let halfT = TorchValue.tensor(.float(try Tensor([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11], shape: [4, 3])))
        let b = TorchValue.tensor(.float(try Tensor([0, 1, 2, 3, 4, 5])))
        let tail = TorchValue.tensor(.float(try Tensor([2, 3, 4])))
        XCTAssertEqual(TorchFile.format(of: dir + "/zip.pt"), .zip)
        XCTAssertEqual(try TorchFile.read(dir + "/zip.pt"), .dict([(.string("half_t"), halfT), (.string("b"), b), (.string("b_tail"), tail),
                                                                   (.string("u"), .tensor(.int(IntTensor([1, 0, 254, 255]))))]))
        XCTAssertEqual(TorchFile.format(of: dir + "/legacy.pt"), .legacy)
        XCTAssertEqual(try TorchFile.read(dir + "/legacy.pt"), .dict([(.string("half_t"), halfT), (.string("b"), b), (.string("b_tail"), tail)]))
    }

    // MARK: Hostile input

    func unpickle(_ bytes: [UInt8], storage: TorchStorage? = nil) throws -> TorchValue {
        var u = Unpickler(data: Data(bytes), file: "<test>") { _ in
            guard let storage else { throw CoreError.file(path: "<test>", "no storage") }
            return .storage(storage)
        }
        return try u.loadValue()
    }

    func testHostilePicklesAreRefusedWithBoundedWork() throws {
        // 100,000 nested lists: built iteratively, refused at 1,000 levels when converted.
        let deep: [UInt8] = [0x80, 0x02] + Array(repeating: 0x5D, count: 100_000) + Array(repeating: 0x61, count: 99_999) + [0x2E]
        XCTAssertThrowsError(try unpickle(deep)) { XCTAssertTrue("\($0)".contains("nests deeper than 1000 levels"), "\($0)") }
        // A string that claims a billion bytes.
        XCTAssertThrowsError(try unpickle([0x80, 0x02, 0x58, 0x00, 0xCA, 0x9A, 0x3B, 0x61, 0x62])) {
            XCTAssertTrue("\($0)".contains("claims 1000000000 bytes, but only 2 remain"), "\($0)")
        }
        // A memo entry that was never stored, an opcode outside the list, a truncated stream.
        XCTAssertThrowsError(try unpickle([0x80, 0x02, 0x6A, 0xFF, 0xFF, 0xFF, 0x7F, 0x2E])) { XCTAssertTrue("\($0)".contains("never PUT"), "\($0)") }
        XCTAssertThrowsError(try unpickle([0x80, 0x02, 0x69, 0x6F, 0x73, 0x0A, 0x2E])) { XCTAssertTrue("\($0)".contains("opcode 0x69 (INST) is not allowed"), "\($0)") }
        XCTAssertThrowsError(try unpickle([0x80, 0x02, 0x5D])) { XCTAssertTrue("\($0)".contains("ends in the middle"), "\($0)") }
        XCTAssertThrowsError(try unpickle([0x80, 0x02, 0x63] + Array("builtins\neval\n".utf8) + [0x2E])) {
            XCTAssertTrue("\($0)".contains("refused to load builtins.eval"), "\($0)")
        }
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())` on a storage of 4 floats.
    func tensorPickle(offset: Int, size: [Int], stride: [Int]) -> [UInt8] {
        var p = Pickler()
        p.global("torch._utils", "_rebuild_tensor_v2")
        p.op(0x28)
        p.op(0x28); p.string("storage"); p.global("torch", "FloatStorage"); p.string("0"); p.string("cpu"); p.int(4); p.op(0x74); p.op(0x51)
        p.int(offset); p.tuple(size); p.tuple(stride); p.op(0x89)
        p.global("collections", "OrderedDict"); p.op(0x29); p.op(0x52)
        p.op(0x74); p.op(0x52); p.op(0x2E)
        return [UInt8](p.bytes)
    }

    func testViewsMustLieInsideTheirStorage() throws {
        let storage = TorchStorage(dtype: .float32, bytes: [Float(1), 2, 3, 4].withUnsafeBufferPointer { Data(buffer: $0) })
        XCTAssertEqual(try unpickle(tensorPickle(offset: 1, size: [2], stride: [2]), storage: storage), .tensor(.float(Tensor([2, 4]))))
        XCTAssertThrowsError(try unpickle(tensorPickle(offset: 0, size: [10], stride: [1]), storage: storage)) {
            XCTAssertTrue("\($0)".contains("reaches element 9, past its storage of 4 elements"), "\($0)")
        }
        XCTAssertThrowsError(try unpickle(tensorPickle(offset: 0, size: [2, 2], stride: [1 << 62, 1]), storage: storage))
        XCTAssertThrowsError(try unpickle(tensorPickle(offset: -1, size: [1], stride: [1]), storage: storage))
        XCTAssertThrowsError(try unpickle(tensorPickle(offset: 0, size: [1 << 40, 1 << 40], stride: [0, 0]), storage: storage)) {
            XCTAssertTrue("\($0)".contains("cannot allocate"), "\($0)")
        }
    }

    /// libFuzzer's find: a zip64 record whose central-directory offset is past 2^63 trapped inside
    /// ZIPFoundation; the archive reader refuses it.
    func testZip64OffsetPastAnyFileIsRefused() throws {
        func le(_ v: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
        var bytes: [UInt8] = []
        // Zip64 end-of-central-directory record at 4: entries 1, size 46, offset 0xFFFF...F0.
        bytes += le(0x0606_4B50, 4) + le(44, 8) + le(45, 2) + le(45, 2) + le(0, 4) + le(0, 4) + le(1, 8) + le(1, 8)
            + le(46, 8) + le(0xFFFF_FFFF_FFFF_FFF0, 8)
        // Locator: the record is at offset 4 (after the local-header signature the file starts with).
        bytes += le(0x0706_4B50, 4) + le(0, 4) + le(4, 8) + le(1, 4)
        // End of central directory, every field deferring to zip64.
        bytes += le(0x0605_4B50, 4) + le(0, 2) + le(0, 2) + le(0xFFFF, 2) + le(0xFFFF, 2) + le(0xFFFF_FFFF, 4) + le(0xFFFF_FFFF, 4) + le(0, 2)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("smil-zip64-\(getpid()).pt").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data([0x50, 0x4B, 0x03, 0x04] + bytes).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try TorchFile.read(path)) { XCTAssertTrue("\($0)".contains("beyond any file"), "\($0)") }
    }

    func testTruncatedArchiveIsAnErrorNamingTheFile() throws {
        let source = try sharedFile("golden/torch/checkpoint.pt")
        let data = try Data(contentsOf: URL(fileURLWithPath: source))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("smil-truncated-\(getpid()).pt").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        for cut in [data.count / 3, data.count - 30, 100] {
            try data.prefix(cut).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try TorchFile.read(path), "cut at \(cut)") { XCTAssertTrue("\($0)".contains(path), "\($0)") }
        }
    }
}
