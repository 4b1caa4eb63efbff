// IntTensor.swift: int64 tensors for labels, indices and coordinates (no autograd).

/// An integer (int64) tensor, row-major, with value semantics (Swift's array copy-on-write).
public struct IntTensor: Equatable {
    /// Elements, row-major.
    public var scalars: [Int]
    /// The size of each dimension.
    public private(set) var shape: [Int]

    /// A tensor with the given values and shape.
    public init(_ scalars: [Int], shape: [Int]) throws {
        guard try Memory.checkAllocation(shape, elementSize: MemoryLayout<Int>.stride, op: "tensor") == scalars.count else {
            throw CoreError.shapeMismatch(op: "tensor",
                                          "\(scalars.count) values do not fill shape \(shapeString(shape))")
        }
        self.scalars = scalars
        self.shape = shape
    }

    /// A 1-D tensor.
    public init(_ scalars: [Int]) {
        self.scalars = scalars
        self.shape = [scalars.count]
    }

    /// A tensor of `shape` filled with `value`.
    public init(repeating value: Int, shape: [Int]) {
        self.scalars = [Int](repeating: value, count: shape.reduce(1, *))
        self.shape = shape
    }

    public var rank: Int { shape.count }
    public var count: Int { scalars.count }

    /// Reads the element at a multi-index.
    public subscript(indices: Int...) -> Int {
        get { scalars[flatIndex(indices)] }
        set { scalars[flatIndex(indices)] = newValue }
    }

    private func flatIndex(_ indices: [Int]) -> Int {
        precondition(indices.count == rank, "expected \(rank) indices")
        var flat = 0
        for (i, n) in zip(indices, shape) { precondition(i >= 0 && i < n); flat = flat * n + i }
        return flat
    }

    /// The same values with another shape of equal count.
    public func reshaped(_ newShape: [Int]) throws -> IntTensor {
        guard newShape.allSatisfy({ $0 >= 0 && (count == 0 || $0 <= count) }) else {
            throw CoreError.shapeMismatch(op: "reshape", "shape \(shapeString(newShape)) is invalid for input of size \(count)")
        }
        return try IntTensor(scalars, shape: newShape)
    }

    /// Converts to float32.
    public func float() -> Tensor {
        try! Tensor(scalars.map { Float($0) }, shape: shape)
    }
}

extension Tensor {
    /// Converts to int64, truncating toward zero as PyTorch's `.long()`.
    /// Truncates toward zero. NaN, infinities and values beyond int64 become -2^63, as PyTorch's
    /// conversion gives on x86 (the CPU's "integer indefinite").
    public func long() -> IntTensor {
        try! IntTensor(scalars.map { Int(exactly: $0.rounded(.towardZero)) ?? Int.min }, shape: shape)
    }
}

/// A tensor of either element type, as stored in state dicts and safetensors files.
public enum AnyTensor {
    case float(Tensor)
    case int(IntTensor)

    public var shape: [Int] {
        switch self {
        case .float(let t): return t.shape
        case .int(let t): return t.shape
        }
    }

    /// The float32 value, converting integers.
    public var asFloat: Tensor {
        switch self {
        case .float(let t): return t
        case .int(let t): return t.float()
        }
    }
}
