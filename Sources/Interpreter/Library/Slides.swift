// Slides.swift: whole-slide images in scripts (spec section 6, Slides) — open_slide, tissue_mask,
// tile_coords, CLAM's patch files, and writing slides (write_slide, mosaic).

import Foundation
import Core

/// A slide opened with OpenSlide: `.dimensions`, `.read_region(...)`, ...
final class SlideObject: HostObject {
    let slide: WholeSlideImage
    init(_ s: WholeSlideImage) { slide = s }
    override var typeName: String { "Slide" }
    override var memberNames: [String] {
        ["path", "slide_id", "dimensions", "level_count", "level_dimensions", "level_downsamples", "mpp", "magnification", "vendor",
         "properties", "associated_images", "read_region", "thumbnail", "best_level", "associated_image"]
    }
    override var description: String {
        let (w, h) = slide.dimensions
        return "Slide(\(slide.slideID), \(w) x \(h), \(slide.levelCount) levels, \(slide.vendor ?? "unknown")\(slide.mpp.map { String(format: ", %.4g mpp", $0.x) } ?? ""))"
    }

    override func member(_ name: String, _ interp: Interpreter) throws -> Value? {
        let s = slide, obj = Value.object(self)
        switch name {
        case "path": return .string(s.path)
        case "slide_id": return .string(s.slideID)
        case "dimensions": return .ints([s.dimensions.width, s.dimensions.height])
        case "level_count": return .int(s.levelCount)
        case "level_dimensions": return .list(ListBox(s.levelDimensions.map { .ints([$0.width, $0.height]) }))
        case "level_downsamples": return .list(ListBox(s.levelDownsamples.map { .float($0) }))
        case "mpp": return s.mpp.map { .list(ListBox([.float($0.x), .float($0.y)])) } ?? .nilValue
        case "magnification": return s.magnification.map { .float($0) } ?? .nilValue
        case "vendor": return s.vendor.map { .string($0) } ?? .nilValue
        case "properties":
            let d = DictBox()
            for (k, v) in s.properties.sorted(by: { $0.key < $1.key }) { d.set(.string(k), .string(v)) }
            return .dict(d)
        case "associated_images": return .list(ListBox(s.associatedImageNames.map { .string($0) }))
        case "read_region":
            return interp.bound(obj, name, [("location", nil), ("level", nil), ("size", nil)],
                                doc: "The region at level-0 location [x, y], read at level, size [w, h] pixels of that level, as a float [3, h, w] tensor in [0, 1] (transparent pixels composited on white).") { a, _, _ in
                let r = ArgumentReader(function: "read_region")
                let loc = try r.shape(a[1], "location"), size = try r.shape(a[3], "size")
                guard loc.count == 2, size.count == 2 else { throw ScriptError(.runtime, "read_region(): location and size are [x, y] and [w, h]") }
                return .from(try s.readRegion(x: loc[0], y: loc[1], level: try r.int(a[2], "level"), width: size[0], height: size[1]))
            }
        case "thumbnail":
            return interp.bound(obj, name, [("max_size", .int(512))],
                                doc: "The whole slide shrunk to fit max_size (a number or [w, h]), aspect kept: [3, h, w].") { a, _, _ in
                let r = ArgumentReader(function: "thumbnail")
                let (w, h): (Int, Int)
                if case .list = a[1] {
                    let m = try r.shape(a[1], "max_size")
                    guard m.count == 2 else { throw ScriptError(.runtime, "thumbnail(): max_size is a number or [w, h]") }
                    (w, h) = (m[0], m[1])
                } else { let m = try r.int(a[1], "max_size"); (w, h) = (m, m) }
                return .from(try s.thumbnail(maxWidth: w, maxHeight: h).tensor)
            }
        case "best_level":
            return interp.bound(obj, name, [("downsample", nil)], doc: "The level to read for a downsample (the largest not finer than it).") { a, _, _ in
                .int(try s.bestLevel(downsample: try ArgumentReader(function: "best_level").double(a[1], "downsample")))
            }
        case "associated_image":
            return interp.bound(obj, name, [("name", nil)], doc: "An associated image (label, macro, thumbnail) as [3, h, w].") { a, _, _ in
                .from(try s.associatedImage(try ArgumentReader(function: "associated_image").string(a[1], "name")).tensor)
            }
        default: return nil
        }
    }
}

extension Interpreter {
    func slide(_ v: Value, _ function: String) throws -> WholeSlideImage {
        if case .object(let o as SlideObject) = v { return o.slide }
        if case .string(let path) = v { return try WholeSlideImage(path) }
        throw ScriptError(.runtime, "\(function)(): expected a slide (open_slide(path)) or a slide's path, got \(an(v.typeName))")
    }

    /// CLAM's segmentation parameters from a preset and overrides.
    func tissueParameters(_ a: [Value], from i: Int, _ function: String) throws -> TissueParameters {
        let r = ArgumentReader(function: function)
        var p = try TissueParameters.preset(try r.string(a[i], "preset"))
        if !a[i + 1].isNil { p.level = try r.int(a[i + 1], "seg_level") }
        if !a[i + 2].isNil { p.saturationThreshold = try r.int(a[i + 2], "sthresh") }
        if !a[i + 3].isNil { p.medianSize = try r.int(a[i + 3], "mthresh") }
        if !a[i + 4].isNil { p.closing = try r.int(a[i + 4], "close") }
        if !a[i + 5].isNil { p.useOtsu = try r.bool(a[i + 5], "use_otsu") }
        if !a[i + 6].isNil { p.minTissueArea = try r.double(a[i + 6], "a_t") }
        if !a[i + 7].isNil { p.minHoleArea = try r.double(a[i + 7], "a_h") }
        if !a[i + 8].isNil { p.maxHoles = try r.int(a[i + 8], "max_n_holes") }
        return p
    }

    static let tissueParams: [(String, Value?)] = [("preset", .string("tcga")), ("seg_level", .nilValue), ("sthresh", .nilValue), ("mthresh", .nilValue),
                                                    ("close", .nilValue), ("use_otsu", .nilValue), ("a_t", .nilValue), ("a_h", .nilValue), ("max_n_holes", .nilValue)]

    func contourValue(_ c: [Point]) -> Value {
        .from((try? IntTensor(c.flatMap { [$0.x, $0.y] }, shape: [c.count, 2])) ?? IntTensor([]))
    }

    func attributesValue(_ attrs: [String: H5Attribute]) -> Value {
        let d = DictBox()
        for (k, v) in attrs.sorted(by: { $0.key < $1.key }) {
            switch v {
            case .int(let i): d.set(.string(k), .int(i))
            case .float(let x): d.set(.string(k), .float(x))
            case .ints(let xs): d.set(.string(k), .ints(xs))
            case .floats(let xs): d.set(.string(k), .list(ListBox(xs.map { .float($0) })))
            case .string(let s): d.set(.string(k), .string(s))
            }
        }
        return .dict(d)
    }

    func attributes(_ v: Value, _ function: String) throws -> [String: H5Attribute] {
        guard case .dict(let d) = v else { throw ScriptError(.runtime, "\(function)(): attrs must be a dict, got \(an(v.typeName))") }
        var out: [String: H5Attribute] = [:]
        for (k, v) in zip(d.keys, d.values) {
            let key = render(k, quoted: false)
            switch v {
            case .int(let i): out[key] = .int(i)
            case .float(let x): out[key] = .float(x)
            case .bool(let b): out[key] = .int(b ? 1 : 0)
            case .string(let s): out[key] = .string(s)
            case .list(let l) where l.items.allSatisfy({ if case .int = $0 { return true }; return false }):
                out[key] = .ints(l.items.map { if case .int(let i) = $0 { return i }; return 0 })
            case .list(let l):
                out[key] = .floats(try l.items.map { try ArgumentReader(function: function).double($0, "attrs.\(key)") })
            default: throw ScriptError(.runtime, "\(function)(): attribute \(quote(key)) must be a number, a string or a list of numbers, got \(an(v.typeName))")
            }
        }
        return out
    }

    func registerSlides() {
        def("open_slide", [("path", nil)], doc: "Opens a whole-slide image with OpenSlide (.svs, .tif/.tiff, .ndpi, .mrxs, .scn, ...): .dimensions, .level_count, .level_dimensions, .level_downsamples, .mpp, .magnification, .vendor, .properties, .associated_images, .read_region(location, level, size), .thumbnail(max_size), .best_level(downsample).") { a, _, _ in
            .object(SlideObject(try WholeSlideImage(try ArgumentReader(function: "open_slide").string(a[0], "path"))))
        }
        def("tissue_mask", [("slide", nil)] + Self.tissueParams,
            doc: "CLAM's tissue segmentation (HSV saturation, median blur, threshold or Otsu, closing, contours with holes filtered by area; preset \"tcga\", \"bwh_biopsy\" or \"bwh_resection\", any parameter overridden): {mask [H, W] of 0/1 at the segmentation level, level, downsample, contours (level-0 [P, 2] int tensors), holes (a list per contour)}.") { a, _, interp in
            let s = try interp.slide(a[0], "tissue_mask")
            let seg = try Tissue.segment(s, try interp.tissueParameters(a, from: 1, "tissue_mask"))
            let mask = try Tensor(seg.mask.map { $0 == 0 ? 0 : 1 }, shape: [seg.height, seg.width])
            return .object(Record("Tissue", [
                ("mask", .from(mask)), ("level", .int(seg.level)), ("downsample", .list(ListBox([.float(seg.downsample.x), .float(seg.downsample.y)]))),
                ("contours", .list(ListBox(seg.regions.map { interp.contourValue($0.contour) }))),
                ("holes", .list(ListBox(seg.regions.map { .list(ListBox($0.holes.map { interp.contourValue($0) })) }))),
            ]))
        }
        def("tile_coords", [("slide", nil), ("size", .int(256)), ("level", .nilValue), ("mpp", .nilValue), ("step", .nilValue), ("tissue", .string("four_pt")),
                            ("white_thresh", .nilValue), ("black_thresh", .nilValue), ("align", .bool(true))] + Self.tissueParams,
            doc: "Level-0 [x, y] (int64 [N, 2], sorted by y then x) of every size x size tile on tissue: at level (default 0) or at mpp microns per pixel; step pixels apart (default size); tissue: \"four_pt\" (CLAM's default), \"four_pt_hard\", \"center\" or \"basic\"; white_thresh/black_thresh drop blank tiles (each tile read); align: false starts each region's grid at its bounding box, as CLAM does.") { a, _, interp in
            let r = ArgumentReader(function: "tile_coords")
            let s = try interp.slide(a[0], "tile_coords")
            let testName = try r.string(a[5], "tissue")
            guard let test = ContourTest(rawValue: testName) else {
                throw ScriptError(.runtime, "tile_coords(): tissue must be one of \(ContourTest.allCases.map { quote($0.rawValue) }.joined(separator: ", ")), got \(quote(testName))")
            }
            let g = try TileGeometry(slide: s, size: try r.int(a[1], "size"), level: try r.optionalInt(a[2], "level"),
                                     mpp: a[3].isNil ? nil : try r.double(a[3], "mpp"), step: try r.optionalInt(a[4], "step"))
            let seg = try Tissue.segment(s, try interp.tissueParameters(a, from: 9, "tile_coords"))
            var coords = Tiling.coordinates(seg, geometry: g, slideSize: s.dimensions, test: test, align: try r.bool(a[8], "align"))
            let white = try r.optionalInt(a[6], "white_thresh"), black = try r.optionalInt(a[7], "black_thresh")
            if white != nil || black != nil {
                coords = try coords.filter { !Tiling.isBlank(try Tiling.readTile(s, at: $0, geometry: g), white: white, black: black) }
            }
            return .from(try IntTensor(coords.flatMap { [$0.x, $0.y] }, shape: [coords.count, 2]))
        }
        def("tile_attrs", [("slide", nil), ("size", .int(256)), ("level", .nilValue), ("mpp", .nilValue), ("step", .nilValue), ("save_path", .string(""))],
            doc: "The attributes CLAM's create_patches_fp.py stores with coords (patch_size, patch_level, downsample, downsampled_level_dim, level_dim, name, save_path), for tiles as tile_coords takes them: the attrs for write_patches_h5.") { a, _, interp in
            let r = ArgumentReader(function: "tile_attrs")
            let s = try interp.slide(a[0], "tile_attrs")
            let g = try TileGeometry(slide: s, size: try r.int(a[1], "size"), level: try r.optionalInt(a[2], "level"),
                                     mpp: a[3].isNil ? nil : try r.double(a[3], "mpp"), step: try r.optionalInt(a[4], "step"))
            return interp.attributesValue(PatchFile.attributes(slide: s, geometry: g, savePath: try r.string(a[5], "save_path")))
        }
        def("write_patches_h5", [("path", nil), ("coords", nil), ("attrs", .nilValue)],
            doc: "Writes CLAM's patch file: dataset coords (int64 [N, 2], level-0 x, y) with attrs (a dict of numbers, strings and lists; tile_attrs(slide, ...) gives CLAM's), atomically.") { a, _, interp in
            let r = ArgumentReader(function: "write_patches_h5")
            let attrs = a[2].isNil ? [:] : try interp.attributes(a[2], "write_patches_h5")
            try PatchFile(coords: try r.intTensor(a[1], "coords"), attributes: attrs).write(to: try r.string(a[0], "path"))
            return .nilValue
        }
        def("read_patches_h5", [("path", nil)], doc: "Reads a CLAM patch file: {coords: int64 [N, 2], attrs: dict}.") { a, _, interp in
            let p = try PatchFile.read(try ArgumentReader(function: "read_patches_h5").string(a[0], "path"))
            return .object(Record("Patches", [("coords", .from(p.coords)), ("attrs", interp.attributesValue(p.attributes))]))
        }
        def("write_h5", [("path", nil), ("datasets", nil), ("attrs", .nilValue)],
            doc: "Writes an HDF5 file as h5py would: datasets is a dict of name -> tensor (float32 or int64; first dimension resizable), attrs a dict of dataset name (or \"/\" for the file) -> dict of attributes (numbers, strings, lists of numbers); atomically.") { a, _, interp in
            let r = ArgumentReader(function: "write_h5")
            let path = try r.string(a[0], "path")
            guard case .dict(let sets) = a[1] else { throw r.wrong("datasets", "a dict of name -> tensor", a[1]) }
            var attrs: [(String, [String: H5Attribute])] = []
            if case .dict(let d) = a[2] {
                for (k, v) in zip(d.keys, d.values) { attrs.append((render(k, quoted: false), try interp.attributes(v, "write_h5"))) }
            } else if !a[2].isNil { throw r.wrong("attrs", "a dict of dataset name -> dict of attributes", a[2]) }
            try H5Writing.replace(path) { file in
                for (k, v) in zip(sets.keys, sets.values) {
                    let name = render(k, quoted: false)
                    switch v {
                    case .tensor(let t): try file.write(name, t.value)
                    case .intTensor(let t): try file.write(name, t.value)
                    default: throw r.wrong("datasets[\(quote(name))]", "a tensor", v)
                    }
                }
                for (object, values) in attrs {
                    for (k, v) in values.sorted(by: { $0.key < $1.key }) { try file.setAttribute(k, v, on: object) }
                }
            }
            return .nilValue
        }
        def("read_h5", [("path", nil)], doc: "The datasets at an HDF5 file's root as a dict of name -> tensor (integers as int64, the rest float32).") { a, _, _ in
            let file = try HDF5File(try ArgumentReader(function: "read_h5").string(a[0], "path"))
            let d = DictBox()
            for name in try file.datasetNames {
                d.set(.string(name), try file.shape(name).isFloat ? .from(try file.readFloats(name)) : .from(try file.readInts(name)))
            }
            return .dict(d)
        }
        def("h5_attrs", [("path", nil), ("name", .string("/"))], doc: "The attributes of a dataset (or of the file, name \"/\") of an HDF5 file, as a dict.") { a, _, interp in
            let r = ArgumentReader(function: "h5_attrs")
            return interp.attributesValue(try HDF5File(try r.string(a[0], "path")).attributes(of: try r.string(a[1], "name")))
        }
        def("extract_features", [("source", nil), ("encoder", .string("resnet50_trunc")), ("weights", .nilValue), ("out", .nilValue), ("patches", .nilValue),
                                 ("batch", .int(64)), ("workers", .int(2)), ("normalize", .string("imagenet")), ("size", .int(256))],
            doc: "Embeds every tile of a source — a folder of ROW_COL tiles, or a slide (path or open_slide) whose tiles come from patches/SLIDE.h5 or from tiling it (size pixels, level 0) — with a frozen encoder: a name (resnet18, resnet34, resnet50, resnet50_trunc: CLAM's 1024-D, wide_resnet50_2; weights: a torchvision .pth or safetensors) or any module on [N, 3, H, W]; normalize: \"imagenet\", nil or {mean, std}; batches decoded by workers threads ahead of the encoder. Returns {features [N, D], coords [N, 2] level-0 x, y, attrs}; with out, also writes CLAM's out/h5_files/ID.h5 and out/pt_files/ID.pt.") { a, _, interp in
            let r = ArgumentReader(function: "extract_features")
            let source: ExtractionSource
            switch a[0] {
            case .object(let o as SlideObject): source = .slide(o.slide.path)
            default:
                let path = try r.string(a[0], "source")
                var isDir: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw ScriptError(.runtime, "extract_features(): no such slide or tile folder: \(quote(path))") }
                source = isDir.boolValue ? .tileFolder(path) : .slide(path)
            }
            let encoder: Module
            if case .object(let m as ModuleObject) = a[1] { encoder = m.module } else {
                encoder = try FeatureExtraction.encoder(try r.string(a[1], "encoder"), weights: a[2].isNil ? nil : try r.string(a[2], "weights"))
            }
            let tiles = try FeatureExtraction.tiles(source, patches: a[4].isNil ? nil : try r.string(a[4], "patches"), size: try r.int(a[8], "size"))
            let normalization = a[7].isNil ? nil : try tileNormalization(a[7], function: "extract_features")
            let total = tiles.coords.count
            let features = try FeatureExtraction.extract(tiles, encoder: encoder, normalization: normalization, batchSize: try r.int(a[5], "batch"),
                                                         workers: try r.int(a[6], "workers")) { done, n in interp.progress?(done, n, false) }
            interp.progress?(total, total, true)
            if !a[3].isNil {
                try FeatureExtraction.write(features: features, coords: tiles.coords, attributes: tiles.attributes, to: try r.string(a[3], "out"), id: source.id)
            }
            return .object(Record("Features", [("features", .from(features)), ("coords", .from(try IntTensor(tiles.coords.flatMap { [$0.x, $0.y] }, shape: [total, 2]))),
                                               ("attrs", interp.attributesValue(tiles.attributes)), ("slide_id", .string(source.id))]))
        }
        def("heatmap", [("slide_or_image", nil), ("coords", nil), ("scores", nil), ("path", .nilValue), ("alpha", .float(0.5)), ("cmap", .string("viridis")),
                        ("tile", .nilValue), ("size", .int(1024)), ("scale", .nilValue), ("vmin", .nilValue), ("vmax", .nilValue)],
            doc: "Tiles coloured by score over a slide's thumbnail (size pixels on its longer side), over an image [3, H, W] (scale: its pixels per level-0 pixel; by default it spans the tiles from x = 0), or, given nil, over a white canvas around the tiles (size pixels on its longer side), with a colour bar: coords are the tiles' level-0 [x, y] ([N, 2], as in CLAM's files), scores [N] (or [N, 1]); tile: level-0 pixels per tile (default: the coordinates' spacing); cmap viridis, magma, jet or coolwarm; vmin/vmax fix the colour range. Returns the image; with path, writes it as a PNG (and a notebook report shows it).") { a, _, interp in
            let r = ArgumentReader(function: "heatmap")
            let coordsTensor = try r.intTensor(a[1], "coords")
            guard coordsTensor.rank == 2, coordsTensor.shape[1] == 2 else { throw ScriptError(.runtime, "heatmap(): coords must be [N, 2] level-0 (x, y), got \(shapeString(coordsTensor.shape))") }
            var points = (0..<coordsTensor.shape[0]).map { Point(coordsTensor.scalars[2 * $0], coordsTensor.scalars[2 * $0 + 1]) }
            let scoreTensor = try r.tensor(a[2], "scores")
            guard scoreTensor.count == points.count else {
                throw ScriptError(.runtime, "heatmap(): \(scoreTensor.count) scores for \(points.count) tiles (give one score per tile: scores[:, c] of tile_scores)")
            }
            let tile = try r.optionalInt(a[6], "tile") ?? FeatureBag.tileStride([:], coords: coordsTensor)
            let base: RGBImage, scale: Double
            switch a[0] {
            case .nilValue:
                // No slide: a white canvas around the tiles, size pixels on its longer side.
                guard !points.isEmpty else { throw ScriptError(.runtime, "heatmap(): no tiles") }
                let x0 = points.map(\.x).min()!, y0 = points.map(\.y).min()!
                let w = points.map(\.x).max()! + tile - x0, h = points.map(\.y).max()! + tile - y0
                let size = try r.int(a[7], "size")
                scale = Double(size) / Double(max(w, h))
                base = RGBImage(width: max(1, Int(Double(w) * scale)), height: max(1, Int(Double(h) * scale)))
                points = points.map { Point($0.x - x0, $0.y - y0) }
            case .tensor(let t):
                base = try RGBImage(t.value)
                let extent = max(1, (points.map { $0.x }.max() ?? 0) + tile)
                scale = a[8].isNil ? Double(base.width) / Double(extent) : try r.double(a[8], "scale")
            default:
                let s = try interp.slide(a[0], "heatmap")
                let size = try r.int(a[7], "size")
                base = try s.thumbnail(maxWidth: size, maxHeight: size)
                scale = Double(base.width) / Double(s.dimensions.width)
            }
            let cmapName = try r.string(a[5], "cmap")
            guard let cmap = Colormap(rawValue: cmapName) else {
                throw ScriptError(.runtime, "heatmap(): cmap must be one of \(Colormap.allCases.map { quote($0.rawValue) }.joined(separator: ", ")), got \(quote(cmapName))")
            }
            let scores = scoreTensor.scalars.map(Double.init)
            var range: (Double, Double)? = nil
            if !a[9].isNil || !a[10].isNil {
                range = (a[9].isNil ? scores.min() ?? 0 : try r.double(a[9], "vmin"), a[10].isNil ? scores.max() ?? 1 : try r.double(a[10], "vmax"))
            }
            let image = try Heatmap.render(base: base, scale: scale, coords: points, tile: tile, scores: scores, alpha: try r.double(a[4], "alpha"),
                                           colormap: cmap, range: range)
            if !a[3].isNil {
                let path = try r.string(a[3], "path")
                try ImageIO.writePNG(image, to: path)
                interp.imagesWritten.append(path)
            }
            return .from(image.tensor)
        }
        def("synthetic_bags", [("root", nil), ("kind", .string("arrangement")), ("bags_per_class", .int(20)), ("tiles", .int(150)), ("dim", .int(32)),
                               ("noise", .float(0.5)), ("seed", .int(0))],
            doc: "Writes feature bags in CLAM's layout (root/h5_files/bag-NNN.h5, root/labels.csv): blobs of about `tiles` tiles whose features are one of two types; kind \"arrangement\" tells the classes (blocks, checkerboard) apart only by where the types lie (equal proportions), \"proportion\" (few, many) only by how many there are, \"localized\" (patch, plain) by a small checkerboard region in \"patch\" bags, marked in each file's truth dataset. Returns root.") { a, _, _ in
            let r = ArgumentReader(function: "synthetic_bags")
            let root = try r.string(a[0], "root"), kindName = try r.string(a[1], "kind")
            guard let kind = SyntheticBags.Kind(rawValue: kindName) else { throw ScriptError(.runtime, "synthetic_bags(): kind must be \"arrangement\", \"proportion\" or \"localized\", got \(quote(kindName))") }
            try SyntheticBags.write(to: root, kind: kind, bagsPerClass: try r.int(a[2], "bags_per_class"), tiles: try r.int(a[3], "tiles"),
                                    dimension: try r.int(a[4], "dim"), noise: try r.double(a[5], "noise"), seed: UInt64(truncatingIfNeeded: try r.int(a[6], "seed")))
            return .string(root)
        }
        def("write_slide", [("path", nil), ("image", nil), ("downsamples", .ints([1, 4, 16])), ("tile_size", .int(256)), ("quality", .int(90)),
                            ("mpp", .nilValue), ("magnification", .nilValue)],
            doc: "Writes a [3, H, W] image in [0, 1] as a tiled pyramidal TIFF that OpenSlide and slide viewers open: one level per downsample, JPEG tiles at quality (0: lossless Deflate); with mpp, in Aperio's layout (ImageDescription with MPP and AppMag, a thumbnail), else a generic tiled TIFF.") { a, _, _ in
            let r = ArgumentReader(function: "write_slide")
            let image = try RGBImage(try r.tensor(a[1], "image"))
            try SlideWriter.write(image, to: try r.string(a[0], "path"), downsamples: try r.shape(a[2], "downsamples"), tileSize: try r.int(a[3], "tile_size"),
                                  quality: try r.int(a[4], "quality"), mpp: a[5].isNil ? nil : try r.double(a[5], "mpp"),
                                  magnification: a[6].isNil ? nil : try r.double(a[6], "magnification"))
            return .nilValue
        }
        def("mosaic", [("tiles", nil), ("layout", nil)],
            doc: "Lays [3, S, S] tiles out on white by a map: layout is a list of strings, one per row of slots, where \"#\" takes the next tile (cycling) and any other character leaves the slot white. Returns [3, rows x S, columns x S].") { a, _, _ in
            let r = ArgumentReader(function: "mosaic")
            let tiles = try r.list(a[0], "tiles").map { try RGBImage(try r.tensor($0, "tiles")) }
            let layout = try r.list(a[1], "layout").map { try r.string($0, "layout") }
            return .from(try SlideWriter.mosaic(tiles, layout: layout).tensor)
        }
    }
}
