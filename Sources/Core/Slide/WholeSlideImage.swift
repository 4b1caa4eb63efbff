// WholeSlideImage.swift: scanner files (.svs, .tiff, .ndpi, .mrxs, ...) through OpenSlide.
// OpenSlide reports errors as a string on the handle after the fact; every call here checks it.

import Foundation
import COpenSlide
import CSlideIO

/// A whole-slide image opened with OpenSlide. Reading is thread-safe: several loader workers may
/// read regions of one slide at once.
public final class WholeSlideImage: @unchecked Sendable {
    public let path: String
    let handle: OpaquePointer
    /// `(width, height)` of every level, level 0 (full resolution) first.
    public let levelDimensions: [(width: Int, height: Int)]
    /// Each level's downsample factor relative to level 0, as OpenSlide reports it.
    public let levelDownsamples: [Double]
    /// Every property OpenSlide reads (vendor-specific ones and the `openslide.*` standard ones).
    public let properties: [String: String]
    /// The names of the associated images (label, macro, thumbnail), as the file has them.
    public let associatedImageNames: [String]

    /// The most pixels one read may ask for (1 GiB of ARGB): a request above it is refused before
    /// any allocation, whatever the file declares.
    public static let maxRegionPixels = 1 << 28

    /// Opens `path`. A file OpenSlide does not recognise, or recognises but cannot read, is an error
    /// naming the file and OpenSlide's reason.
    public init(_ path: String) throws {
        _ = Self.quietLibTIFF
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw CoreError.file(path: path, "no such slide file")
        }
        guard !isDir.boolValue || path.hasSuffix(".mrxs") else { throw CoreError.file(path: path, "is a folder, not a slide file") }
        guard FileManager.default.isReadableFile(atPath: path) else { throw CoreError.file(path: path, "slide file is not readable") }
        guard openslide_detect_vendor(path) != nil else {
            throw CoreError.file(path: path, "not a slide OpenSlide can read (Aperio .svs, tiled TIFF, Hamamatsu .ndpi/.vms, MIRAX .mrxs, Leica .scn, Philips TIFF, Sakura .svslide, Ventana .bif/.tif, generic tiled TIFF)")
        }
        guard let h = openslide_open(path) else {
            throw CoreError.file(path: path, "OpenSlide cannot open the slide")
        }
        if let e = openslide_get_error(h) {
            let message = String(cString: e)
            openslide_close(h)
            throw CoreError.file(path: path, "cannot read the slide: \(message)")
        }
        self.path = path
        handle = h
        let count = Int(openslide_get_level_count(h))
        var dims: [(Int, Int)] = [], downsamples: [Double] = []
        for l in 0..<max(0, count) {
            var w: Int64 = -1, hh: Int64 = -1
            openslide_get_level_dimensions(h, Int32(l), &w, &hh)
            dims.append((Int(w), Int(hh)))
            downsamples.append(openslide_get_level_downsample(h, Int32(l)))
        }
        var props: [String: String] = [:]
        if var names = openslide_get_property_names(h) {
            while let name = names.pointee {
                if let v = openslide_get_property_value(h, name) { props[String(cString: name)] = String(cString: v) }
                names += 1
            }
        }
        var associated: [String] = []
        if var names = openslide_get_associated_image_names(h) {
            while let name = names.pointee { associated.append(String(cString: name)); names += 1 }
        }
        levelDimensions = dims
        levelDownsamples = downsamples
        properties = props
        associatedImageNames = associated
        if let e = openslide_get_error(h) {
            throw CoreError.file(path: path, "cannot read the slide: \(String(cString: e))")
        }
        guard count > 0, dims.allSatisfy({ $0.0 > 0 && $0.1 > 0 }), downsamples.allSatisfy({ $0.isFinite && $0 >= 1 }) else {
            throw CoreError.file(path: path, "the slide declares no usable level (\(count) levels, dimensions \(dims.map { "\($0.0) x \($0.1)" }))")
        }
    }

    deinit { openslide_close(handle) }

    /// libtiff prints OpenSlide's read failures to stderr; Core never prints, and the failures come
    /// back through openslide_get_error.
    static let quietLibTIFF: Void = smil_tiff_quiet()

    /// The OpenSlide library's version.
    public static var libraryVersion: String { String(cString: openslide_get_version()) }

    public var levelCount: Int { levelDimensions.count }
    /// `(width, height)` at level 0.
    public var dimensions: (width: Int, height: Int) { levelDimensions[0] }
    /// The scanner's format, as OpenSlide names it (`aperio`, `generic-tiff`, `hamamatsu`, ...).
    public var vendor: String? { properties["openslide.vendor"] }
    /// Microns per pixel at level 0, `(x, y)`, when the file records it.
    public var mpp: (x: Double, y: Double)? {
        guard let x = properties["openslide.mpp-x"].flatMap(Double.init), let y = properties["openslide.mpp-y"].flatMap(Double.init),
              x > 0, y > 0, x.isFinite, y.isFinite else { return nil }
        return (x, y)
    }
    /// The objective's magnification (`openslide.objective-power`), when recorded.
    public var magnification: Double? { properties["openslide.objective-power"].flatMap(Double.init) }
    /// The file name without its extension: CLAM's and the labels CSV's slide_id.
    public var slideID: String { Self.slideID(path) }

    public static func slideID(_ path: String) -> String {
        ((path as NSString).lastPathComponent as NSString).deletingPathExtension
    }

    /// The level to read for a downsample: the largest level not finer than asked (OpenSlide's rule).
    /// A slide that has failed a read (OpenSlide's error state) throws.
    public func bestLevel(downsample: Double) throws -> Int {
        guard downsample.isFinite, downsample > 0 else {
            throw CoreError.invalidArgument(op: "best_level", "\(path): downsample must be positive, got \(downsample)")
        }
        let level = Int(openslide_get_best_level_for_downsample(handle, downsample))
        try checkError("cannot choose a level")
        guard levelDimensions.indices.contains(level) else { throw CoreError.file(path: path, "OpenSlide gave no level for downsample \(downsample)") }
        return level
    }

    /// Per-axis downsamples `(w0 / w, h0 / h)` of a level, as CLAM computes them, so that scaled
    /// coordinates land where the level's pixels are.
    public func axisDownsample(_ level: Int) -> (x: Double, y: Double) {
        let (w0, h0) = levelDimensions[0], (w, h) = levelDimensions[level]
        let estimate = (Double(w0) / Double(w), Double(h0) / Double(h))
        let reported = levelDownsamples[level]
        return estimate == (reported, reported) ? (reported, reported) : estimate
    }

    func checkError(_ what: String) throws {
        if let e = openslide_get_error(handle) {
            throw CoreError.file(path: path, "\(what): \(String(cString: e))")
        }
    }

    func checkLevel(_ level: Int, op: String) throws {
        guard levelDimensions.indices.contains(level) else {
            throw CoreError.invalidArgument(op: op, "\(path): level \(level) does not exist (the slide has levels 0...\(levelCount - 1))")
        }
    }

    /// Reads a region as 8-bit RGB composited on white. `(x, y)` is the top-left corner in level-0
    /// pixels; `(width, height)` is counted in pixels of `level`. A region may overhang the slide's
    /// edge (the overhang is white, as OpenSlide's transparent pixels composited on white are) but
    /// must overlap it.
    public func readRGB(x: Int, y: Int, level: Int, width: Int, height: Int) throws -> RGBImage {
        try checkLevel(level, op: "read_region")
        guard width > 0, height > 0 else {
            throw CoreError.invalidArgument(op: "read_region", "\(path): size must be positive, got [\(width), \(height)]")
        }
        guard width <= Self.maxRegionPixels / height else {
            throw CoreError.invalidArgument(op: "read_region", "\(path): a \(width) x \(height) region is above the \(Self.maxRegionPixels)-pixel limit of one read; read it in tiles")
        }
        let ds = levelDownsamples[level], (w0, h0) = dimensions
        guard x < w0, y < h0, Double(x) + Double(width) * ds > 0, Double(y) + Double(height) * ds > 0 else {
            throw CoreError.invalidArgument(op: "read_region", "\(path): region at (\(x), \(y)) of \(width) x \(height) at level \(level) lies outside the slide (\(w0) x \(h0) at level 0)")
        }
        var argb = [UInt32](repeating: 0, count: width * height)
        argb.withUnsafeMutableBufferPointer { openslide_read_region(handle, $0.baseAddress, Int64(x), Int64(y), Int32(level), Int64(width), Int64(height)) }
        try checkError("cannot read the region at (\(x), \(y)) level \(level)")
        return Self.compositeOnWhite(argb, width: width, height: height)
    }

    /// Premultiplied ARGB to RGB on white: `c + (255 - a)` per channel, exact in integers.
    static func compositeOnWhite(_ argb: [UInt32], width: Int, height: Int) -> RGBImage {
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        argb.withUnsafeBufferPointer { src in
            rgb.withUnsafeMutableBufferPointer { dst in
                for i in 0..<(width * height) {
                    let p = src[i], back = 255 - (p >> 24)
                    dst[3 * i] = UInt8(truncatingIfNeeded: min(255, ((p >> 16) & 0xFF) + back))
                    dst[3 * i + 1] = UInt8(truncatingIfNeeded: min(255, ((p >> 8) & 0xFF) + back))
                    dst[3 * i + 2] = UInt8(truncatingIfNeeded: min(255, (p & 0xFF) + back))
                }
            }
        }
        return RGBImage(width: width, height: height, pixels: rgb)
    }

    /// `readRGB` as a `[3, height, width]` float tensor in [0, 1].
    public func readRegion(x: Int, y: Int, level: Int, width: Int, height: Int) throws -> Tensor {
        try readRGB(x: x, y: y, level: level, width: width, height: height).tensor
    }

    /// The whole slide shrunk to fit `maxWidth x maxHeight`, aspect kept (openslide-python's
    /// `get_thumbnail`: the best level for the downsample, read whole, then area-resampled).
    public func thumbnail(maxWidth: Int, maxHeight: Int) throws -> RGBImage {
        guard maxWidth > 0, maxHeight > 0 else {
            throw CoreError.invalidArgument(op: "thumbnail", "size must be positive, got [\(maxWidth), \(maxHeight)]")
        }
        let (w0, h0) = dimensions
        let downsample = max(Double(w0) / Double(maxWidth), Double(h0) / Double(maxHeight))
        let level = try bestLevel(downsample: downsample)
        let (lw, lh) = levelDimensions[level]
        let image = try readRGB(x: 0, y: 0, level: level, width: lw, height: lh)
        let scale = min(Double(maxWidth) / Double(w0), Double(maxHeight) / Double(h0), 1)
        let tw = max(1, Int((Double(w0) * scale).rounded())), th = max(1, Int((Double(h0) * scale).rounded()))
        return image.resized(width: min(tw, lw), height: min(th, lh))
    }

    /// An associated image (label, macro, thumbnail) by name.
    public func associatedImage(_ name: String) throws -> RGBImage {
        guard associatedImageNames.contains(name) else {
            throw CoreError.invalidArgument(op: "associated_image", "\(path): no associated image \"\(name)\" (the slide has \(associatedImageNames.isEmpty ? "none" : associatedImageNames.joined(separator: ", ")))")
        }
        var w: Int64 = 0, h: Int64 = 0
        openslide_get_associated_image_dimensions(handle, name, &w, &h)
        try checkError("cannot read associated image \"\(name)\"")
        guard w > 0, h > 0, Int(w) <= Self.maxRegionPixels / Int(h) else {
            throw CoreError.file(path: path, "associated image \"\(name)\" declares \(w) x \(h) pixels")
        }
        var argb = [UInt32](repeating: 0, count: Int(w * h))
        argb.withUnsafeMutableBufferPointer { openslide_read_associated_image(handle, name, $0.baseAddress) }
        try checkError("cannot read associated image \"\(name)\"")
        return Self.compositeOnWhite(argb, width: Int(w), height: Int(h))
    }
}
