// Tensor+Arithmetic.swift: elementwise operations with NumPy broadcasting, and their gradients.

import Foundation

/// The shape two shapes broadcast to (NumPy rules), or an error naming both.
public func broadcastShapes(_ a: [Int], _ b: [Int], op: String) throws -> [Int] {
    let rank = max(a.count, b.count)
    var out = [Int](repeating: 1, count: rank)
    for i in 0..<rank {
        let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
        let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
        guard da == db || da == 1 || db == 1 else {
            throw CoreError.shapeMismatch(op: op, "shapes \(shapeString(a)) and \(shapeString(b)) cannot be broadcast together (dimension \(i): \(da) vs \(db))")
        }
        out[i] = da == 1 ? db : da
    }
    // The one place a binary operation's output can outgrow both inputs ([N, 1] * [1, M]).
    try Memory.checkAllocation(out, op: op)
    return out
}

/// Strides of `shape` seen inside the broadcast shape `target`: 0 along broadcast dimensions.
func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
    let own = contiguousStrides(shape)
    let pad = target.count - shape.count
    return (0..<target.count).map { i in
        i < pad || shape[i - pad] == 1 ? 0 : own[i - pad]
    }
}

/// Elements above which elementwise kernels split work over threads.
let elementwiseGrain = 1 << 16

extension Tensor {
    /// Applies `f` to every element (no autograd).
    @inline(__always) func mapped(_ f: (Float) -> Float) -> Tensor {
        let out = Tensor(uninitializedShape: shape)
        let n = count
        let src = storage.pointer, dst = out.storage.pointer
        withoutActuallyEscaping(f) { f in
            Parallel.forRanges(n, grain: elementwiseGrain) { r in
                for i in r { dst[i] = f(src[i]) }
            }
        }
        return out
    }

    /// Combines two tensors elementwise with broadcasting (no autograd).
    @inline(__always) func zipped(_ other: Tensor, op name: String, _ f: (Float, Float) -> Float) throws -> Tensor {
        let pa = storage.pointer, pb = other.storage.pointer
        if shape == other.shape {
            let out = Tensor(uninitializedShape: shape)
            let dst = out.storage.pointer
            withoutActuallyEscaping(f) { f in
                Parallel.forRanges(count, grain: elementwiseGrain) { r in
                    for i in r { dst[i] = f(pa[i], pb[i]) }
                }
            }
            return out
        }
        let outShape = try broadcastShapes(shape, other.shape, op: name)
        let out = Tensor(uninitializedShape: outShape)
        let dst = out.storage.pointer
        if other.count == 1 {
            let s = pb[0]
            for i in 0..<out.count { dst[i] = f(pa[i], s) }
            return out
        }
        if count == 1 {
            let s = pa[0]
            for i in 0..<out.count { dst[i] = f(s, pb[i]) }
            return out
        }
        let sa = broadcastStrides(shape, to: outShape), sb = broadcastStrides(other.shape, to: outShape)
        let rank = outShape.count
        let inner = outShape[rank - 1], ia = sa[rank - 1], ib = sb[rank - 1]
        let rows = out.count / Swift.max(inner, 1)
        var index = [Int](repeating: 0, count: rank)
        var offA = 0, offB = 0
        for row in 0..<rows {
            let base = row * inner
            for j in 0..<inner { dst[base + j] = f(pa[offA + j * ia], pb[offB + j * ib]) }
            // Advance the multi-index over all but the last dimension.
            var d = rank - 2
            while d >= 0 {
                index[d] += 1
                offA += sa[d]; offB += sb[d]
                if index[d] < outShape[d] { break }
                offA -= sa[d] * outShape[d]; offB -= sb[d] * outShape[d]
                index[d] = 0
                d -= 1
            }
        }
        return out
    }

    /// Sums a broadcast gradient back down to `target` (the inverse of broadcasting).
    public func sumTo(_ target: [Int]) -> Tensor {
        if shape == target { return self }
        let pad = shape.count - target.count
        var dims: [Int] = Array(0..<pad)
        for i in 0..<target.count where target[i] == 1 && shape[i + pad] != 1 { dims.append(i + pad) }
        var r = GradMode.noGrad { try! self.sum(dims: dims, keepDims: true) }
        r = r.withShape(target)
        return r
    }

    /// Same-shape addition without autograd.
    func adding(_ other: Tensor) -> Tensor {
        try! zipped(other, op: "add") { $0 + $1 }
    }

    /// `self += other` for equal shapes, without autograd (gradient accumulation); copies first
    /// only if the storage is shared.
    mutating func addInPlace(_ other: Tensor) {
        precondition(shape == other.shape, "addInPlace: \(shapeString(shape)) vs \(shapeString(other.shape))")
        ensureUnique()
        let dst = storage.pointer, src = other.storage.pointer
        Parallel.forRanges(count, grain: elementwiseGrain) { r in
            for i in r { dst[i] += src[i] }
        }
    }

    // MARK: Differentiable binary operations

    /// Elementwise sum with broadcasting.
    public func add(_ other: Tensor) throws -> Tensor {
        let (sa, sb) = (shape, other.shape)
        return try zipped(other, op: "add") { $0 + $1 }.recorded("add", [self, other]) { g in
            [g.sumTo(sa), g.sumTo(sb)]
        }
    }

    /// Elementwise difference with broadcasting.
    public func sub(_ other: Tensor) throws -> Tensor {
        let (sa, sb) = (shape, other.shape)
        return try zipped(other, op: "sub") { $0 - $1 }.recorded("sub", [self, other]) { g in
            [g.sumTo(sa), g.negated().sumTo(sb)]
        }
    }

    /// Elementwise product with broadcasting.
    public func mul(_ other: Tensor) throws -> Tensor {
        let a = detached(), b = other.detached()
        return try zipped(other, op: "mul") { $0 * $1 }.recorded("mul", [self, other]) { g in
            [try g.mul(b).sumTo(a.shape), try g.mul(a).sumTo(b.shape)]
        }
    }

    /// Elementwise quotient with broadcasting.
    public func div(_ other: Tensor) throws -> Tensor {
        let a = detached(), b = other.detached()
        return try zipped(other, op: "div") { $0 / $1 }.recorded("div", [self, other]) { g in
            let ga = try g.div(b).sumTo(a.shape)
            // d(a/b)/db = -a / b^2
            let gb = try g.mul(a).zipped(b, op: "div") { -$0 / ($1 * $1) }.sumTo(b.shape)
            return [ga, gb]
        }
    }

    /// Elementwise `self ** other` with broadcasting.
    public func pow(_ other: Tensor) throws -> Tensor {
        let a = detached(), b = other.detached()
        let out = try zipped(other, op: "pow") { Foundation.pow($0, $1) }
        let y = out.detached()
        return out.recorded("pow", [self, other]) { g in
            let ga = try g.mul(try a.zipped(b, op: "pow") { $1 == 0 ? 0 : $1 * Foundation.pow($0, $1 - 1) }).sumTo(a.shape)
            let gb = try g.mul(try y.zipped(a, op: "pow") { $1 > 0 ? $0 * Foundation.log($1) : 0 }).sumTo(b.shape)
            return [ga, gb]
        }
    }

    /// Elementwise maximum with broadcasting (gradient to the larger; ties to the first).
    public func maximum(_ other: Tensor) throws -> Tensor {
        let a = detached(), b = other.detached()
        return try zipped(other, op: "maximum") { Swift.max($0, $1) }.recorded("maximum", [self, other]) { g in
            let maskA = try a.zipped(b, op: "maximum") { $0 >= $1 ? 1 : 0 }
            return [try g.mul(maskA).sumTo(a.shape), try g.mul(maskA.mapped { 1 - $0 }).sumTo(b.shape)]
        }
    }

    // MARK: Scalars

    /// Adds a number to every element.
    public func adding(_ s: Float) -> Tensor {
        mapped { $0 + s }.recorded("add", [self]) { g in [g] }
    }

    /// Multiplies every element by a number.
    public func scaled(by s: Float) -> Tensor {
        mapped { $0 * s }.recorded("mul", [self]) { g in [g.scaled(by: s)] }
    }

    /// Raises every element to the power `p`.
    public func pow(_ p: Float) -> Tensor {
        let x = detached()
        return mapped { Foundation.pow($0, p) }.recorded("pow", [self]) { g in
            [try g.mul(x.mapped { p == 0 ? 0 : p * Foundation.pow($0, p - 1) })]
        }
    }

    // MARK: Unary operations

    /// `-self`.
    public func negated() -> Tensor {
        mapped { -$0 }.recorded("neg", [self]) { g in [g.negated()] }
    }

    /// Elementwise e^x.
    public func exp() -> Tensor {
        let out = mapped { Foundation.exp($0) }
        let y = out.detached()
        return out.recorded("exp", [self]) { g in [try g.mul(y)] }
    }

    /// Elementwise natural logarithm.
    public func log() -> Tensor {
        let x = detached()
        return mapped { Foundation.log($0) }.recorded("log", [self]) { g in [try g.div(x)] }
    }

    /// Elementwise square root.
    public func sqrt() -> Tensor {
        let out = mapped { $0.squareRoot() }
        let y = out.detached()
        return out.recorded("sqrt", [self]) { g in [try g.zipped(y, op: "sqrt") { $0 / (2 * $1) }] }
    }

    /// Elementwise absolute value (gradient sign(x), 0 at 0).
    public func abs() -> Tensor {
        let x = detached()
        return mapped { Swift.abs($0) }.recorded("abs", [self]) { g in
            [try g.mul(x.mapped { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) })]
        }
    }

    /// Elementwise max(x, 0).
    public func relu() -> Tensor {
        let out = mapped { $0 > 0 ? $0 : 0 }
        let y = out.detached()
        return out.recorded("relu", [self]) { g in [try g.zipped(y, op: "relu") { $1 > 0 ? $0 : 0 }] }
    }

    /// Elementwise logistic sigmoid.
    public func sigmoid() -> Tensor {
        let out = mapped { 1 / (1 + Foundation.exp(-$0)) }
        let y = out.detached()
        return out.recorded("sigmoid", [self]) { g in [try g.zipped(y, op: "sigmoid") { $0 * $1 * (1 - $1) }] }
    }

    /// Elementwise hyperbolic tangent.
    public func tanh() -> Tensor {
        let out = mapped { Foundation.tanh($0) }
        let y = out.detached()
        return out.recorded("tanh", [self]) { g in [try g.zipped(y, op: "tanh") { $0 * (1 - $1 * $1) }] }
    }

    /// Clamps every element into `[lo, hi]` (either bound optional); gradient passes inside.
    public func clamped(min lo: Float? = nil, max hi: Float? = nil) -> Tensor {
        let x = detached()
        let l = lo ?? -.infinity, h = hi ?? .infinity
        return mapped { Swift.min(Swift.max($0, l), h) }.recorded("clamp", [self]) { g in
            [try g.mul(x.mapped { $0 >= l && $0 <= h ? 1 : 0 })]
        }
    }

    // MARK: Operators

    public static func + (a: Tensor, b: Tensor) throws -> Tensor { try a.add(b) }
    public static func - (a: Tensor, b: Tensor) throws -> Tensor { try a.sub(b) }
    public static func * (a: Tensor, b: Tensor) throws -> Tensor { try a.mul(b) }
    public static func / (a: Tensor, b: Tensor) throws -> Tensor { try a.div(b) }
    public static func + (a: Tensor, s: Float) -> Tensor { a.adding(s) }
    public static func - (a: Tensor, s: Float) -> Tensor { a.adding(-s) }
    public static func * (a: Tensor, s: Float) -> Tensor { a.scaled(by: s) }
    public static func * (s: Float, a: Tensor) -> Tensor { a.scaled(by: s) }
    public static func / (a: Tensor, s: Float) -> Tensor { a.scaled(by: 1 / s) }
    public static prefix func - (a: Tensor) -> Tensor { a.negated() }
}
