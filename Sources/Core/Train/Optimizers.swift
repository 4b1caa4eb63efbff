// Optimizers.swift: Adam, AdamW and SGD with torch.optim's exact update rules.

import Foundation
import CKernels

/// Something that updates parameters from their gradients.
public protocol Optimizer: AnyObject {
    var parameters: [Parameter] { get }
    /// The learning rate (settable, as `param_groups[0]["lr"]`).
    var learningRate: Float { get set }
    /// Applies one update to every parameter that has a gradient.
    func step() throws
    /// Per-parameter state tensors by name (for checkpoints), and the step count.
    func stateDict() -> [(String, AnyTensor)]
    func loadStateDict(_ dict: [String: AnyTensor]) throws
}

extension Optimizer {
    /// Clears every parameter's gradient (`set_to_none`, PyTorch's default).
    public func zeroGrad() {
        for p in parameters { p.grad = nil }
    }
}

/// Adam (Kingma & Ba) as torch.optim.Adam: `weightDecay` is L2 added to the gradient; with
/// `decoupled` it is AdamW's decay of the weights themselves.
public final class Adam: Optimizer {
    public let parameters: [Parameter]
    public var learningRate: Float
    public let beta1, beta2, eps, weightDecay: Float
    public let decoupled: Bool
    var m: [Tensor?], v: [Tensor?]
    var steps: [Int]

    public init(_ parameters: [Parameter], lr: Float = 1e-3, betas: (Float, Float) = (0.9, 0.999), eps: Float = 1e-8,
                weightDecay: Float = 0, decoupled: Bool = false) {
        self.parameters = parameters
        learningRate = lr
        (beta1, beta2) = betas
        self.eps = eps
        self.weightDecay = weightDecay
        self.decoupled = decoupled
        m = Array(repeating: nil, count: parameters.count)
        v = Array(repeating: nil, count: parameters.count)
        steps = Array(repeating: 0, count: parameters.count)
    }

    public func step() throws {
        for (i, p) in parameters.enumerated() {
            guard let grad = p.grad else { continue }
            steps[i] += 1
            let t = Double(steps[i])
            let bc1 = 1 - Foundation.pow(Double(beta1), t), bc2 = 1 - Foundation.pow(Double(beta2), t)
            let stepSize = Float(Double(learningRate) / bc1), bc2Sqrt = Float(bc2.squareRoot())
            // Moved out of the arrays so that the updates below write in place, without a
            // copy-on-write copy of both moments at every step.
            var mi = m[i] ?? Tensor.zeros(p.shape), vi = v[i] ?? Tensor.zeros(p.shape)
            m[i] = nil
            v[i] = nil
            let (b1, b2, e, wd, lr, dec) = (beta1, beta2, eps, weightDecay, learningRate, decoupled)
            let g = grad.storage.pointer
            mi.withUnsafeMutableBufferPointer { mp in
                vi.withUnsafeMutableBufferPointer { vp in
                    p.value.withUnsafeMutableBufferPointer { w in
                        smil_adam_update(w.count, w.baseAddress!, g, mp.baseAddress!, vp.baseAddress!, b1, b2, e,
                                         dec ? 0 : wd, dec ? 1 - lr * wd : 1, stepSize, bc2Sqrt)
                    }
                }
            }
            m[i] = mi
            v[i] = vi
        }
    }

    public func stateDict() -> [(String, AnyTensor)] {
        var out: [(String, AnyTensor)] = []
        for i in parameters.indices {
            out.append(("\(i).step", .int(IntTensor([steps[i]]))))
            if let mi = m[i] { out.append(("\(i).exp_avg", .float(mi))) }
            if let vi = v[i] { out.append(("\(i).exp_avg_sq", .float(vi))) }
        }
        return out
    }

    public func loadStateDict(_ dict: [String: AnyTensor]) throws {
        for (i, p) in parameters.enumerated() {
            if case .int(let s)? = dict["\(i).step"] { steps[i] = s.scalars.first ?? 0 }
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
public func AdamW(_ parameters: [Parameter], lr: Float = 1e-3, betas: (Float, Float) = (0.9, 0.999), eps: Float = 1e-8,
                  weightDecay: Float = 1e-2) -> Adam {
    Adam(parameters, lr: lr, betas: betas, eps: eps, weightDecay: weightDecay, decoupled: true)
}

/// Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay
/// (torch.optim.SGD).
public final class SGD: Optimizer {
    public let parameters: [Parameter]
    public var learningRate: Float
    public let momentum, dampening, weightDecay: Float
    public let nesterov: Bool
    var buffers: [Tensor?]

    public init(_ parameters: [Parameter], lr: Float, momentum: Float = 0, dampening: Float = 0, weightDecay: Float = 0,
                nesterov: Bool = false) throws {
        if nesterov && (momentum <= 0 || dampening != 0) {
            throw CoreError.invalidArgument(op: "SGD", "Nesterov momentum requires a momentum and zero dampening")
        }
        self.parameters = parameters
        learningRate = lr
        self.momentum = momentum
        self.dampening = dampening
        self.weightDecay = weightDecay
        self.nesterov = nesterov
        buffers = Array(repeating: nil, count: parameters.count)
    }

    public func step() throws {
        for (i, p) in parameters.enumerated() {
            guard let grad = p.grad else { continue }
            let first = buffers[i] == nil
            var buf = buffers[i] ?? Tensor.zeros(p.shape)
            buffers[i] = nil  // so that buf is written in place (see Adam.step)
            let (mom, damp, wd, lr, nest) = (momentum, dampening, weightDecay, learningRate, nesterov)
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
            if momentum != 0 { buffers[i] = buf }
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
