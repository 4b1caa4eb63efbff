// Tissue.swift: CLAM's tissue segmentation, written out — saturation of HSV, median blur, a fixed
// or Otsu threshold, morphological closing, contours with holes (Suzuki and Abe's border
// following, OpenCV's RETR_CCOMP), and CLAM's filtering of contours and holes by area.

import Foundation

/// A point in pixels.
public struct Point: Hashable, Sendable {
    public var x: Int
    public var y: Int
    public init(_ x: Int, _ y: Int) { self.x = x; self.y = y }
}

/// CLAM's segmentation and filtering parameters (`create_patches_fp.py`'s seg_params and
/// filter_params). Areas `a_t` and `a_h` count reference patches (`referencePatchSize`^2 pixels
/// at level 0), as CLAM's do.
public struct TissueParameters: Equatable, Sendable {
    /// The level to segment at; nil picks the level nearest a 64x downsample (CLAM's -1).
    public var level: Int? = nil
    /// Saturation threshold (a pixel is tissue when its blurred saturation is above it).
    public var saturationThreshold = 8
    /// Median filter size (odd).
    public var medianSize = 7
    /// Morphological closing size (0: none).
    public var closing = 4
    /// Otsu's threshold instead of `saturationThreshold`.
    public var useOtsu = false
    /// Minimum tissue area, in reference patches (CLAM's a_t).
    public var minTissueArea = 16.0
    /// Minimum hole area, in reference patches (CLAM's a_h).
    public var minHoleArea = 4.0
    /// The largest holes kept per region (CLAM's max_n_holes).
    public var maxHoles = 8
    /// CLAM's ref_patch_size, the unit of the areas.
    public var referencePatchSize = 512

    public init() {}

    /// CLAM's presets: `tcga` (the default), `bwh_biopsy`, `bwh_resection`.
    public static func preset(_ name: String) throws -> TissueParameters {
        var p = TissueParameters()
        switch name.lowercased() {
        case "tcga": break
        case "bwh_biopsy":
            (p.saturationThreshold, p.medianSize, p.closing, p.minTissueArea, p.minHoleArea, p.maxHoles) = (15, 11, 2, 1, 1, 2)
        case "bwh_resection":
            (p.saturationThreshold, p.medianSize, p.closing, p.minTissueArea, p.minHoleArea, p.maxHoles) = (15, 11, 4, 100, 16, 8)
        default:
            throw CoreError.invalidArgument(op: "tissue", "unknown preset \"\(name)\" (tcga, bwh_biopsy, bwh_resection)")
        }
        return p
    }

    func validated() throws -> TissueParameters {
        guard medianSize >= 1, medianSize % 2 == 1, medianSize <= 255 else {
            throw CoreError.invalidArgument(op: "tissue", "median size must be odd and between 1 and 255, got \(medianSize)")
        }
        guard (0...255).contains(saturationThreshold) else {
            throw CoreError.invalidArgument(op: "tissue", "saturation threshold must be 0-255, got \(saturationThreshold)")
        }
        guard closing >= 0, closing <= 255, maxHoles >= 0, minTissueArea >= 0, minHoleArea >= 0, referencePatchSize > 0 else {
            throw CoreError.invalidArgument(op: "tissue", "closing, max holes, areas and reference patch size must not be negative")
        }
        return self
    }
}

/// One tissue region at level 0: its outer contour and the holes kept inside it.
public struct TissueRegion: Equatable, Sendable {
    public var contour: [Point]
    public var holes: [[Point]]
}

/// The result of segmenting a slide.
public struct TissueSegmentation: Sendable {
    /// The binary mask (0 or 255) after closing, at `level`, `width x height`.
    public let mask: [UInt8]
    public let width: Int
    public let height: Int
    public let level: Int
    /// The level's per-axis downsample (level-0 pixels per mask pixel).
    public let downsample: (x: Double, y: Double)
    /// The regions kept, in level-0 pixels.
    public let regions: [TissueRegion]
}

public enum Tissue {
    /// The largest segmentation image read whole (its level must fit; else an error says so).
    public static let maxSegmentationPixels = 1 << 26

    /// Segments a slide's tissue with CLAM's recipe.
    public static func segment(_ slide: WholeSlideImage, _ parameters: TissueParameters = TissueParameters()) throws -> TissueSegmentation {
        let p = try parameters.validated()
        let level = try p.level ?? slide.bestLevel(downsample: 64)
        try slide.checkLevel(level, op: "tissue_mask")
        let (w, h) = slide.levelDimensions[level]
        guard w <= maxSegmentationPixels / h else {
            throw CoreError.file(path: slide.path, "level \(level) has \(w) x \(h) pixels, too many to segment at once (limit \(maxSegmentationPixels)); the slide has no smaller level to segment at")
        }
        let image = try slide.readRGB(x: 0, y: 0, level: level, width: w, height: h)
        let ds = slide.axisDownsample(level)
        let (mask, contours) = try segment(image, p)
        let regions = try filter(contours, parameters: p, downsample: ds)
        return TissueSegmentation(mask: mask, width: w, height: h, level: level, downsample: ds, regions: regions)
    }

    /// The mask and the raw contours (in the image's pixels) of an RGB image.
    static func segment(_ image: RGBImage, _ p: TissueParameters) throws -> (mask: [UInt8], contours: Contours) {
        let (w, h) = (image.width, image.height)
        let s = saturation(image)
        var mask: [UInt8]
        if p.useOtsu {
            let blurred = medianBlur(s, width: w, height: h, size: p.medianSize)
            let t = otsuThreshold(blurred)
            mask = blurred.map { $0 > t ? UInt8(255) : 0 }
        } else {
            mask = medianAbove(s, width: w, height: h, size: p.medianSize, threshold: p.saturationThreshold)
        }
        if p.closing > 0 { mask = close(mask, width: w, height: h, size: p.closing) }
        try Interrupt.check()
        return (mask, findContours(mask, width: w, height: h))
    }

    /// CLAM's `_filter_contours`, then the contours scaled to level 0 (truncated, as CLAM's int32
    /// cast does).
    static func filter(_ c: Contours, parameters p: TissueParameters, downsample ds: (x: Double, y: Double)) throws -> [TissueRegion] {
        let unit = Double(Int(Double(p.referencePatchSize * p.referencePatchSize) / (ds.x * ds.y)))
        let minTissue = p.minTissueArea * unit, minHole = p.minHoleArea * unit
        var holesOf = [[Int]](repeating: [], count: c.points.count)
        for i in c.points.indices where c.parent[i] >= 0 { holesOf[c.parent[i]].append(i) }
        let areas = c.points.map(contourArea)
        func scaled(_ contour: [Point]) -> [Point] {
            contour.map { Point(Int(Double($0.x) * ds.x), Int(Double($0.y) * ds.y)) }
        }
        var regions: [TissueRegion] = []
        for i in c.points.indices where c.parent[i] < 0 {
            let area = areas[i] - holesOf[i].reduce(0) { $0 + areas[$1] }
            guard area != 0, area > minTissue else { continue }
            // The largest holes first (a stable sort, as Python's), at most maxHoles, then by area.
            let holes = holesOf[i].enumerated().sorted { a, b in
                areas[a.element] != areas[b.element] ? areas[a.element] > areas[b.element] : a.offset < b.offset
            }.map(\.element).prefix(p.maxHoles).filter { areas[$0] > minHole }
            regions.append(TissueRegion(contour: scaled(c.points[i]), holes: holes.map { scaled(c.points[$0]) }))
        }
        return regions
    }

    // MARK: - Image processing

    /// HSV saturation as OpenCV computes it for 8-bit RGB: `round(255 * (max - min) / max)` in its
    /// fixed point (12 fractional bits).
    static func saturation(_ image: RGBImage) -> [UInt8] {
        var table = [Int](repeating: 0, count: 256)
        for v in 1..<256 { table[v] = Int((Double(255 << 12) / Double(v)).rounded(.toNearestOrEven)) }
        var out = [UInt8](repeating: 0, count: image.width * image.height)
        image.pixels.withUnsafeBufferPointer { p in
            for i in out.indices {
                let r = Int(p[3 * i]), g = Int(p[3 * i + 1]), b = Int(p[3 * i + 2])
                let v = max(r, g, b), diff = v - min(r, g, b)
                out[i] = UInt8((diff * table[v] + (1 << 11)) >> 12)
            }
        }
        return out
    }

    /// A `size x size` median filter with replicated borders (OpenCV's medianBlur), by Huang's
    /// running histogram: each step along a row removes one column and adds one.
    static func medianBlur(_ src: [UInt8], width w: Int, height h: Int, size k: Int) -> [UInt8] {
        guard k > 1, w > 0, h > 0 else { return src }
        let r = k / 2, half = k * k / 2
        var out = [UInt8](repeating: 0, count: w * h)
        let hist = UnsafeMutablePointer<Int32>.allocate(capacity: 256)
        let rows = UnsafeMutablePointer<Int>.allocate(capacity: k)
        defer { hist.deallocate(); rows.deallocate() }
        src.withUnsafeBufferPointer { sp in
            out.withUnsafeMutableBufferPointer { op in
                let s = sp.baseAddress!, o = op.baseAddress!
                for y in 0..<h {
                    for j in 0..<k { rows[j] = min(h - 1, max(0, y + j - r)) * w }
                    hist.initialize(repeating: 0, count: 256)
                    for dx in -r...r {
                        let x = min(w - 1, max(0, dx))
                        for j in 0..<k { hist[Int(s[rows[j] + x])] += 1 }
                    }
                    var median = 0, below: Int32 = 0
                    while below + hist[median] <= half { below += hist[median]; median += 1 }
                    o[y * w] = UInt8(truncatingIfNeeded: median)
                    var x = 1
                    while x < w {
                        let gone = x - r - 1 < 0 ? 0 : x - r - 1, come = x + r >= w ? w - 1 : x + r
                        for j in 0..<k {
                            let a = Int(s[rows[j] + gone]), b = Int(s[rows[j] + come])
                            hist[a] -= 1
                            hist[b] += 1
                            below += (b < median ? 1 : 0) - (a < median ? 1 : 0)
                        }
                        while below > half { median -= 1; below -= hist[median] }
                        while below + hist[median] <= half { below += hist[median]; median += 1 }
                        o[y * w + x] = UInt8(truncatingIfNeeded: median)
                        x += 1
                    }
                }
            }
        }
        return out
    }

    /// `medianBlur(src) > threshold` as a mask (255 or 0), without the medians: a window's median
    /// is above the threshold exactly when more than half its values are, so this counts them with
    /// box sums (replicated borders, separable, constant time per pixel).
    static func medianAbove(_ src: [UInt8], width w: Int, height h: Int, size k: Int, threshold t: Int) -> [UInt8] {
        guard w > 0, h > 0 else { return [] }
        let r = k / 2, half = Int32(k * k / 2)
        var out = [UInt8](repeating: 0, count: w * h)
        var rowSums = [Int32](repeating: 0, count: w * h)
        src.withUnsafeBufferPointer { sp in
            rowSums.withUnsafeMutableBufferPointer { rp in
                let s = sp.baseAddress!, rs = rp.baseAddress!
                for y in 0..<h {
                    let line = s + y * w, sums = rs + y * w
                    @inline(__always) func above(_ x: Int) -> Int32 { Int(line[min(w - 1, max(0, x))]) > t ? 1 : 0 }
                    var acc: Int32 = 0
                    for dx in -r...r { acc += above(dx) }
                    sums[0] = acc
                    for x in 1..<max(1, w) {
                        acc += above(x + r) - above(x - r - 1)
                        sums[x] = acc
                    }
                }
            }
        }
        rowSums.withUnsafeBufferPointer { rp in
            out.withUnsafeMutableBufferPointer { op in
                let rs = rp.baseAddress!, o = op.baseAddress!
                var column = [Int32](repeating: 0, count: w)
                column.withUnsafeMutableBufferPointer { cp in
                    let c = cp.baseAddress!
                    for dy in -r...r { let line = rs + min(h - 1, max(0, dy)) * w; for x in 0..<w { c[x] += line[x] } }
                    for y in 0..<h {
                        if y > 0 {
                            let come = rs + min(h - 1, y + r) * w, gone = rs + max(0, y - r - 1) * w
                            for x in 0..<w { c[x] += come[x] - gone[x] }
                        }
                        let row = o + y * w
                        for x in 0..<w { row[x] = c[x] > half ? 255 : 0 }
                    }
                }
            }
        }
        return out
    }

    /// Otsu's threshold of 8-bit values, as OpenCV computes it (between-class variance maximised,
    /// the first maximum kept).
    static func otsuThreshold(_ values: [UInt8]) -> Int {
        var hist = [Double](repeating: 0, count: 256)
        for v in values { hist[Int(v)] += 1 }
        let n = Double(values.count)
        var mu = 0.0
        for i in 0..<256 { hist[i] /= n; mu += Double(i) * hist[i] }
        var q1 = 0.0, mu1 = 0.0, best = 0.0, threshold = 0
        for i in 0..<256 {
            let pi = hist[i]
            mu1 *= q1
            q1 += pi
            let q2 = 1 - q1
            if min(q1, q2) < Double(Float.ulpOfOne) || max(q1, q2) > 1 - Double(Float.ulpOfOne) { continue }
            mu1 = (mu1 + Double(i) * pi) / q1
            let mu2 = (mu - q1 * mu1) / q2
            let sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2)
            if sigma > best { best = sigma; threshold = i }
        }
        return threshold
    }

    /// Morphological closing by a `size x size` square (OpenCV's anchor at `size / 2`): a dilation
    /// then an erosion, each ignoring pixels outside the image, each as a row pass and a column pass.
    static func close(_ mask: [UInt8], width w: Int, height h: Int, size k: Int) -> [UInt8] {
        let lo = -(k / 2), hi = k - 1 - k / 2
        /// One pass: the max (or min) over `lo...hi` neighbours along each row, or across rows
        /// (whole rows combined elementwise, in memory order).
        func pass(_ src: [UInt8], alongRows: Bool, maximum: Bool) -> [UInt8] {
            var out = [UInt8](repeating: maximum ? 0 : 255, count: w * h)
            src.withUnsafeBufferPointer { sp in
                out.withUnsafeMutableBufferPointer { op in
                    let s = sp.baseAddress!, o = op.baseAddress!
                    for y in 0..<h {
                        let row = o + y * w
                        if alongRows {
                            let line = s + y * w
                            for x in 0..<w {
                                var acc = row[x]
                                for j in max(0, x + lo)...min(w - 1, x + hi) { acc = maximum ? Swift.max(acc, line[j]) : Swift.min(acc, line[j]) }
                                row[x] = acc
                            }
                        } else {
                            for yy in max(0, y + lo)...min(h - 1, y + hi) {
                                let line = s + yy * w
                                if maximum { for x in 0..<w { row[x] = Swift.max(row[x], line[x]) } } else { for x in 0..<w { row[x] = Swift.min(row[x], line[x]) } }
                            }
                        }
                    }
                }
            }
            return out
        }
        let dilated = pass(pass(mask, alongRows: true, maximum: true), alongRows: false, maximum: true)
        return pass(pass(dilated, alongRows: true, maximum: false), alongRows: false, maximum: false)
    }

    // MARK: - Contours

    /// Contours as OpenCV's findContours(RETR_CCOMP, CHAIN_APPROX_NONE) gives them: every border
    /// pixel in order; `parent[i]` is -1 for an outer border and the index of the outer border
    /// that encloses it for a hole.
    struct Contours {
        var points: [[Point]] = []
        var parent: [Int] = []
    }

    /// Suzuki and Abe's border following (1985) on a mask (non-zero = foreground) with a frame of
    /// zeros around it, 8-connected foreground.
    static func findContours(_ mask: [UInt8], width w: Int, height h: Int) -> Contours {
        let pw = w + 2, ph = h + 2
        var f = [Int32](repeating: 0, count: pw * ph)
        for y in 0..<h { for x in 0..<w where mask[y * w + x] != 0 { f[(y + 1) * pw + x + 1] = 1 } }
        // Neighbours counter-clockwise on screen, from east.
        let dx = [1, 1, 0, -1, -1, -1, 0, 1], dy = [0, -1, -1, -1, 0, 1, 1, 1]
        let step = (0..<8).map { dy[$0] * pw + dx[$0] }
        // Border number -> (is hole, index in the output, Suzuki parent border number).
        var isHole: [Bool] = [true, true], outputIndex: [Int] = [-1, -1], parentBorder: [Int] = [0, 0]
        var result = Contours()
        var nbd: Int32 = 1
        for y in 1...max(1, h) where h > 0 {
            var lnbd: Int32 = 1
            for x in 1...max(1, w) where w > 0 {
                let i = y * pw + x
                let v = f[i]
                if v == 0 { continue }
                var start: Int? = nil, hole = false
                if v == 1 && f[i - 1] == 0 {
                    start = 4  // from the west neighbour
                } else if v >= 1 && f[i + 1] == 0 {
                    start = 0  // from the east neighbour
                    hole = true
                    if v > 1 { lnbd = v }
                }
                if let from = start {
                    nbd += 1
                    let b = Int(lnbd)
                    let parent = hole == isHole[b] ? parentBorder[b] : b
                    isHole.append(hole)
                    parentBorder.append(parent)
                    // For RETR_CCOMP a hole belongs to the outer border around it; an outer border is on top.
                    var outer = parent
                    while outer > 1 && isHole[outer] { outer = parentBorder[outer] }
                    outputIndex.append(result.points.count)
                    result.parent.append(hole ? (outer > 1 ? outputIndex[outer] : -1) : -1)
                    result.points.append(follow(&f, start: i, from: from, nbd: nbd, pw: pw, step: step))
                }
                let after = f[i]
                if after != 1 { lnbd = abs(after) }
            }
        }
        return result
    }

    /// Follows one border from pixel `start`, marking it with `nbd` (Suzuki and Abe's step 3), and
    /// returns its pixels in image coordinates.
    static func follow(_ f: inout [Int32], start: Int, from: Int, nbd: Int32, pw: Int, step: [Int]) -> [Point] {
        func point(_ i: Int) -> Point { Point(i % pw - 1, i / pw - 1) }
        // 3.1: clockwise from `from` for a non-zero neighbour.
        var first = -1, firstDir = -1
        for k in 0..<8 {
            let d = (from - k + 8) % 8
            if f[start + step[d]] != 0 { first = start + step[d]; firstDir = d; break }
        }
        if first < 0 {
            f[start] = -nbd
            return [point(start)]
        }
        var points = [point(start)]
        var previousDir = firstDir  // direction from the current pixel to the previous one
        var current = start
        while true {
            // 3.3: counter-clockwise from the one after the previous pixel.
            var nextDir = -1, eastZero = false
            for k in 1...8 {
                let d = (previousDir + k) % 8
                if f[current + step[d]] != 0 { nextDir = d; break }
                if d == 0 { eastZero = true }
            }
            // 3.4
            if eastZero { f[current] = -nbd } else if f[current] == 1 { f[current] = nbd }
            let next = current + step[nextDir]
            // 3.5
            if next == start && current == first { break }
            previousDir = (nextDir + 4) % 8
            current = next
            points.append(point(current))
        }
        return points
    }

    /// The area enclosed by a contour (the shoelace formula, absolute), as cv2.contourArea.
    public static func contourArea(_ c: [Point]) -> Double {
        guard c.count >= 3 else { return 0 }
        var twice = 0
        var prev = c[c.count - 1]
        for p in c { twice += prev.x * p.y - p.x * prev.y; prev = p }
        return Double(abs(twice)) / 2
    }

    /// Whether a point lies inside (1), on (0) or outside (-1) a closed contour: OpenCV's
    /// pointPolygonTest without distances (crossings counted, edges detected exactly).
    public static func pointPolygonTest(_ c: [Point], _ x: Double, _ y: Double) -> Int {
        guard !c.isEmpty else { return -1 }
        var crossings = 0
        var v0 = c[c.count - 1]
        for v in c {
            defer { v0 = v }
            let (x0, y0, x1, y1) = (Double(v0.x), Double(v0.y), Double(v.x), Double(v.y))
            if (y0 <= y && y1 <= y) || (y0 > y && y1 > y) || (x0 < x && x1 < x) {
                if y == y1 && (x == x1 || (y == y0 && ((x0 <= x && x <= x1) || (x1 <= x && x <= x0)))) { return 0 }
                continue
            }
            var dist = (y - y0) * (x1 - x0) - (x - x0) * (y1 - y0)
            if dist == 0 { return 0 }
            if y1 < y0 { dist = -dist }
            if dist > 0 { crossings += 1 }
        }
        return crossings % 2 == 0 ? -1 : 1
    }
}
