// Node.swift: the autograd graph. Each differentiable result holds a node that knows its inputs'
// nodes and how to turn the result's gradient into theirs.

/// One vertex of the dynamic graph. A leaf node belongs to a tensor created with `requiresGrad`
/// and accumulates its gradient in `grad`; an operation node holds the backward closure.
public final class Node {
    /// The gradient accumulated by `backward()` (leaves only).
    public internal(set) var grad: Tensor?
    let isLeaf: Bool
    let shape: [Int]
    let name: String
    var inputs: [Node?]
    /// Maps the output gradient to one gradient per input (nil where an input needs none).
    var backwardFn: ((Tensor) throws -> [Tensor?])?
    /// Instead of `backwardFn`, for operations that can add into the gradient sums the engine
    /// already holds for their inputs (see `GradientSums`).
    var addingBackwardFn: ((Tensor, GradientSums) throws -> [Tensor?])?

    init(leafWithShape shape: [Int]) {
        isLeaf = true
        self.shape = shape
        name = "leaf"
        inputs = []
    }

    init(op name: String, shape: [Int], inputs: [Node?], backward: @escaping (Tensor) throws -> [Tensor?]) {
        isLeaf = false
        self.name = name
        self.shape = shape
        self.inputs = inputs
        backwardFn = backward
    }

    init(op name: String, shape: [Int], inputs: [Node?], addingInto backward: @escaping (Tensor, GradientSums) throws -> [Tensor?]) {
        isLeaf = false
        self.name = name
        self.shape = shape
        self.inputs = inputs
        addingBackwardFn = backward
    }
}

/// The gradient sums the engine already holds for an operation's inputs when its backward runs:
/// the sum of what other consumers passed back, or a leaf's accumulated `grad`. An operation that
/// can add its input gradient into memory (a GEMM with beta 1, a scatter that adds) takes the sum
/// and adds into it, instead of writing a new tensor that the engine would then add in another
/// pass over memory — for a large input, that pass (two reads and a write) costs as much as a
/// cheap layer. Only sums held by nothing else are offered, so no copy the caller sees changes.
final class GradientSums {
    fileprivate var offered: [Tensor?]
    fileprivate var taken: [Bool]

    fileprivate init(count: Int) {
        offered = Array(repeating: nil, count: count)
        taken = Array(repeating: false, count: count)
    }

    /// Input `i`'s running gradient sum, of its shape, or nil when there is none to take. An
    /// operation that takes it must add its gradient for input `i` into it and return it as that
    /// input's gradient: the engine then keeps it as the new sum.
    func take(_ i: Int) -> Tensor? {
        guard i < offered.count, let sum = offered[i] else { return nil }
        offered[i] = nil
        taken[i] = true
        return sum
    }
}

/// Whether operations record the graph. `noGrad` turns recording off for a scope.
public enum GradMode {
    nonisolated(unsafe) public private(set) static var isEnabled = true

    /// Runs `body` with gradient recording off, restoring the previous mode afterwards.
    public static func noGrad<R>(_ body: () throws -> R) rethrows -> R {
        let previous = isEnabled
        isEnabled = false
        defer { isEnabled = previous }
        return try body()
    }

    /// Runs `body` with gradient recording on.
    public static func enableGrad<R>(_ body: () throws -> R) rethrows -> R {
        let previous = isEnabled
        isEnabled = true
        defer { isEnabled = previous }
        return try body()
    }
}

extension Tensor {
    /// Whether operations on this tensor are recorded for `backward()`.
    public var requiresGrad: Bool {
        get { node != nil }
        set {
            if newValue {
                if node == nil { node = Node(leafWithShape: shape) }
            } else {
                node = nil
            }
        }
    }

    /// Whether this tensor was created by the user rather than by a recorded operation.
    public var isLeaf: Bool { node?.isLeaf ?? true }

    /// The gradient accumulated into this leaf by `backward()`; settable (nil clears it).
    public var grad: Tensor? {
        get { node?.grad }
        nonmutating set { node?.grad = newValue }
    }

    /// The same values, cut off from the graph.
    public func detached() -> Tensor {
        var t = self
        t.node = nil
        return t
    }

    /// Builds a result that records `backward` when gradients are on and any input requires them.
    /// `backward` maps the result's gradient to one gradient per input (nil to skip one).
    @usableFromInline func recorded(_ op: String, _ inputs: [Tensor], backward: @escaping (Tensor) throws -> [Tensor?]) -> Tensor {
        var out = self
        out.node = nil
        guard GradMode.isEnabled, inputs.contains(where: { $0.node != nil }) else { return out }
        out.node = Node(op: op, shape: shape, inputs: inputs.map { $0.node }, backward: backward)
        return out
    }

    /// As `recorded(_:_:backward:)`, for an operation whose backward can add an input's gradient
    /// into the sum the engine already holds for it: `backward` gets the output gradient and the
    /// sums it may take (`GradientSums.take`).
    func recorded(_ op: String, _ inputs: [Tensor], addingInto backward: @escaping (Tensor, GradientSums) throws -> [Tensor?]) -> Tensor {
        var out = self
        out.node = nil
        guard GradMode.isEnabled, inputs.contains(where: { $0.node != nil }) else { return out }
        out.node = Node(op: op, shape: shape, inputs: inputs.map { $0.node }, addingInto: backward)
        return out
    }

    /// Back-propagates from this tensor. A scalar (one-element) tensor needs no `gradient`; any
    /// other needs one of its shape. Gradients accumulate into the `grad` of every leaf reached;
    /// the graph is freed afterwards, as PyTorch does.
    public func backward(_ gradient: Tensor? = nil) throws {
        guard let root = node else {
            throw CoreError.autograd("element 0 of tensors does not require grad and does not have a grad_fn")
        }
        let seed: Tensor
        if let g = gradient {
            guard g.shape == shape else {
                throw CoreError.shapeMismatch(op: "backward",
                                              "gradient has shape \(shapeString(g.shape)), tensor has \(shapeString(shape))")
            }
            seed = g.detached()
        } else {
            guard count == 1 else {
                throw CoreError.autograd("grad can be implicitly created only for scalar outputs (shape \(shapeString(shape)))")
            }
            seed = Tensor(repeating: 1, shape: shape)
        }
        try GradMode.noGrad { try Node.propagate(from: root, seed: seed) }
    }
}

extension Node {
    /// Visits nodes in reverse topological order, summing gradients per node before passing them on.
    static func propagate(from root: Node, seed: Tensor) throws {
        // Iterative depth-first post-order, so deep graphs cannot overflow the stack.
        var order: [Node] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Node, Int)] = [(root, 0)]
        visited.insert(ObjectIdentifier(root))
        while let (node, next) = stack.popLast() {
            if next < node.inputs.count {
                stack.append((node, next + 1))
                if let child = node.inputs[next], !visited.contains(ObjectIdentifier(child)) {
                    visited.insert(ObjectIdentifier(child))
                    stack.append((child, 0))
                }
            } else {
                order.append(node)
            }
        }
        var pending: [ObjectIdentifier: Tensor] = [ObjectIdentifier(root): seed]
        // Leaves whose grad an operation took: it waits in `pending` until the leaf's turn.
        var borrowed: [ObjectIdentifier: Node] = [:]
        do {
            try propagate(order, &pending, &borrowed)
        } catch {
            // Give such a leaf its grad back (with what was added to it so far, as PyTorch leaves
            // the grads an interrupted backward reached), never nil.
            for (key, leaf) in borrowed { if let sum = pending[key] { leaf.grad = sum } }
            throw error
        }
    }

    /// The nodes of `order` (post-order) from the root down: each one's summed gradient to its
    /// inputs, or into its `grad` for a leaf.
    private static func propagate(_ order: [Node], _ pending: inout [ObjectIdentifier: Tensor],
                                  _ borrowed: inout [ObjectIdentifier: Node]) throws {
        for node in order.reversed() {
            // A safe point for Ctrl-C between nodes (and after a kernel that stopped early).
            try Interrupt.check()
            guard let g = pending.removeValue(forKey: ObjectIdentifier(node)) else { continue }
            if node.isLeaf {
                // Accumulate in place (copy-on-write keeps a grad the caller holds unchanged).
                if var acc = node.grad {
                    node.grad = nil
                    acc.addInPlace(g)
                    node.grad = acc
                } else {
                    node.grad = g
                }
                continue
            }
            let grads: [Tensor?]
            if let fn = node.addingBackwardFn {
                grads = try callOffering(fn, node, g, &pending, &borrowed)
            } else if let fn = node.backwardFn {
                grads = try fn(g)
            } else {
                throw CoreError.autograd("trying to backward through the graph a second time (\(node.name)); its buffers were freed")
            }
            precondition(grads.count == node.inputs.count, "\(node.name): backward returned \(grads.count) gradients")
            for (input, grad) in zip(node.inputs, grads) {
                guard let input = input, let grad = grad else { continue }
                guard grad.shape == input.shape else {
                    throw CoreError.autograd("\(node.name): gradient of shape \(shapeString(grad.shape)) for an input of shape \(shapeString(input.shape))")
                }
                let key = ObjectIdentifier(input)
                if var acc = pending.removeValue(forKey: key) {
                    acc.addInPlace(grad)
                    pending[key] = acc
                } else {
                    pending[key] = grad
                }
            }
            // Free the graph as we go: the closure holds the saved tensors.
            node.backwardFn = nil
            node.addingBackwardFn = nil
            node.inputs = []
        }
    }

    /// Runs an adding backward: offers it, per input, the sum pending for that input, or a leaf's
    /// `grad` when nothing is pending, where no other tensor shares its storage. A sum the
    /// backward took comes back holding its gradient too and becomes the pending sum; the others
    /// are put back where they were, and the backward's gradients for them added as usual.
    private static func callOffering(_ fn: (Tensor, GradientSums) throws -> [Tensor?], _ node: Node, _ g: Tensor,
                                     _ pending: inout [ObjectIdentifier: Tensor],
                                     _ borrowed: inout [ObjectIdentifier: Node]) throws -> [Tensor?] {
        let sums = GradientSums(count: node.inputs.count)
        var fromLeaf = Array(repeating: false, count: node.inputs.count)
        var seen = Set<ObjectIdentifier>()
        for (i, input) in node.inputs.enumerated() {
            // An input that appears twice is offered once.
            guard let input = input, seen.insert(ObjectIdentifier(input)).inserted else { continue }
            let key = ObjectIdentifier(input)
            if var sum = pending.removeValue(forKey: key) {
                if sum.shape == input.shape && isKnownUniquelyReferenced(&sum.storage) { sums.offered[i] = sum } else { pending[key] = sum }
            } else if input.isLeaf, var sum = input.grad {
                input.grad = nil
                if sum.shape == input.shape && isKnownUniquelyReferenced(&sum.storage) {
                    sums.offered[i] = sum
                    fromLeaf[i] = true
                } else {
                    input.grad = sum
                }
            }
        }
        // Sums not taken go back where they came from.
        func restore() {
            for (i, input) in node.inputs.enumerated() {
                guard let input = input, let sum = sums.offered[i] else { continue }
                if fromLeaf[i] { input.grad = sum } else { pending[ObjectIdentifier(input)] = sum }
            }
            sums.offered = Array(repeating: nil, count: node.inputs.count)
        }
        let grads: [Tensor?]
        do {
            grads = try fn(g, sums)
        } catch {
            restore()
            throw error
        }
        restore()
        precondition(grads.count == node.inputs.count, "\(node.name): backward returned \(grads.count) gradients")
        var result = grads
        for (i, input) in node.inputs.enumerated() where sums.taken[i] {
            guard let input = input, let sum = grads[i] else {
                preconditionFailure("\(node.name): took the gradient sum of input \(i) but returned no gradient for it")
            }
            // The taken sum now holds this gradient as well: it is the pending sum, not an addend.
            pending[ObjectIdentifier(input)] = sum
            if fromLeaf[i] { borrowed[ObjectIdentifier(input)] = input }
            result[i] = nil
        }
        return result
    }
}
