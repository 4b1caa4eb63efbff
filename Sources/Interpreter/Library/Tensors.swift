// Tensors.swift: tensor creation functions, tensor members and methods (spec section 3, Tensors).

import Foundation
import Core

extension Interpreter {
    /// Declares a tensor method (the tensor is the first value the body receives).
    func method(_ name: String, _ params: [(String, Value?)] = [], doc: String,
                _ body: @escaping ([Value], [Value], Interpreter) throws -> Value) {
        tensorMethods[name] = Builtin(Signature(name, params), doc: doc, body)
    }

    func registerTensors() {
        def("tensor", [("data", nil), ("dtype", .nilValue)], doc: "A tensor from a number or nested lists; all-integer data gives int64 unless dtype: \"float32\".") { a, _, _ in
            let r = ArgumentReader(function: "tensor")
            let dtype = a[1].isNil ? nil : try r.string(a[1], "dtype")
            let t: AnyTensor
            switch a[0] {
            case .int(let i): t = .int(try IntTensor([i], shape: []))
            case .float(let d): t = .float(Tensor(scalar: Float(d)))
            case .tensor(let x): t = .float(x.value.detached())
            case .intTensor(let x): t = .int(x.value)
            default: t = try r.tensorFromNested(a[0], "data")
            }
            switch dtype {
            case nil: return .from(t)
            case "float32": return .from(t.asFloat)
            case "int64": if case .int(let i) = t { return .from(i) }; return .from(t.asFloat.long())
            default: throw ScriptError(.runtime, "tensor(): dtype must be \"float32\" or \"int64\", got \(quote(dtype!))")
            }
        }
        def("zeros", [("shape", nil)], doc: "A float32 tensor of zeros.") { a, _, _ in .from(try Tensor.zeros(try ArgumentReader(function: "zeros").shape(a[0], "shape"))) }
        def("ones", [("shape", nil)], doc: "A float32 tensor of ones.") { a, _, _ in .from(try Tensor.ones(try ArgumentReader(function: "ones").shape(a[0], "shape"))) }
        def("full", [("shape", nil), ("value", nil)], doc: "A float32 tensor filled with value.") { a, _, _ in
            let r = ArgumentReader(function: "full")
            return .from(try Tensor.full(try r.shape(a[0], "shape"), try r.float(a[1], "value")))
        }
        def("randn", [("shape", nil)], doc: "Standard normal values from the seeded generator.") { a, _, _ in .from(try Tensor.randn(try ArgumentReader(function: "randn").shape(a[0], "shape"))) }
        def("rand", [("shape", nil)], doc: "Uniform values in [0, 1) from the seeded generator.") { a, _, _ in .from(try Tensor.rand(try ArgumentReader(function: "rand").shape(a[0], "shape"))) }
        def("randint", [("lo", nil), ("hi", nil), ("shape", nil)], doc: "Uniform int64 values in lo..<hi.") { a, _, _ in
            let r = ArgumentReader(function: "randint")
            let lo = try r.int(a[0], "lo"), hi = try r.int(a[1], "hi")
            guard hi > lo else { throw ScriptError(.runtime, "randint(): hi (\(hi)) must be greater than lo (\(lo))") }
            return .from(try IntTensor.randint(lo, hi, shape: try r.shape(a[2], "shape")))
        }
        def("arange", [("start", nil), ("end", .nilValue), ("step", .int(1))], doc: "arange(n): 0, 1, ..., n-1 (int64 for integers); arange(a, b, step).") { a, _, _ in
            let r = ArgumentReader(function: "arange")
            let allInts = [a[0], a[1], a[2]].allSatisfy { if case .float = $0 { return false }; return true }
            let (lo, hi) = a[1].isNil ? (0.0, try r.double(a[0], "start")) : (try r.double(a[0], "start"), try r.double(a[1], "end"))
            let t = try Tensor.arange(Float(lo), Float(hi), step: try r.float(a[2], "step"))
            return allInts ? .from(t.long()) : .from(t)
        }
        def("eye", [("n", nil)], doc: "The n x n identity matrix.") { a, _, _ in .from(try Tensor.eye(try ArgumentReader(function: "eye").int(a[0], "n"))) }
        def("cat", [("tensors", nil), ("dim", .int(0))], doc: "Joins tensors along an existing dimension.") { a, _, _ in
            let r = ArgumentReader(function: "cat")
            return .from(try Tensor.cat(try r.list(a[0], "tensors").map { try r.tensor($0, "tensors") }, dim: try r.int(a[1], "dim")))
        }
        def("stack", [("tensors", nil), ("dim", .int(0))], doc: "Stacks equal-shaped tensors along a new dimension.") { a, _, _ in
            let r = ArgumentReader(function: "stack")
            return .from(try Tensor.stack(try r.list(a[0], "tensors").map { try r.tensor($0, "tensors") }, dim: try r.int(a[1], "dim")))
        }
        def("where", [("cond", nil), ("a", nil), ("b", nil)], doc: "a where cond is nonzero, else b (broadcast).") { a, _, _ in
            let r = ArgumentReader(function: "where")
            return .from(try Tensor.where(try r.tensor(a[0], "cond"), try r.tensor(a[1], "a"), try r.tensor(a[2], "b")))
        }
        def("allclose", [("a", nil), ("b", nil), ("rtol", .float(1e-5)), ("atol", .float(1e-8))], doc: "Whether |a - b| <= atol + rtol * |b| everywhere.") { a, _, _ in
            let r = ArgumentReader(function: "allclose")
            return .bool(try Tensor.allClose(try r.tensor(a[0], "a"), try r.tensor(a[1], "b"), rtol: try r.float(a[2], "rtol"), atol: try r.float(a[3], "atol")))
        }
        def("layer_norm", [("x", nil), ("normalized_shape", nil), ("weight", .nilValue), ("bias", .nilValue), ("eps", .float(1e-5))],
            doc: "Layer normalisation over the last dimensions (normalized_shape: an integer or a list), biased variance, then * weight + bias where given (torch.nn.functional.layer_norm).") { a, _, _ in
            let r = ArgumentReader(function: "layer_norm")
            return .from(try r.tensor(a[0], "x").layerNorm(try r.shape(a[1], "normalized_shape"), weight: a[2].isNil ? nil : try r.tensor(a[2], "weight"),
                                                           bias: a[3].isNil ? nil : try r.tensor(a[3], "bias"), eps: try r.float(a[4], "eps")))
        }
        def("no_grad", [("f", nil)], doc: "Calls f() with gradient recording off and returns its result.") { a, _, interp in
            try GradMode.noGrad { try interp.callValue(a[0], []) }
        }

        // Methods.
        let t = { (v: Value) throws -> Tensor in try ArgumentReader(function: "tensor").tensor(v, "self") }
        let optDim = { (v: Value) throws -> [Int]? in v.isNil ? nil : [try ArgumentReader(function: "tensor").int(v, "dim")] }
        method("reshape", [("shape", nil)], doc: "The same values in a new shape (one size may be -1).") { a, _, _ in
            let dims = try ArgumentReader(function: "reshape").list(a[1], "shape").map { try ArgumentReader(function: "reshape").int($0, "shape") }
            return .from(try t(a[0]).reshaped(dims))
        }
        method("flatten", [("start", .int(0))], doc: "Flattens dimensions from start on.") { a, _, _ in .from(try t(a[0]).flattened(start: try ArgumentReader(function: "flatten").int(a[1], "start"))) }
        method("transpose", [("a", .int(0)), ("b", .int(1))], doc: "Swaps two dimensions.") { a, _, _ in
            let r = ArgumentReader(function: "transpose")
            return .from(try t(a[0]).transposed(try r.int(a[1], "a"), try r.int(a[2], "b")))
        }
        method("permute", [("dims", nil)], doc: "Reorders the dimensions.") { a, _, _ in
            let r = ArgumentReader(function: "permute")
            return .from(try t(a[0]).permuted(try r.list(a[1], "dims").map { try r.int($0, "dims") }))
        }
        method("unsqueeze", [("dim", nil)], doc: "Inserts a dimension of size 1.") { a, _, _ in .from(try t(a[0]).unsqueezed(try ArgumentReader(function: "unsqueeze").int(a[1], "dim"))) }
        method("squeeze", [("dim", .nilValue)], doc: "Removes a size-1 dimension (all of them without dim).") { a, _, _ in
            .from(try t(a[0]).squeezed(try ArgumentReader(function: "squeeze").optionalInt(a[1], "dim")))
        }
        method("sum", [("dim", .nilValue), ("keepdim", .bool(false))], doc: "Sum over dim (all when nil).") { a, _, _ in
            .from(try t(a[0]).sum(dims: try optDim(a[1]), keepDims: try ArgumentReader(function: "sum").bool(a[2], "keepdim")))
        }
        method("mean", [("dim", .nilValue), ("keepdim", .bool(false))], doc: "Mean over dim (all when nil).") { a, _, _ in
            .from(try t(a[0]).mean(dims: try optDim(a[1]), keepDims: try ArgumentReader(function: "mean").bool(a[2], "keepdim")))
        }
        for (name, largest) in [("max", true), ("min", false)] {
            method(name, [("dim", .nilValue)], doc: "The \(largest ? "largest" : "smallest") value, or along dim.") { a, _, _ in
                let x = try t(a[0])
                if a[1].isNil { return .from(largest ? try x.max() : try x.min()) }
                let d = try ArgumentReader(function: name).int(a[1], "dim")
                return .from(largest ? try x.max(dim: d).values : try x.min(dim: d).values)
            }
        }
        method("argmax", [("dim", .nilValue)], doc: "Index of the largest value (int64), along dim if given.") { a, _, _ in
            let r = try t(a[0]).argmax(dim: try ArgumentReader(function: "argmax").optionalInt(a[1], "dim"))
            return r.rank == 0 || (a[1].isNil) ? .int(r.scalars[0]) : .from(r)
        }
        for (name, f) in [("exp", { (x: Tensor) in x.exp() }), ("log", { $0.log() }), ("sqrt", { $0.sqrt() }), ("abs", { $0.abs() }),
                          ("relu", { $0.relu() }), ("sigmoid", { $0.sigmoid() }), ("tanh", { $0.tanh() }), ("detach", { $0.detached() }),
                          ("float", { $0 })] as [(String, (Tensor) -> Tensor)] {
            method(name, doc: "Elementwise \(name).") { a, _, _ in .from(f(try t(a[0]))) }
        }
        // Dims given as one integer or a list of them (nil: all).
        let dimsArg = { (v: Value, f: String) throws -> [Int]? in
            let r = ArgumentReader(function: f)
            if v.isNil { return nil }
            if case .list = v { return try r.list(v, "dim").map { try r.int($0, "dim") } }
            return [try r.int(v, "dim")]
        }
        for (name, isStd) in [("var", false), ("std", true)] {
            method(name, [("dim", .nilValue), ("keepdim", .bool(false)), ("correction", .int(1))],
                   doc: "The \(isStd ? "standard deviation" : "variance") over dim (an integer or a list; all when nil), with Bessel's correction (1 by default, 0 for the biased estimate), as torch.\(name).") { a, _, _ in
                let r = ArgumentReader(function: name), x = try t(a[0])
                let (dims, keep, c) = (try dimsArg(a[1], name), try r.bool(a[2], "keepdim"), try r.int(a[3], "correction"))
                return .from(isStd ? try x.standardDeviation(dims: dims, keepDims: keep, correction: c) : try x.variance(dims: dims, keepDims: keep, correction: c))
            }
        }
        method("logsumexp", [("dim", nil), ("keepdim", .bool(false))], doc: "log(sum(exp(x))) over dim (an integer or a list), computed stably.") { a, _, _ in
            .from(try t(a[0]).logsumexp(dims: try dimsArg(a[1], "logsumexp") ?? [], keepDims: try ArgumentReader(function: "logsumexp").bool(a[2], "keepdim")))
        }
        method("norm", [("p", .float(2)), ("dim", .nilValue), ("keepdim", .bool(false))], doc: "The p-norm (2 by default; 1, inf or any positive p) over dim (all when nil).") { a, _, _ in
            let r = ArgumentReader(function: "norm")
            return .from(try t(a[0]).norm(p: try r.float(a[1], "p"), dims: try dimsArg(a[2], "norm"), keepDims: try r.bool(a[3], "keepdim")))
        }
        method("gelu", doc: "GELU, x * Phi(x) with the exact erf (PyTorch's default).") { a, _, _ in .from(try t(a[0]).gelu()) }
        method("masked_fill", [("mask", nil), ("value", nil)], doc: "value where mask is nonzero (mask broadcast to the tensor's shape), the tensor elsewhere.") { a, _, _ in
            let r = ArgumentReader(function: "masked_fill")
            return .from(try t(a[0]).maskedFill(try r.tensor(a[1], "mask"), try r.float(a[2], "value")))
        }
        method("expand", [("shape", nil)], doc: "Repeated along size-1 (or new leading) dimensions to shape; -1 keeps a size.") { a, _, _ in
            let r = ArgumentReader(function: "expand")
            return .from(try t(a[0]).expanded(to: try r.list(a[1], "shape").map { try r.int($0, "shape") }))
        }
        method("gather", [("dim", nil), ("index", nil)], doc: "torch.gather: out[..., i, ...] = x[..., index[..., i, ...], ...] along dim (index an int64 tensor of the same rank).") { a, _, _ in
            let r = ArgumentReader(function: "gather")
            return .from(try t(a[0]).gather(dim: try r.int(a[1], "dim"), index: try r.intTensor(a[2], "index")))
        }
        method("scatter_add", [("dim", nil), ("index", nil), ("src", nil)], doc: "torch.scatter_add: a copy of x with src[p] added at x[..., index[p], ...] along dim for every position p of index (an int64 tensor of x's rank, no larger than src). Differentiable in x and src.") { a, _, _ in
            let r = ArgumentReader(function: "scatter_add")
            return .from(try t(a[0]).scatterAdd(dim: try r.int(a[1], "dim"), index: try r.intTensor(a[2], "index"), source: try r.tensor(a[3], "src")))
        }
        method("index_select", [("dim", nil), ("index", nil)], doc: "The entries at index (a 1-D int64 tensor or list) along dim, in that order.") { a, _, _ in
            let r = ArgumentReader(function: "index_select")
            let x = try t(a[0]), d = try normalizeDim(try r.int(a[1], "dim"), rank: x.rank, op: "index_select")
            let index = try r.intTensor(a[2], "index")
            guard index.rank <= 1 else { throw ScriptError(.runtime, "index_select(): index must be 1-D, got shape \(shapeString(index.shape))") }
            guard x.rank > 0 else { return .from(try x.gather(dim: d, index.scalars)) }
            let n = x.shape[d]
            return .from(try x.gather(dim: d, index.scalars.map { $0 < 0 ? $0 + n : $0 }))
        }
        method("sort", [("dim", .int(-1)), ("descending", .bool(false))], doc: "[values, indices] sorted along dim (stable; NaN largest).") { a, _, _ in
            let r = ArgumentReader(function: "sort")
            let (v, i) = try t(a[0]).sort(dim: try r.int(a[1], "dim"), descending: try r.bool(a[2], "descending"))
            return .list(ListBox([.from(v), .from(i)]))
        }
        method("argsort", [("dim", .int(-1)), ("descending", .bool(false))], doc: "The indices that sort along dim (int64).") { a, _, _ in
            let r = ArgumentReader(function: "argsort")
            return .from(try t(a[0]).detached().sort(dim: try r.int(a[1], "dim"), descending: try r.bool(a[2], "descending")).indices)
        }
        method("topk", [("k", nil), ("dim", .int(-1)), ("largest", .bool(true))], doc: "[values, indices] of the k largest (or smallest) along dim, in order.") { a, _, _ in
            let r = ArgumentReader(function: "topk")
            let (v, i) = try t(a[0]).topk(try r.int(a[1], "k"), dim: try r.int(a[2], "dim"), largest: try r.bool(a[3], "largest"))
            return .list(ListBox([.from(v), .from(i)]))
        }
        method("split", [("size", nil), ("dim", .int(0))], doc: "A list of pieces of size along dim (the last may be shorter).") { a, _, _ in
            let r = ArgumentReader(function: "split")
            return .list(ListBox(try t(a[0]).split(try r.int(a[1], "size"), dim: try r.int(a[2], "dim")).map { .from($0) }))
        }
        method("chunk", [("chunks", nil), ("dim", .int(0))], doc: "A list of up to chunks pieces along dim, as torch.chunk.") { a, _, _ in
            let r = ArgumentReader(function: "chunk")
            return .list(ListBox(try t(a[0]).chunk(try r.int(a[1], "chunks"), dim: try r.int(a[2], "dim")).map { .from($0) }))
        }
        method("long", doc: "Converts to int64 (truncating).") { a, _, _ in .from(try t(a[0]).long()) }
        method("clone", doc: "An independent copy (gradients flow back to the original).") { a, _, _ in
            .from(try t(a[0]).scaled(by: 1))
        }
        method("pow", [("p", nil)], doc: "Elementwise power.") { a, _, _ in .from(try t(a[0]).pow(try ArgumentReader(function: "pow").float(a[1], "p"))) }
        method("clamp", [("lo", .nilValue), ("hi", .nilValue)], doc: "Clamps into [lo, hi].") { a, _, _ in
            let r = ArgumentReader(function: "clamp")
            return .from(try t(a[0]).clamped(min: a[1].isNil ? nil : try r.float(a[1], "lo"), max: a[2].isNil ? nil : try r.float(a[2], "hi")))
        }
        method("softmax", [("dim", nil)], doc: "Softmax along dim.") { a, _, _ in .from(try t(a[0]).softmax(dim: try ArgumentReader(function: "softmax").int(a[1], "dim"))) }
        method("log_softmax", [("dim", nil)], doc: "Log-softmax along dim.") { a, _, _ in .from(try t(a[0]).logSoftmax(dim: try ArgumentReader(function: "log_softmax").int(a[1], "dim"))) }
        method("item", doc: "The number in a one-element tensor.") { a, _, _ in
            switch a[0] {
            case .intTensor(let x):
                guard x.value.count == 1 else { throw ScriptError(.runtime, "item(): a tensor with \(x.value.count) elements cannot be converted to a number") }
                return .int(x.value.scalars[0])
            default: return .float(Double(try t(a[0]).item()))
            }
        }
        method("tolist", doc: "Nested lists of the values.") { a, _, _ in
            switch a[0] {
            case .intTensor(let x): return nestedList(x.value.scalars.map { .int($0) }, x.value.shape)
            default: let x = try t(a[0]); return nestedList(x.scalars.map { .float(Double($0)) }, x.shape)
            }
        }
        method("backward", [("gradient", .nilValue)], doc: "Back-propagates from this tensor (a scalar, or with a gradient of its shape).") { a, _, _ in
            try t(a[0]).backward(a[1].isNil ? nil : try t(a[1]))
            return .nilValue
        }
    }
}

func nestedList(_ flat: [Value], _ shape: [Int]) -> Value {
    guard let first = shape.first else { return flat.first ?? .nilValue }
    let inner = flat.count / max(first, 1)
    return .list(ListBox((0..<first).map { i in nestedList(Array(flat[(i * inner)..<((i + 1) * inner)]), Array(shape.dropFirst())) }))
}
