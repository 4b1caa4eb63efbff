// Support.swift: shared test helpers — tolerance asserts that report the caller's line, the path
// to ../shared, and finite-difference gradient checks.

import Foundation
import XCTest
import Core

/// The repository root (three levels above this file).
public let repositoryRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

/// `../shared` beside the checkout (or `SMIL_SHARED`), where CI keeps golden files and sample data.
public let sharedFolder: URL = {
    if let s = ProcessInfo.processInfo.environment["SMIL_SHARED"] { return URL(fileURLWithPath: s) }
    return repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared")
}()

/// The path of a file under ../shared, or a skip with the reason printed when it is absent.
public func sharedFile(_ relative: String) throws -> String {
    let url = sharedFolder.appendingPathComponent(relative)
    guard FileManager.default.fileExists(atPath: url.path) else {
        let reason = "skipped: \(url.path) is not here (tests that read ../shared run in CI, which has it)"
        print(reason)
        throw XCTSkip(reason)
    }
    return url.path
}

/// Norm-based relative error ||a - b|| / max(||b||, tiny).
public func relativeError(_ a: Tensor, _ b: Tensor) -> Double {
    precondition(a.count == b.count)
    var num = 0.0, den = 0.0
    for i in 0..<a.count {
        let d = Double(a[flat: i]) - Double(b[flat: i])
        num += d * d
        den += Double(b[flat: i]) * Double(b[flat: i])
    }
    return (num / max(den, 1e-30)).squareRoot()
}

/// Asserts equal shapes and a relative error at most `tolerance`.
public func assertClose(_ a: Tensor, _ b: Tensor, tolerance: Double = 1e-4, _ message: String = "",
                        file: StaticString = #filePath, line: UInt = #line) {
    guard a.shape == b.shape else {
        XCTFail("\(message): shape \(a.shape) != \(b.shape)", file: file, line: line)
        return
    }
    let e = relativeError(a, b)
    XCTAssertLessThanOrEqual(e, tolerance, "\(message): relative error \(e)", file: file, line: line)
}

/// Asserts that each element differs by at most atol + rtol * |expected|.
public func assertAllClose(_ a: Tensor, _ b: Tensor, rtol: Float = 1e-5, atol: Float = 1e-6, _ message: String = "",
                           file: StaticString = #filePath, line: UInt = #line) {
    guard a.shape == b.shape else {
        XCTFail("\(message): shape \(a.shape) != \(b.shape)", file: file, line: line)
        return
    }
    for i in 0..<a.count where abs(a[flat: i] - b[flat: i]) > atol + rtol * abs(b[flat: i]) {
        XCTFail("\(message): element \(i): \(a[flat: i]) vs \(b[flat: i])", file: file, line: line)
        return
    }
}

/// Checks the gradients of `f` (any output; reduced with a fixed random cotangent) with respect to
/// each input against central finite differences. Inputs are perturbed in float32, so the step is
/// large and the comparison is norm-based.
public func assertGradientsMatch(_ inputs: [Tensor], eps: Float = 1e-2, tolerance: Double = 2e-2,
                                 file: StaticString = #filePath, line: UInt = #line,
                                 _ f: ([Tensor]) throws -> Tensor) throws {
    var xs = inputs.map { t -> Tensor in var c = t.detached(); c.requiresGrad = true; return c }
    let probe = try f(xs.map { $0.detached() })
    var rng = RandomGenerator(seed: 99)
    let r = try Tensor((0..<probe.count).map { _ in Float(rng.nextNormal()) }, shape: probe.shape)
    func loss(_ ts: [Tensor]) throws -> Double {
        let y = try GradMode.noGrad { try f(ts) }
        var s = 0.0
        for i in 0..<y.count { s += Double(y[flat: i]) * Double(r[flat: i]) }
        return s
    }
    let out = try f(xs)
    try out.mul(r).sum().backward()
    for k in xs.indices {
        guard let analytic = xs[k].grad else {
            XCTFail("input \(k) got no gradient", file: file, line: line)
            continue
        }
        var numeric = try Tensor.zeros(xs[k].shape)
        for i in 0..<xs[k].count {
            var plus = xs.map { $0.detached() }, minus = xs.map { $0.detached() }
            plus[k][flat: i] += eps
            minus[k][flat: i] -= eps
            numeric[flat: i] = Float((try loss(plus) - loss(minus)) / Double(2 * eps))
        }
        let e = relativeError(analytic, numeric)
        XCTAssertLessThanOrEqual(e, tolerance, "input \(k): analytic \(analytic.scalars.prefix(6)) vs numeric \(numeric.scalars.prefix(6))", file: file, line: line)
    }
    xs.removeAll()
}

/// Checks that an operation whose backward adds into gradient sums the engine already holds
/// (`GradientSums`) gives the sums it would give by returning a new tensor:
/// - into a leaf's accumulated `grad` (a second and third backward give 2x and 3x the first);
/// - never into a `grad` the caller still holds (that copy keeps its values);
/// - into the sum pending from another consumer of the input, whichever of the two runs first.
/// `f` maps the input to any output; the output is reduced with a fixed random cotangent.
public func assertAddsIntoHeldSums(_ input: Tensor, _ name: String, file: StaticString = #filePath, line: UInt = #line,
                                   _ f: (Tensor) throws -> Tensor) throws {
    var rng = RandomGenerator(seed: 5)
    func random(_ shape: [Int]) throws -> Tensor {
        try Tensor((0..<shape.reduce(1, *)).map { _ in Float(rng.nextNormal()) }, shape: shape)
    }
    var x = input.detached()
    x.requiresGrad = true
    let cotangent = try random(f(x.detached()).shape)
    try f(x).backward(cotangent)
    let once = try Tensor(x.grad!.scalars, shape: input.shape)  // a copy: x.grad stays the only holder
    // Nothing else holds the grad here: the second backward may add into it in place.
    try f(x).backward(cotangent)
    assertAllClose(x.grad!, once.scaled(by: 2), rtol: 1e-5, atol: 1e-5, "\(name): second backward into the leaf's grad", file: file, line: line)
    let held = x.grad!, heldValues = held.scalars
    try f(x).backward(cotangent)
    assertAllClose(x.grad!, once.scaled(by: 3), rtol: 1e-5, atol: 1e-5, "\(name): third backward", file: file, line: line)
    XCTAssertEqual(held.scalars, heldValues, "\(name): a grad the caller holds is left as it was", file: file, line: line)
    // Two consumers of one input: the other's gradient (x * other) is pending first, then second.
    let other = try random(input.shape)
    for otherFirst in [true, false] {
        x.grad = nil
        let a = try f(x).mul(cotangent).sum(), b = try x.mul(other).sum()
        try (otherFirst ? a.add(b) : b.add(a)).backward()
        assertAllClose(x.grad!, try once.add(other), rtol: 1e-5, atol: 1e-5,
                       "\(name): added to another consumer's gradient (\(otherFirst ? "first" : "second") operand)", file: file, line: line)
    }
}

/// Reads a golden safetensors file from ../shared/golden (skipping when absent).
public func golden(_ name: String) throws -> SafeTensors {
    try SafeTensors.read(sharedFile("golden/\(name)"))
}

/// How far the library that wrote a golden file moves its own result for each tensor, from the
/// file's `spread` metadata (JSON: tensor name -> relative change when the same computation runs
/// another way or on inputs perturbed by about 1e-6). Empty when the file says nothing.
public func goldenSpread(_ file: SafeTensors) throws -> [String: Double] {
    guard let text = file.metadata["spread"] else { return [:] }
    guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
        throw CoreError.invalidArgument(op: "goldenSpread", "golden metadata \"spread\" is not a JSON object: \(text.prefix(80))")
    }
    var spread: [String: Double] = [:]
    for (name, value) in object {
        guard let v = (value as? NSNumber)?.doubleValue, v.isFinite, v >= 0 else {
            throw CoreError.invalidArgument(op: "goldenSpread", "golden metadata \"spread\" for \(name) is not a non-negative number: \(value)")
        }
        spread[name] = v
    }
    return spread
}

/// The bound a golden tensor is checked against. A tensor whose spread exceeds `tolerance` is ill
/// conditioned (a ReLU or max-pool decision lies within rounding distance of the input, so two
/// correct float32 implementations, or two BLAS kernels, disagree by about the spread): it gets
/// 5e-2 or 3 x spread, whichever is larger, which still catches a missing, detached or mis-signed
/// gradient. Every other tensor keeps `tolerance`.
public func goldenBound(spread: Double?, tolerance: Double) -> Double {
    guard let spread, spread > tolerance else { return tolerance }
    return max(5e-2, 3 * spread)
}

/// Asserts that `actual` matches the golden tensor `name` of `file` (reshaped to its shape) within
/// `tolerance` relative, or within the loose bound of `goldenBound` where the file's own spread for
/// `name` says the tensor is ill conditioned.
public func assertMatchesGolden(_ actual: Tensor, _ file: SafeTensors, _ name: String, tolerance: Double,
                                file sourceFile: StaticString = #filePath, line: UInt = #line) throws {
    let expected = try file.float(name)
    let bound = goldenBound(spread: try goldenSpread(file)[name], tolerance: tolerance)
    let note = bound == tolerance ? name : "\(name) (ill conditioned: checked within \(bound))"
    let shaped = actual.count == expected.count ? try actual.reshaped(expected.shape) : actual
    assertClose(shaped, expected, tolerance: bound, note, file: sourceFile, line: line)
}

/// Runs `script` (with `arguments`) in the benchmark peers' Python with torch — `SMIL_PEERS_PYTHON`,
/// else /opt/smil-peers/bin/python — and returns its exit status and output (stdout and stderr).
/// Skips the test, printing the reason, where there is no such Python or it has no torch.
public func runPeerPython(_ script: String, _ arguments: [String] = []) throws -> (status: Int32, output: String) {
    let python = ProcessInfo.processInfo.environment["SMIL_PEERS_PYTHON"] ?? "/opt/smil-peers/bin/python"
    guard FileManager.default.isExecutableFile(atPath: python) else {
        let reason = "skipped: no Python with torch at \(python) (set SMIL_PEERS_PYTHON)"
        print(reason)
        throw XCTSkip(reason)
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: python)
    p.arguments = ["-c", script] + arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    try p.run()
    let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    if text.contains("No module named 'torch'") {
        print("skipped: \(python) has no torch")
        throw XCTSkip("no torch at \(python)")
    }
    return (p.terminationStatus, text)
}
