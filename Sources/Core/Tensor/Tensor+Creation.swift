// Tensor+Creation.swift: factories — constants, ranges, identity and random tensors.

import CKernels

extension Tensor {
    /// A 2-D tensor from rows of equal length.
    public init(rows: [[Float]]) throws {
        let width = rows.first?.count ?? 0
        if let (i, r) = rows.enumerated().first(where: { $0.element.count != width }) {
            throw CoreError.shapeMismatch(op: "tensor", "row \(i) has \(r.count) values, row 0 has \(width)")
        }
        try self.init(rows.flatMap { $0 }, shape: [rows.count, width])
    }

    /// A tensor of zeros. Like every factory that takes a shape, it refuses a negative size and a
    /// shape too large for this machine's memory (`Memory.checkAllocation`), naming it.
    public static func zeros(_ shape: [Int]) throws -> Tensor { try full(shape, 0, op: "zeros") }
    /// A tensor of ones.
    public static func ones(_ shape: [Int]) throws -> Tensor { try full(shape, 1, op: "ones") }
    /// A tensor filled with `value`.
    public static func full(_ shape: [Int], _ value: Float) throws -> Tensor { try full(shape, value, op: "full") }

    static func full(_ shape: [Int], _ value: Float, op: String) throws -> Tensor {
        try Memory.checkAllocation(shape, op: op)
        return Tensor(repeating: value, shape: shape)
    }

    /// `[start, start+step, ...)` below `end`, as PyTorch's `arange`.
    public static func arange(_ start: Float = 0, _ end: Float, step: Float = 1) throws -> Tensor {
        guard step != 0, step.isFinite, start.isFinite, end.isFinite else {
            throw CoreError.invalidArgument(op: "arange", "start \(start), end \(end) and step \(step) must be finite, and step nonzero")
        }
        guard (Double(end) - Double(start)) * Double(step) >= 0 else {
            throw CoreError.invalidArgument(op: "arange", "upper bound and lower bound inconsistent with step sign (start \(start), end \(end), step \(step))")
        }
        let steps = ((Double(end) - Double(start)) / Double(step)).rounded(.up)
        guard steps < Double(Int.max) else { throw Memory.tooLarge([Int.max], bytes: nil, op: "arange") }
        let n = steps > 0 ? Int(steps) : 0
        try Memory.checkAllocation([n], op: "arange")
        return Tensor((0..<n).map { start + Float($0) * step })
    }

    /// The n x n identity matrix.
    public static func eye(_ n: Int) throws -> Tensor {
        guard n >= 0 else { throw CoreError.invalidArgument(op: "eye", "n must be non-negative, got \(n)") }
        var t = try full([n, n], 0, op: "eye")
        for i in 0..<n { t[flat: i * n + i] = 1 }
        return t
    }

    /// Standard normal values from the global generator (or `generator`).
    public static func randn(_ shape: [Int], mean: Float = 0, std: Float = 1) throws -> Tensor {
        try Memory.checkAllocation(shape, op: "randn")
        let t = Tensor(uninitializedShape: shape)
        let p = t.storage.pointer
        for i in 0..<t.count { p[i] = mean + std * Float(RandomGenerator.global.nextNormal()) }
        return t
    }

    /// Uniform values in `[low, high)` from the global generator.
    public static func rand(_ shape: [Int], low: Float = 0, high: Float = 1) throws -> Tensor {
        try Memory.checkAllocation(shape, op: "rand")
        let t = Tensor(uninitializedShape: shape)
        let p = t.storage.pointer
        for i in 0..<t.count {
            p[i] = low + (high - low) * Float(RandomGenerator.global.nextUniform())
        }
        return t
    }

    /// Elementwise choice: `a` where `condition` is nonzero, else `b` (all broadcast together).
    /// Values are selected, never blended, so an infinity on the side not taken does no harm.
    public static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        let shape = try broadcastShapes(try broadcastShapes(condition.shape, a.shape, op: "where"), b.shape, op: "where")
        let mask = condition.broadcastCopy(to: shape).unary(SMIL_NONZERO)
        let left = a.broadcastCopy(to: shape), right = b.broadcastCopy(to: shape)
        let out = Tensor(uninitializedShape: shape)
        let (m, l, r, o) = (mask.storage.pointer, left.storage.pointer, right.storage.pointer, out.storage.pointer)
        Parallel.forRangesInShares(out.count, grain: elementwiseGrain) { range in
            let i = range.lowerBound
            smil_select(range.count, m + i, l + i, r + i, o + i)
        }
        let (sa, sb) = (a.shape, b.shape)
        return out.recorded("where", [a, b]) { g in
            [try g.mul(mask).sumTo(sa), try g.mul(mask.unary(SMIL_ONE_MINUS)).sumTo(sb)]
        }
    }

    /// Whether all elements satisfy |a - b| <= atol + rtol * |b| (shapes must broadcast).
    public static func allClose(_ a: Tensor, _ b: Tensor, rtol: Float = 1e-5, atol: Float = 1e-8) throws -> Bool {
        let d = try a.zipped(b, op: "allclose") { x, y in
            (x == y || Swift.abs(x - y) <= atol + rtol * Swift.abs(y)) ? 0 : 1
        }
        return d.scalars.allSatisfy { $0 == 0 }
    }
}

extension IntTensor {
    /// Uniform integers in `lo..<hi` from the global generator.
    public static func randint(_ lo: Int, _ hi: Int, shape: [Int]) throws -> IntTensor {
        guard lo < hi, !hi.subtractingReportingOverflow(lo).overflow else {
            throw CoreError.invalidArgument(op: "randint", "the range \(lo)..<\(hi) is empty or wider than 2^63")
        }
        try Memory.checkAllocation(shape, elementSize: MemoryLayout<Int>.stride, op: "randint")
        var t = IntTensor(repeating: 0, shape: shape)
        for i in 0..<t.count { t.scalars[i] = RandomGenerator.global.nextInt(lo, hi) }
        return t
    }

    /// `0..<n`.
    public static func arange(_ n: Int) throws -> IntTensor {
        guard n >= 0 else { throw CoreError.invalidArgument(op: "arange", "n must be non-negative, got \(n)") }
        try Memory.checkAllocation([n], elementSize: MemoryLayout<Int>.stride, op: "arange")
        return IntTensor(Array(0..<n))
    }
}
