// Loss.swift: cross-entropy (with class weights), binary cross-entropy with logits, mean squared
// error — mean reduction, as torch.nn.functional.

import CKernels
import Foundation

public enum Loss {
    /// Cross-entropy of `logits` `[N, C]` against class indices `labels` `[N]`, optionally weighted
    /// per class: `sum_i w[y_i] * -log softmax(x_i)[y_i] / sum_i w[y_i]`.
    public static func crossEntropy(_ logits: Tensor, _ labels: IntTensor, weight: Tensor? = nil) throws -> Tensor {
        guard logits.rank == 2 else {
            throw CoreError.shapeMismatch(op: "cross_entropy", "expected logits of shape [N, C], got \(shapeString(logits.shape))")
        }
        let n = logits.shape[0], c = logits.shape[1]
        guard labels.shape == [n] else {
            throw CoreError.shapeMismatch(op: "cross_entropy", "labels of shape \(shapeString(labels.shape)) do not match logits of shape \(shapeString(logits.shape)) (expected [\(n)])")
        }
        if let w = weight, w.shape != [c] {
            throw CoreError.shapeMismatch(op: "cross_entropy", "class weight of shape \(shapeString(w.shape)) does not match \(c) classes")
        }
        for (i, y) in labels.scalars.enumerated() where y < 0 || y >= c {
            throw CoreError.invalidArgument(op: "cross_entropy", "label \(y) of sample \(i) is out of range for \(c) classes")
        }
        // Each row's logsumexp; the loss is the weighted mean of lse_i - x[i, y_i].
        let x = logits.detached()
        let lse = Tensor(uninitializedShape: [n])
        let xp = x.storage.pointer, lp = lse.storage.pointer
        if c > 0 {
            Parallel.forRangesInShares(n, grain: Swift.max(1, elementwiseGrain / c)) { r in
                smil_logsumexp_rows(r.count, c, xp + r.lowerBound * c, lp + r.lowerBound)
            }
        }
        var total: Double = 0, norm: Double = 0
        let ys = labels.scalars
        for i in 0..<n {
            let wi = Double(weight?[flat: ys[i]] ?? 1)
            total += wi * (Double(lp[i]) - Double(xp[i * c + ys[i]]))
            norm += wi
        }
        let out = Tensor(scalar: Float(total / norm))
        let wts = weight?.detached()
        return out.recorded("cross_entropy", [logits]) { g in
            // d/dx_i = w[y_i] / norm * (softmax(x_i) - onehot(y_i))
            let scale = (try g.item()) / Float(norm)
            let gx = Tensor(uninitializedShape: [n, c])
            let gp = gx.storage.pointer, xp = x.storage.pointer, lp = lse.storage.pointer
            Parallel.forRangesInShares(n, grain: Swift.max(1, elementwiseGrain / Swift.max(1, c))) { r in
                smil_exp_shifted_rows(r.count, c, xp + r.lowerBound * c, lp + r.lowerBound, gp + r.lowerBound * c)
                for i in r {
                    let y = ys[i], wi = wts?[flat: y] ?? 1
                    gp[i * c + y] -= 1
                    smil_unary(Int32(SMIL_MUL_SCALAR), c, gp + i * c, gp + i * c, wi * scale, 0)
                }
            }
            return [gx]
        }
    }

    /// Binary cross-entropy on logits: mean of `max(x,0) - x*t + log(1 + exp(-|x|))`.
    public static func bceWithLogits(_ logits: Tensor, _ targets: Tensor) throws -> Tensor {
        guard logits.shape == targets.shape else {
            throw CoreError.shapeMismatch(op: "bce_with_logits", "target size \(shapeString(targets.shape)) must be the same as input size \(shapeString(logits.shape))")
        }
        let x = logits.detached(), t = targets.detached()
        var total: Double = 0
        for i in 0..<x.count {
            let v = x[flat: i]
            total += Double(Swift.max(v, 0) - v * t[flat: i] + Foundation.log1p(Foundation.exp(-Swift.abs(v))))
        }
        let n = Float(Swift.max(x.count, 1))
        return Tensor(scalar: Float(total) / n).recorded("bce_with_logits", [logits, targets]) { g in
            let s = try g.item() / n
            // d/dx = sigmoid(x) - t ; d/dt = -x
            let gx = try x.sigmoid().sub(t).scaled(by: s)
            let gt = x.scaled(by: -s)
            return [gx, gt]
        }
    }

    /// Mean squared error.
    public static func mse(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        guard a.shape == b.shape else {
            throw CoreError.shapeMismatch(op: "mse", "shapes \(shapeString(a.shape)) and \(shapeString(b.shape)) differ")
        }
        let d = try a.sub(b)
        return try d.mul(d).mean()
    }
}
