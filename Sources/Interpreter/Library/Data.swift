// Data.swift: datasets, loaders, images, MIL models, training helpers and metrics as script
// bindings (spec section 3, MIL, Data, Training, Files).

import Foundation
import Core

/// A slide dataset in a script: `len(ds)`, `ds[i]`, `.classes`, `.slides`.
final class DatasetObject: HostObject, IndexableObject, LengthObject {
    let dataset: SlideDataset
    init(_ d: SlideDataset) { dataset = d }
    override var typeName: String { dataset.isFeatureBags ? "FeatureDataset" : "SlideDataset" }
    var length: Int { dataset.count }
    override var memberNames: [String] { ["classes", "slides", "tiles_per_slide", "class_counts", "tile_counts"] }
    override var description: String {
        if dataset.isFeatureBags {
            let counts = dataset.slides.map(\.tileCount)
            return "FeatureDataset(\(dataset.count) bags of \(counts.min() ?? 0)-\(counts.max() ?? 0) tiles x \(dataset.slides.first?.bag?.dimension ?? 0), classes: \(dataset.classes))"
        }
        return "SlideDataset(\(dataset.count) slides, classes: \(dataset.classes), tiles_per_slide: \(dataset.tilesPerSlide))"
    }
    override func member(_ name: String, _ interp: Interpreter) throws -> Value? {
        switch name {
        case "classes": return .list(ListBox(dataset.classes.map { .string($0) }))
        case "slides": return .list(ListBox(dataset.slides.map { .string($0.id) }))
        case "tiles_per_slide": return .int(dataset.tilesPerSlide)
        case "class_counts": return .ints(dataset.classCounts)
        case "tile_counts": return .ints(dataset.slides.map(\.tileCount))
        default: return nil
        }
    }
    override func setMember(_ name: String, _ value: Value, _ interp: Interpreter) throws -> Bool {
        guard name == "tiles_per_slide" else { return false }
        let k = try ArgumentReader(function: "tiles_per_slide").int(value, "value")
        guard k > 0 else { throw ScriptError(.runtime, "tiles_per_slide must be positive, got \(k)") }
        dataset.tilesPerSlide = k
        return true
    }
    func index(_ i: Value, _ interp: Interpreter) throws -> Value {
        var k = try ArgumentReader(function: "SlideDataset").int(i, "index")
        if k < 0 { k += dataset.count }
        guard k >= 0 && k < dataset.count else { throw ScriptError(.runtime, "slide index \(k) out of range (\(dataset.count) slides)") }
        var rng = RandomGenerator(seed: RandomGenerator.global.next())
        let s = try dataset.sample(k, rng: &rng)
        return .object(Record("Sample", [("tiles", .from(s.tiles)), ("coords", .from(s.coords)), ("label", .int(s.label)), ("slide_id", .string(s.slideID))]))
    }
}

/// A data loader: `for batch in loader { ... }` yields records with tiles, coords, labels, slide_ids.
final class LoaderObject: HostObject, IterableObject, LengthObject {
    let loader: DataLoader
    init(_ l: DataLoader) { loader = l }
    override var typeName: String { "DataLoader" }
    var length: Int { loader.count }
    override var description: String { "DataLoader(\(loader.dataset.count) slides, batch: \(loader.batchSize), \(loader.count) batches)" }
    func makeIterator(_ interp: Interpreter) throws -> () throws -> Value? {
        let it = loader.makeIterator()
        let total = it.count
        var index = 0
        return {
            guard let b = try it.nextBatch() else { interp.progress?(total, total, true); return nil }
            index += 1
            interp.progress?(index, total, false)
            return .object(Record("Batch", [("tiles", .from(b.tiles)), ("coords", .from(b.coords)), ("labels", .from(b.labels)),
                                            ("lengths", b.lengths.map { .ints($0) } ?? .nilValue),
                                            ("slide_ids", .list(ListBox(b.slideIDs.map { .string($0) })))]))
        }
    }
}

extension Interpreter {
    func metricsRecord(_ m: EpochMetrics, classes: [String]) -> Value {
        let preds = ListBox(m.predictions.map { p in
            .list(ListBox([.string(p.slideID), .string(classes[p.label]), .list(ListBox(p.probabilities.map { .float($0) }))]))
        })
        return .object(Record("Metrics", [
            ("loss", .float(m.loss)), ("balanced_accuracy", .float(m.balancedAccuracy)), ("accuracy", .float(m.accuracy)),
            ("precision", .float(m.precision)), ("recall", .float(m.recall)), ("f1", .float(m.f1)),
            ("auc", m.auc.map { .float($0) } ?? .nilValue),
            ("confusion_matrix", .list(ListBox(m.confusion.map { .ints($0) }))), ("predictions", .list(preds)),
        ]))
    }

    func milModel(_ v: Value, _ function: String) throws -> MILModel {
        guard case .object(let o as ModuleObject) = v, let m = o.module as? MILModel else {
            throw ScriptError(.runtime, "\(function)(): expected a MIL model (SparseConvMIL, MeanMIL, ...), got \(an(v.typeName))")
        }
        return m
    }

    func loader(_ v: Value, _ function: String) throws -> DataLoader {
        guard case .object(let l as LoaderObject) = v else { throw ScriptError(.runtime, "\(function)(): expected a DataLoader, got \(an(v.typeName))") }
        return l.loader
    }

    func optimizer(_ v: Value, _ function: String) throws -> Optimizer {
        guard case .object(let o as OptimizerObject) = v else { throw ScriptError(.runtime, "\(function)(): expected an optimizer, got \(an(v.typeName))") }
        return o.optimizer
    }

    func module(_ v: Value, _ param: String, _ function: String) throws -> Module {
        guard case .object(let m as ModuleObject) = v else { throw ScriptError(.runtime, "\(function)(): '\(param)' must be a module, got \(an(v.typeName))") }
        return m.module
    }

    func registerData() {
        def("SlideDataset", [("root", nil), ("labels", .nilValue), ("tiles_per_slide", .int(5)), ("tile_size", .nilValue), ("augment", .nilValue),
                             ("normalize", .nilValue), ("patches", .nilValue), ("size", .int(256)), ("level", .nilValue), ("mpp", .nilValue), ("preset", .string("tcga"))],
            doc: "Slides in the reference layout (folders of ROW_COL tiles, a slide_id,label CSV — root/labels.csv by default), or a folder of slide files (.svs, .tiff, .ndpi, ...; slide_id = file name without extension) whose tissue tiles come from CLAM patch files in patches (written there when missing) or from tiling each slide (size pixels at level or mpp, CLAM's preset; cached); K tiles sampled per slide with replacement, coordinates in tile units; augment: true for flips, rotations and H&E colour jitter; normalize: \"imagenet\" (torchvision's mean and std, for pretrained weights) or {\"mean\": [3], \"std\": [3]}, applied to every tile in training and evaluation.") { a, _, _ in
            let r = ArgumentReader(function: "SlideDataset")
            var aug: TileAugmentation? = nil
            switch a[4] {
            case .bool(true): aug = TileAugmentation()
            case .bool(false), .nilValue: break
            case .dict(let d):
                // {"flips": true, "rotations": true, "stain": 0.05, "mean": [..3], "std": [..3]}
                var t = TileAugmentation()
                for (k, v) in zip(d.keys, d.values) {
                    switch render(k, quoted: false) {
                    case "flips": t.flips = try r.bool(v, "augment.flips")
                    case "rotations": t.rotations = try r.bool(v, "augment.rotations")
                    case "stain": t.stainStrength = try r.float(v, "augment.stain")
                    case "mean": t.mean = try r.list(v, "augment.mean").map { try r.float($0, "augment.mean") }
                    case "std": t.std = try r.list(v, "augment.std").map { try r.float($0, "augment.std") }
                    case let other: throw ScriptError(.runtime, "SlideDataset(): unknown augment option \(quote(other)) (flips, rotations, stain, mean, std)")
                    }
                }
                if (t.mean == nil) != (t.std == nil) || (t.mean.map { $0.count != 3 } ?? false) || (t.std.map { $0.count != 3 } ?? false) {
                    throw ScriptError(.runtime, "SlideDataset(): augment mean and std need three values each")
                }
                aug = t
            default: throw r.wrong("augment", "true, false or a dict of options", a[4])
            }
            let normalization = try tileNormalization(a[5], function: "SlideDataset")
            var tiling = SlideTilingOptions()
            tiling.patches = a[6].isNil ? nil : try r.string(a[6], "patches")
            tiling.size = try r.int(a[7], "size")
            tiling.level = try r.optionalInt(a[8], "level")
            tiling.mpp = a[9].isNil ? nil : try r.double(a[9], "mpp")
            tiling.tissue = try TissueParameters.preset(try r.string(a[10], "preset"))
            let ds = try SlideDataset(root: try r.string(a[0], "root"), labels: a[1].isNil ? nil : try r.string(a[1], "labels"),
                                      tilesPerSlide: try r.int(a[2], "tiles_per_slide"), tileSize: try r.optionalInt(a[3], "tile_size"),
                                      augmentation: aug, slideTiling: tiling)
            ds.normalization = normalization
            return .object(DatasetObject(ds))
        }
        def("FeatureDataset", [("dir", nil), ("labels", .nilValue), ("max_tiles", .nilValue), ("sample", .nilValue), ("patches", .nilValue)],
            doc: "Feature bags in CLAM's layout: dir holds h5_files/SLIDE.h5 (features [N, D], coords [N, 2] level-0 x, y), or SLIDE.h5 files, or pt_files/SLIDE.pt with coords from patches/SLIDE.h5 (patches: another folder of CLAM patch files); labels: a slide_id,label CSV (CLAM's case_id,slide_id,label too; dir/labels.csv by default). Items are (features [N, D], coords [N, 2] in tile units, label); max_tiles caps each bag to a fixed seeded subset, sample draws that many tiles afresh each epoch. A DataLoader batches bags of different sizes by concatenating them (batch.lengths).") { a, _, _ in
            let r = ArgumentReader(function: "FeatureDataset")
            let ds = try SlideDataset.features(root: try r.string(a[0], "dir"), labels: a[1].isNil ? nil : try r.string(a[1], "labels"),
                                               maxTiles: try r.optionalInt(a[2], "max_tiles"), sample: try r.optionalInt(a[3], "sample"),
                                               patches: a[4].isNil ? nil : try r.string(a[4], "patches"))
            return .object(DatasetObject(ds))
        }
        def("DataLoader", [("dataset", nil), ("batch", .nilValue), ("shuffle", .bool(true)), ("balanced", .bool(false)), ("workers", .int(2))],
            doc: "Batches of sampled slides (batch: 2 by default; 1 for feature bags, as CLAM trains); balanced draws slides inversely to their class frequency; workers decode in the background.") { a, _, _ in
            let r = ArgumentReader(function: "DataLoader")
            guard case .object(let d as DatasetObject) = a[0] else { throw r.wrong("dataset", "a SlideDataset", a[0]) }
            let batch = try r.optionalInt(a[1], "batch") ?? (d.dataset.isFeatureBags ? 1 : 2)
            return .object(LoaderObject(try DataLoader(d.dataset, batchSize: batch, shuffle: try r.bool(a[2], "shuffle"),
                                                       balanced: try r.bool(a[3], "balanced"), workers: try r.int(a[4], "workers"))))
        }
        def("split", [("dataset", nil), ("fractions", nil), ("stratify", .bool(true))], doc: "Seeded, stratified split of a dataset into parts.") { a, _, _ in
            let r = ArgumentReader(function: "split")
            guard case .object(let d as DatasetObject) = a[0] else { throw r.wrong("dataset", "a SlideDataset", a[0]) }
            let fractions = try r.list(a[1], "fractions").map { try r.double($0, "fractions") }
            return .list(ListBox(d.dataset.split(fractions, stratify: try r.bool(a[2], "stratify")).map { .object(DatasetObject($0)) }))
        }
        def("folds", [("dataset", nil), ("k", nil)], doc: "k stratified, seeded folds: a list of [train, validation] dataset pairs.") { a, _, _ in
            let r = ArgumentReader(function: "folds")
            guard case .object(let d as DatasetObject) = a[0] else { throw r.wrong("dataset", "a SlideDataset", a[0]) }
            let k = try r.int(a[1], "k")
            guard k >= 2, k <= d.dataset.count else { throw ScriptError(.runtime, "folds(): k must be between 2 and the number of slides (\(d.dataset.count)), got \(k)") }
            return .list(ListBox(d.dataset.folds(k).map { .list(ListBox([.object(DatasetObject($0.train)), .object(DatasetObject($0.validation))])) }))
        }
        def("read_image", [("path", nil), ("normalize", .nilValue)],
            doc: "An image as a [3, H, W] tensor in [0, 1] (PNG, JPEG, BMP); normalize: \"imagenet\" or {\"mean\": [...], \"std\": [...]} normalises it per channel for a pretrained embedder.") { a, _, _ in
            let image = try ImageIO.read(try ArgumentReader(function: "read_image").string(a[0], "path"))
            guard let n = try tileNormalization(a[1], function: "read_image") else { return .from(image) }
            return .from(try n.apply(image))
        }
        def("normalize", [("images", nil), ("stats", .string("imagenet"))],
            doc: "(x - mean[c]) / std[c] per channel of a [3, H, W] image or [N, 3, H, W] batch, as torchvision's transforms.Normalize: stats \"imagenet\" (mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225], what torchvision's and CLAM's pretrained encoders expect) or {\"mean\": [3 numbers], \"std\": [3 numbers]}. Differentiable.") { a, _, _ in
            let r = ArgumentReader(function: "normalize")
            guard let n = try tileNormalization(a[1], function: "normalize", allowNil: false) else { throw r.wrong("stats", "\"imagenet\" or {\"mean\": [...], \"std\": [...]}", a[1]) }
            return .from(try n.apply(try r.tensor(a[0], "images")))
        }
        def("write_image", [("image", nil), ("path", nil)], doc: "Writes a [3, H, W] tensor in [0, 1] as PNG (or JPEG for .jpg/.jpeg).") { a, _, interp in
            let r = ArgumentReader(function: "write_image")
            let path = try r.string(a[1], "path")
            let lower = path.lowercased()
            if lower.hasSuffix(".jpg") || lower.hasSuffix(".jpeg") { try ImageIO.writeJPEG(try r.tensor(a[0], "image"), to: path) }
            else { try ImageIO.writePNG(try r.tensor(a[0], "image"), to: path) }
            interp.imagesWritten.append(path)
            return .nilValue
        }
        def("plot", [("a", nil), ("b", .nilValue), ("path", .nilValue), ("title", .nilValue), ("labels", .nilValue)],
            doc: "A line chart of ys (plot(ys)) or of ys against xs (plot(xs, ys)); several series as a list of lists or a 2-D tensor. With path, writes a PNG; without, draws it in the terminal with Unicode characters.") { a, _, interp in
            let r = ArgumentReader(function: "plot")
            func seriesList(_ v: Value) throws -> [[Double]] {
                switch v {
                case .tensor(let t):
                    let x = t.value
                    if x.rank <= 1 { return [x.scalars.map(Double.init)] }
                    let n = x.shape[x.rank - 1]
                    return (0..<(x.count / max(n, 1))).map { i in (0..<n).map { Double(x[flat: i * n + $0]) } }
                case .intTensor(let t): return [t.value.scalars.map(Double.init)]
                default:
                    let items = try r.list(v, "ys")
                    if items.contains(where: { if case .list = $0 { return true }; if case .tensor = $0 { return true }; return false }) {
                        return try items.flatMap { try seriesList($0) }
                    }
                    return [try items.map { try r.double($0, "ys") }]
                }
            }
            let ys = try seriesList(a[1].isNil ? a[0] : a[1])
            let xs: [Double]? = a[1].isNil ? nil : try seriesList(a[0]).first
            if let x = xs, x.isEmpty || ys.contains(where: { $0.count != x.count }) {
                throw ScriptError(.runtime, "plot(): xs has \(x.count) values but a series has \(ys.first { $0.count != x.count }?.count ?? 0)")
            }
            let series = ys.map { s in s.enumerated().map { (x: xs?[$0.offset] ?? Double($0.offset), y: $0.element) } }
            var chart = LineChart(series: series, title: a[3].isNil ? nil : try r.string(a[3], "title"),
                                  labels: a[4].isNil ? nil : try r.list(a[4], "labels").map { render($0, quoted: false) })
            chart.xLabel = nil
            if a[2].isNil {
                interp.output(chart.text() + "\n")
                return .nilValue
            }
            let path = try r.string(a[2], "path")
            try ImageIO.writePNG(chart.render(), to: path)
            interp.imagesWritten.append(path)
            return .string(path)
        }
        def("synthetic_slides", [("root", nil), ("slides_per_class", .int(20)), ("grid", .int(4)), ("tile_size", .int(32)), ("seed", .int(0))],
            doc: "Writes the built-in synthetic dataset (classes differ only in the arrangement of two tile types) in the reference layout; returns root.") { a, _, _ in
            let r = ArgumentReader(function: "synthetic_slides")
            let root = try r.string(a[0], "root")
            try SyntheticSlides.write(to: root, slidesPerClass: try r.int(a[1], "slides_per_class"), grid: try r.int(a[2], "grid"),
                                      tileSize: try r.int(a[3], "tile_size"), seed: UInt64(bitPattern: Int64(try r.int(a[4], "seed"))))
            return .string(root)
        }
        def("SparseConvMIL", [("embedder", nil), ("sparse_cnn", nil), ("classifier", nil), ("downsample", .int(10)), ("rotate", .bool(true)),
                              ("flip", .bool(true)), ("resize", .bool(true))],
            doc: "SparseConvMIL: embedder [N,3,H,W]->[N,D], sparse_cnn (ending in a global pool) -> [B,C], classifier -> logits; rotate: \"d4\" for right-angle rotations only.") { a, _, interp in
            let r = ArgumentReader(function: "SparseConvMIL")
            guard let cnn = try interp.module(a[1], "sparse_cnn", "SparseConvMIL") as? SparseSequential else {
                throw r.wrong("sparse_cnn", "a SparseSequential", a[1])
            }
            let rotation: MapRotation
            switch a[4] {
            case .bool(let b): rotation = b ? .random : .none
            case .string("d4"): rotation = .d4
            default: throw r.wrong("rotate", "true, false or \"d4\"", a[4])
            }
            return .object(ModuleObject(try SparseConvMIL(embedder: a[0].isNil ? Identity() : try interp.module(a[0], "embedder", "SparseConvMIL"), sparseCNN: cnn,
                                                          classifier: try interp.module(a[2], "classifier", "SparseConvMIL"),
                                                          downsample: try r.float(a[3], "downsample"), rotation: rotation,
                                                          flip: try r.bool(a[5], "flip"), resize: try r.bool(a[6], "resize"))))
        }
        def("CLAM_SB", [("features", .int(1024)), ("hidden", .int(512)), ("attention", .int(256)), ("classes", .int(2)), ("dropout", .float(0.25)),
                        ("k_sample", .int(8)), ("bag_weight", .float(0.7)), ("subtyping", .bool(false))],
            doc: "CLAM-SB (Lu et al., 2021) on feature bags: Linear(features, hidden) -> ReLU -> Dropout, gated attention (attention units), attention-weighted pooling, a linear bag classifier; in training, bag_weight x cross-entropy + (1 - bag_weight) x the instance-level clustering loss (each class's instance classifier tells the k_sample most attended tiles from the k_sample least; with subtyping also other classes' most attended tiles as negatives). CLAM's parameter names (attention_net.0, attention_net.3.attention_a.0, classifiers, instance_classifiers.N), so its checkpoints load; tile_scores gives the attention weights.") { a, _, _ in
            let r = ArgumentReader(function: "CLAM_SB")
            return .object(ModuleObject(try CLAMSB(features: try r.int(a[0], "features"), hidden: try r.int(a[1], "hidden"), attention: try r.int(a[2], "attention"),
                                                   classes: try r.int(a[3], "classes"), dropout: try r.float(a[4], "dropout"), kSample: try r.int(a[5], "k_sample"),
                                                   bagWeight: try r.float(a[6], "bag_weight"), subtyping: try r.bool(a[7], "subtyping"))))
        }
        let baselines: [(String, [(String, Value?)], String)] = [
            ("MeanMIL", [], "mean"), ("MaxMIL", [], "max"), ("LSEMIL", [("r", .float(1))], "log-sum-exp"),
            ("AttentionMIL", [("hidden", .int(128)), ("gated", .bool(false))], "attention (Ilse et al.)"),
        ]
        for (name, extra, what) in baselines {
            def(name, [("embedder", nil), ("classifier", nil)] + extra + [("dim", .nilValue)],
                doc: "Order-blind MIL baseline: \(what) pooling of each slide's tile embeddings, same embedder and classifier slots as SparseConvMIL.") { a, _, interp in
                let r = ArgumentReader(function: name)
                let embedder = a[0].isNil ? Identity() : try interp.module(a[0], "embedder", name), classifier = try interp.module(a[1], "classifier", name)
                let dimValue = a[a.count - 1]
                let dim = try r.optionalInt(dimValue, "dim") ?? (embedder as? ResNet)?.featureDimension
                    ?? (classifier.children.first?.module as? Linear)?.inFeatures ?? (classifier as? Linear)?.inFeatures
                guard let d = dim else { throw ScriptError(.runtime, "\(name)(): cannot tell the embedding size; pass dim:") }
                let pooling: PooledMIL.Pooling
                switch name {
                case "MeanMIL": pooling = .mean
                case "MaxMIL": pooling = .max
                case "LSEMIL": pooling = .logSumExp(r: try r.float(a[2], "r"))
                default: pooling = .attention(hidden: try r.int(a[2], "hidden"), gated: try r.bool(a[3], "gated"))
                }
                return .object(ModuleObject(try PooledMIL(embedder: embedder, classifier: classifier, pooling: pooling, dimension: d)))
            }
        }
        def("train_epoch", [("model", nil), ("loader", nil), ("opt", nil)], doc: "One epoch of training; returns metrics (loss, balanced_accuracy, ...).") { a, _, interp in
            let m = try interp.milModel(a[0], "train_epoch"), l = try interp.loader(a[1], "train_epoch")
            let total = l.count
            let result = try Trainer.trainEpoch(m, l, try interp.optimizer(a[2], "train_epoch")) { i, _, loss in
                interp.progress?(i + 1, total, false)
                interp.progressLoss = loss
            }
            interp.progress?(total, total, true)
            return interp.metricsRecord(result, classes: l.dataset.classes)
        }
        def("evaluate", [("model", nil), ("loader", nil)], doc: "Metrics in evaluation mode without gradients.") { a, _, interp in
            let l = try interp.loader(a[1], "evaluate")
            return interp.metricsRecord(try Trainer.evaluate(try interp.milModel(a[0], "evaluate"), l), classes: l.dataset.classes)
        }
        def("fit", [("model", nil), ("train", nil), ("val", .nilValue), ("opt", nil), ("epochs", nil), ("checkpoint", .nilValue),
                    ("resume", .bool(false)), ("manifest", .nilValue), ("verbose", .bool(true))],
            doc: "Trains for epochs, evaluating on val after each; keeps CHECKPOINT.best.safetensors (lowest validation loss) and CHECKPOINT.last.safetensors; resume: true continues a stopped run exactly. Returns the per-epoch metrics.") { a, _, interp in
            let r = ArgumentReader(function: "fit")
            let model = try interp.milModel(a[0], "fit"), train = try interp.loader(a[1], "fit")
            let val = a[2].isNil ? nil : try interp.loader(a[2], "fit")
            var manifest: [String: String] = [:]
            if case .dict(let d) = a[7] { for (k, v) in zip(d.keys, d.values) { manifest[render(k, quoted: false)] = render(v, quoted: false) } }
            manifest["dataset"] = Checkpoint.fingerprint(train.dataset)
            let epochs = try r.int(a[4], "epochs"), verbose = try r.bool(a[8], "verbose")
            let history = try Trainer.fit(model, train: train, validation: val, optimizer: try interp.optimizer(a[3], "fit"), epochs: epochs,
                                          checkpoint: a[5].isNil ? nil : try r.string(a[5], "checkpoint"), resume: try r.bool(a[6], "resume"),
                                          manifest: manifest) { epoch, t, v in
                guard verbose else { return }
                var line = String(format: "Epoch %3d/%d    loss=%.5f    bac=%.5f", epoch, epochs, t.loss, t.balancedAccuracy)
                if let v = v { line += String(format: "    val_loss=%.5f    val_bac=%.5f", v.loss, v.balancedAccuracy) }
                interp.output(line + "\n")
            }
            let classes = train.dataset.classes
            return .list(ListBox(history.map { h in
                .object(Record("Epoch", [("train", interp.metricsRecord(h.train, classes: classes)),
                                         ("val", h.validation.map { interp.metricsRecord($0, classes: classes) } ?? .nilValue)]))
            }))
        }
        def("write_predictions", [("metrics", nil), ("path", nil)], doc: "Writes a metrics record's predictions as CSV (slide_id, label, one probability per class).") { a, _, _ in
            let r = ArgumentReader(function: "write_predictions")
            guard case .object(let rec as Record) = a[0], let preds = rec.fields.first(where: { $0.0 == "predictions" })?.1 else {
                throw r.wrong("metrics", "the metrics of evaluate() or train_epoch()", a[0])
            }
            var lines: [String] = []
            for row in try r.list(preds, "metrics") {
                let fields = try r.list(row, "metrics")
                let probs = try r.list(fields[2], "metrics").map { String(format: "%.6f", try r.double($0, "metrics")) }
                lines.append(([render(fields[0], quoted: false), render(fields[1], quoted: false)] + probs).map(csvField).joined(separator: ","))
            }
            let width = lines.first.map { $0.split(separator: ",").count - 2 } ?? 0
            let header = "slide_id,label," + (0..<width).map { "p\($0)" }.joined(separator: ",")
            try writeAtomically(Data(([header] + lines).joined(separator: "\n").utf8 + [10]), to: try r.string(a[1], "path"))
            return .nilValue
        }
        def("save_checkpoint", [("model", nil), ("path", nil), ("opt", .nilValue), ("manifest", .nilValue)],
            doc: "Saves model and optimizer state with a JSON run manifest (seed, versions, hyper-parameters) in the safetensors metadata, atomically.") { a, _, interp in
            let r = ArgumentReader(function: "save_checkpoint")
            var manifest: [String: String] = [:]
            if case .dict(let d) = a[3] { for (k, v) in zip(d.keys, d.values) { manifest[render(k, quoted: false)] = render(v, quoted: false) } }
            try Checkpoint.save(try interp.module(a[0], "model", "save_checkpoint"), optimizer: a[2].isNil ? nil : try interp.optimizer(a[2], "save_checkpoint"),
                                manifest: manifest, to: try r.string(a[1], "path"))
            return .nilValue
        }
        def("load_checkpoint", [("model", nil), ("path", nil), ("opt", .nilValue)], doc: "Restores model (and optimizer) state from a checkpoint; returns its manifest.") { a, _, interp in
            let manifest = try Checkpoint.load(try ArgumentReader(function: "load_checkpoint").string(a[1], "path"),
                                               into: try interp.module(a[0], "model", "load_checkpoint"),
                                               optimizer: a[2].isNil ? nil : try interp.optimizer(a[2], "load_checkpoint"))
            let d = DictBox()
            for (k, v) in manifest.sorted(by: { $0.key < $1.key }) { d.set(.string(k), .string(v)) }
            return .dict(d)
        }
        // Metrics on label lists.
        let labels = { (v: Value, f: String) throws -> [Int] in
            switch v {
            case .intTensor(let t): return t.value.scalars
            default: return try ArgumentReader(function: f).list(v, "y").map { try ArgumentReader(function: f).int($0, "y") }
            }
        }
        // y and pred of one length, as scikit-learn checks ("inconsistent numbers of samples").
        let pair = { (a: [Value], f: String) throws -> ([Int], [Int]) in
            let y = try labels(a[0], f), p = try labels(a[1], f)
            guard y.count == p.count else { throw ScriptError(.runtime, "\(f)(): y has \(y.count) labels but pred has \(p.count)") }
            return (y, p)
        }
        def("balanced_accuracy", [("y", nil), ("pred", nil)], doc: "Mean per-class recall over the classes in y.") { a, _, _ in
            let (y, p) = try pair(a, "balanced_accuracy"); return .float(Metrics.balancedAccuracy(y, p))
        }
        def("accuracy", [("y", nil), ("pred", nil)], doc: "Fraction correct.") { a, _, _ in let (y, p) = try pair(a, "accuracy"); return .float(Metrics.accuracy(y, p)) }
        def("precision", [("y", nil), ("pred", nil)], doc: "Macro precision over the labels in y or pred.") { a, _, _ in
            let (y, p) = try pair(a, "precision"); return .float(Metrics.precisionRecallF1(y, p).precision)
        }
        def("recall", [("y", nil), ("pred", nil)], doc: "Macro recall over the labels in y or pred.") { a, _, _ in
            let (y, p) = try pair(a, "recall"); return .float(Metrics.precisionRecallF1(y, p).recall)
        }
        def("f1", [("y", nil), ("pred", nil)], doc: "Macro F1 over the labels in y or pred.") { a, _, _ in
            let (y, p) = try pair(a, "f1"); return .float(Metrics.precisionRecallF1(y, p).f1)
        }
        def("confusion_matrix", [("y", nil), ("pred", nil)], doc: "Counts m[true][predicted] for labels 0..max.") { a, _, _ in
            let (y, p) = try pair(a, "confusion_matrix")
            return .list(ListBox(try Metrics.confusionMatrix(y, p).map { .ints($0) }))
        }
        def("auc", [("y", nil), ("probs", nil)], doc: "Macro one-vs-rest ROC AUC from class probabilities [N, C].") { a, _, _ in
            let r = ArgumentReader(function: "auc")
            let p = try r.tensor(a[1], "probs")
            guard p.rank == 2 else { throw r.wrong("probs", "a [N, C] tensor", a[1]) }
            let rows = (0..<p.shape[0]).map { i in (0..<p.shape[1]).map { Double(p[flat: i * p.shape[1] + $0]) } }
            return Metrics.auc(try labels(a[0], "auc"), rows).map { .float($0) } ?? .nilValue
        }
    }
}

/// A `normalize:` argument: nil (none, where `allowNil`), "imagenet", or {"mean": [3], "std": [3]}.
func tileNormalization(_ v: Value, function: String, allowNil: Bool = true) throws -> TileNormalization? {
    let r = ArgumentReader(function: function)
    let name = allowNil ? "normalize" : "stats"
    switch v {
    case .nilValue where allowNil: return nil
    case .string("imagenet"): return .imagenet
    case .dict(let d):
        guard let m = d.get(.string("mean")), let s = d.get(.string("std")), d.count == 2 else {
            throw ScriptError(.runtime, "\(function)(): \(name) takes {\"mean\": [3 numbers], \"std\": [3 numbers]}")
        }
        return try TileNormalization(mean: try r.list(m, "\(name).mean").map { try r.float($0, "\(name).mean") },
                                     std: try r.list(s, "\(name).std").map { try r.float($0, "\(name).std") }).validated()
    default: throw r.wrong(name, "\"imagenet\" or {\"mean\": [...], \"std\": [...]}", v)
    }
}
