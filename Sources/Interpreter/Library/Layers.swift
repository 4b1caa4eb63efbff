// Layers.swift: dense and sparse layers, ResNets and MIL models as script objects (spec section 3,
// Dense layers, Sparse layers, MIL), and files (save/load).

import Foundation
import Core

/// A Core module in a script: children and parameters are members, `m(x)` runs it.
final class ModuleObject: HostObject, IndexableObject, IterableObject, LengthObject {
    let module: Module
    init(_ m: Module) { module = m }

    override var typeName: String { module.typeName }
    override var description: String { module.summary() }
    var length: Int { module.children.count }

    static let methods = ["parameters", "named_parameters", "state_dict", "load_state_dict", "train", "eval",
                          "num_parameters", "summary", "forward"]

    override func call(_ args: Arguments, _ interp: Interpreter) throws -> Value? { try callModule(args, interp) }

    override var memberNames: [String] {
        module.children.map(\.name) + module.parameters.map(\.name) + ModuleObject.methods + ["training"]
            + (module is MILModel ? ["train_epoch", "evaluate"] : [])
    }

    func index(_ i: Value, _ interp: Interpreter) throws -> Value {
        let r = ArgumentReader(function: "index")
        var k = try r.int(i, "index")
        if k < 0 { k += module.children.count }
        guard k >= 0 && k < module.children.count else {
            throw ScriptError(.runtime, "index \(k) out of range for \(an(module.typeName)) of \(module.children.count) layers")
        }
        return .object(ModuleObject(module.children[k].module))
    }

    func makeIterator(_ interp: Interpreter) throws -> () throws -> Value? {
        var i = 0
        let children = module.children
        return { defer { i += 1 }; return i < children.count ? .object(ModuleObject(children[i].module)) : nil }
    }

    override func member(_ name: String, _ interp: Interpreter) throws -> Value? {
        if let c = module.child(name) { return .object(ModuleObject(c)) }
        if let p = module.parameters.first(where: { $0.name == name })?.parameter { return .tensor(TensorBox(parameter: p)) }
        if let b = module.buffers.first(where: { $0.name == name })?.buffer { return .from(b.value) }
        let obj = Value.object(self)
        let m = module
        switch name {
        case "training": return .bool(m.training)
        case "parameters":
            return interp.bound(obj, name, [], doc: "The trainable tensors (shared with the module).") { _, _, _ in
                .list(ListBox(m.allParameters().map { .tensor(TensorBox(parameter: $0)) }))
            }
        case "named_parameters":
            return interp.bound(obj, name, [], doc: "A dict from dotted names to parameters.") { _, _, _ in
                let d = DictBox()
                for (n, p) in m.namedParameters() { d.set(.string(n), .tensor(TensorBox(parameter: p))) }
                return .dict(d)
            }
        case "state_dict":
            return interp.bound(obj, name, [], doc: "A dict from PyTorch-style dotted names to tensors (parameters and buffers).") { _, _, _ in
                let d = DictBox()
                for (n, t) in m.stateDict() { d.set(.string(n), .from(t)) }
                return .dict(d)
            }
        case "load_state_dict":
            return interp.bound(obj, name, [("state", nil), ("strict", .bool(true))], doc: "Loads a dict of tensors, or a file's (safetensors or PyTorch .pth/.pt, by content); strict requires exactly the module's keys; returns {missing, unexpected}.") { a, _, _ in
                let r = ArgumentReader(function: "load_state_dict")
                let dict: [String: AnyTensor]
                if case .string(let path) = a[1] { dict = try tensorsInFile(path) } else { dict = try stateDictFrom(a[1]) }
                let (missing, unexpected) = try m.loadStateDict(dict, strict: try r.bool(a[2], "strict"))
                let out = DictBox()
                out.set(.string("missing"), .list(ListBox(missing.map { .string($0) })))
                out.set(.string("unexpected"), .list(ListBox(unexpected.map { .string($0) })))
                return .dict(out)
            }
        case "train":
            return interp.bound(obj, name, [("on", .bool(true))], doc: "Training mode (batch statistics, dropout, augmentation).") { a, _, _ in
                m.train(try ArgumentReader(function: "train").bool(a[1], "on")); return obj
            }
        case "eval": return interp.bound(obj, name, [], doc: "Evaluation mode.") { _, _, _ in m.eval(); return obj }
        case "num_parameters": return interp.bound(obj, name, [], doc: "The number of trainable scalars.") { _, _, _ in .int(m.numParameters()) }
        case "summary":
            return interp.bound(obj, name, [("input", .nilValue), ("depth", .int(3))],
                                doc: "A torchinfo-style table: each layer's type, output shape for input (a shape such as [1, 3, 224, 224]; run without gradients in eval mode), parameters, and totals; depth levels below the model.") { a, _, _ in
                let r = ArgumentReader(function: "summary")
                let input = a[1].isNil ? nil : try r.shape(a[1], "input")
                return .object(SummaryObject(try ModelSummary(m, input: input, depth: try r.int(a[2], "depth"))))
            }
        case "train_epoch" where m is MILModel:
            return interp.bound(obj, name, [("loader", nil), ("opt", nil)], doc: "One epoch of training; returns metrics.") { a, _, interp in
                try interp.callValue(.function(Function(.builtin(interp.builtins["train_epoch"]!))), [obj, a[1], a[2]])
            }
        case "tile_scores" where m is MILModel:
            return interp.bound(obj, name, [("features", nil), ("coords", nil), ("method", .string("model"))],
                                doc: "Per-tile scores of one bag (features or tiles [N, ...], coords [N, 2] in tile units), [N, classes]: for SparseConvMIL the classifier applied to each map site's sparse-CNN output (exact for its mean pooling up to the classifier's non-linearity: the slide's logits are the classifier of the mean of these sites' features); for MeanMIL/MaxMIL/LSEMIL the classifier on each tile's embedding; for attention models the attention weights, [N, 1]. method: \"gradient\" gives gradient x input for every model ([N, classes]). Evaluation mode, no training state changed.") { a, _, _ in
                let r = ArgumentReader(function: "tile_scores")
                let methodName = try r.string(a[3], "method")
                guard let method = TileScoreMethod(rawValue: methodName) else { throw ScriptError(.runtime, "tile_scores(): method must be \"model\" or \"gradient\", got \(quote(methodName))") }
                return .from(try (m as! MILModel).tileScores(try r.tensor(a[1], "features"), coords: try r.tensor(a[2], "coords"), method: method))
            }
        case "evaluate" where m is MILModel:
            return interp.bound(obj, name, [("loader", nil)], doc: "Metrics in evaluation mode, without gradients.") { a, _, interp in
                try interp.callValue(.function(Function(.builtin(interp.builtins["evaluate"]!))), [obj, a[1]])
            }
        case "forward": return interp.bound(obj, name, [("x", nil)], doc: "Runs the module.") { a, _, interp in
            try self.call(Arguments([a[1]]), interp) ?? .nilValue
        }
        default: return nil
        }
    }

    /// What calling the module takes, worked out once (protocol casts cost a lookup per call).
    private enum Kind { case plain, mil(MILModel), input(InputLayer) }
    private lazy var kind: Kind = {
        if let mil = module as? MILModel { return .mil(mil) }
        if let input = module as? InputLayer { return .input(input) }
        return .plain
    }()

    func callModule(_ args: Arguments, _ interp: Interpreter) throws -> Value? {
        let module = self.module
        if case .plain = kind, args.positional.count == 1, args.labelled.isEmpty, case .tensor(let box) = args.positional[0] {
            return .from(try module(box.value))
        }
        let r = ArgumentReader(function: module.typeName)
        if case .mil(let mil) = kind {
            guard args.positional.count == 2 || args.positional.count == 3 else {
                throw ScriptError(.runtime, "\(module.typeName)(tiles, coords) takes 2 arguments (3 for concatenated bags: features, coords, lengths)")
            }
            let tiles = try r.tensor(args.positional[0], "tiles"), coords = try r.tensor(args.positional[1], "coords")
            if args.positional.count == 3, !args.positional[2].isNil {
                return .from(try mil.forward(bags: tiles, coords: coords, lengths: try r.shape(args.positional[2], "lengths")))
            }
            return .from(try mil.forward(tiles: tiles, coords: coords))
        }
        if case .input(let input) = kind {
            guard args.positional.count == 2 else { throw ScriptError(.runtime, "InputLayer(coords, features, spatial_size: nil) takes 2 positional arguments") }
            var size: (Int, Int)? = nil
            if let s = args.labelled.first(where: { $0.0 == "spatial_size" })?.1, !s.isNil {
                let dims = try r.shape(s, "spatial_size")
                guard dims.count == 2 else { throw ScriptError(.runtime, "InputLayer: spatial_size must be [rows, cols]") }
                size = (dims[0], dims[1])
            }
            return .object(SparseObject(try input(try r.intTensor(args.positional[0], "coords"), try r.tensor(args.positional[1], "features"), spatialSize: size)))
        }
        guard args.positional.count == 1, args.labelled.isEmpty else {
            throw ScriptError(.runtime, "\(module.typeName)(x) takes one argument")
        }
        let x = args.positional[0]
        if case .object(let s as SparseObject) = x {
            if let seq = module as? SparseSequential, seq.pools { return .from(try seq.pooled(s.sparse)) }
            if let pool = module as? SparseGlobalPool { return .from(try pool.pool(s.sparse)) }
            if let sm = module as? SparseModule { return .object(SparseObject(try sm.forward(s.sparse))) }
        }
        return .from(try module(try r.tensor(x, "x")))
    }
}

/// A sparse map in a script.
final class SparseObject: HostObject {
    let sparse: SparseTensor
    init(_ s: SparseTensor) { sparse = s }
    override var typeName: String { "SparseTensor" }
    override var memberNames: [String] { ["coords", "features", "spatial_size", "batch_size", "to_dense"] }
    override var description: String {
        "SparseTensor(sites: \(sparse.sites.count), channels: \(sparse.channels), spatial_size: [\(sparse.spatialSize.rows), \(sparse.spatialSize.cols)], batch_size: \(sparse.batchSize))"
    }
    override func member(_ name: String, _ interp: Interpreter) throws -> Value? {
        switch name {
        case "coords": return .from(sparse.coordinates)
        case "features": return .from(sparse.features)
        case "spatial_size": return .ints([sparse.spatialSize.rows, sparse.spatialSize.cols])
        case "batch_size": return .int(sparse.batchSize)
        case "to_dense": return interp.bound(.object(self), name, [], doc: "[batch, C, rows, cols], zeros where inactive.") { _, _, _ in .from(try self.sparse.toDense()) }
        default: return nil
        }
    }
}

/// A dict of tensors as a state dict.
func stateDictFrom(_ v: Value) throws -> [String: AnyTensor] {
    guard case .dict(let d) = v else { throw ScriptError(.runtime, "expected a dict from names to tensors, got \(v.typeName)") }
    var out: [String: AnyTensor] = [:]
    for (k, x) in zip(d.keys, d.values) {
        guard case .string(let name) = k else { throw ScriptError(.runtime, "state dict keys must be strings, got \(k.typeName)") }
        switch x {
        case .tensor(let t): out[name] = .float(t.value.detached())
        case .intTensor(let t): out[name] = .int(t.value)
        default: throw ScriptError(.runtime, "state dict entry \(quote(name)) is \(an(x.typeName)), not a tensor")
        }
    }
    return out
}

extension Interpreter {
    func defModule(_ name: String, _ params: [(String, Value?)], doc: String, _ make: @escaping ([Value], ArgumentReader) throws -> Module) {
        def(name, params, doc: doc) { a, _, _ in .object(ModuleObject(try make(a, ArgumentReader(function: name)))) }
    }

    func registerLayers() {
        defModule("Linear", [("in", nil), ("out", nil), ("bias", .bool(true))], doc: "y = x W^T + b; weight [out, in].") { a, r in
            try Linear(try r.int(a[0], "in"), try r.int(a[1], "out"), bias: try r.bool(a[2], "bias"))
        }
        defModule("Conv2d", [("in", nil), ("out", nil), ("kernel", nil), ("stride", .int(1)), ("padding", .int(0)), ("dilation", .int(1)), ("bias", .bool(true))],
                  doc: "2-D convolution over [N, C, H, W]; weight [out, in, k, k].") { a, r in
            try Conv2d(try r.int(a[0], "in"), try r.int(a[1], "out"), kernelSize: try r.int(a[2], "kernel"), stride: try r.int(a[3], "stride"),
                   padding: try r.int(a[4], "padding"), dilation: try r.int(a[5], "dilation"), bias: try r.bool(a[6], "bias"))
        }
        defModule("BatchNorm2d", [("c", nil), ("eps", .float(1e-5)), ("momentum", .float(0.1))], doc: "Batch normalisation over channels, with running statistics.") { a, r in
            try BatchNorm2d(try r.int(a[0], "c"), eps: try r.float(a[1], "eps"), momentum: try r.float(a[2], "momentum"))
        }
        defModule("ReLU", [], doc: "max(x, 0).") { _, _ in ReLU() }
        defModule("MaxPool2d", [("kernel", nil), ("stride", .nilValue), ("padding", .int(0))], doc: "Max pooling with a square window.") { a, r in
            try MaxPool2d(try r.int(a[0], "kernel"), stride: try r.optionalInt(a[1], "stride"), padding: try r.int(a[2], "padding"))
        }
        defModule("AdaptiveAvgPool2d", [("size", nil)], doc: "Average pooling to a fixed output size.") { a, r in try AdaptiveAvgPool2d(try r.int(a[0], "size")) }
        defModule("Dropout", [("p", .float(0.5))], doc: "Zeroes elements with probability p in training.") { a, r in try Dropout(try r.float(a[0], "p")) }
        defModule("Flatten", [("start", .int(1))], doc: "Flattens dimensions from start on.") { a, r in Flatten(start: try r.int(a[0], "start")) }
        defModule("Identity", [], doc: "Returns its input.") { _, _ in Identity() }
        defModule("Sequential", [("layers", nil)], doc: "Applies layers in order; children are named 0, 1, ...") { a, r in
            let items = try r.list(a[0], "layers")
            return Sequential(try items.map { v in
                guard case .object(let m as ModuleObject) = v else { throw r.wrong("layers", "a list of layers", v) }
                return m.module
            })
        }
        let builders: [(String, ResNet.Block, [Int], Int)] = [("resnet18", .basic, [2, 2, 2, 2], 64), ("resnet34", .basic, [3, 4, 6, 3], 64),
                                                              ("resnet50", .bottleneck, [3, 4, 6, 3], 64), ("wide_resnet50_2", .bottleneck, [3, 4, 6, 3], 128)]
        for (name, block, counts, width) in builders {
            defModule(name, [("classes", .int(1000)), ("embedder", .bool(false)), ("weights", .nilValue), ("truncate", .nilValue)],
                      doc: "torchvision's \(name): architecture, initialisation and state_dict names; embedder: true replaces fc by Identity; truncate: \"layer3\" (with embedder) keeps layer1-layer3 and pools after it (resnet50(embedder: true, truncate: \"layer3\") is CLAM's 1024-D resnet50_trunc); weights: a torchvision .pth (or safetensors) file loaded into it (an embedder leaves out fc.*, a truncated one the layers it has not; every other key must match).") { a, r in
                let embedder = try r.bool(a[1], "embedder")
                var truncate: Int? = nil
                if !a[3].isNil {
                    let t = try r.string(a[3], "truncate")
                    guard let n = ["layer1": 1, "layer2": 2, "layer3": 3, "layer4": 4][t] else {
                        throw ScriptError(.runtime, "\(name)(): truncate must be \"layer1\" ... \"layer4\", got \(quote(t))")
                    }
                    truncate = n
                }
                let model = try ResNet(block: block, layers: counts, numClasses: try r.int(a[0], "classes"), widthPerGroup: width, embedder: embedder, truncate: truncate)
                if !a[2].isNil {
                    let path = try r.string(a[2], "weights")
                    var weights = try tensorsInFile(path)
                    if embedder { weights = weights.filter { !$0.key.hasPrefix("fc.") } }
                    if let t = truncate { weights = weights.filter { key, _ in !((t + 1)..<5).contains { key.hasPrefix("layer\($0).") } } }
                    do { try model.loadStateDict(weights, strict: true) } catch {
                        throw ScriptError(.runtime, "\(name)(weights: \(quote(path))): \(error)")
                    }
                }
                return model
            }
        }
        def("save", [("x", nil), ("path", nil), ("metadata", .nilValue)],
            doc: "Saves a tensor, a dict of tensors or a module's state. PATH.pt / .pth: torch.save's zip format, which torch.load(path, weights_only=True) reads (any nesting of dicts, lists, tensors, numbers, strings; float tensors as float32, int tensors as int64); otherwise safetensors (with metadata). Written to a temporary file, synced, then renamed.") { a, _, interp in
            let r = ArgumentReader(function: "save")
            let path = try r.string(a[1], "path")
            if path.hasSuffix(".pt") || path.hasSuffix(".pth") {
                guard a[2].isNil else { throw ScriptError(.runtime, "save(): metadata is for safetensors files; a .pt file holds it as data (save a dict)") }
                let value: TorchValue
                if case .object(let m as ModuleObject) = a[0] {
                    value = .dict(m.module.stateDict().map { (.string($0.0), .tensor($0.1)) })
                } else {
                    value = try interp.torchValue(a[0])
                }
                try TorchFile.write(value, to: path)
                return .nilValue
            }
            var meta: [String: String] = [:]
            if case .dict(let d) = a[2] { for (k, v) in zip(d.keys, d.values) { meta[render(k, quoted: false)] = render(v, quoted: false) } }
            let tensors: [(name: String, tensor: AnyTensor)]
            switch a[0] {
            case .object(let m as ModuleObject): tensors = m.module.stateDict().map { ($0.0, $0.1) }
            case .tensor(let t): tensors = [("tensor", .float(t.value.detached()))]
            case .intTensor(let t): tensors = [("tensor", .int(t.value))]
            default: tensors = try stateDictFrom(a[0]).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            }
            try SafeTensors(tensors: tensors, metadata: meta).write(to: path)
            return .nilValue
        }
        def("load", [("path", nil)],
            doc: "Reads a file by its content, not its name: safetensors (a dict from names to tensors; a lone \"tensor\" entry gives the tensor), or PyTorch's torch.save files, zip or legacy format (.pt, .pth, .bin), through a restricted unpickler that builds only tensors, containers and numbers and refuses any other class, naming it (as torch.load(weights_only=True)). float16, bfloat16 and float64 tensors become float32; integer and bool tensors int64; a bare storage becomes the 1-D tensor of its elements (an untyped storage: its bytes, as uint8 values).") { a, _, _ in
            let path = try ArgumentReader(function: "load").string(a[0], "path")
            switch TorchFile.format(of: path) {
            case .zip, .legacy: return scriptValue(try TorchFile.read(path))
            default:
                let st = try SafeTensors.read(path)
                if st.tensors.count == 1, st.tensors[0].name == "tensor" { return .from(st.tensors[0].tensor) }
                let d = DictBox()
                for (n, t) in st.tensors { d.set(.string(n), .from(t)) }
                return .dict(d)
            }
        }
    }

    /// A script value as PyTorch data: dicts, lists, tensors, numbers, strings, nil.
    func torchValue(_ v: Value, depth: Int = 0) throws -> TorchValue {
        guard depth < 1000 else { throw ScriptError(.runtime, "save(): the value nests deeper than 1000 levels (or holds itself)") }
        switch v {
        case .nilValue: return .none
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .float(let d): return .float(d)
        case .string(let s): return .string(s)
        case .tensor(let t): return .tensor(.float(t.value.detached()))
        case .intTensor(let t): return .tensor(.int(t.value))
        case .list(let l): return .list(try l.items.map { try torchValue($0, depth: depth + 1) })
        case .dict(let d): return .dict(try zip(d.keys, d.values).map { (try torchValue($0, depth: depth + 1), try torchValue($1, depth: depth + 1)) })
        case .object(let m as ModuleObject): return .dict(m.module.stateDict().map { (.string($0.0), .tensor($0.1)) })
        default: throw ScriptError(.runtime, "save(): \(an(v.typeName)) cannot be saved in a PyTorch file (tensors, dicts, lists, numbers, strings and nil can)")
        }
    }

    func registerSparse() {
        defModule("InputLayer", [("mode", .string("mean"))], doc: "Builds a sparse map: inp(coords [N, 3] (row, col, batch), features [N, C], spatial_size: nil); repeated sites merged by mode (mean, sum, first, last).") { a, r in
            let m = try r.string(a[0], "mode")
            guard let mode = DuplicateMode(rawValue: m) else { throw ScriptError(.runtime, "InputLayer(): mode must be \"mean\", \"sum\", \"first\" or \"last\", got \(quote(m))") }
            return InputLayer(mode: mode)
        }
        defModule("SubmanifoldConv2d", [("in", nil), ("out", nil), ("filter", nil), ("bias", .bool(true))], doc: "Submanifold convolution: outputs at the input's active sites only; weight [filter^2, in, out].") { a, r in
            try SubmanifoldConv2d(try r.int(a[0], "in"), try r.int(a[1], "out"), filter: try r.int(a[2], "filter"), bias: try r.bool(a[3], "bias"))
        }
        defModule("SparseConv2d", [("in", nil), ("out", nil), ("filter", nil), ("stride", nil)], doc: "Strided sparse convolution that shrinks the map.") { a, r in
            try SparseConv2d(try r.int(a[0], "in"), try r.int(a[1], "out"), filter: try r.int(a[2], "filter"), stride: try r.int(a[3], "stride"))
        }
        defModule("SparseReLU", [], doc: "max(x, 0) on the features.") { _, _ in SparseReLU() }
        defModule("SparseBatchNorm", [("c", nil)], doc: "Batch normalisation of the features over all active sites.") { a, r in try SparseBatchNorm(try r.int(a[0], "c")) }
        defModule("SparseMaxPool2d", [("size", nil), ("stride", .nilValue)], doc: "Max pooling over active sites.") { a, r in
            try SparseMaxPool2d(try r.int(a[0], "size"), stride: try r.optionalInt(a[1], "stride"))
        }
        defModule("SparseGlobalAvgPool", [], doc: "Per-sample mean of the active sites: sparse map -> [batch, C].") { _, _ in SparseGlobalAvgPool() }
        defModule("SparseGlobalMaxPool", [], doc: "Per-sample max over the active sites: sparse map -> [batch, C].") { _, _ in SparseGlobalMaxPool() }
        defModule("SparseSequential", [("layers", nil)], doc: "Sparse layers in order; ending with a global pool it returns [batch, C].") { a, r in
            try SparseSequential(try r.list(a[0], "layers").map { v in
                guard case .object(let m as ModuleObject) = v else { throw r.wrong("layers", "a list of sparse layers", v) }
                return m.module
            })
        }
        defModule("sparseconvmil", [("classes", nil), ("embedder", .string("resnet18")), ("channels", .list(ListBox([.int(32), .int(32)]))),
                                    ("filter", .int(3)), ("downsample", .int(10)), ("hidden", .int(32)), ("features", .nilValue)],
                  doc: "The reference SparseConvMIL: ResNet embedder, submanifold convolutions with ReLUs, per-slide mean pooling, MLP classifier. On feature bags give features: D (their dimension) and embedder: nil (features straight onto the map) or a module on [N, D] such as Linear(D, 128); downsample: 1 puts each tile on its own site.") { a, r in
            var embedder: Module? = nil, name = "resnet18"
            let features = try r.optionalInt(a[6], "features")
            switch a[1] {
            case .object(let m as ModuleObject): embedder = m.module
            case .nilValue where features != nil: break
            case .nilValue: throw ScriptError(.runtime, "sparseconvmil(): embedder: nil needs features: D, the feature bags' dimension")
            default: name = try r.string(a[1], "embedder")
            }
            return try sparseConvMIL(classes: try r.int(a[0], "classes"), embedder: embedder, embedderName: name,
                                     channels: try r.list(a[2], "channels").map { try r.int($0, "channels") }, filter: try r.int(a[3], "filter"),
                                     downsample: try r.float(a[4], "downsample"), hidden: try r.int(a[5], "hidden"), features: features)
        }
    }
}

/// A module's summary: prints as the table; `total_params`, `trainable_params` and `text` as values.
final class SummaryObject: HostObject {
    let summary: ModelSummary
    init(_ s: ModelSummary) { summary = s }
    override var typeName: String { "ModelSummary" }
    override var description: String { summary.description }
    override var memberNames: [String] { ["total_params", "trainable_params", "text"] }
    override func member(_ name: String, _ interp: Interpreter) throws -> Value? {
        switch name {
        case "total_params": return .int(summary.totalParameters)
        case "trainable_params": return .int(summary.trainableParameters)
        case "text": return .string(summary.description)
        default: return nil
        }
    }
}

/// PyTorch data as script values: dicts and lists (tuples too), tensors, numbers, strings, nil;
/// bytes as a list of integers.
func scriptValue(_ v: TorchValue) -> Value {
    switch v {
    case .none: return .nilValue
    case .bool(let b): return .bool(b)
    case .int(let i): return .int(i)
    case .float(let d): return .float(d)
    case .string(let s): return .string(s)
    case .bytes(let b): return .list(ListBox(b.map { .int(Int($0)) }))
    case .list(let xs), .tuple(let xs): return .list(ListBox(xs.map(scriptValue)))
    case .dict(let items):
        let d = DictBox()
        for (k, x) in items { _ = d.set(scriptValue(k), scriptValue(x)) }
        return .dict(d)
    case .tensor(let t): return .from(t)
    }
}

/// The tensors of a safetensors or PyTorch file, chosen by content; a PyTorch file's nested dicts
/// flattened with dots (`model.0.weight`).
func tensorsInFile(_ path: String) throws -> [String: AnyTensor] {
    switch TorchFile.format(of: path) {
    case .zip, .legacy:
        return Dictionary(try TorchFile.read(path).flattenedTensors().map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
    default:
        return try SafeTensors.read(path).dictionary
    }
}
