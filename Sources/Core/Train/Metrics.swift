// Metrics.swift: classification metrics over labels and predictions — balanced accuracy, accuracy,
// macro precision / recall / F1, macro one-vs-rest AUC, confusion matrix — as scikit-learn
// defines them.

/// Classification metrics; `classes` defaults to 1 + the largest label or prediction.
public enum Metrics {
    static func classCount(_ y: [Int], _ p: [Int], _ classes: Int?) -> Int {
        classes ?? ((y + p).max().map { $0 + 1 } ?? 0)
    }

    /// `m[true][predicted]` counts.
    public static func confusionMatrix(_ y: [Int], _ pred: [Int], classes: Int? = nil) -> [[Int]] {
        let c = classCount(y, pred, classes)
        var m = [[Int]](repeating: [Int](repeating: 0, count: c), count: c)
        for (t, p) in zip(y, pred) where t >= 0 && t < c && p >= 0 && p < c { m[t][p] += 1 }
        return m
    }

    /// Fraction of correct predictions.
    public static func accuracy(_ y: [Int], _ pred: [Int]) -> Double {
        guard !y.isEmpty else { return 0 }
        return Double(zip(y, pred).filter { $0 == $1 }.count) / Double(y.count)
    }

    /// Mean over the classes present in `y` of their recall.
    public static func balancedAccuracy(_ y: [Int], _ pred: [Int], classes: Int? = nil) -> Double {
        let m = confusionMatrix(y, pred, classes: classes)
        let recalls = m.indices.compactMap { i -> Double? in
            let n = m[i].reduce(0, +)
            return n == 0 ? nil : Double(m[i][i]) / Double(n)
        }
        return recalls.isEmpty ? 0 : recalls.reduce(0, +) / Double(recalls.count)
    }

    /// Macro-averaged precision, recall and F1 (a class with no predictions has precision 0).
    public static func precisionRecallF1(_ y: [Int], _ pred: [Int], classes: Int? = nil) -> (precision: Double, recall: Double, f1: Double) {
        let m = confusionMatrix(y, pred, classes: classes)
        let c = m.count
        guard c > 0 else { return (0, 0, 0) }
        var p = 0.0, r = 0.0, f = 0.0
        for i in 0..<c {
            let tp = Double(m[i][i])
            let predicted = Double((0..<c).reduce(0) { $0 + m[$1][i] }), actual = Double(m[i].reduce(0, +))
            let pi = predicted > 0 ? tp / predicted : 0, ri = actual > 0 ? tp / actual : 0
            p += pi
            r += ri
            f += pi + ri > 0 ? 2 * pi * ri / (pi + ri) : 0
        }
        return (p / Double(c), r / Double(c), f / Double(c))
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
