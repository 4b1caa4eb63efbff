// Members.swift: members and methods of the built-in value kinds — lists, dicts, strings and
// tensors — and the dispatch to host objects.

import Core

extension Interpreter {
    static let listMethods = ["append", "pop", "extend", "insert", "index", "copy"]
    static let dictMethods = ["keys", "values", "items", "get", "pop"]
    static let stringMethods = ["upper", "lower", "strip", "split", "join", "startswith", "endswith", "replace"]
    static let tensorProperties = ["shape", "ndim", "numel", "dtype", "grad", "requires_grad"]

    func memberNames(_ v: Value) -> [String] {
        switch v {
        case .list: return Self.listMethods
        case .dict: return Self.dictMethods
        case .string: return Self.stringMethods
        case .tensor, .intTensor: return Self.tensorProperties + tensorMethods.keys
        case .object(let o): return o.memberNames
        default: return []
        }
    }

    func bound(_ receiver: Value, _ name: String, _ params: [(String, Value?)], doc: String,
               _ body: @escaping ([Value], [Value], Interpreter) throws -> Value) -> Value {
        .function(Function(.method(receiver, Builtin(Signature(name, params), doc: doc, body))))
    }

    func memberValue(_ obj: Value, _ name: String) throws -> Value? {
        switch obj {
        case .list(let l): return listMember(l, obj, name)
        case .dict(let d): return dictMember(d, obj, name)
        case .string(let s): return stringMember(s, obj, name)
        case .tensor(let box):
            let t = box.value
            switch name {
            case "shape": return .ints(t.shape)
            case "ndim": return .int(t.rank)
            case "numel": return .int(t.count)
            case "dtype": return .string("float32")
            case "grad": return t.grad.map { .from($0) } ?? .nilValue
            case "requires_grad": return .bool(t.requiresGrad)
            default: break
            }
        case .intTensor(let box):
            switch name {
            case "shape": return .ints(box.value.shape)
            case "ndim": return .int(box.value.rank)
            case "numel": return .int(box.value.count)
            case "dtype": return .string("int64")
            case "grad": return .nilValue
            case "requires_grad": return .bool(false)
            default: break
            }
        case .object(let o): return try o.member(name, self)
        default: return nil
        }
        if let m = tensorMethods[name] { return .function(Function(.method(obj, m))) }
        return nil
    }

    func setMemberValue(_ obj: Value, _ name: String, _ v: Value) throws -> Bool {
        switch obj {
        case .tensor(let box):
            switch name {
            case "requires_grad":
                var t = box.value
                t.requiresGrad = try ArgumentReader(function: "requires_grad").bool(v, "value")
                box.value = t
                return true
            case "grad":
                box.value.grad = v.isNil ? nil : try ArgumentReader(function: "grad").tensor(v, "value")
                return true
            default: return false
            }
        case .object(let o): return try o.setMember(name, v, self)
        default: return false
        }
    }

    func listMember(_ l: ListBox, _ obj: Value, _ name: String) -> Value? {
        switch name {
        case "append": return bound(obj, "append", [("x", nil)], doc: "Adds x at the end.") { a, _, _ in l.items.append(a[1]); return .nilValue }
        case "pop": return bound(obj, "pop", [("i", .int(-1))], doc: "Removes and returns the item at i (the last by default).") { a, _, _ in
            guard !l.items.isEmpty else { throw ScriptError(.runtime, "pop from an empty list") }
            var i = try ArgumentReader(function: "pop").int(a[1], "i")
            if i < 0 { i += l.items.count }
            guard i >= 0 && i < l.items.count else { throw ScriptError(.runtime, "pop index out of range") }
            return l.items.remove(at: i)
        }
        case "extend": return bound(obj, "extend", [("xs", nil)], doc: "Appends every item of xs.") { a, _, _ in
            l.items += try ArgumentReader(function: "extend").list(a[1], "xs"); return .nilValue
        }
        case "insert": return bound(obj, "insert", [("i", nil), ("x", nil)], doc: "Inserts x before index i.") { a, _, _ in
            let i = try ArgumentReader(function: "insert").int(a[1], "i")
            l.items.insert(a[2], at: min(max(i < 0 ? i + l.items.count : i, 0), l.items.count)); return .nilValue
        }
        case "index": return bound(obj, "index", [("x", nil)], doc: "The first index of x.") { a, _, _ in
            guard let i = l.items.firstIndex(where: { valuesEqual($0, a[1]) }) else { throw ScriptError(.runtime, "\(render(a[1], quoted: true)) is not in the list") }
            return .int(i)
        }
        case "copy": return bound(obj, "copy", [], doc: "A shallow copy.") { _, _, _ in .list(ListBox(l.items)) }
        default: return nil
        }
    }

    func dictMember(_ d: DictBox, _ obj: Value, _ name: String) -> Value? {
        switch name {
        case "keys": return bound(obj, "keys", [], doc: "The keys, in insertion order.") { _, _, _ in .list(ListBox(d.keys)) }
        case "values": return bound(obj, "values", [], doc: "The values, in insertion order.") { _, _, _ in .list(ListBox(d.values)) }
        case "items": return bound(obj, "items", [], doc: "[key, value] pairs.") { _, _, _ in
            .list(ListBox(zip(d.keys, d.values).map { .list(ListBox([$0, $1])) }))
        }
        case "get": return bound(obj, "get", [("key", nil), ("default", .nilValue)], doc: "The value for key, or default.") { a, _, _ in d.get(a[1]) ?? a[2] }
        case "pop": return bound(obj, "pop", [("key", nil)], doc: "Removes key and returns its value.") { a, _, _ in
            guard let v = d.remove(a[1]) else { throw ScriptError(.runtime, "key \(render(a[1], quoted: true)) not in dict") }
            return v
        }
        default: return nil
        }
    }

    func stringMember(_ s: String, _ obj: Value, _ name: String) -> Value? {
        switch name {
        case "upper": return bound(obj, name, [], doc: "Upper case.") { _, _, _ in .string(s.uppercased()) }
        case "lower": return bound(obj, name, [], doc: "Lower case.") { _, _, _ in .string(s.lowercased()) }
        case "strip": return bound(obj, name, [], doc: "Without leading and trailing white space.") { _, _, _ in
            .string(String(s.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed()))
        }
        case "split": return bound(obj, name, [("sep", .nilValue)], doc: "Parts split at sep (at white space without one).") { a, _, _ in
            if a[1].isNil { return .list(ListBox(s.split(whereSeparator: \.isWhitespace).map { .string(String($0)) })) }
            let sep = try ArgumentReader(function: "split").string(a[1], "sep")
            guard !sep.isEmpty else { throw ScriptError(.runtime, "split(): empty separator") }
            return .list(ListBox(s.components(separatedBy: sep).map { .string($0) }))
        }
        case "join": return bound(obj, name, [("items", nil)], doc: "The items' text joined with this string between them.") { a, _, _ in
            .string(try ArgumentReader(function: "join").list(a[1], "items").map { render($0, quoted: false) }.joined(separator: s))
        }
        case "startswith", "endswith": return bound(obj, name, [("x", nil)], doc: "Whether the string \(name == "startswith" ? "starts" : "ends") with x.") { a, _, _ in
            let x = try ArgumentReader(function: name).string(a[1], "x")
            return .bool(name == "startswith" ? s.hasPrefix(x) : s.hasSuffix(x))
        }
        case "replace": return bound(obj, name, [("old", nil), ("new", nil)], doc: "Every old replaced by new.") { a, _, _ in
            let r = ArgumentReader(function: "replace")
            return .string(s.replacingOccurrences(of: try r.string(a[1], "old"), with: try r.string(a[2], "new")))
        }
        default: return nil
        }
    }
}
