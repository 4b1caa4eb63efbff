// FuzzRegressionTests.swift: every call that crashed the process before (found by the issue's
// 1,500 random calls or by `smil fuzz`) now raises a clear error or returns the right value, in
// the same process, which goes on working.

import XCTest
@testable import Core
@testable import Interpreter

final class FuzzRegressionTests: XCTestCase {
    /// (call, what the error says) — each once ended the process with a trap or a segfault.
    static let refused: [(String, String)] = [
        ("eye(-3)", "eye: n must be non-negative, got -3"),
        ("tensor(2.0).chunk(true)", "chunk: a tensor with no dimensions (a scalar) cannot be chunked"),
        ("tensor(2.0).split(1)", "split: a tensor with no dimensions (a scalar) cannot be split"),
        ("tensor(2.0).index_select(-0.0, [65536, 65536])", "index_select: dimension 0 is out of range for a tensor of no dimensions (a scalar)"),
        ("cat([1, 2])", "cat: tensor 0 has no dimensions"),
        ("Linear(-1, 7)(randn([2, 3, 4]))", "Linear: in_features must be non-negative, got -1"),
        ("Conv2d(-1, 1, 2)(randn([4]))", "Conv2d: in_channels must be positive, got -1"),
        ("Conv2d(3, 4, 0)", "Conv2d: kernel_size must be positive, got 0"),
        ("SubmanifoldConv2d(-1, 3, 3)(randn([2, 3, 4]))", "SubmanifoldConv2d: in_channels must be positive, got -1"),
        ("SparseConv2d(1, -1, 7, 1)(randn([4]))", "SparseConv2d: out_channels must be positive, got -1"),
        ("BatchNorm2d(4611686018427387904)", "BatchNorm2d: cannot allocate a tensor of shape [4611686018427387904]"),
        ("zeros([100000000, 100000000])", "zeros: cannot allocate a tensor of shape [100000000, 100000000]: it needs 40.0 PB"),
        ("randn([2147483648, 2147483648])", "randn: cannot allocate a tensor of shape [2147483648, 2147483648]"),
        ("zeros([10000000, 1]) * zeros([1, 10000000])", "mul: cannot allocate a tensor of shape [10000000, 10000000]"),
        ("MaxPool2d(5)(zeros([1, 1, 2, 2]))", "max_pool2d: output size 0 x 0 is too small for input [1, 1, 2, 2]"),
        ("MaxPool2d(3, padding: 2)", "MaxPool2d: padding (2) must be at most half of kernel_size (3)"),
        ("Dropout(1.5)", "Dropout: dropout probability p must be between 0.0 and 1.0, got 1.5"),
        ("[0] * 4611686018427387904", "cannot repeat a list of 1 items 4611686018427387904 times"),
        ("\"ab\" * 4611686018427387904", "cannot repeat a string of 2 bytes 4611686018427387904 times"),
        ("confusion_matrix([0, 3], [4611686018427387904, 2])", "confusion_matrix: cannot allocate a tensor of shape"),
        ("confusion_matrix([0, -1], [0, 0])", "labels are row and column indices and must be non-negative, got -1"),
        ("recall([0, 3], [1])", "recall(): y has 2 labels but pred has 1"),
        ("zeros([6]).reshape([4611686018427387904, 2])", "reshape: shape [4611686018427387904, 2] is invalid for input of size 6"),
        ("tensor([1, 2]).reshape([4611686018427387904, 2])", "reshape: shape [4611686018427387904, 2] is invalid for input of size 2"),
        ("range(2, step: 9223372036854775807)", "no error"),
        ("zeros([0, 3]).reshape([4611686018427387904, 2])", "reshape: shape [4611686018427387904, 2] is invalid for input of size 0"),
        ("arange(4611686018427387904, step: -1e-30)", "arange: upper bound and lower bound inconsistent with step sign"),
        ("arange(0, 4611686018427387904, step: 1e-30)", "arange: cannot allocate"),
        ("tensor(1.5)[0]", "too many indices for a tensor of rank 0"),
        ("tensor(1.5).transpose(0, 1)", "transpose: dimension 1 is out of range for a tensor of rank 0"),
        ("let l = [1]\nl.append(l)\ntensor(l)", "'data' must be a nested list at most 64 deep"),
        ("let d = {\"a\": 1}\nd[\"b\"] = d\njson(d)", "json(): the dict contains itself"),
        ("resnet18(classes: 0)", "ResNet: num_classes must be positive, got 0"),
        ("load(\"/tmp\")", "/tmp: is a folder, not a file"),
        ("load(\"/no/such/file.safetensors\")", "/no/such/file.safetensors: no such file"),
        ("Linear(2, 2).load_state_dict(\"/tmp\")", "/tmp"),
        ("Adam(Linear(2, 2).parameters(), lr: -1)", "invalid learning rate: -1"),
    ]

    /// (call, the value it gives) — each once crashed or gave a wrong value.
    static let answered: [(String, String)] = [
        // The output of a layer with no input features is its bias, not uninitialised memory.
        ("let m = Linear(0, 3)\n(m(zeros([2, 0])) - m.bias).abs().sum().item()", "0.0"),
        ("zeros([0]).mean().item()", "nan"),
        ("tensor([float(\"nan\"), float(\"inf\"), -2.7, 3e30]).long().tolist()", "[-9223372036854775808, -9223372036854775808, -2, -9223372036854775808]"),
        ("tensor(1.5).squeeze(0).shape", "[]"),
        ("tensor(1.5).transpose(0, -1).item()", "1.5"),
        ("tensor(2.0).softmax(0).item()", "1.0"),
        ("tensor(2.0).mean(0).item()", "2.0"),
        ("let l = [1]\nl.append(l)\nl", "[1, [...]]"),
        ("let l = [1]\nl.append(l)\nl == l", "true"),
        ("let a = [1]\na.append(a)\nlet b = [1]\nb.append(b)\na == b", "true"),
        ("let d = {\"a\": 1}\nd[\"b\"] = d\nd", "{\"a\": 1, \"b\": {...}}"),
        ("len([] * 2147483648)", "0"),
        ("len(range(2, step: 9223372036854775807))", "1"),
        ("recall([0, 3], [1000000000000000000, 3])", "0.3333333333333333"),
        ("zeros([0]).reshape([0, 5]).shape", "[0, 5]"),
        ("plot(tensor([float(\"nan\"), float(\"inf\"), 1e308, -1e308, 2.0]), path: \"/dev/null\")", "\"/dev/null\""),
        ("plot([float(\"inf\"), 1.0], [1.0, 2.0], path: \"/dev/null\")", "\"/dev/null\""),
        ("enumerate([1, 2], start: 9223372036854775807)", "[[9223372036854775807, 1], [9.223372036854776e+18, 2]]"),
    ]

    func testCallsThatCrashedNowRaiseClearErrors() {
        let interp = Interpreter()
        for (code, expected) in Self.refused {
            let message: String
            do { _ = try interp.run(code, name: "<t>"); message = "no error" } catch { message = "\(error)" }
            XCTAssertTrue(message.contains(expected), "\(code)\n  expected: \(expected)\n  got: \(message)")
        }
        // The same interpreter goes on working after every one of them.
        XCTAssertEqual(try interp.run("1 + 1", name: "<t>").map { render($0, quoted: true) }, "2")
    }

    func testCallsThatCrashedOrLiedNowAnswer() throws {
        for (code, expected) in Self.answered {
            let value = try Interpreter().run(code, name: "<t>").map { render($0, quoted: true) }
            XCTAssertEqual(value, expected, code)
        }
    }

    /// State set by one call cannot make a later one crash: a dataset told to draw -3 tiles refuses.
    func testDatasetRefusesANonPositiveTileCount() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smil-fuzz-regression-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let interp = Interpreter()
        _ = try interp.run("let ds = SlideDataset(synthetic_slides(\"\(dir)\", 1, 2, 8, -4611686018427387904))", name: "<t>")
        XCTAssertThrowsError(try interp.run("ds.tiles_per_slide = -3", name: "<t>")) { XCTAssertTrue("\($0)".contains("tiles_per_slide must be positive, got -3")) }
        XCTAssertNoThrow(try interp.run("ds[-1]", name: "<t>"))
    }

    /// The allocation guard's arithmetic: overflow, negative sizes, the limit, human units.
    func testAllocationGuard() {
        XCTAssertEqual(try Memory.checkAllocation([2, 3], op: "t"), 6)
        XCTAssertEqual(try Memory.checkAllocation([0, Int.max], op: "t"), 0)
        XCTAssertThrowsError(try Memory.checkAllocation([Int.max, 2], op: "t")) { XCTAssertTrue("\($0)".contains("more than 2^63 bytes")) }
        XCTAssertThrowsError(try Memory.checkAllocation([3, -1], op: "t")) { XCTAssertTrue("\($0)".contains("size -1 at dimension 1 of shape [3, -1] is negative")) }
        XCTAssertThrowsError(try Memory.checkAllocation([Memory.limitBytes / 4 + 1], op: "t"))
        XCTAssertNoThrow(try Memory.checkAllocation([Memory.limitBytes / 4], op: "t"))
        XCTAssertEqual(Memory.describe(bytes: 40_000_000_000), "40.0 GB")
        XCTAssertEqual(Memory.parseBytes("512M"), 512 << 20)
        XCTAssertEqual(Memory.parseBytes("4GB"), 4 << 30)
        XCTAssertNil(Memory.parseBytes("lots"))
    }
}
