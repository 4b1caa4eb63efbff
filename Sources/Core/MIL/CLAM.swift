// CLAM.swift: CLAM-SB (Lu et al., 2021), the most used feature-bag baseline — gated attention
// pooling plus the instance-level clustering loss on the most and least attended tiles — with
// CLAM's parameter names, so its checkpoints load.

import Foundation

/// CLAM-SB: `attention_net` = Linear(D, hidden) -> ReLU -> Dropout -> gated attention
/// (`attention_a`: Linear -> Tanh -> Dropout, `attention_b`: Linear -> Sigmoid -> Dropout,
/// `attention_c`: Linear to one score); the bag is the attention-weighted sum of the hidden
/// features, classified by `classifiers`; each class's `instance_classifiers` learns to tell
/// the k most attended tiles (its positives when the bag is of that class) from the k least.
public final class CLAMSB: Module, MILModel {
    public let classes: Int
    public let kSample: Int
    /// The bag loss's share of the training loss (CLAM's bag_weight); the instance loss has the rest.
    public let bagWeight: Float
    /// CLAM's `subtyping`: also train each class's instance classifier on bags of other classes
    /// (their most attended tiles as negatives).
    public let subtyping: Bool
    let fc: Linear
    let dropout: Dropout
    let attentionA: Linear, attentionB: Linear, attentionC: Linear
    let attentionDropoutA: Dropout, attentionDropoutB: Dropout
    let bagClassifier: Linear
    let instanceClassifiers: [Linear]

    public init(features: Int = 1024, hidden: Int = 512, attention: Int = 256, classes: Int = 2, dropout p: Float = 0.25,
                kSample: Int = 8, bagWeight: Float = 0.7, subtyping: Bool = false) throws {
        try Require.positive(classes, "classes", op: "CLAM_SB")
        try Require.positive(kSample, "k_sample", op: "CLAM_SB")
        try Require.inRange(bagWeight, 0...1, "bag_weight", op: "CLAM_SB")
        self.classes = classes
        self.kSample = kSample
        self.bagWeight = bagWeight
        self.subtyping = subtyping
        fc = try Linear(features, hidden)
        dropout = try Dropout(p)
        attentionA = try Linear(hidden, attention)
        attentionB = try Linear(hidden, attention)
        attentionC = try Linear(attention, 1)
        attentionDropoutA = try Dropout(p)
        attentionDropoutB = try Dropout(p)
        bagClassifier = try Linear(hidden, classes)
        instanceClassifiers = try (0..<classes).map { _ in try Linear(hidden, 2) }
        super.init()
        let gated = Module()
        gated.registerChild("attention_a", try Sequential([attentionA, Tanh(), attentionDropoutA]))
        gated.registerChild("attention_b", try Sequential([attentionB, Sigmoid(), attentionDropoutB]))
        gated.registerChild("attention_c", attentionC)
        registerChild("attention_net", try Sequential([fc, ReLU(), dropout, gated]))
        registerChild("classifiers", bagClassifier)
        registerChild("instance_classifiers", try Sequential(instanceClassifiers))
    }

    public override var typeName: String { "CLAM_SB" }

    /// One bag `[N, D]`: its hidden features `[N, hidden]` and attention `[N]` (softmaxed).
    func attend(_ x: Tensor) throws -> (h: Tensor, attention: Tensor) {
        let h = try dropout(try fc(x).relu())
        let a = try attentionDropoutA(try attentionA(h).tanh())
        let b = try attentionDropoutB(try attentionB(h).sigmoid())
        let scores = try attentionC(try a.mul(b)).reshaped([1, -1])
        return (h, try scores.softmax(dim: 1).reshaped([-1]))
    }

    /// Logits `[1, classes]` of one bag, and its instance loss when a label is given.
    func bag(_ x: Tensor, label: Int?) throws -> (logits: Tensor, instanceLoss: Tensor?) {
        let (h, a) = try attend(x)
        let pooled = try a.reshaped([1, -1]).matmul(h)
        let logits = try bagClassifier(pooled)
        guard let y = label else { return (logits, nil) }
        var total: Tensor? = nil
        var terms = 0
        let k = min(kSample, x.shape[0])
        let detached = a.detached()
        let top = try detached.topk(k).indices.scalars, bottom = try detached.topk(k, largest: false).indices.scalars
        for c in 0..<classes {
            let loss: Tensor
            if c == y {
                // In the class: the k most attended tiles are positives, the k least negatives.
                let instances = try h.gather(dim: 0, top + bottom)
                loss = try Loss.crossEntropy(try instanceClassifiers[c](instances), IntTensor(Array(repeating: 1, count: k) + Array(repeating: 0, count: k)))
            } else if subtyping {
                // Out of the class: the k most attended tiles are negatives.
                loss = try Loss.crossEntropy(try instanceClassifiers[c](try h.gather(dim: 0, top)), IntTensor(Array(repeating: 0, count: k)))
            } else { continue }
            total = try total.map { try $0.add(loss) } ?? loss
            terms += 1
        }
        if subtyping, let t = total, terms > 0 { total = try t.scaled(by: 1 / Float(classes)) }
        return (logits, total)
    }

    public func forward(tiles: Tensor, coords: Tensor) throws -> Tensor {
        guard tiles.rank == 3 else { throw CoreError.shapeMismatch(op: "CLAM_SB", "expected feature bags [B, N, D], got \(shapeString(tiles.shape))") }
        return try Tensor.cat(try (0..<tiles.shape[0]).map { try bag(try tiles.select(dim: 0, $0), label: nil).logits }, dim: 0)
    }

    public func forward(bags: Tensor, coords: Tensor, lengths: [Int]) throws -> Tensor {
        try checkBags(bags, coords, lengths, op: "CLAM_SB")
        var out: [Tensor] = [], start = 0
        for n in lengths {
            out.append(try bag(try bags.slice(dim: 0, start: start, end: start + n), label: nil).logits)
            start += n
        }
        return try Tensor.cat(out, dim: 0)
    }

    /// Logits `[B, classes]` and CLAM's training loss: bag_weight x cross-entropy + (1 -
    /// bag_weight) x the mean instance loss over the batch's bags.
    public func trainingLoss(_ batch: SlideBatch, classWeights: Tensor? = nil) throws -> (logits: Tensor, loss: Tensor) {
        let lengths = batch.lengths ?? Array(repeating: batch.tiles.shape.count == 3 ? batch.tiles.shape[1] : 0, count: batch.labels.count)
        let flat = batch.lengths == nil ? try batch.tiles.reshaped([-1, batch.tiles.shape[batch.tiles.rank - 1]]) : batch.tiles
        guard flat.rank == 2 else { throw CoreError.shapeMismatch(op: "CLAM_SB", "expected feature bags, got \(shapeString(batch.tiles.shape))") }
        var logits: [Tensor] = [], instance: Tensor? = nil, start = 0
        for (i, n) in lengths.enumerated() {
            let (l, inst) = try bag(try flat.slice(dim: 0, start: start, end: start + n), label: batch.labels.scalars[i])
            logits.append(l)
            if let t = inst { instance = try instance.map { try $0.add(t) } ?? t }
            start += n
        }
        let all = try Tensor.cat(logits, dim: 0)
        var loss = try Loss.crossEntropy(all, batch.labels, weight: classWeights).scaled(by: bagWeight)
        if let t = instance { loss = try loss.add(try t.scaled(by: (1 - bagWeight) / Float(lengths.count))) }
        return (all, loss)
    }

    /// The attention weights of one bag's tiles, `[N, 1]`.
    func attentionScores(_ x: Tensor) throws -> Tensor { try attend(x).attention.reshaped([-1, 1]) }
}
