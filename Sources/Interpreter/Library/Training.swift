// Training.swift: losses and optimizers (spec section 3, Training).

import Core

/// An optimizer in a script: `.step()`, `.zero_grad()`, `.lr` (every group's), `.param_groups`
/// (live: `opt.param_groups[0]["lr"] = 1e-4` changes that group), `.state_dict()` and
/// `.load_state_dict(sd)` in torch.optim's layout.
final class OptimizerObject: HostObject {
    let optimizer: Optimizer
    let kind: String
    init(_ o: Optimizer, kind: String) { optimizer = o; self.kind = kind }
    override var typeName: String { kind }
    override var memberNames: [String] { ["step", "zero_grad", "lr", "param_groups", "state_dict", "load_state_dict"] }
    override var description: String {
        let groups = optimizer.groups.indices.map { g in
            "  group \(g): " + optimizer.options(group: g).map { "\($0.name): \(render(optionValue($0.value), quoted: true))" }.joined(separator: ", ")
                + ", parameters: \(optimizer.groups[g].count)"
        }
        return "\(kind)(\n" + groups.joined(separator: "\n") + "\n)"
    }

    override func member(_ name: String, _ interp: Interpreter) throws -> Value? {
        let o = optimizer, me = Value.object(self), kind = self.kind
        switch name {
        case "lr": return .float(Double(o.learningRate))
        case "param_groups": return .list(ListBox(o.groups.indices.map { .object(ParamGroupObject(o, group: $0, kind: kind)) }))
        case "step": return interp.bound(me, name, [], doc: "Updates every parameter that has a gradient.") { _, _, _ in try o.step(); return .nilValue }
        case "zero_grad": return interp.bound(me, name, [], doc: "Clears the gradients.") { _, _, _ in o.zeroGrad(); return .nilValue }
        case "state_dict":
            return interp.bound(me, name, [], doc: "{\"state\": {index: {name: tensor}}, \"param_groups\": [options with \"params\": indices]}, as torch.optim.") { _, _, _ in
                optimizerStateDict(o)
            }
        case "load_state_dict":
            return interp.bound(me, name, [("state_dict", nil)], doc: "Restores state and group options from state_dict() (or torch.optim's) for the same parameter groups.") { a, _, _ in
                try loadOptimizerStateDict(o, kind: kind, a[1])
                return .nilValue
            }
        default: return nil
        }
    }

    override func callMethod(_ name: String, _ args: Arguments, _ interp: Interpreter) throws -> Value? {
        guard args.positional.isEmpty && args.labelled.isEmpty else { return nil }
        switch name {
        case "step": try optimizer.step(); return .nilValue
        case "zero_grad": optimizer.zeroGrad(); return .nilValue
        default: return nil
        }
    }

    override func setMember(_ name: String, _ value: Value, _ interp: Interpreter) throws -> Bool {
        guard name == "lr" else { return false }
        let lr = try ArgumentReader(function: "lr").double(value, "lr")
        for g in optimizer.groups.indices { try optimizer.setOption("lr", .number(lr), group: g) }
        return true
    }
}

/// One of an optimizer's `param_groups`, read and written like torch's dict: `g["lr"]`,
/// `g["lr"] = 1e-4`, `g["params"]`, `g.keys()`.
final class ParamGroupObject: HostObject, IndexableObject, IndexAssignableObject {
    let optimizer: Optimizer
    let group: Int
    let kind: String
    init(_ o: Optimizer, group: Int, kind: String) { optimizer = o; self.group = group; self.kind = kind }
    override var typeName: String { "param_group" }
    var keys: [String] { optimizer.options(group: group).map(\.name) + ["params"] }
    override var memberNames: [String] { ["keys", "items"] }
    override var description: String {
        "{" + optimizer.options(group: group).map { "\(quote($0.name)): \(render(optionValue($0.value), quoted: true))" }.joined(separator: ", ")
            + ", \"params\": [\(optimizer.groups[group].count) tensors]}"
    }

    func index(_ i: Value, _ interp: Interpreter) throws -> Value {
        let key = try ArgumentReader(function: "param_group").string(i, "key")
        if key == "params" { return .list(ListBox(optimizer.groups[group].map { .tensor(TensorBox(parameter: $0)) })) }
        guard let v = optimizer.options(group: group).first(where: { $0.name == key })?.value else {
            throw ScriptError(.runtime, "param_group has no key \(quote(key)) (keys: \(keys.joined(separator: ", ")))")
        }
        return optionValue(v)
    }

    func setIndex(_ i: Value, _ v: Value, _ interp: Interpreter) throws {
        let key = try ArgumentReader(function: "param_group").string(i, "key")
        guard key != "params" else { throw ScriptError(.runtime, "a param group's params cannot be replaced; make a new optimizer") }
        try optimizer.setOption(key, try optionValue(from: v, key), group: group)
    }

    override func member(_ name: String, _ interp: Interpreter) throws -> Value? {
        let me = Value.object(self)
        switch name {
        case "keys": return interp.bound(me, name, [], doc: "The option names and \"params\".") { [keys] _, _, _ in .list(ListBox(keys.map { .string($0) })) }
        case "items":
            return interp.bound(me, name, [], doc: "[name, value] pairs.") { [self] _, _, _ in
                .list(ListBox(try keys.map { .list(ListBox([.string($0), try index(.string($0), interp)])) }))
            }
        default: return nil
        }
    }
}

/// A group option as a script value: a number, a list of two (betas), a bool.
func optionValue(_ v: OptionValue) -> Value {
    switch v {
    case .number(let x): return .float(x)
    case .pair(let a, let b): return .list(ListBox([.float(a), .float(b)]))
    case .flag(let b): return .bool(b)
    }
}

func optionValue(from v: Value, _ name: String) throws -> OptionValue {
    let r = ArgumentReader(function: name)
    switch v {
    case .bool(let b): return .flag(b)
    case .int, .float: return .number(try r.double(v, name))
    case .list(let l) where l.items.count == 2: return .pair(try r.double(l.items[0], name), try r.double(l.items[1], name))
    default: throw r.wrong(name, "a number, a pair of numbers or a bool", v)
    }
}

/// torch.optim's layout: `{"state": {0: {"step": tensor(3.), "exp_avg": ...}}, "param_groups":
/// [{"lr": ..., ..., "params": [0, 1]}]}`; the step is a float tensor, as torch keeps it.
func optimizerStateDict(_ o: Optimizer) -> Value {
    let state = DictBox()
    for (key, tensor) in o.stateDict() {
        guard let dot = key.firstIndex(of: "."), let i = Int(key[..<dot]) else { continue }
        let name = String(key[key.index(after: dot)...])
        let entry: DictBox
        if case .dict(let d)? = state.get(.int(i)) { entry = d } else { entry = DictBox(); state.set(.int(i), .dict(entry)) }
        if name == "step", case .int(let t) = tensor { entry.set(.string(name), .from(Tensor(scalar: Float(t.scalars.first ?? 0)))) }
        else { entry.set(.string(name), .from(tensor)) }
    }
    var index = 0
    let groups = o.groups.indices.map { g -> Value in
        let d = DictBox()
        for (name, v) in o.options(group: g) { d.set(.string(name), optionValue(v)) }
        d.set(.string("params"), .ints(Array(index..<(index + o.groups[g].count))))
        index += o.groups[g].count
        return .dict(d)
    }
    let out = DictBox()
    out.set(.string("state"), .dict(state))
    out.set(.string("param_groups"), .list(ListBox(groups)))
    return .dict(out)
}

/// Keys torch.optim adds to a group that this optimizer does not model, with the values that mean
/// "off"; a file with any other value for them is refused rather than half-honoured.
let torchOnlyGroupKeys: [String: Value] = ["foreach": .nilValue, "capturable": .bool(false), "differentiable": .bool(false),
                                           "fused": .nilValue, "decoupled_weight_decay": .bool(false)]

func loadOptimizerStateDict(_ o: Optimizer, kind: String, _ v: Value) throws {
    let f = "load_state_dict"
    guard case .dict(let sd) = v, case .dict(let state)? = sd.get(.string("state")), case .list(let groups)? = sd.get(.string("param_groups")) else {
        throw ScriptError(.runtime, "\(f)(): expected {\"state\": {...}, \"param_groups\": [...]} from an optimizer's state_dict(), got \(an(v.typeName))")
    }
    guard groups.items.count == o.groups.count else {
        throw ScriptError(.runtime, "\(f)(): the state dict has \(groups.items.count) parameter groups, this \(kind) has \(o.groups.count)")
    }
    // Check everything before changing anything.
    var options: [[(String, OptionValue)]] = []
    for (g, item) in groups.items.enumerated() {
        guard case .dict(let d) = item, case .list(let params)? = d.get(.string("params")) else {
            throw ScriptError(.runtime, "\(f)(): param_groups[\(g)] must be a dict with \"params\"")
        }
        guard params.items.count == o.groups[g].count else {
            throw ScriptError(.runtime, "\(f)(): param_groups[\(g)] has \(params.items.count) parameters, this optimizer's group \(g) has \(o.groups[g].count)")
        }
        var group: [(String, OptionValue)] = []
        for (k, value) in zip(d.keys, d.values) {
            guard case .string(let name) = k, name != "params" else { continue }
            if let off = torchOnlyGroupKeys[name] {
                guard valuesEqual(value, off) || (name == "decoupled_weight_decay" && kind == "AdamW") else {
                    throw ScriptError(.runtime, "\(f)(): param_groups[\(g)][\(quote(name))] is \(render(value, quoted: true)), which smil's \(kind) does not support")
                }
                continue
            }
            group.append((name, try optionValue(from: value, name)))
        }
        options.append(group)
    }
    var flat: [String: AnyTensor] = [:]
    let r = ArgumentReader(function: f)
    for (k, entry) in zip(state.keys, state.values) {
        let i = try r.int(k, "state index")
        guard i >= 0 && i < o.parameters.count else {
            throw ScriptError(.runtime, "\(f)(): state for parameter \(i), but the optimizer has \(o.parameters.count) parameters")
        }
        guard case .dict(let d) = entry else { throw r.wrong("state", "a dict of tensors per parameter", entry) }
        for (name, t) in zip(d.keys, d.values) {
            let n = try r.string(name, "state name")
            switch t {
            case .tensor(let box): flat["\(i).\(n)"] = .float(box.value)
            case .intTensor(let box): flat["\(i).\(n)"] = .int(box.value)
            case .int(let x): flat["\(i).\(n)"] = .int(IntTensor([x]))
            case .float(let x): flat["\(i).\(n)"] = .float(Tensor([Float(x)]))
            default: throw r.wrong("state", "tensors", t)
            }
        }
    }
    // Options first (they are checked one by one), then the state (checked against shapes).
    let saved = o.groups.indices.map { o.options(group: $0) }
    do {
        for (g, group) in options.enumerated() { for (name, v) in group { try o.setOption(name, v, group: g) } }
        try o.loadStateDict(flat)
    } catch {
        for (g, group) in saved.enumerated() { for (name, v) in group { try? o.setOption(name, v, group: g) } }
        throw error
    }
}

extension Interpreter {
    /// The parameters behind a module or a list of script tensors: module parameters as they are,
    /// a script's own leaf tensors that require grad made parameters (`TensorBox.asParameter`).
    func parameters(_ v: Value, function: String) throws -> [Parameter] {
        let r = ArgumentReader(function: function)
        if case .object(let m as ModuleObject) = v { return m.module.allParameters() }
        let items = try r.list(v, "params")
        var seen = Set<ObjectIdentifier>()
        return try items.enumerated().map { i, item in
            guard case .tensor(let box) = item else { throw r.wrong("params", "a list of float tensors", item) }
            let p = try box.asParameter(function: function, index: i)
            guard seen.insert(ObjectIdentifier(p)).inserted else {
                throw ScriptError(.runtime, "\(function)(): params[\(i)] appears twice in params (torch.optim refuses duplicates too)")
            }
            return p
        }
    }

    /// `params` as groups: one group for a module or a list of tensors; for a list of dicts, one
    /// group per dict from its "params" and its options (names in `options`; others are errors).
    func parameterGroups(_ v: Value, function: String, options names: Set<String>) throws -> [(parameters: [Parameter], options: [String: Value])] {
        guard case .list(let l) = v, let first = l.items.first, case .dict = first else {
            return [(try parameters(v, function: function), [:])]
        }
        var groups: [(parameters: [Parameter], options: [String: Value])] = []
        for (g, item) in l.items.enumerated() {
            guard case .dict(let d) = item else {
                throw ScriptError(.runtime, "\(function)(): params[\(g)] must be a parameter group dict like params[0], got \(an(item.typeName))")
            }
            guard let ps = d.get(.string("params")) else { throw ScriptError(.runtime, "\(function)(): parameter group \(g) has no \"params\"") }
            var options: [String: Value] = [:]
            for (k, value) in zip(d.keys, d.values) {
                guard case .string(let name) = k else { throw ScriptError(.runtime, "\(function)(): parameter group \(g) has a key that is not a string") }
                if name == "params" { continue }
                guard names.contains(name) else {
                    throw ScriptError(.runtime, "\(function)(): parameter group \(g) has an unknown option \(quote(name)) (\(function) takes \(names.sorted().joined(separator: ", ")))")
                }
                options[name] = value
            }
            groups.append((try parameters(ps, function: function), options))
        }
        return groups
    }

    func registerTraining() {
        def("cross_entropy", [("logits", nil), ("labels", nil), ("weight", .nilValue)], doc: "Mean cross-entropy of logits [N, C] against int64 labels [N], optionally weighted per class.") { a, _, _ in
            let r = ArgumentReader(function: "cross_entropy")
            return .from(try Loss.crossEntropy(try r.tensor(a[0], "logits"), try r.intTensor(a[1], "labels"), weight: a[2].isNil ? nil : try r.tensor(a[2], "weight")))
        }
        def("bce_with_logits", [("logits", nil), ("targets", nil)], doc: "Mean binary cross-entropy on logits.") { a, _, _ in
            let r = ArgumentReader(function: "bce_with_logits")
            return .from(try Loss.bceWithLogits(try r.tensor(a[0], "logits"), try r.tensor(a[1], "targets")))
        }
        def("mse", [("a", nil), ("b", nil)], doc: "Mean squared error.") { a, _, _ in
            let r = ArgumentReader(function: "mse")
            return .from(try Loss.mse(try r.tensor(a[0], "a"), try r.tensor(a[1], "b")))
        }
        for (name, decoupled) in [("Adam", false), ("AdamW", true)] {
            def(name, [("params", nil), ("lr", .float(1e-3)), ("betas", .list(ListBox([.float(0.9), .float(0.999)]))), ("eps", .float(1e-8)),
                       ("weight_decay", decoupled ? .float(1e-2) : .float(0))],
                doc: (decoupled ? "AdamW (decoupled weight decay), as torch.optim.AdamW." : "Adam with L2 weight decay added to the gradient, as torch.optim.Adam.")
                    + " params: a module, a list of tensors, or parameter groups [{\"params\": ..., \"lr\": ...}, ...] whose options override the call's.") { a, _, interp in
                let r = ArgumentReader(function: name)
                func options(_ d: [String: Value]) throws -> Adam.Options {
                    let betasValue = d["betas"] ?? a[2]
                    let betas = try r.list(betasValue, "betas")
                    guard betas.count == 2 else { throw r.wrong("betas", "a list of two numbers", betasValue) }
                    return Adam.Options(lr: try r.double(d["lr"] ?? a[1], "lr"), betas: (try r.double(betas[0], "betas"), try r.double(betas[1], "betas")),
                                        eps: try r.double(d["eps"] ?? a[3], "eps"), weightDecay: try r.double(d["weight_decay"] ?? a[4], "weight_decay"))
                }
                let groups = try interp.parameterGroups(a[0], function: name, options: ["lr", "betas", "eps", "weight_decay"])
                let o = try Adam(groups: try groups.map { ($0.parameters, try options($0.options)) }, decoupled: decoupled)
                return .object(OptimizerObject(o, kind: name))
            }
        }
        def("SGD", [("params", nil), ("lr", nil), ("momentum", .float(0)), ("weight_decay", .float(0)), ("nesterov", .bool(false)), ("dampening", .float(0))],
            doc: "Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay, as torch.optim.SGD; params as for Adam, groups may set lr, momentum, dampening, weight_decay, nesterov.") { a, _, interp in
            let r = ArgumentReader(function: "SGD")
            let groups = try interp.parameterGroups(a[0], function: "SGD", options: ["lr", "momentum", "dampening", "weight_decay", "nesterov"])
            let o = try SGD(groups: try groups.map { g in
                (g.parameters, SGD.Options(lr: try r.double(g.options["lr"] ?? a[1], "lr"), momentum: try r.double(g.options["momentum"] ?? a[2], "momentum"),
                                           dampening: try r.double(g.options["dampening"] ?? a[5], "dampening"),
                                           weightDecay: try r.double(g.options["weight_decay"] ?? a[3], "weight_decay"),
                                           nesterov: try r.bool(g.options["nesterov"] ?? a[4], "nesterov")))
            })
            return .object(OptimizerObject(o, kind: "SGD"))
        }
    }
}
