// Metrics.swift: classification metrics over labels and predictions — balanced accuracy, accuracy,
// macro precision / recall / F1, macro one-vs-rest AUC, confusion matrix — as scikit-learn
// defines them.

/// Classification metrics. Averages run over the labels that occur in `y` or the predictions (or
/// over `0..<classes` where that is given), as scikit-learn's `unique_labels`, so any integers can
/// be labels: a label of 10^18 costs nothing.
public enum Metrics {
    /// The labels averaged over that occur (those in `0..<classes` where that is given), in
    /// increasing order, and how many labels the average divides by (`classes`, or those that occur).
    static func labels(_ y: [Int], _ p: [Int], _ classes: Int?) -> (present: [Int], count: Int) {
        let present = Array(Set(y).union(p)).sorted()
        guard let classes else { return (present, present.count) }
        return (present.filter { $0 >= 0 && $0 < classes }, Swift.max(classes, 0))
    }

    /// Per label: correct predictions, true occurrences, predictions.
    static func counts(_ y: [Int], _ pred: [Int]) -> (correct: [Int: Int], actual: [Int: Int], predicted: [Int: Int]) {
        var correct: [Int: Int] = [:], actual: [Int: Int] = [:], predicted: [Int: Int] = [:]
        for (t, p) in zip(y, pred) {
            actual[t, default: 0] += 1
            predicted[p, default: 0] += 1
            if t == p { correct[t, default: 0] += 1 }
        }
        return (correct, actual, predicted)
    }

    /// `m[true][predicted]` counts over labels `0..<classes` (1 + the largest label by default);
    /// pairs outside that range are left out. Labels are indices here, so a negative one, or so
    /// many classes that the matrix cannot be held, is an error.
    public static func confusionMatrix(_ y: [Int], _ pred: [Int], classes: Int? = nil) throws -> [[Int]] {
        if let bad = (y + pred).first(where: { $0 < 0 }) {
            throw CoreError.invalidArgument(op: "confusion_matrix", "labels are row and column indices and must be non-negative, got \(bad)")
        }
        let c = classes ?? ((y + pred).max().map { $0 + 1 } ?? 0)
        try Require.nonNegative(c, "classes", op: "confusion_matrix")
        try Memory.checkAllocation([c, c], elementSize: MemoryLayout<Int>.stride, op: "confusion_matrix")
        var m = [[Int]](repeating: [Int](repeating: 0, count: c), count: c)
        for (t, p) in zip(y, pred) where t < c && p < c { m[t][p] += 1 }
        return m
    }

    /// Fraction of correct predictions.
    public static func accuracy(_ y: [Int], _ pred: [Int]) -> Double {
        guard !y.isEmpty else { return 0 }
        return Double(zip(y, pred).filter { $0 == $1 }.count) / Double(y.count)
    }

    /// Mean over the classes present in `y` of their recall.
    public static func balancedAccuracy(_ y: [Int], _ pred: [Int], classes: Int? = nil) -> Double {
        let (correct, actual, _) = counts(y, pred)
        let recalls = labels(y, pred, classes).present.compactMap { k -> Double? in
            guard let n = actual[k], n > 0 else { return nil }
            return Double(correct[k] ?? 0) / Double(n)
        }
        return recalls.isEmpty ? 0 : recalls.reduce(0, +) / Double(recalls.count)
    }

    /// Macro-averaged precision, recall and F1 over the labels (a label never predicted has
    /// precision 0, one that never occurs recall 0: scikit-learn's `zero_division=0`).
    public static func precisionRecallF1(_ y: [Int], _ pred: [Int], classes: Int? = nil) -> (precision: Double, recall: Double, f1: Double) {
        let (correct, actual, predicted) = counts(y, pred)
        let (ks, count) = labels(y, pred, classes)
        guard count > 0 else { return (0, 0, 0) }
        var p = 0.0, r = 0.0, f = 0.0
        for k in ks {
            let tp = Double(correct[k] ?? 0), np = Double(predicted[k] ?? 0), na = Double(actual[k] ?? 0)
            let pk = np > 0 ? tp / np : 0, rk = na > 0 ? tp / na : 0
            p += pk
            r += rk
            f += pk + rk > 0 ? 2 * pk * rk / (pk + rk) : 0
        }
        // Labels that never occur add 0 to each sum.
        let n = Double(count)
        return (p / n, r / n, f / n)
    }

    /// Area under the ROC curve of `scores` for the positive labels (ties get half credit);
    /// nil when only one class is present.
    public static func binaryAUC(_ positive: [Bool], _ scores: [Double]) -> Double? {
        let pos = positive.filter { $0 }.count, neg = positive.count - pos
        guard pos > 0, neg > 0 else { return nil }
        // Mann-Whitney U with average ranks.
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        var ranks = [Double](repeating: 0, count: scores.count)
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && scores[order[j + 1]] == scores[order[i]] { j += 1 }
            let avg = Double(i + j) / 2 + 1
            for k in i...j { ranks[order[k]] = avg }
            i = j + 1
        }
        let sumPos = zip(positive, ranks).filter { $0.0 }.reduce(0.0) { $0 + $1.1 }
        return (sumPos - Double(pos * (pos + 1)) / 2) / Double(pos * neg)
    }

    /// Macro one-vs-rest AUC over the classes present (binary problems use class 1's scores).
    public static func auc(_ y: [Int], _ probabilities: [[Double]]) -> Double? {
        guard let c = probabilities.first?.count, c >= 2 else { return nil }
        if c == 2 { return binaryAUC(y.map { $0 == 1 }, probabilities.map { $0[1] }) }
        let per = (0..<c).compactMap { k in binaryAUC(y.map { $0 == k }, probabilities.map { $0[k] }) }
        return per.isEmpty ? nil : per.reduce(0, +) / Double(per.count)
    }
}
