// General.swift: the general library — print, len, range, conversions, collections helpers,
// seed, time, files and environment (spec section 3, General).

import Foundation
import Core

extension Interpreter {
    /// Declares a builtin in the global table: one line per binding, with its doc string.
    func def(_ name: String, _ params: [(String, Value?)] = [], variadic: Bool = false, doc: String,
             _ body: @escaping ([Value], [Value], Interpreter) throws -> Value) {
        builtins[name] = Builtin(Signature(name, params, variadic: variadic), doc: doc, body)
    }

    func registerLibrary() {
        registerGeneral()
        registerTensors()
        registerLayers()
        registerTraining()
        registerSparse()
        registerData()
        registerSlides()
    }

    /// Documentation for a name or value (`help(x)`, `?x`).
    public func help(_ name: String) -> String? {
        if let b = builtins[name] { return "\(b.signature.display)\n\n\(b.doc)" }
        if let m = tensorMethods[name] { return "tensor.\(m.signature.display)\n\n\(m.doc)" }
        return nil
    }

    /// Every builtin name (completion).
    public var builtinNames: [String] { Array(builtins.keys) }

    func registerGeneral() {
        let r = ArgumentReader(function: "builtin")
        def("print", variadic: true, doc: "Prints its arguments joined by one space, then a newline.") { _, extra, interp in
            interp.output(extra.map { render($0, quoted: false) }.joined(separator: " ") + "\n")
            return .nilValue
        }
        def("len", [("x", nil)], doc: "The number of items of a list, dict, string or range, or a tensor's first dimension.") { a, _, _ in
            switch a[0] {
            case .list(let l): return .int(l.items.count)
            case .dict(let d): return .int(d.count)
            case .string(let s): return .int(s.count)
            case .range(let lo, let hi): return .int(max(0, hi - lo))
            case .tensor(let t): return .int(t.value.rank == 0 ? 0 : t.value.shape[0])
            case .intTensor(let t): return .int(t.value.rank == 0 ? 0 : t.value.shape[0])
            case .object(let o as LengthObject): return .int(o.length)
            default: throw ScriptError(.runtime, "len(): \(an(a[0].typeName)) has no length")
            }
        }
        def("range", [("a", nil), ("b", .nilValue), ("step", .int(1))], doc: "range(n) is 0..<n; range(a, b, step) counts from a below b (a list when step is not 1).") { a, _, _ in
            let r = ArgumentReader(function: "range")
            let x = try r.int(a[0], "a"), step = try r.int(a[2], "step")
            let (lo, hi) = a[1].isNil ? (0, x) : (x, try r.int(a[1], "b"))
            if step == 1 { return .range(lo, max(lo, hi)) }
            if step == 0 { throw ScriptError(.runtime, "range(): step must not be zero") }
            // Count first: a huge range is an error, not an allocation.
            // Overflow-free: the span as a magnitude, then whole steps in it.
            let (span, overflow) = step > 0 ? hi.subtractingReportingOverflow(lo) : lo.subtractingReportingOverflow(hi)
            let count = overflow ? Int.max : span <= 0 ? 0 : Int((UInt(span) - 1) / step.magnitude) + 1
            if count > 50_000_000 { throw ScriptError(.runtime, "range(): \(count) items is too many for a list (use a..<b to loop)") }
            return .list(ListBox(stride(from: lo, to: hi, by: step).map { .int($0) }))
        }
        def("str", [("x", nil)], doc: "The text of a value, as print writes it.") { a, _, _ in .string(render(a[0], quoted: false)) }
        def("int", [("x", nil)], doc: "Converts a number (truncating toward zero), bool or numeric string to an integer.") { a, _, _ in
            switch a[0] {
            case .int: return a[0]
            case .bool(let b): return .int(b ? 1 : 0)
            case .float(let d):
                guard d.isFinite, abs(d) < 9.2e18 else { throw ScriptError(.runtime, "int(): cannot convert \(formatFloat(d)) to an integer") }
                return .int(Int(d))
            case .string(let s):
                guard let i = Int(s.trimmingCharacters(in: .whitespaces)) else { throw ScriptError(.runtime, "int(): invalid literal \(quote(s))") }
                return .int(i)
            case .tensor(let t) where t.value.count == 1: return .int(Int(t.value[flat: 0]))
            case .intTensor(let t) where t.value.count == 1: return .int(t.value.scalars[0])
            default: throw ScriptError(.runtime, "int(): cannot convert \(an(a[0].typeName))")
            }
        }
        def("float", [("x", nil)], doc: "Converts a number, bool, numeric string or one-element tensor to a float.") { a, _, _ in
            switch a[0] {
            case .string(let s):
                guard let d = Double(s.trimmingCharacters(in: .whitespaces)) else { throw ScriptError(.runtime, "float(): invalid literal \(quote(s))") }
                return .float(d)
            default: return .float(try ArgumentReader(function: "float").double(a[0], "x"))
            }
        }
        def("bool", [("x", nil)], doc: "Truthiness: false, nil, 0, empty strings and collections are false.") { a, _, _ in .bool(a[0].isTruthy) }
        def("type", [("x", nil)], doc: "The type name of a value: int, float, string, list, tensor, ...") { a, _, _ in .string(a[0].typeName) }
        def("help", [("x", nil)], doc: "Documentation of a function, or the members of a value.") { a, _, interp in
            .string(interp.describeHelp(a[0]))
        }
        def("round", [("x", nil), ("ndigits", .nilValue)],
            doc: "Rounds half to even, as Python: round(x) is an int, round(x, n) a float with n decimals.") { a, _, _ in
            let r = ArgumentReader(function: "round")
            if a[1].isNil {
                if case .int = a[0] { return a[0] }
                let d = try r.double(a[0], "x")
                guard d.isFinite, Swift.abs(d) < 9.2e18 else { throw ScriptError(.runtime, "round(): cannot convert \(formatFloat(d)) to an integer") }
                return .int(Int(d.rounded(.toNearestOrEven)))
            }
            let n = try r.int(a[1], "ndigits"), d = try r.double(a[0], "x")
            let scale = Foundation.pow(10.0, Double(n))
            return .float((d * scale).rounded(.toNearestOrEven) / scale)
        }
        def("abs", [("x", nil)], doc: "Absolute value of a number or, elementwise, a tensor.") { a, _, _ in
            switch a[0] {
            case .int(let i): return .int(Swift.abs(i))
            case .float(let d): return .float(Swift.abs(d))
            case .tensor(let t): return .from(t.value.abs())
            default: throw ScriptError(.runtime, "abs(): \(an(a[0].typeName)) has no absolute value")
            }
        }
        for (name, wantMax) in [("min", false), ("max", true)] {
            def(name, variadic: true, doc: "The \(wantMax ? "largest" : "smallest") of several numbers or of one list.") { _, extra, interp in
                let items = extra.count == 1 ? try ArgumentReader(function: name).list(extra[0], "x") : extra
                guard var best = items.first else { throw ScriptError(.runtime, "\(name)() of an empty sequence") }
                let file = SourceFile(name: name, text: "")
                for v in items.dropFirst() {
                    let better = try interp.binary(wantMax ? ">" : "<", v, best, file: file, at: SourceLocation(line: 0, column: 0))
                    if better.isTruthy { best = v }
                }
                return best
            }
        }
        def("sum", [("xs", nil), ("start", .int(0))], doc: "The sum of a list of numbers (or tensors), plus start.") { a, _, interp in
            var acc = a[1]
            let file = SourceFile(name: "sum", text: "")
            for v in try ArgumentReader(function: "sum").list(a[0], "xs") {
                acc = try interp.binary("+", acc, v, file: file, at: SourceLocation(line: 0, column: 0))
            }
            return acc
        }
        def("sorted", [("xs", nil), ("key", .nilValue), ("reverse", .bool(false))], doc: "A sorted copy of a list (numbers or strings), by key(x) if given.") { a, _, interp in
            let items = try ArgumentReader(function: "sorted").list(a[0], "xs")
            let keys = try items.map { a[1].isNil ? $0 : try interp.callValue(a[1], [$0]) }
            let file = SourceFile(name: "sorted", text: "")
            var order = Array(items.indices)
            var failure: Error? = nil
            order.sort { i, j in
                do { return try interp.binary("<", keys[i], keys[j], file: file, at: SourceLocation(line: 0, column: 0)).isTruthy }
                catch { failure = error; return false }
            }
            if let f = failure { throw ScriptError(.runtime, "sorted(): items cannot be compared (\((f as? ScriptError)?.message ?? "\(f)"))") }
            if try ArgumentReader(function: "sorted").bool(a[2], "reverse") { order.reverse() }
            return .list(ListBox(order.map { items[$0] }))
        }
        def("enumerate", [("xs", nil), ("start", .int(0))], doc: "Pairs [index, item] for each item of a list.") { a, _, _ in
            let r = ArgumentReader(function: "enumerate")
            let start = try r.int(a[1], "start")
            // An index past 64 bits becomes a float, as every integer result does.
            return .list(ListBox(try r.list(a[0], "xs").enumerated().map { i, x in
                let (n, overflow) = start.addingReportingOverflow(i)
                return .list(ListBox([overflow ? .float(Double(start) + Double(i)) : .int(n), x]))
            }))
        }
        def("zip", variadic: true, doc: "Lists of corresponding items of several lists, as long as the shortest.") { _, extra, _ in
            let lists = try extra.map { try ArgumentReader(function: "zip").list($0, "xs") }
            let n = lists.map(\.count).min() ?? 0
            return .list(ListBox((0..<n).map { i in .list(ListBox(lists.map { $0[i] })) }))
        }
        def("map", [("f", nil), ("xs", nil)], doc: "A list of f(x) for each item.") { a, _, interp in
            .list(ListBox(try ArgumentReader(function: "map").list(a[1], "xs").map { try interp.callValue(a[0], [$0]) }))
        }
        def("filter", [("f", nil), ("xs", nil)], doc: "The items for which f(x) is true.") { a, _, interp in
            .list(ListBox(try ArgumentReader(function: "filter").list(a[1], "xs").filter { try interp.callValue(a[0], [$0]).isTruthy }))
        }
        def("seed", [("n", nil)], doc: "Seeds every random stream: weights, sampling, augmentation, shuffling.") { a, _, _ in
            RandomGenerator.seed(UInt64(bitPattern: Int64(try ArgumentReader(function: "seed").int(a[0], "n"))))
            return .nilValue
        }
        def("process_time", doc: "CPU seconds used by this process, all threads (Python's time.process_time()).") { _, _, _ in
            var ts = timespec()
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
            return .float(Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9)
        }
        def("time", doc: "Seconds from a monotonic clock, fractional.") { _, _, _ in
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            return .float(Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9)
        }
        def("env", [("name", nil)], doc: "An environment variable's value, or nil.") { a, _, _ in
            let n = try ArgumentReader(function: "env").string(a[0], "name")
            return ProcessInfo.processInfo.environment[n].map { .string($0) } ?? .nilValue
        }
        def("exit", [("code", .int(0))], doc: "Stops the script with an exit status.") { a, _, _ in
            var e = ScriptError(.exit, "exit")
            e.exitCode = Int32(truncatingIfNeeded: try ArgumentReader(function: "exit").int(a[0], "code"))
            throw e
        }
        def("exists", [("path", nil)], doc: "Whether a file or folder exists at path.") { a, _, _ in
            .bool(FileManager.default.fileExists(atPath: try ArgumentReader(function: "exists").string(a[0], "path")))
        }
        def("list_dir", [("path", nil)], doc: "The names in a folder, sorted (hidden ones, starting with \".\", left out).") { a, _, _ in
            let path = try ArgumentReader(function: "list_dir").string(a[0], "path")
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
                throw ScriptError(.runtime, "list_dir(): \(quote(path)) is not a folder")
            }
            return .list(ListBox(try FileManager.default.contentsOfDirectory(atPath: path).filter { !$0.hasPrefix(".") }.sorted().map { .string($0) }))
        }
        def("temp_dir", [("prefix", .string("smil"))], doc: "A new, empty folder under the system's temporary folder ($TMPDIR or /tmp), removed with its contents when smil exits; its path.") { a, _, _ in
            let prefix = try ArgumentReader(function: "temp_dir").string(a[0], "prefix")
            var template = Array((NSTemporaryDirectory() as NSString).appendingPathComponent("\(prefix)-XXXXXX").utf8CString)
            guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
                throw ScriptError(.runtime, "temp_dir(): cannot create a folder in \(NSTemporaryDirectory()): \(String(cString: strerror(errno)))")
            }
            let path = String(cString: template)
            TemporaryFolders.add(path)
            return .string(path)
        }
        def("skip", [("reason", nil)], doc: "Skips the current test, printing the reason (smil test counts it as skipped).") { a, _, _ in
            throw ScriptError(.skip, try ArgumentReader(function: "skip").string(a[0], "reason"))
        }
        def("json", [("x", nil)], doc: "The JSON text of a value (numbers, strings, booleans, nil, lists, dicts).") { a, _, _ in
            .string(try toJSON(a[0]))
        }
        def("read_csv", [("path", nil)], doc: "The rows of a CSV file as lists of strings (quoted fields supported).") { a, _, _ in
            let path = try ArgumentReader(function: "read_csv").string(a[0], "path")
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ScriptError(.runtime, "read_csv(): cannot read \(path)") }
            return .list(ListBox(parseCSV(text).map { .list(ListBox($0.map { .string($0) })) }))
        }
        def("write_csv", [("path", nil), ("rows", nil)], doc: "Writes rows (lists of values) as a CSV file, atomically.") { a, _, _ in
            let r = ArgumentReader(function: "write_csv")
            let path = try r.string(a[0], "path")
            let rows = try r.list(a[1], "rows").map { try r.list($0, "rows") }
            let text = rows.map { $0.map { csvField(render($0, quoted: false)) }.joined(separator: ",") }.joined(separator: "\n") + "\n"
            do { try writeAtomically(Data(text.utf8), to: path) } catch { throw ScriptError(.runtime, "write_csv(): \(error)") }
            return .nilValue
        }
        def("assert_close", [("a", nil), ("b", nil), ("rtol", .float(1e-5)), ("atol", .float(1e-8))],
            doc: "Fails unless a and b (numbers or tensors) agree within atol + rtol * |b| everywhere; the error names the largest difference and where it is.") { a, _, _ in
            let r = ArgumentReader(function: "assert_close")
            let x = try r.tensor(a[0], "a"), y = try r.tensor(a[1], "b")
            let rtol = try r.double(a[2], "rtol"), atol = try r.double(a[3], "atol")
            guard x.shape == y.shape || x.count == 1 || y.count == 1 else {
                throw ScriptError(.runtime, "assert_close: shapes \(shapeString(x.shape)) and \(shapeString(y.shape)) differ")
            }
            let n = max(x.count, y.count)
            var worst = -1.0, at = 0
            for i in 0..<n {
                let u = Double(x[flat: x.count == 1 ? 0 : i]), v = Double(y[flat: y.count == 1 ? 0 : i])
                let excess = Swift.abs(u - v) - (atol + rtol * Swift.abs(v))
                if excess > 0 && (worst < 0 || Swift.abs(u - v) > worst) { worst = Swift.abs(u - v); at = i }
                if u.isNaN != v.isNaN { worst = .infinity; at = i; break }
            }
            if worst >= 0 {
                let shape = x.count >= y.count ? x.shape : y.shape
                var idx: [Int] = [], rest = at
                for s in shape.reversed() { idx.insert(rest % max(s, 1), at: 0); rest /= max(s, 1) }
                let u = x[flat: x.count == 1 ? 0 : at], v = y[flat: y.count == 1 ? 0 : at]
                throw ScriptError(.runtime, "not close: largest difference \(formatFloat(worst)) at \(shape.isEmpty ? "[]" : "\(idx)") (\(formatFloat(Double(u))) vs \(formatFloat(Double(v))); rtol \(formatFloat(rtol)), atol \(formatFloat(atol)))")
            }
            return .nilValue
        }
        _ = r
    }

    /// `help(x)`: a builtin's signature and doc, or a value's type and members.
    func describeHelp(_ v: Value) -> String {
        switch v {
        case .function(let f): return f.doc
        default:
            let names = memberNames(v)
            return "\(v.typeName)" + (names.isEmpty ? "" : "\nmembers: " + names.sorted().joined(separator: ", "))
        }
    }
}

extension Value {
    var isNil: Bool { if case .nilValue = self { return true }; return false }
}

/// A host object with a length (datasets).
public protocol LengthObject { var length: Int { get } }

func toJSON(_ v: Value) throws -> String {
    var open = Set<ObjectIdentifier>()
    return try toJSON(v, open: &open)
}

private func toJSON(_ v: Value, open: inout Set<ObjectIdentifier>) throws -> String {
    switch v {
    case .list(let l):
        guard open.insert(ObjectIdentifier(l)).inserted else { throw ScriptError(.runtime, "json(): the list contains itself (a circular reference)") }
        defer { open.remove(ObjectIdentifier(l)) }
        var parts: [String] = []
        for x in l.items { parts.append(try toJSON(x, open: &open)) }
        return "[" + parts.joined(separator: ", ") + "]"
    case .dict(let d):
        guard open.insert(ObjectIdentifier(d)).inserted else { throw ScriptError(.runtime, "json(): the dict contains itself (a circular reference)") }
        defer { open.remove(ObjectIdentifier(d)) }
        var parts: [String] = []
        for (k, x) in zip(d.keys, d.values) { parts.append(quote(render(k, quoted: false)) + ": " + (try toJSON(x, open: &open))) }
        return "{" + parts.joined(separator: ", ") + "}"
    default: break
    }
    switch v {
    case .int(let i): return String(i)
    case .float(let d): return d.isFinite ? formatFloat(d) : "null"
    case .bool(let b): return b ? "true" : "false"
    case .nilValue: return "null"
    case .string(let s): return quote(s)
    case .tensor(let t): return try toJSON(.list(ListBox(t.value.scalars.map { .float(Double($0)) })))
    default: throw ScriptError(.runtime, "json(): \(an(v.typeName)) has no JSON form")
    }
}

/// RFC 4180-style CSV: commas, double-quoted fields with "" escapes, LF or CRLF lines.
func parseCSV(_ text: String) -> [[String]] {
    var rows: [[String]] = [], row: [String] = [], field = ""
    var quoted = false, i = text.startIndex
    while i < text.endIndex {
        let c = text[i]
        if quoted {
            if c == "\"" {
                let n = text.index(after: i)
                if n < text.endIndex && text[n] == "\"" { field.append("\""); i = n } else { quoted = false }
            } else { field.append(c) }
        } else if c == "\"" { quoted = true }
        else if c == "," { row.append(field); field = "" }
        else if c == "\n" || c == "\r\n" { row.append(field); rows.append(row); row = []; field = "" }
        else if c != "\r" { field.append(c) }
        i = text.index(after: i)
    }
    if !field.isEmpty || !row.isEmpty { row.append(field); rows.append(row) }
    return rows
}

func csvField(_ s: String) -> String {
    s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
}

/// Folders `temp_dir()` made, removed when the process exits normally.
enum TemporaryFolders {
    nonisolated(unsafe) static var paths: [String] = []
    static let lock = NSLock()

    static func add(_ path: String) {
        lock.withLock {
            if paths.isEmpty { atexit { TemporaryFolders.removeAll() } }
            paths.append(path)
        }
    }

    static func removeAll() {
        lock.withLock {
            for p in paths { try? FileManager.default.removeItem(atPath: p) }
            paths = []
        }
    }
}
