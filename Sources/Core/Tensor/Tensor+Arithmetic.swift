// Tensor+Arithmetic.swift: elementwise operations with NumPy broadcasting, and their gradients.

import CKernels
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

/// An operand of a broadcasting kernel: its elements and its strides in the output's shape (0
/// along broadcast dimensions).
struct BroadcastOperand {
    let pointer: UnsafePointer<Float>
    var strides: [Int]
}

/// Runs `smil_binary(op)` over `shape` for two broadcast operands: dimensions that both operands
/// walk alike are merged first, so a [N, C, H, W] by [1, C, 1, 1] product is C runs of H x W, and the
/// rows are split over threads in pieces fixed by the shape.
func broadcastKernel(_ op: Int32, shape: [Int], _ a: BroadcastOperand, _ b: BroadcastOperand, into dst: UnsafeMutablePointer<Float>) {
    let total = shape.reduce(1, *)
    guard total > 0 else { return }
    // Merge dimension d into d + 1 where both operands step over them as one.
    var sizes: [Int] = [], sa: [Int] = [], sb: [Int] = []
    for d in shape.indices where shape[d] != 1 {
        if let last = sizes.last, sa.last! == a.strides[d] * shape[d], sb.last! == b.strides[d] * shape[d] {
            sizes[sizes.count - 1] = last * shape[d]
            sa[sa.count - 1] = a.strides[d]
            sb[sb.count - 1] = b.strides[d]
        } else {
            sizes.append(shape[d]); sa.append(a.strides[d]); sb.append(b.strides[d])
        }
    }
    if sizes.isEmpty { sizes = [1]; sa = [0]; sb = [0] }
    let rank = sizes.count
    let inner = sizes[rank - 1], ia = sa[rank - 1], ib = sb[rank - 1]
    let rows = total / inner
    let pa = a.pointer, pb = b.pointer
    if ia <= 1 && ib <= 1 {
        if rows == 1 {
            Parallel.forRangesInShares(inner, grain: elementwiseGrain) { r in
                smil_binary(op, r.count, pa + r.lowerBound * ia, ia, pb + r.lowerBound * ib, ib, dst + r.lowerBound)
            }
            return
        }
        // The last two merged dimensions are rows for smil_binary_rows; an odometer walks the rest.
        let rowsPerBlock = rank >= 2 ? sizes[rank - 2] : 1
        let ra = rank >= 2 ? sa[rank - 2] : 0, rb = rank >= 2 ? sb[rank - 2] : 0
        let blocks = rows / rowsPerBlock
        let rowGrain = Swift.max(1, elementwiseGrain / inner)
        let piecesPerBlock = (rowsPerBlock + rowGrain - 1) / rowGrain
        Parallel.forEachInShares(blocks * piecesPerBlock) { p in
            let block = p / piecesPerBlock, r0 = (p % piecesPerBlock) * rowGrain
            let n = Swift.min(rowsPerBlock, r0 + rowGrain) - r0
            var rest = block, offA = r0 * ra, offB = r0 * rb
            for d in stride(from: rank - 3, through: 0, by: -1) {
                let i = rest % sizes[d]
                rest /= sizes[d]
                offA += i * sa[d]
                offB += i * sb[d]
            }
            smil_binary_rows(op, n, inner, pa + offA, ra, ia, pb + offB, rb, ib, dst + (block * rowsPerBlock + r0) * inner)
        }
        return
    }
    // Inner strides other than 0 and 1 (not produced by broadcasting contiguous tensors): element
    // by element.
    var index = [Int](repeating: 0, count: rank)
    var offA = 0, offB = 0
    for i in 0..<total {
        smil_binary(op, 1, pa + offA, 0, pb + offB, 0, dst + i)
        var d = rank - 1
        while d >= 0 {
            index[d] += 1
            offA += sa[d]; offB += sb[d]
            if index[d] < sizes[d] { break }
            offA -= sa[d] * sizes[d]; offB -= sb[d] * sizes[d]
            index[d] = 0
            d -= 1
        }
    }
}

extension Tensor {
    /// Applies `f` to every element (no autograd). The named operations below use `unary`.
    @inline(__always) func mapped(_ f: (Float) -> Float) -> Tensor {
        let out = Tensor(uninitializedShape: shape)
        let n = count
        let src = storage.pointer, dst = out.storage.pointer
        withoutActuallyEscaping(f) { f in
            Parallel.forRangesInShares(n, grain: elementwiseGrain) { r in
                for i in r { dst[i] = f(src[i]) }
            }
        }
        return out
    }

    /// `smil_unary(op)` of every element (no autograd), vectorised and split over threads.
    func unary(_ op: Int, _ a: Float = 0, _ b: Float = 0) -> Tensor {
        // A pending permutation: mapped in its source's order, the result permuted alike.
        if let (source, dims) = pendingView { return source.unary(op, a, b).permutedView(dims) }
        let out = Tensor(uninitializedShape: shape)
        let src = storage.pointer, dst = out.storage.pointer
        let code = Int32(op)
        Parallel.forRangesInShares(count, grain: elementwiseGrain) { r in
            smil_unary(code, r.count, src + r.lowerBound, dst + r.lowerBound, a, b)
        }
        return out
    }

    /// `smil_binary(op)` of two tensors with NumPy broadcasting (no autograd).
    func binary(_ op: Int, _ other: Tensor, name: String) throws -> Tensor {
        if shape == other.shape, let (x, dims) = pendingView, let (y, otherDims) = other.pendingView, dims == otherDims, x.shape == y.shape {
            // Two pending permutations alike: combined in their sources' order.
            return try x.binary(op, y, name: name).permutedView(dims)
        }
        let code = Int32(op)
        let pa = storage.pointer, pb = other.storage.pointer
        if shape == other.shape {
            let out = Tensor(uninitializedShape: shape)
            let dst = out.storage.pointer
            Parallel.forRangesInShares(count, grain: elementwiseGrain) { r in
                smil_binary(code, r.count, pa + r.lowerBound, 1, pb + r.lowerBound, 1, dst + r.lowerBound)
            }
            return out
        }
        let outShape = try broadcastShapes(shape, other.shape, op: name)
        let out = Tensor(uninitializedShape: outShape)
        broadcastKernel(code, shape: outShape, BroadcastOperand(pointer: pa, strides: broadcastStrides(shape, to: outShape)),
                        BroadcastOperand(pointer: pb, strides: broadcastStrides(other.shape, to: outShape)), into: out.storage.pointer)
        return out
    }

    /// This tensor broadcast to `target` as a new contiguous tensor (no autograd).
    func broadcastCopy(to target: [Int]) -> Tensor {
        if shape == target { return self }
        let out = Tensor(uninitializedShape: target)
        let operand = BroadcastOperand(pointer: storage.pointer, strides: broadcastStrides(shape, to: target))
        broadcastKernel(Int32(SMIL_FIRST), shape: target, operand, operand, into: out.storage.pointer)
        return out
    }

    /// Combines two tensors elementwise with broadcasting (no autograd): the general form, for
    /// the operations that have no kernel of their own.
    @inline(__always) func zipped(_ other: Tensor, op name: String, _ f: (Float, Float) -> Float) throws -> Tensor {
        let pa = storage.pointer, pb = other.storage.pointer
        if shape == other.shape {
            let out = Tensor(uninitializedShape: shape)
            let dst = out.storage.pointer
            withoutActuallyEscaping(f) { f in
                Parallel.forRangesInShares(count, grain: elementwiseGrain) { r in
                    for i in r { dst[i] = f(pa[i], pb[i]) }
                }
            }
            return out
        }
        let outShape = try broadcastShapes(shape, other.shape, op: name)
        let a = broadcastCopy(to: outShape), b = other.broadcastCopy(to: outShape)
        return try a.zipped(b, op: name, f)
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
        try! binary(SMIL_ADD, other, name: "add")
    }

    /// `self += other` for equal shapes, without autograd (gradient accumulation); copies first
    /// only if the storage is shared.
    mutating func addInPlace(_ other: Tensor) {
        precondition(shape == other.shape, "addInPlace: \(shapeString(shape)) vs \(shapeString(other.shape))")
        ensureUnique()
        let dst = storage.pointer, src = other.storage.pointer
        Parallel.forRangesInShares(count, grain: elementwiseGrain) { r in
            smil_binary(Int32(SMIL_ADD), r.count, dst + r.lowerBound, 1, src + r.lowerBound, 1, dst + r.lowerBound)
        }
    }

    // MARK: Differentiable binary operations

    /// Elementwise sum with broadcasting.
    public func add(_ other: Tensor) throws -> Tensor {
        let (sa, sb) = (shape, other.shape)
        let (needA, needB) = (requiresGrad, other.requiresGrad)
        return try binary(SMIL_ADD, other, name: "add").recorded("add", [self, other]) { g in
            [needA ? g.sumTo(sa) : nil, needB ? g.sumTo(sb) : nil]
        }
    }

    /// Elementwise difference with broadcasting.
    public func sub(_ other: Tensor) throws -> Tensor {
        let (sa, sb) = (shape, other.shape)
        let (needA, needB) = (requiresGrad, other.requiresGrad)
        return try binary(SMIL_SUB, other, name: "sub").recorded("sub", [self, other]) { g in
            [needA ? g.sumTo(sa) : nil, needB ? g.negated().sumTo(sb) : nil]
        }
    }

    /// Elementwise product with broadcasting.
    public func mul(_ other: Tensor) throws -> Tensor {
        let a = detached(), b = other.detached()
        let (needA, needB) = (requiresGrad, other.requiresGrad)
        return try binary(SMIL_MUL, other, name: "mul").recorded("mul", [self, other]) { g in
            [needA ? try g.mul(b).sumTo(a.shape) : nil, needB ? try g.mul(a).sumTo(b.shape) : nil]
        }
    }

    /// Elementwise quotient with broadcasting.
    public func div(_ other: Tensor) throws -> Tensor {
        let a = detached(), b = other.detached()
        let (needA, needB) = (requiresGrad, other.requiresGrad)
        return try binary(SMIL_DIV, other, name: "div").recorded("div", [self, other]) { g in
            let ga = needA ? try g.div(b).sumTo(a.shape) : nil
            // d(a/b)/db = -a / b^2
            let gb = needB ? try g.mul(a).binary(SMIL_DIV_BACKWARD, b, name: "div").sumTo(b.shape) : nil
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
        let (needA, needB) = (requiresGrad, other.requiresGrad)
        return try binary(SMIL_MAX, other, name: "maximum").recorded("maximum", [self, other]) { g in
            let maskA = try a.binary(SMIL_GE, b, name: "maximum")
            return [needA ? try g.mul(maskA).sumTo(a.shape) : nil, needB ? try g.mul(maskA.unary(SMIL_ONE_MINUS)).sumTo(b.shape) : nil]
        }
    }

    // MARK: Scalars

    /// Adds a number to every element.
    public func adding(_ s: Float) -> Tensor {
        unary(SMIL_ADD_SCALAR, s).recorded("add", [self]) { g in [g] }
    }

    /// Multiplies every element by a number.
    public func scaled(by s: Float) -> Tensor {
        unary(SMIL_MUL_SCALAR, s).recorded("mul", [self]) { g in [g.scaled(by: s)] }
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
        unary(SMIL_NEG).recorded("neg", [self]) { g in [g.negated()] }
    }

    /// Elementwise e^x.
    public func exp() -> Tensor {
        let out = unary(SMIL_EXP)
        let y = out.detached()
        return out.recorded("exp", [self]) { g in [try g.mul(y)] }
    }

    /// Elementwise natural logarithm.
    public func log() -> Tensor {
        let x = detached()
        return unary(SMIL_LOG).recorded("log", [self]) { g in [try g.div(x)] }
    }

    /// Elementwise square root.
    public func sqrt() -> Tensor {
        let out = unary(SMIL_SQRT)
        let y = out.detached()
        return out.recorded("sqrt", [self]) { g in [try g.binary(SMIL_SQRT_BACKWARD, y, name: "sqrt")] }
    }

    /// Elementwise absolute value (gradient sign(x), 0 at 0).
    public func abs() -> Tensor {
        let x = detached()
        return unary(SMIL_ABS).recorded("abs", [self]) { g in
            [try g.mul(x.unary(SMIL_SIGN))]
        }
    }

    /// Elementwise max(x, 0).
    public func relu() -> Tensor {
        let out = unary(SMIL_RELU)
        let y = out.detached()
        return out.recorded("relu", [self]) { g in [try g.binary(SMIL_RELU_BACKWARD, y, name: "relu")] }
    }

    /// Elementwise logistic sigmoid.
    public func sigmoid() -> Tensor {
        let out = unary(SMIL_SIGMOID)
        let y = out.detached()
        return out.recorded("sigmoid", [self]) { g in [try g.binary(SMIL_SIGMOID_BACKWARD, y, name: "sigmoid")] }
    }

    /// Elementwise hyperbolic tangent.
    public func tanh() -> Tensor {
        let out = unary(SMIL_TANH)
        let y = out.detached()
        return out.recorded("tanh", [self]) { g in [try g.binary(SMIL_TANH_BACKWARD, y, name: "tanh")] }
    }

    /// Clamps every element into `[lo, hi]` (either bound optional); gradient passes inside.
    public func clamped(min lo: Float? = nil, max hi: Float? = nil) -> Tensor {
        let x = detached()
        let l = lo ?? -.infinity, h = hi ?? .infinity
        return unary(SMIL_CLAMP, l, h).recorded("clamp", [self]) { g in
            [try g.mul(x.unary(SMIL_INSIDE, l, h))]
        }
    }

    // MARK: Comparisons

    /// Elementwise comparison with broadcasting, 1 where it holds and 0 elsewhere (no gradient).
    public enum Comparison: String, Sendable { case lt = "<", le = "<=", gt = ">", ge = ">=", eq = "==", ne = "!=" }

    public static func compare(_ a: Tensor, _ b: Tensor, _ c: Comparison) throws -> Tensor {
        let op: Int
        switch c {
        case .lt: op = SMIL_LT
        case .le: op = SMIL_LE
        case .gt: op = SMIL_GT
        case .ge: op = SMIL_GE
        case .eq: op = SMIL_EQ
        case .ne: op = SMIL_NE
        }
        return try a.binary(op, b, name: c.rawValue)
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
