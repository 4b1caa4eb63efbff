// WholeSlideTests.swift: slides the tests write themselves (pyramidal tiled TIFFs of sample tiles
// in a known pattern) read back through OpenSlide, segmented, tiled, and saved as CLAM patch files.

import XCTest
import Foundation
@testable import Core
import TestSupport

final class WholeSlideTests: XCTestCase {
    /// Slots of 512 pixels: a 7 x 5 tissue block with a 3 x 2 hole, and an isolated one-slot speck.
    static let layout = [
        "..........",
        ".#######..",
        ".##...##..",
        ".##...##..",
        ".#######..",
        ".#######..",
        "..........",
        ".........#",
    ]
    static let slot = 512

    static var folder: String = {
        let f = NSTemporaryDirectory() + "smil-wsi-tests-\(getpid())"
        try? FileManager.default.createDirectory(atPath: f, withIntermediateDirectories: true)
        return f
    }()

    /// The sample tiles, each blended 35% with an eosin pink so that even their white background
    /// reads as tissue (saturation well above the threshold): the mask's edges are then the slots'
    /// edges, while the tiles keep their real texture.
    static func tissueTiles() throws -> [RGBImage] {
        let root = try sharedFile("sample_data")
        var chosen: [RGBImage] = []
        let fm = FileManager.default
        for slide in try fm.contentsOfDirectory(atPath: root).sorted() where !slide.hasSuffix(".csv") {
            for name in try fm.contentsOfDirectory(atPath: root + "/" + slide).sorted() {
                var image = try RGBImage(ImageIO.read(root + "/" + slide + "/" + name))
                guard image.width == slot, image.height == slot else { continue }
                let pink: [Double] = [200, 110, 170]
                for i in image.pixels.indices { image.pixels[i] = UInt8((0.65 * Double(image.pixels[i]) + 0.35 * pink[i % 3]).rounded()) }
                chosen.append(image)
            }
        }
        return chosen
    }

    static var cache: [String: String] = [:]
    static var mosaicImage: RGBImage?

    /// The test slide, written once per run: `jpeg` (Aperio, JPEG Q90, MPP 0.5) or `lossless`
    /// (generic TIFF, Deflate).
    static func slide(_ kind: String) throws -> (path: String, image: RGBImage) {
        if mosaicImage == nil {
            let tiles = try tissueTiles()
            guard tiles.count >= 8 else { throw XCTSkip("sample_data has too few all-tissue tiles (\(tiles.count))") }
            mosaicImage = try SlideWriter.mosaic(tiles, layout: layout)
        }
        let image = mosaicImage!
        if let p = cache[kind] { return (p, image) }
        let path = folder + "/\(kind == "jpeg" ? "aperio-slide.svs" : "generic-slide.tiff")"
        if kind == "jpeg" {
            try SlideWriter.write(image, to: path, downsamples: [1, 4, 16], tileSize: 256, quality: 90, mpp: 0.5, magnification: 20)
        } else {
            try SlideWriter.write(image, to: path, downsamples: [1, 4, 16], tileSize: 256, quality: 0)
        }
        cache[kind] = path
        return (path, image)
    }

    /// The level-0 tiles of `size` that lie in `#` slots other than the speck.
    static func expectedTiles(size: Int) -> Set<Point> {
        var s = Set<Point>()
        for (r, line) in layout.enumerated() {
            for (c, ch) in line.enumerated() where ch == "#" && !(r == 7 && c == 9) {
                for dy in Swift.stride(from: 0, to: slot, by: size) {
                    for dx in Swift.stride(from: 0, to: slot, by: size) { s.insert(Point(c * slot + dx, r * slot + dy)) }
                }
            }
        }
        return s
    }

    func testAperioSlideProperties() throws {
        let (path, _) = try Self.slide("jpeg")
        let slide = try WholeSlideImage(path)
        XCTAssertEqual(slide.vendor, "aperio")
        XCTAssertEqual(slide.levelCount, 3)
        XCTAssertEqual(slide.dimensions.width, 5120)
        XCTAssertEqual(slide.dimensions.height, 4096)
        XCTAssertEqual(slide.levelDimensions.map(\.width), [5120, 1280, 320])
        XCTAssertEqual(slide.levelDownsamples, [1, 4, 16])
        XCTAssertEqual(slide.mpp?.x, 0.5)
        XCTAssertEqual(slide.mpp?.y, 0.5)
        XCTAssertEqual(slide.magnification, 20)
        XCTAssertEqual(slide.associatedImageNames, ["thumbnail"])
        XCTAssertEqual(slide.bestLevel(downsample: 64), 2)
        XCTAssertEqual(slide.bestLevel(downsample: 5), 1)
        XCTAssertEqual(slide.bestLevel(downsample: 1), 0)
        XCTAssertEqual(slide.properties["aperio.AppMag"], "20")
        XCTAssertEqual(slide.slideID, "aperio-slide")
        let thumb = try slide.thumbnail(maxWidth: 200, maxHeight: 200)
        XCTAssertEqual(thumb.width, 200)
        XCTAssertEqual(thumb.height, 160)
    }

    func testReadRegionIsExactOnLosslessAndCloseOnJPEG() throws {
        let (lossless, image) = try Self.slide("lossless")
        let slide = try WholeSlideImage(lossless)
        XCTAssertEqual(slide.vendor, "generic-tiff")
        XCTAssertNil(slide.mpp)
        // A region across tile boundaries, and one overhanging the slide's corner (white there).
        let region = try slide.readRGB(x: 700, y: 900, level: 0, width: 300, height: 200)
        XCTAssertEqual(region, image.cropped(x: 700, y: 900, width: 300, height: 200))
        let corner = try slide.readRGB(x: 5000, y: 4000, level: 0, width: 256, height: 256)
        XCTAssertEqual(corner.cropped(x: 0, y: 0, width: 120, height: 96), image.cropped(x: 5000, y: 4000, width: 120, height: 96))
        XCTAssertTrue(corner.cropped(x: 120, y: 0, width: 136, height: 256).pixels.allSatisfy { $0 == 255 })
        // Level 1 holds the 4x area-resampled image.
        let small = try slide.readRGB(x: 0, y: 0, level: 1, width: 1280, height: 1024)
        XCTAssertEqual(small, image.resized(width: 1280, height: 1024))
        let t = try slide.readRegion(x: 512, y: 512, level: 0, width: 4, height: 2)
        XCTAssertEqual(t.shape, [3, 2, 4])
        XCTAssertEqual(t[0, 0, 0], Float(image.pixels[3 * (512 * 5120 + 512)]) / 255)

        let (jpeg, _) = try Self.slide("jpeg")
        let j = try WholeSlideImage(jpeg).readRGB(x: 512, y: 512, level: 0, width: 512, height: 512)
        let truth = image.cropped(x: 512, y: 512, width: 512, height: 512)
        var total = 0.0
        for i in j.pixels.indices { total += abs(Double(j.pixels[i]) - Double(truth.pixels[i])) }
        let mean = total / Double(j.pixels.count)
        XCTAssertLessThan(mean, 6, "mean absolute JPEG error \(mean)")
        XCTAssertGreaterThan(mean, 0)
    }

    func testTissueTilesAreThoseLaidDown() throws {
        for kind in ["jpeg", "lossless"] {
            let (path, _) = try Self.slide(kind)
            let slide = try WholeSlideImage(path)
            let seg = try Tissue.segment(slide)
            XCTAssertEqual(seg.level, 2)
            XCTAssertEqual(seg.regions.count, 1, "\(kind): the speck is filtered, the block kept")
            XCTAssertEqual(seg.regions.first?.holes.count, 1, "\(kind): the hole is kept")
            let g = try TileGeometry(slide: slide, size: 256)
            let coords = Tiling.coordinates(seg, geometry: g, slideSize: slide.dimensions)
            XCTAssertEqual(Set(coords), Self.expectedTiles(size: 256), kind)
            XCTAssertEqual(coords.count, 29 * 4)
            XCTAssertEqual(coords, coords.sorted { $0.y != $1.y ? $0.y < $1.y : $0.x < $1.x })
        }
    }
}
