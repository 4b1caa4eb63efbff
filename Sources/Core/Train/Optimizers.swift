// Optimizers.swift: Adam, AdamW and SGD with torch.optim's exact update rules, parameter groups
// with their own options, and state in torch's layout.

import Foundation
import CKernels

/// One option of a parameter group, as torch.optim keeps it: a number, a pair (Adam's betas) or
/// a flag (SGD's nesterov).
public enum OptionValue: Equatable, Sendable {
    case number(Double)
    case pair(Double, Double)
    case flag(Bool)
}

/// Something that updates parameters from their gradients. Parameters come in groups, each with
/// its own options (torch.optim's `param_groups`: an embedder fine-tuned ten times slower than the
/// head); per-parameter state is indexed by a parameter's position in all groups together.
public protocol Optimizer: AnyObject {
    /// The parameter groups, in order.
    var groups: [[Parameter]] { get }
    /// Group `g`'s options by torch's names, in torch's order (`lr` first).
    func options(group g: Int) -> [(name: String, value: OptionValue)]
    /// Sets one option of group `g`; a name the optimizer does not have, or a value torch.optim
    /// would refuse, is an error naming it.
    func setOption(_ name: String, _ value: OptionValue, group g: Int) throws
    /// Applies one update to every parameter that has a gradient.
    func step() throws
    /// Per-parameter state tensors, named `INDEX.NAME` with torch's names (`0.exp_avg`, `3.step`).
    func stateDict() -> [(String, AnyTensor)]
    func loadStateDict(_ dict: [String: AnyTensor]) throws
}

extension Optimizer {
    /// Every parameter, group after group (the order state indices follow).
    public var parameters: [Parameter] { groups.flatMap { $0 } }

    /// The first group's learning rate; setting it sets every group's (as a scheduler does).
    public var learningRate: Float {
        get {
            guard case .number(let lr)? = options(group: 0).first(where: { $0.name == "lr" })?.value else { return 0 }
            return Float(lr)
        }
        set { for g in groups.indices { try? setOption("lr", .number(Double(newValue)), group: g) } }
    }

    /// Clears every parameter's gradient (`set_to_none`, PyTorch's default).
    public func zeroGrad() {
        for p in parameters { p.grad = nil }
    }
}

/// Checks shared by the optimizers, with torch.optim's conditions and words.
enum OptimizerChecks {
    static func groups(_ groups: [[Parameter]], op: String) throws {
        guard !groups.flatMap({ $0 }).isEmpty else { throw CoreError.invalidArgument(op: op, "optimizer got an empty parameter list") }
        var seen = Set<ObjectIdentifier>()
        for (g, group) in groups.enumerated() {
            for p in group where !seen.insert(ObjectIdentifier(p)).inserted {
                throw CoreError.invalidArgument(op: op, "a parameter of group \(g) appears in more than one parameter group (or twice in one)")
            }
        }
    }

    static func number(_ v: OptionValue, _ name: String, op: String) throws -> Double {
        guard case .number(let x) = v, x.isFinite else { throw CoreError.invalidArgument(op: op, "\(name) must be a finite number, got \(v)") }
        return x
    }

    static func atLeastZero(_ x: Double, _ name: String, op: String) throws {
        guard x >= 0 else { throw CoreError.invalidArgument(op: op, "invalid \(name): \(x) (it must be at least 0)") }
    }
}

/// Adam (Kingma & Ba) as torch.optim.Adam: `weightDecay` is L2 added to the gradient; with
/// `decoupled` it is AdamW's decay of the weights themselves.
public final class Adam: Optimizer {
    /// One group's options.
    /// Kept in double precision, as torch keeps them (Python floats): `lr` reads back as set.
    public struct Options: Equatable, Sendable {
        public var lr: Double
        public var beta1, beta2: Double
        public var eps: Double
        public var weightDecay: Double
        public init(lr: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8, weightDecay: Double = 0) {
            self.lr = lr
            (beta1, beta2) = betas
            self.eps = eps
            self.weightDecay = weightDecay
        }
    }

    public let groups: [[Parameter]]
    public private(set) var groupOptions: [Options]
    public let decoupled: Bool
    var m: [Tensor?], v: [Tensor?]
    var steps: [Int]
    var kind: String { decoupled ? "AdamW" : "Adam" }

    /// One group.
    public convenience init(_ parameters: [Parameter], lr: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8,
                            weightDecay: Double = 0, decoupled: Bool = false) throws {
        try self.init(groups: [(parameters, Options(lr: lr, betas: betas, eps: eps, weightDecay: weightDecay))], decoupled: decoupled)
    }

    /// Parameter groups with their own options.
    public init(groups: [(parameters: [Parameter], options: Options)], decoupled: Bool = false) throws {
        self.decoupled = decoupled
        self.groups = groups.map(\.parameters)
        groupOptions = groups.map(\.options)
        let count = groups.reduce(0) { $0 + $1.parameters.count }
        m = Array(repeating: nil, count: count)
        v = Array(repeating: nil, count: count)
        steps = Array(repeating: 0, count: count)
        try OptimizerChecks.groups(self.groups, op: kind)
        for o in groupOptions { try validate(o) }
    }

    func validate(_ o: Options) throws {
        try OptimizerChecks.atLeastZero(o.lr, "learning rate", op: kind)
        try OptimizerChecks.atLeastZero(o.eps, "epsilon value", op: kind)
        try OptimizerChecks.atLeastZero(o.weightDecay, "weight_decay value", op: kind)
        for (i, b) in [o.beta1, o.beta2].enumerated() where !(b >= 0 && b < 1) {
            throw CoreError.invalidArgument(op: kind, "invalid beta parameter at index \(i): \(b) (it must be in [0, 1))")
        }
    }

    public func options(group g: Int) -> [(name: String, value: OptionValue)] {
        let o = groupOptions[g]
        return [("lr", .number(o.lr)), ("betas", .pair(o.beta1, o.beta2)), ("eps", .number(o.eps)),
                ("weight_decay", .number(o.weightDecay)), ("amsgrad", .flag(false)), ("maximize", .flag(false))]
    }

    public func setOption(_ name: String, _ value: OptionValue, group g: Int) throws {
        var o = groupOptions[g]
        switch name {
        case "lr": o.lr = try OptimizerChecks.number(value, name, op: kind)
        case "eps": o.eps = try OptimizerChecks.number(value, name, op: kind)
        case "weight_decay": o.weightDecay = try OptimizerChecks.number(value, name, op: kind)
        case "betas":
            guard case .pair(let b1, let b2) = value else { throw CoreError.invalidArgument(op: kind, "betas must be two numbers, got \(value)") }
            (o.beta1, o.beta2) = (b1, b2)
        case "amsgrad", "maximize":
            guard value == .flag(false) else { throw CoreError.invalidArgument(op: kind, "\(name) is not supported (only false)") }
        default:
            throw CoreError.invalidArgument(op: kind, "\(kind) has no option \"\(name)\" (it has lr, betas, eps, weight_decay)")
        }
        try validate(o)
        groupOptions[g] = o
    }

    public func step() throws {
        var i = 0
        for (g, group) in groups.enumerated() {
            let o = groupOptions[g]
            for p in group {
                defer { i += 1 }
                guard let grad = p.grad else { continue }
                steps[i] += 1
                let t = Double(steps[i])
                // torch computes these in Python floats (double), then the update in float32.
                let bc1 = 1 - Foundation.pow(o.beta1, t), bc2 = 1 - Foundation.pow(o.beta2, t)
                let stepSize = Float(o.lr / bc1), bc2Sqrt = Float(bc2.squareRoot())
                // Moved out of the arrays so that the updates below write in place, without a
                // copy-on-write copy of both moments at every step.
                var mi = m[i] ?? Tensor(repeating: 0, shape: p.shape), vi = v[i] ?? Tensor(repeating: 0, shape: p.shape)
                m[i] = nil
                v[i] = nil
                let (b1, b2, e, wd, lr, dec) = (Float(o.beta1), Float(o.beta2), Float(o.eps), Float(o.weightDecay), Float(o.lr), decoupled)
                let gp = grad.storage.pointer
                mi.withUnsafeMutableBufferPointer { mp in
                    vi.withUnsafeMutableBufferPointer { vp in
                        p.value.withUnsafeMutableBufferPointer { w in
                            smil_adam_update(w.count, w.baseAddress!, gp, mp.baseAddress!, vp.baseAddress!, b1, b2, e,
                                             dec ? 0 : wd, dec ? 1 - lr * wd : 1, stepSize, bc2Sqrt)
                        }
                    }
                }
                m[i] = mi
                v[i] = vi
            }
        }
    }

    public func stateDict() -> [(String, AnyTensor)] {
        var out: [(String, AnyTensor)] = []
        for i in steps.indices where steps[i] > 0 || m[i] != nil {
            out.append(("\(i).step", .int(IntTensor([steps[i]]))))
            if let mi = m[i] { out.append(("\(i).exp_avg", .float(mi))) }
            if let vi = v[i] { out.append(("\(i).exp_avg_sq", .float(vi))) }
        }
        return out
    }

    public func loadStateDict(_ dict: [String: AnyTensor]) throws {
        for (i, p) in parameters.enumerated() {
            if let s = dict["\(i).step"] {
                // torch keeps the step as a float tensor, older files as an int.
                let value: Int
                switch s {
                case .int(let t): value = t.scalars.first ?? 0
                case .float(let t): value = Int(exactly: (t.scalars.first ?? 0).rounded()) ?? -1
                }
                guard value >= 0 else { throw CoreError.stateDict("optimizer state \(i).step must be a whole number of steps, got \(s)") }
                steps[i] = value
            }
            for (key, slot) in [("exp_avg", 0), ("exp_avg_sq", 1)] {
                guard let t = dict["\(i).\(key)"] else { continue }
                guard t.shape == p.shape else {
                    throw CoreError.stateDict("optimizer state \(i).\(key) has shape \(shapeString(t.shape)), parameter \(i) has \(shapeString(p.shape))")
                }
                if slot == 0 { m[i] = t.asFloat } else { v[i] = t.asFloat }
            }
        }
    }
}

/// AdamW: Adam with decoupled weight decay (torch.optim.AdamW; default decay 1e-2).
public func AdamW(_ parameters: [Parameter], lr: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8,
                  weightDecay: Double = 1e-2) throws -> Adam {
    try Adam(parameters, lr: lr, betas: betas, eps: eps, weightDecay: weightDecay, decoupled: true)
}

/// Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay
/// (torch.optim.SGD).
public final class SGD: Optimizer {
    /// One group's options.
    public struct Options: Equatable, Sendable {
        public var lr: Double
        public var momentum, dampening, weightDecay: Double
        public var nesterov: Bool
        public init(lr: Double, momentum: Double = 0, dampening: Double = 0, weightDecay: Double = 0, nesterov: Bool = false) {
            (self.lr, self.momentum, self.dampening, self.weightDecay, self.nesterov) = (lr, momentum, dampening, weightDecay, nesterov)
        }
    }

    public let groups: [[Parameter]]
    public private(set) var groupOptions: [Options]
    var buffers: [Tensor?]

    /// One group.
    public convenience init(_ parameters: [Parameter], lr: Double, momentum: Double = 0, dampening: Double = 0, weightDecay: Double = 0,
                            nesterov: Bool = false) throws {
        try self.init(groups: [(parameters, Options(lr: lr, momentum: momentum, dampening: dampening, weightDecay: weightDecay, nesterov: nesterov))])
    }

    /// Parameter groups with their own options.
    public init(groups: [(parameters: [Parameter], options: Options)]) throws {
        self.groups = groups.map(\.parameters)
        groupOptions = groups.map(\.options)
        buffers = Array(repeating: nil, count: groups.reduce(0) { $0 + $1.parameters.count })
        try OptimizerChecks.groups(self.groups, op: "SGD")
        for o in groupOptions { try Self.validate(o) }
    }

    static func validate(_ o: Options) throws {
        try OptimizerChecks.atLeastZero(o.lr, "learning rate", op: "SGD")
        try OptimizerChecks.atLeastZero(o.momentum, "momentum value", op: "SGD")
        try OptimizerChecks.atLeastZero(o.weightDecay, "weight_decay value", op: "SGD")
        if o.nesterov && (o.momentum <= 0 || o.dampening != 0) {
            throw CoreError.invalidArgument(op: "SGD", "Nesterov momentum requires a momentum and zero dampening")
        }
    }

    public func options(group g: Int) -> [(name: String, value: OptionValue)] {
        let o = groupOptions[g]
        return [("lr", .number(o.lr)), ("momentum", .number(o.momentum)), ("dampening", .number(o.dampening)),
                ("weight_decay", .number(o.weightDecay)), ("nesterov", .flag(o.nesterov)), ("maximize", .flag(false))]
    }

    public func setOption(_ name: String, _ value: OptionValue, group g: Int) throws {
        var o = groupOptions[g]
        switch name {
        case "lr": o.lr = try OptimizerChecks.number(value, name, op: "SGD")
        case "momentum": o.momentum = try OptimizerChecks.number(value, name, op: "SGD")
        case "dampening": o.dampening = try OptimizerChecks.number(value, name, op: "SGD")
        case "weight_decay": o.weightDecay = try OptimizerChecks.number(value, name, op: "SGD")
        case "nesterov":
            guard case .flag(let b) = value else { throw CoreError.invalidArgument(op: "SGD", "nesterov must be true or false, got \(value)") }
            o.nesterov = b
        case "maximize":
            guard value == .flag(false) else { throw CoreError.invalidArgument(op: "SGD", "maximize is not supported (only false)") }
        default:
            throw CoreError.invalidArgument(op: "SGD", "SGD has no option \"\(name)\" (it has lr, momentum, dampening, weight_decay, nesterov)")
        }
        try Self.validate(o)
        groupOptions[g] = o
    }

    public func step() throws {
        var i = 0
        for (gi, group) in groups.enumerated() {
            let o = groupOptions[gi]
            for p in group {
                defer { i += 1 }
                guard let grad = p.grad else { continue }
                let first = buffers[i] == nil
                var buf = buffers[i] ?? Tensor(repeating: 0, shape: p.shape)
                buffers[i] = nil  // so that buf is written in place (see Adam.step)
                let (mom, damp, wd, lr, nest) = (Float(o.momentum), Float(o.dampening), Float(o.weightDecay), Float(o.lr), o.nesterov)
                let g = grad.storage.pointer
                buf.withUnsafeMutableBufferPointer { b in
                    p.value.withUnsafeMutableBufferPointer { w in
                        for j in 0..<w.count {
                            var d = g[j]
                            if wd != 0 { d += wd * w[j] }
                            if mom != 0 {
                                b[j] = first ? d : mom * b[j] + (1 - damp) * d
                                d = nest ? d + mom * b[j] : b[j]
                            }
                            w[j] -= lr * d
                        }
                    }
                }
                if mom != 0 { buffers[i] = buf }
            }
        }
    }

    public func stateDict() -> [(String, AnyTensor)] {
        buffers.enumerated().compactMap { i, b in b.map { ("\(i).momentum_buffer", .float($0)) } }
    }

    public func loadStateDict(_ dict: [String: AnyTensor]) throws {
        for (i, p) in parameters.enumerated() {
            guard let t = dict["\(i).momentum_buffer"] else { continue }
            guard t.shape == p.shape else {
                throw CoreError.stateDict("optimizer state \(i).momentum_buffer has shape \(shapeString(t.shape)), parameter \(i) has \(shapeString(p.shape))")
            }
            buffers[i] = t.asFloat
        }
    }
}
