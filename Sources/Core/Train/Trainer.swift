// Trainer.swift: an epoch of training, an evaluation, and fit with best-checkpoint keeping —
// the loop of the reference's `python -m training`, plus the metrics and checkpoints it lacks.

import Foundation

/// The outcome of an epoch or an evaluation.
public struct EpochMetrics {
    public var loss: Double
    public var balancedAccuracy, accuracy, precision, recall, f1: Double
    public var auc: Double?
    public var confusion: [[Int]]
    /// Per slide: id, true class, class probabilities.
    public var predictions: [(slideID: String, label: Int, probabilities: [Double])]

    static func from(loss: Double, predictions: [(String, Int, [Double])], classes: Int) throws -> EpochMetrics {
        let y = predictions.map(\.1)
        let pred = predictions.map { p in p.2.indices.max { p.2[$0] < p.2[$1] } ?? 0 }
        let prf = Metrics.precisionRecallF1(y, pred, classes: classes)
        return EpochMetrics(loss: loss, balancedAccuracy: Metrics.balancedAccuracy(y, pred, classes: classes),
                            accuracy: Metrics.accuracy(y, pred), precision: prf.precision, recall: prf.recall, f1: prf.f1,
                            auc: Metrics.auc(y, predictions.map(\.2)), confusion: try Metrics.confusionMatrix(y, pred, classes: classes),
                            predictions: predictions.map { (slideID: $0.0, label: $0.1, probabilities: $0.2) })
    }

    /// Predictions as CSV: slide_id, label, one probability column per class.
    public func predictionsCSV(classes: [String]) -> String {
        var lines = ["slide_id,label," + classes.map { "p_\($0)" }.joined(separator: ",")]
        for p in predictions {
            lines.append("\(p.slideID),\(classes[p.label])," + p.probabilities.map { String(format: "%.6f", $0) }.joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

public enum Trainer {
    /// One pass over `loader` in training mode: forward, cross-entropy, backward, step per batch.
    /// `onBatch(index, count, loss)` reports progress.
    public static func trainEpoch(_ model: MILModel, _ loader: DataLoader, _ optimizer: Optimizer, classWeights: Tensor? = nil,
                                  onBatch: ((Int, Int, Double) -> Void)? = nil) throws -> EpochMetrics {
        model.train()
        let it = loader.makeIterator()
        var total = 0.0, n = 0, index = 0
        var predictions: [(String, Int, [Double])] = []
        while let batch = try it.nextBatch() {
            optimizer.zeroGrad()
            let logits: Tensor, loss: Tensor
            if let clam = model as? CLAMSB {
                // CLAM-SB trains on its bag loss and its instance-level clustering loss together.
                (logits, loss) = try clam.trainingLoss(batch, classWeights: classWeights)
            } else {
                logits = try model.forward(batch)
                loss = try Loss.crossEntropy(logits, batch.labels, weight: classWeights)
            }
            try loss.backward()
            try optimizer.step()
            let l = Double(try loss.item())
            total += l * Double(batch.labels.count)
            n += batch.labels.count
            predictions += try probabilities(logits, batch)
            onBatch?(index, it.count, l)
            index += 1
        }
        return try .from(loss: n > 0 ? total / Double(n) : 0, predictions: predictions, classes: loader.dataset.classes.count)
    }

    /// One pass in evaluation mode without gradients.
    public static func evaluate(_ model: MILModel, _ loader: DataLoader) throws -> EpochMetrics {
        let wasTraining = model.training
        model.eval()
        defer { model.train(wasTraining) }
        return try GradMode.noGrad {
            let it = loader.makeIterator()
            var total = 0.0, n = 0
            var predictions: [(String, Int, [Double])] = []
            while let batch = try it.nextBatch() {
                let logits = try model.forward(batch)
                total += Double(try Loss.crossEntropy(logits, batch.labels).item()) * Double(batch.labels.count)
                n += batch.labels.count
                predictions += try probabilities(logits, batch)
            }
            return try .from(loss: n > 0 ? total / Double(n) : 0, predictions: predictions, classes: loader.dataset.classes.count)
        }
    }

    static func probabilities(_ logits: Tensor, _ batch: SlideBatch) throws -> [(String, Int, [Double])] {
        let p = try logits.detached().softmax(dim: 1)
        let c = p.shape[1]
        return batch.slideIDs.indices.map { i in
            (batch.slideIDs[i], batch.labels.scalars[i], (0..<c).map { Double(p[flat: i * c + $0]) })
        }
    }
}

/// A checkpoint: model and optimizer state in one safetensors file, with a JSON run manifest
/// (seed, versions, hyper-parameters, epoch, dataset fingerprint) in its metadata.
public enum Checkpoint {
    /// Saves the model, the optimizer and the global random generator's state (so a resumed run
    /// draws the same numbers as an uninterrupted one).
    public static func save(_ model: Module, optimizer: Optimizer?, manifest: [String: String], to path: String) throws {
        var tensors = model.stateDict().map { (name: "model." + $0.0, tensor: $0.1) }
        if let o = optimizer { tensors += o.stateDict().map { (name: "optimizer." + $0.0, tensor: $0.1) } }
        var meta = manifest
        meta["smil_version"] = smilVersion
        meta["rng_state"] = RandomGenerator.global.state.map { String($0, radix: 16) }.joined(separator: ",")
        let json = try JSONSerialization.data(withJSONObject: meta, options: [.sortedKeys])
        var metadata = ["manifest": String(decoding: json, as: UTF8.self)]
        if let o = optimizer { metadata["optimizer_param_groups"] = try paramGroupsJSON(o) }
        try SafeTensors(tensors: tensors, metadata: metadata).write(to: path)
    }

    /// Each group's options as JSON, in torch's form: `[{"lr": 0.001, "betas": [0.9, 0.999], ...}]`.
    static func paramGroupsJSON(_ o: Optimizer) throws -> String {
        let groups = o.groups.indices.map { g -> [String: Any] in
            var d: [String: Any] = ["params": o.groups[g].count]
            for (name, v) in o.options(group: g) {
                switch v {
                case .number(let x): d[name] = x
                case .pair(let a, let b): d[name] = [a, b]
                case .flag(let f): d[name] = f
                }
            }
            return d
        }
        return String(decoding: try JSONSerialization.data(withJSONObject: groups, options: [.sortedKeys]), as: UTF8.self)
    }

    /// Restores the group options saved by `paramGroupsJSON`, after checking that the groups match.
    static func loadParamGroups(_ text: String, into o: Optimizer, path: String) throws {
        guard let groups = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]] else {
            throw CoreError.file(path: path, "malformed optimizer_param_groups in the metadata")
        }
        guard groups.count == o.groups.count else {
            throw CoreError.stateDict("the checkpoint's optimizer has \(groups.count) parameter groups, this one has \(o.groups.count)")
        }
        for (g, d) in groups.enumerated() {
            guard (d["params"] as? Int) == o.groups[g].count else {
                throw CoreError.stateDict("the checkpoint's parameter group \(g) has \(d["params"] ?? "?") parameters, this one has \(o.groups[g].count)")
            }
            // Read each value as the kind the option has (JSON's numbers and booleans look alike here).
            for (name, current) in o.options(group: g) {
                guard let value = d[name] else { continue }
                let parsed: OptionValue?
                switch current {
                case .number: parsed = (value as? NSNumber).map { .number($0.doubleValue) }
                case .pair: parsed = (value as? [NSNumber]).flatMap { $0.count == 2 ? .pair($0[0].doubleValue, $0[1].doubleValue) : nil }
                case .flag: parsed = (value as? NSNumber).map { .flag($0.boolValue) }
                }
                guard let parsed else { throw CoreError.file(path: path, "optimizer_param_groups: group \(g)'s \(name) is malformed") }
                try o.setOption(name, parsed, group: g)
            }
        }
    }

    /// Restores model (and optimizer) state; returns the manifest.
    /// With `restoreRandomState`, the global generator continues where the saved run was.
    @discardableResult
    public static func load(_ path: String, into model: Module, optimizer: Optimizer? = nil,
                            restoreRandomState: Bool = false) throws -> [String: String] {
        let st = try SafeTensors.read(path)
        var modelState: [String: AnyTensor] = [:], optState: [String: AnyTensor] = [:]
        for (name, t) in st.tensors {
            if name.hasPrefix("model.") { modelState[String(name.dropFirst(6))] = t }
            else if name.hasPrefix("optimizer.") { optState[String(name.dropFirst(10))] = t }
        }
        guard !modelState.isEmpty else { throw CoreError.file(path: path, "not a smil checkpoint (no model.* tensors)") }
        try model.loadStateDict(modelState, strict: true)
        if let o = optimizer {
            try o.loadStateDict(optState)
            if let groups = st.metadata["optimizer_param_groups"] { try loadParamGroups(groups, into: o, path: path) }
        }
        guard let text = st.metadata["manifest"], let data = text.data(using: .utf8),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: String] else { return [:] }
        if restoreRandomState, let rng = obj["rng_state"] {
            let words = rng.split(separator: ",").compactMap { UInt64($0, radix: 16) }
            guard words.count == 6 else { throw CoreError.file(path: path, "malformed rng_state in the manifest") }
            RandomGenerator.global.state = words
        }
        return obj
    }

    /// A fingerprint of a dataset: slide ids, labels and tile names, hashed (FNV-1a, hex).
    public static func fingerprint(_ ds: SlideDataset) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for s in ds.slides {
            let contents = s.tiles.map { "\($0.row)_\($0.col)" }.joined(separator: ";") + (s.bag.map { "bag:\($0.count)x\($0.dimension)" } ?? "")
                + (s.wholeSlide.map { "slide:\($0.coords.count)" } ?? "")
            for byte in (s.id + "," + s.label + ":" + contents).utf8 {
                h = (h ^ UInt64(byte)) &* 0x100_0000_01b3
            }
        }
        return String(h, radix: 16)
    }
}

extension Trainer {
    /// Trains for `epochs`, evaluating on `validation` after each; keeps the checkpoint with the
    /// lowest validation loss at `checkpoint` (+ ".best.safetensors") and the latest at
    /// `checkpoint` (+ ".last.safetensors", with the epoch, for `resume`). `onEpoch` reports.
    public static func fit(_ model: MILModel, train: DataLoader, validation: DataLoader?, optimizer: Optimizer, epochs: Int,
                           checkpoint: String? = nil, resume: Bool = false, manifest: [String: String] = [:],
                           onEpoch: ((Int, EpochMetrics, EpochMetrics?) -> Void)? = nil) throws -> [(train: EpochMetrics, validation: EpochMetrics?)] {
        var start = 1
        var best = Double.infinity
        if resume, let base = checkpoint, FileManager.default.fileExists(atPath: base + ".last.safetensors") {
            let m = try Checkpoint.load(base + ".last.safetensors", into: model, optimizer: optimizer, restoreRandomState: true)
            start = (Int(m["epoch"] ?? "0") ?? 0) + 1
            best = Double(m["best_validation_loss"] ?? "") ?? .infinity
        }
        var history: [(train: EpochMetrics, validation: EpochMetrics?)] = []
        guard start <= epochs else { return history }
        for epoch in start...epochs {
            let t = try trainEpoch(model, train, optimizer)
            let v = try validation.map { try evaluate(model, $0) }
            history.append((t, v))
            onEpoch?(epoch, t, v)
            if let base = checkpoint {
                var meta = manifest
                meta["epoch"] = String(epoch)
                meta["train_loss"] = String(t.loss)
                if let v = v, v.loss < best {
                    best = v.loss
                    meta["validation_loss"] = String(v.loss)
                    try Checkpoint.save(model, optimizer: optimizer, manifest: meta, to: base + ".best.safetensors")
                }
                meta["best_validation_loss"] = String(best)
                try Checkpoint.save(model, optimizer: optimizer, manifest: meta, to: base + ".last.safetensors")
            }
        }
        return history
    }
}
