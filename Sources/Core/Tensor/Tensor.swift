// Tensor.swift: the float32 n-dimensional array, row-major and contiguous, with value semantics.

/// A float32 tensor of any rank, stored row-major. Copies share storage until one of them writes
/// (copy-on-write). A tensor that requires gradients carries an autograd node.
public struct Tensor {
    @usableFromInline var storage: TensorStorage
    /// The size of each dimension; `[]` for a scalar.
    public private(set) var shape: [Int]
    /// The autograd node: a leaf for tensors created with `requiresGrad`, an operation otherwise.
    @usableFromInline var node: Node?

    /// Wraps `storage` (which must hold exactly the shape's element count).
    @usableFromInline init(storage: TensorStorage, shape: [Int]) {
        precondition(storage.count == shape.reduce(1, *), "storage does not match shape")
        self.storage = storage
        self.shape = shape
        self.node = nil
    }

    /// A tensor of `shape` whose elements are not initialised; every element must be written.
    public init(uninitializedShape shape: [Int]) {
        self.init(storage: TensorStorage(uninitializedCount: shape.reduce(1, *)), shape: shape)
    }

    /// A tensor of `shape` filled with `value`.
    public init(repeating value: Float, shape: [Int]) {
        self.init(storage: TensorStorage(repeating: value, count: shape.reduce(1, *)), shape: shape)
    }

    /// A tensor with the given values and shape (row-major).
    public init(_ values: [Float], shape: [Int]) throws {
        guard values.count == shape.reduce(1, *), shape.allSatisfy({ $0 >= 0 }) else {
            throw CoreError.shapeMismatch(op: "tensor",
                                          "\(values.count) values do not fill shape \(shapeString(shape))")
        }
        self.init(uninitializedShape: shape)
        values.withUnsafeBufferPointer { src in
            storage.pointer.update(from: src.baseAddress!, count: values.count)
        }
    }

    /// A 1-D tensor holding `values`.
    public init(_ values: [Float]) {
        try! self.init(values, shape: [values.count])
    }

    /// A rank-0 tensor holding `value`.
    public init(scalar value: Float) {
        self.init(repeating: value, shape: [])
    }

    /// The number of dimensions.
    @inlinable public var rank: Int { shape.count }
    /// The number of elements.
    @inlinable public var count: Int { storage.count }

    /// All elements, row-major.
    public var scalars: [Float] {
        Array(UnsafeBufferPointer(start: storage.pointer, count: count))
    }

    /// The single element of a one-element tensor.
    public func item() throws -> Float {
        guard count == 1 else {
            throw CoreError.invalidArgument(op: "item", "a tensor with \(count) elements cannot be converted to a number")
        }
        return storage.pointer[0]
    }

    /// Reads the element at a flat (row-major) index.
    @inlinable public subscript(flat i: Int) -> Float {
        get { storage.pointer[i] }
        set { ensureUnique(); storage.pointer[i] = newValue }
    }

    /// Reads the element at a multi-index.
    public subscript(indices: Int...) -> Float {
        get { storage.pointer[flatIndex(indices)] }
        set { ensureUnique(); storage.pointer[flatIndex(indices)] = newValue }
    }

    func flatIndex(_ indices: [Int]) -> Int {
        precondition(indices.count == rank, "expected \(rank) indices")
        var flat = 0
        for (i, n) in zip(indices, shape) {
            precondition(i >= 0 && i < n, "index \(i) out of range for size \(n)")
            flat = flat * n + i
        }
        return flat
    }

    /// Calls `body` with read access to the elements. The pointer must not escape.
    @inlinable public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: storage.pointer, count: count))
    }

    /// Calls `body` with write access to the elements, copying shared storage first.
    @inlinable public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        ensureUnique()
        return try body(UnsafeMutableBufferPointer(start: storage.pointer, count: count))
    }

    /// Makes this tensor the sole owner of its storage (the one uniqueness check before writes).
    @inlinable mutating func ensureUnique() {
        if !isKnownUniquelyReferenced(&storage) { makeUniqueCopy() }
    }

    @inline(never) @usableFromInline mutating func makeUniqueCopy() {
        storage = storage.copy()
    }

    /// The same values with a new shape of equal element count (storage shared, no copy).
    func withShape(_ newShape: [Int]) -> Tensor {
        var t = Tensor(storage: storage, shape: newShape)
        t.node = nil
        return t
    }
}

/// Computes the row-major strides of `shape`.
@inlinable func contiguousStrides(_ shape: [Int]) -> [Int] {
    var strides = [Int](repeating: 1, count: shape.count)
    var s = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) {
        strides[i] = s
        s *= shape[i]
    }
    return strides
}

/// Resolves a possibly negative dimension index against `rank`.
public func normalizeDim(_ dim: Int, rank: Int, op: String) throws -> Int {
    // A scalar takes dimension 0 or -1, as in PyTorch (each op then handles rank 0 itself).
    let d = dim < 0 ? dim + max(rank, 1) : dim
    guard d >= 0 && d < max(rank, 1) else {
        throw CoreError.invalidArgument(op: op, "dimension \(dim) is out of range for a tensor of rank \(rank)")
    }
    return d
}
