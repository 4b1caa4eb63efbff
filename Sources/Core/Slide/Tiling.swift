// Tiling.swift: the tiles of a slide that lie on tissue — CLAM's process_contours (candidates on a
// grid over each region's bounding box, kept by a contour test and not centred in a hole), at a
// level or at a resolution in microns per pixel.

import Foundation

/// How a candidate tile is tested against a tissue contour (CLAM's contour_fn).
public enum ContourTest: String, CaseIterable, Sendable {
    /// Any of four points (the centre +- a quarter tile) inside or on the contour.
    case fourPoint = "four_pt"
    /// All four of those points.
    case fourPointHard = "four_pt_hard"
    /// The tile's centre.
    case center
    /// The tile's top-left corner.
    case basic
}

/// Where and how big tiles are read: `readSize` pixels square at `level`, covering `extent`
/// level-0 pixels, then resized to `outputSize` (equal to `readSize` unless a resolution was asked).
public struct TileGeometry: Equatable, Sendable {
    public var level: Int
    public var readSize: Int
    public var outputSize: Int
    /// Level-0 pixels a tile spans (CLAM's ref_patch_size: readSize x the level's integer downsample).
    public var extent: Int
    /// Level-0 pixels between tile origins.
    public var stride: Int
    /// The level's downsample as CLAM stores it.
    public var downsample: (x: Double, y: Double)

    public static func == (a: TileGeometry, b: TileGeometry) -> Bool {
        a.level == b.level && a.readSize == b.readSize && a.outputSize == b.outputSize && a.extent == b.extent
            && a.stride == b.stride && a.downsample == b.downsample
    }

    /// Tiles of `size` pixels at `level`, or at `mpp` microns per pixel (read at the nearest level
    /// that is at least as fine and resized, as Slideflow does); `step` pixels apart at the output
    /// resolution (`size` by default: no overlap).
    public init(slide: WholeSlideImage, size: Int, level: Int? = nil, mpp: Double? = nil, step: Int? = nil) throws {
        try Require.positive(size, "size", op: "tile_coords")
        if let s = step { try Require.positive(s, "step", op: "tile_coords") }
        let step = step ?? size
        let readStep: Int
        if let target = mpp {
            guard level == nil else { throw CoreError.invalidArgument(op: "tile_coords", "give level or mpp, not both") }
            guard target > 0, target.isFinite else { throw CoreError.invalidArgument(op: "tile_coords", "mpp must be positive, got \(target)") }
            guard let base = slide.mpp else {
                throw CoreError.file(path: slide.path, "the slide records no microns per pixel (openslide.mpp-x), so mpp: \(target) cannot be honoured; give level: instead")
            }
            let factor = target / base.x
            // The finest level whose downsample does not exceed the factor (tiny rounding forgiven).
            let chosen = try slide.bestLevel(downsample: factor * (1 + 1e-6))
            let ds = slide.levelDownsamples[chosen]
            (self.level, readSize) = (chosen, max(1, Int((Double(size) * factor / ds).rounded())))
            readStep = max(1, Int((Double(step) * factor / ds).rounded()))
        } else {
            let l = level ?? 0
            try slide.checkLevel(l, op: "tile_coords")
            (self.level, readSize, readStep) = (l, size, step)
        }
        outputSize = size
        downsample = slide.axisDownsample(self.level)
        extent = readSize * Int(downsample.x)
        stride = readStep * Int(downsample.x)
        guard extent > 0, stride > 0 else { throw CoreError.invalidArgument(op: "tile_coords", "tiles of \(size) pixels are empty at level \(self.level)") }
    }
}

public enum Tiling {
    /// The level-0 `(x, y)` of every tile on tissue, sorted by y then x, each once.
    /// `padding` (CLAM's use_padding) lets tiles overhang the slide's right and bottom edges.
    /// `align` puts every region's grid on one slide-wide grid of `stride` (origin 0, 0), so tile
    /// coordinates divided by the stride are whole map positions; CLAM starts each region's grid at
    /// its bounding box instead (`align: false` gives its coordinates exactly).
    public static func coordinates(_ segmentation: TissueSegmentation, geometry g: TileGeometry, slideSize: (width: Int, height: Int),
                                   test: ContourTest = .fourPoint, padding: Bool = true, align: Bool = true) -> [Point] {
        var found = Set<Point>()
        for region in segmentation.regions {
            guard var bx0 = region.contour.map(\.x).min(), let bx1 = region.contour.map(\.x).max(),
                  var by0 = region.contour.map(\.y).min(), let by1 = region.contour.map(\.y).max() else { continue }
            if align {
                bx0 = bx0 / g.stride * g.stride
                by0 = by0 / g.stride * g.stride
            }
            var stopX = bx1 + 1, stopY = by1 + 1
            if !padding {
                stopX = min(stopX, slideSize.width - g.extent + 1)
                stopY = min(stopY, slideSize.height - g.extent + 1)
            }
            guard stopX > bx0, stopY > by0 else { continue }
            for y in Swift.stride(from: by0, to: stopY, by: g.stride) {
                for x in Swift.stride(from: bx0, to: stopX, by: g.stride) {
                    if found.contains(Point(x, y)) { continue }
                    if inside(region, x: x, y: y, extent: g.extent, test: test) { found.insert(Point(x, y)) }
                }
            }
        }
        return found.sorted { $0.y != $1.y ? $0.y < $1.y : $0.x < $1.x }
    }

    /// CLAM's isInContours: the contour test passes and the tile's centre is not strictly inside
    /// a hole.
    static func inside(_ region: TissueRegion, x: Int, y: Int, extent: Int, test: ContourTest) -> Bool {
        let cx = x + extent / 2, cy = y + extent / 2
        let shift = Int(Double(extent / 2) * 0.5)
        func on(_ px: Int, _ py: Int) -> Bool { Tissue.pointPolygonTest(region.contour, Double(px), Double(py)) >= 0 }
        let pass: Bool
        switch test {
        case .basic: pass = on(x, y)
        case .center: pass = on(cx, cy)
        case .fourPoint, .fourPointHard:
            let corners = shift > 0 ? [(cx - shift, cy - shift), (cx + shift, cy + shift), (cx + shift, cy - shift), (cx - shift, cy + shift)] : [(cx, cy)]
            pass = test == .fourPoint ? corners.contains { on($0.0, $0.1) } : corners.allSatisfy { on($0.0, $0.1) }
        }
        guard pass else { return false }
        let hx = Double(x) + Double(extent) / 2, hy = Double(y) + Double(extent) / 2
        return !region.holes.contains { Tissue.pointPolygonTest($0, hx, hy) > 0 }
    }
}

extension Tiling {
    /// Reads one tile as the model sees it: `readSize` pixels at the geometry's level, resized to
    /// `outputSize` when they differ.
    public static func readTile(_ slide: WholeSlideImage, at p: Point, geometry g: TileGeometry) throws -> RGBImage {
        let image = try slide.readRGB(x: p.x, y: p.y, level: g.level, width: g.readSize, height: g.readSize)
        return g.readSize == g.outputSize ? image : image.resized(width: g.outputSize, height: g.outputSize)
    }

    /// CLAM's blank-tile tests: white when the mean HSV saturation is below `white`, black when
    /// every channel's mean is below `black`. Each tile is read, so this costs a pass over them.
    public static func isBlank(_ tile: RGBImage, white: Int?, black: Int?) -> Bool {
        if let w = white {
            let s = Tissue.saturation(tile)
            if Double(s.reduce(0) { $0 + Int($1) }) / Double(max(1, s.count)) < Double(w) { return true }
        }
        if let b = black {
            var sums = [0, 0, 0]
            for i in 0..<(tile.width * tile.height) { for k in 0..<3 { sums[k] += Int(tile.pixels[3 * i + k]) } }
            let n = Double(max(1, tile.width * tile.height))
            if sums.allSatisfy({ Double($0) / n < Double(b) }) { return true }
        }
        return false
    }

    /// The grid position (row, column) of a tile in tile units: its coordinate over the stride.
    public static func gridPosition(_ p: Point, geometry g: TileGeometry) -> (row: Int, col: Int) {
        (Int((Double(p.y) / Double(g.stride)).rounded(.down)), Int((Double(p.x) / Double(g.stride)).rounded(.down)))
    }
}
