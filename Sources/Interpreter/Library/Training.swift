// Training.swift: losses and optimizers (spec section 3, Training).

import Core

/// An optimizer in a script: `.step()`, `.zero_grad()`, settable `.lr`.
final class OptimizerObject: HostObject {
    let optimizer: Optimizer
    let kind: String
    init(_ o: Optimizer, kind: String) { optimizer = o; self.kind = kind }
    override var typeName: String { kind }
    override var memberNames: [String] { ["step", "zero_grad", "lr"] }
    override var description: String { "\(kind)(lr: \(formatFloat(Double(optimizer.learningRate))), parameters: \(optimizer.parameters.count))" }

    override func member(_ name: String, _ interp: Interpreter) throws -> Value? {
        let o = optimizer
        switch name {
        case "lr": return .float(Double(o.learningRate))
        case "step": return interp.bound(.object(self), name, [], doc: "Updates every parameter that has a gradient.") { _, _, _ in try o.step(); return .nilValue }
        case "zero_grad": return interp.bound(.object(self), name, [], doc: "Clears the gradients.") { _, _, _ in o.zeroGrad(); return .nilValue }
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
        optimizer.learningRate = try ArgumentReader(function: "lr").float(value, "lr")
        return true
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
                doc: decoupled ? "AdamW (decoupled weight decay), as torch.optim.AdamW." : "Adam with L2 weight decay added to the gradient, as torch.optim.Adam.") { a, _, interp in
                let r = ArgumentReader(function: name)
                let betas = try r.list(a[2], "betas")
                guard betas.count == 2 else { throw r.wrong("betas", "a list of two numbers", a[2]) }
                let o = Adam(try interp.parameters(a[0], function: name), lr: try r.float(a[1], "lr"),
                             betas: (try r.float(betas[0], "betas"), try r.float(betas[1], "betas")), eps: try r.float(a[3], "eps"),
                             weightDecay: try r.float(a[4], "weight_decay"), decoupled: decoupled)
                return .object(OptimizerObject(o, kind: name))
            }
        }
        def("SGD", [("params", nil), ("lr", nil), ("momentum", .float(0)), ("weight_decay", .float(0)), ("nesterov", .bool(false))],
            doc: "Stochastic gradient descent with momentum, Nesterov and L2 weight decay, as torch.optim.SGD.") { a, _, interp in
            let r = ArgumentReader(function: "SGD")
            let o = try SGD(try interp.parameters(a[0], function: "SGD"), lr: try r.float(a[1], "lr"), momentum: try r.float(a[2], "momentum"),
                            weightDecay: try r.float(a[3], "weight_decay"), nesterov: try r.bool(a[4], "nesterov"))
            return .object(OptimizerObject(o, kind: "SGD"))
        }
    }
}
