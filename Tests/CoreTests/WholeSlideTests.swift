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
        XCTAssertEqual(try slide.bestLevel(downsample: 64), 2)
        XCTAssertEqual(try slide.bestLevel(downsample: 5), 1)
        XCTAssertEqual(try slide.bestLevel(downsample: 1), 0)
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

/// The image processing under tissue detection, on hand-made cases and against OpenCV itself.
final class TissueProcessingTests: XCTestCase {
    func testSaturationMedianOtsuAndClosingByHand() {
        // Grey, pure red, a half-saturated pink: OpenCV's S = 255 (max - min) / max in 12-bit fixed
        // point: 100 * round(255 * 4096 / 200) + 2048 >> 12 = 127 (not 127.5 rounded up).
        let image = RGBImage(width: 3, height: 1, pixels: [128, 128, 128, 255, 0, 0, 200, 100, 100])
        XCTAssertEqual(Tissue.saturation(image), [0, 255, 127])
        // A 3 x 3 median with replicated borders removes a lone speck and keeps a step edge.
        let speck: [UInt8] = [0, 0, 0, 0, 9, 0, 0, 0, 0]
        XCTAssertEqual(Tissue.medianBlur(speck, width: 3, height: 3, size: 3), [UInt8](repeating: 0, count: 9))
        let step: [UInt8] = [0, 0, 5, 5, 0, 0, 5, 5, 0, 0, 5, 5]
        XCTAssertEqual(Tissue.medianBlur(step, width: 4, height: 3, size: 3), step)
        // Otsu splits two clusters between them.
        let t = Tissue.otsuThreshold([10, 10, 12, 11, 200, 201, 199, 200])
        XCTAssertTrue((12..<199).contains(t), "threshold \(t)")
        // Closing fills a one-pixel gap and keeps the outside empty (2 x 2 square, anchor 1).
        let gap: [UInt8] = [255, 0, 255, 255, 0, 255, 255, 0, 255]
        let closed = Tissue.close(gap, width: 3, height: 3, size: 2)
        XCTAssertEqual(closed[1], 255)
        XCTAssertEqual(closed[4], 255)
    }

    /// Thresholding the medians by counting values above the threshold gives the same mask as the
    /// medians themselves, on any data, sizes and thresholds, borders included.
    func testMedianAboveMatchesMedianThenThreshold() {
        var rng = RandomGenerator(seed: 3)
        for (w, h) in [(1, 1), (5, 3), (17, 11), (40, 2)] {
            let values = (0..<(w * h)).map { _ in UInt8(rng.nextInt(0, 40)) }
            for k in [1, 3, 7, 11] {
                let medians = Tissue.medianBlur(values, width: w, height: h, size: k)
                for t in [0, 8, 20, 39] {
                    XCTAssertEqual(Tissue.medianAbove(values, width: w, height: h, size: k, threshold: t), medians.map { Int($0) > t ? 255 : 0 },
                                   "\(w) x \(h), size \(k), threshold \(t)")
                }
            }
        }
    }

    func testContoursHolesAreasAndPointTestsByHand() {
        // A 5 x 5 block with a 1-pixel hole, and a lone pixel.
        let w = 8, h = 6
        var mask = [UInt8](repeating: 0, count: w * h)
        for y in 0..<5 { for x in 0..<5 { mask[y * w + x] = 1 } }
        mask[2 * w + 2] = 0
        mask[5 * w + 7] = 1
        let c = Tissue.findContours(mask, width: w, height: h)
        XCTAssertEqual(c.points.count, 3)
        let outer = c.points.indices.filter { c.parent[$0] < 0 }
        let holes = c.points.indices.filter { c.parent[$0] >= 0 }
        XCTAssertEqual(outer.count, 2)
        XCTAssertEqual(holes.count, 1)
        let block = outer.first { c.points[$0].count > 1 }!
        XCTAssertEqual(c.parent[holes[0]], block)
        // The block's border runs through the pixel centres 0...4: 16 pixels, area 16.
        XCTAssertEqual(Set(c.points[block]).count, 16)
        XCTAssertEqual(Tissue.contourArea(c.points[block]), 16)
        // The hole's border is its four 4-neighbours, a diamond of area 2 (8-connected foreground
        // needs no corner pixel to go round).
        XCTAssertEqual(Set(c.points[holes[0]]), [Point(2, 1), Point(1, 2), Point(3, 2), Point(2, 3)])
        XCTAssertEqual(Tissue.contourArea(c.points[holes[0]]), 2)
        XCTAssertEqual(c.points[outer.first { c.points[$0].count == 1 }!], [Point(7, 5)])
        // Inside, on the edge, outside.
        let square = [Point(0, 0), Point(4, 0), Point(4, 4), Point(0, 4)]
        XCTAssertEqual(Tissue.pointPolygonTest(square, 2, 2), 1)
        XCTAssertEqual(Tissue.pointPolygonTest(square, 4, 1), 0)
        XCTAssertEqual(Tissue.pointPolygonTest(square, 0, 0), 0)
        XCTAssertEqual(Tissue.pointPolygonTest(square, 5, 2), -1)
        XCTAssertEqual(Tissue.pointPolygonTest(square, 2, 4.5), -1)
    }

    /// Saturation, median, Otsu, closing, contours with their hierarchy, areas and point tests
    /// against cv2 on a real tile and a mask with every kind of shape (holes, an island in a hole,
    /// diagonal 8-connections, one-pixel lines, shapes on the image's edge).
    func testMatchesOpenCV() throws {
        let tilePath = try sharedFile("sample_data/TCGA-A6-5656-01Z-00-DX1.8a8ebf52-8217-4288-8886-7eefa6cdfdca")
        let name = try FileManager.default.contentsOfDirectory(atPath: tilePath).sorted().first { $0.hasSuffix(".png") }!
        let tile = try RGBImage(ImageIO.read(tilePath + "/" + name)).resized(width: 160, height: 120)
        let folder = NSTemporaryDirectory() + "smil-cv-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try ImageIO.writePNG(tile, to: folder + "/tile.png")
        let (w, h) = (40, 30)
        var mask = [UInt8](repeating: 0, count: w * h)
        func fill(_ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int, _ v: UInt8) { for y in y0..<y1 { for x in x0..<x1 { mask[y * w + x] = v } } }
        fill(0, 0, 15, 12, 255); fill(3, 3, 12, 9, 0); fill(6, 5, 9, 7, 255)           // a ring with an island, on the corner
        fill(2, 4, 4, 6, 0)                                                           // a second hole touching the first's ring
        for i in 0..<8 { mask[(16 + i) * w + 20 + i] = 255; mask[(16 + i) * w + 21 + i] = 255 }  // a diagonal band
        for i in 0..<6 { mask[(20 + i) * w + 5 + i] = 255 }                           // a one-pixel diagonal line
        fill(30, 0, 40, 30, 255); fill(33, 10, 36, 14, 0); fill(37, 20, 38, 21, 0)    // edge block, two holes
        mask[28 * w + 2] = 255                                                        // a lone pixel
        try ImageIO.writePNG(RGBImage(width: w, height: h, pixels: mask.flatMap { [$0, $0, $0] }), to: folder + "/mask.png")
        let script = """
        import sys, json
        try:
            import cv2, numpy as np
        except ImportError as e:
            print("NO_CV2", e); sys.exit(0)
        folder = sys.argv[1]
        rgb = cv2.cvtColor(cv2.imread(folder + "/tile.png"), cv2.COLOR_BGR2RGB)
        s = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[:, :, 1]
        med = cv2.medianBlur(s, 7)
        otsu, _ = cv2.threshold(med, 0, 255, cv2.THRESH_OTSU + cv2.THRESH_BINARY)
        _, binary = cv2.threshold(med, 8, 255, cv2.THRESH_BINARY)
        closed = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, np.ones((4, 4), np.uint8))
        mask = cv2.imread(folder + "/mask.png", cv2.IMREAD_GRAYSCALE)
        contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
        out = {"s": s.flatten().tolist(), "med": med.flatten().tolist(), "otsu": int(otsu), "closed": closed.flatten().tolist(),
               "contours": [c.reshape(-1, 2).tolist() for c in contours], "parent": hierarchy[0][:, 3].tolist(),
               "areas": [cv2.contourArea(c) for c in contours],
               "tests": [[cv2.pointPolygonTest(c, (float(x), float(y)), False) for x in range(0, 40, 3) for y in range(0, 30, 2)] for c in contours]}
        print(json.dumps(out))
        """
        let (status, output) = try runPeerPython(script, [folder])
        XCTAssertEqual(status, 0, output)
        if output.hasPrefix("NO_CV2") { throw XCTSkip("skipped: no cv2 in the peers' Python (pip install opencv-python-headless): \(output)") }
        let json = try JSONSerialization.jsonObject(with: Data(output.utf8)) as! [String: Any]

        let s = Tissue.saturation(tile)
        XCTAssertEqual(s, (json["s"] as! [Int]).map(UInt8.init))
        let med = Tissue.medianBlur(s, width: tile.width, height: tile.height, size: 7)
        XCTAssertEqual(med, (json["med"] as! [Int]).map(UInt8.init))
        XCTAssertEqual(Tissue.otsuThreshold(med), json["otsu"] as! Int)
        XCTAssertEqual(Tissue.medianAbove(s, width: tile.width, height: tile.height, size: 7, threshold: 8), med.map { $0 > 8 ? 255 : 0 })
        let closed = Tissue.close(med.map { $0 > 8 ? 255 : 0 }, width: tile.width, height: tile.height, size: 4)
        XCTAssertEqual(closed, (json["closed"] as! [Int]).map(UInt8.init))

        let c = Tissue.findContours(mask, width: w, height: h)
        let cvContours = (json["contours"] as! [[[Int]]]).map { $0.map { Point($0[0], $0[1]) } }
        let cvParent = json["parent"] as! [Int]
        XCTAssertEqual(c.points.count, cvContours.count)
        // Contours are compared as point sets (the start and direction of a border are free), with
        // whether each is a hole and, for holes, which outer border holds them.
        func key(_ points: [Point]) -> [Point] { Array(Set(points)).sorted { ($0.y, $0.x) < ($1.y, $1.x) } }
        let mine = Dictionary(uniqueKeysWithValues: c.points.indices.map { (key(c.points[$0]), $0) })
        for (j, contour) in cvContours.enumerated() {
            guard let i = mine[key(contour)] else { XCTFail("OpenCV's contour \(j) \(contour.prefix(4))... is not among ours"); continue }
            XCTAssertEqual(c.parent[i] < 0, cvParent[j] < 0, "contour \(j): hole or not")
            if cvParent[j] >= 0 { XCTAssertEqual(c.parent[i], mine[key(cvContours[cvParent[j]])], "contour \(j)'s parent") }
            XCTAssertEqual(c.points[i].count, contour.count, "contour \(j): border pixels visited")
            XCTAssertEqual(Tissue.contourArea(c.points[i]), (json["areas"] as! [Double])[j], "contour \(j): area")
            let tests = (json["tests"] as! [[Double]])[j]
            var k = 0
            for x in Swift.stride(from: 0, to: 40, by: 3) {
                for y in Swift.stride(from: 0, to: 30, by: 2) {
                    XCTAssertEqual(Double(Tissue.pointPolygonTest(contour, Double(x), Double(y))), tests[k], "contour \(j) at (\(x), \(y))")
                    k += 1
                }
            }
        }
    }
}

/// Slide files that lie, break or are not slides at all: each is an error naming the file, never a
/// crash or a hang.
final class HostileSlideTests: XCTestCase {
    var folder = ""

    override func setUpWithError() throws {
        folder = NSTemporaryDirectory() + "smil-hostile-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: folder) }

    /// A small, valid generic tiled TIFF (one 512 x 512 level of 256-pixel Deflate tiles) as bytes.
    func validTIFF(quality: Int = 0) throws -> [UInt8] {
        var image = RGBImage(width: 512, height: 512, fill: (200, 120, 170))
        for y in 100..<300 { for x in 50..<400 { image.plot(x, y, (90, 40, 120)) } }
        let path = folder + "/valid.tiff"
        try SlideWriter.write(image, to: path, downsamples: [1], tileSize: 256, quality: quality)
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// The IFD entries of the first directory of a little-endian classic TIFF: tag -> (entry offset, type, count, value).
    func entries(_ b: [UInt8]) -> [Int: (at: Int, type: Int, count: Int, value: Int)] {
        func u16(_ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 }
        func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
        let ifd = u32(4)
        var out: [Int: (Int, Int, Int, Int)] = [:]
        for i in 0..<u16(ifd) {
            let e = ifd + 2 + 12 * i
            out[u16(e)] = (e, u16(e + 2), u32(e + 4), u32(e + 8))
        }
        return out
    }

    func put32(_ b: inout [UInt8], _ o: Int, _ v: Int) { for k in 0..<4 { b[o + k] = UInt8((v >> (8 * k)) & 0xFF) } }
    func put16(_ b: inout [UInt8], _ o: Int, _ v: Int) { for k in 0..<2 { b[o + k] = UInt8((v >> (8 * k)) & 0xFF) } }

    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = folder + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Opening, reading a region, a thumbnail and segmenting: each either works or throws a
    /// CoreError whose message names the file.
    func assertFailsCleanly(_ path: String, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        var failed = false
        do {
            let slide = try WholeSlideImage(path)
            for step in 0..<3 {
                do {
                    switch step {
                    case 0: _ = try slide.readRGB(x: 0, y: 0, level: 0, width: 256, height: 256)
                    case 1: _ = try slide.thumbnail(maxWidth: 64, maxHeight: 64)
                    default: _ = try Tissue.segment(slide)
                    }
                } catch let e as CoreError {
                    failed = true
                    XCTAssertTrue("\(e)".contains(path), "\(what): \(e) does not name the file", file: file, line: line)
                }
            }
        } catch let e as CoreError {
            failed = true
            XCTAssertTrue("\(e)".contains(path), "\(what): \(e) does not name the file", file: file, line: line)
        } catch {
            XCTFail("\(what): not a CoreError: \(error)", file: file, line: line)
        }
        XCTAssertTrue(failed, "\(what): no error at all", file: file, line: line)
    }

    func testNotASlide() throws {
        let text = try write(Array("this is not a slide\n".utf8), "notes.svs")
        XCTAssertThrowsError(try WholeSlideImage(text)) { XCTAssertTrue("\($0)".contains("not a slide OpenSlide can read"), "\($0)") }
        let png = folder + "/tile.png"
        try ImageIO.writePNG(RGBImage(width: 8, height: 8), to: png)
        XCTAssertThrowsError(try WholeSlideImage(png)) { XCTAssertTrue("\($0)".contains(png), "\($0)") }
        XCTAssertThrowsError(try WholeSlideImage(folder + "/missing.svs")) { XCTAssertTrue("\($0)".contains("no such slide file"), "\($0)") }
        XCTAssertThrowsError(try WholeSlideImage(folder)) { XCTAssertTrue("\($0)".contains("is a folder"), "\($0)") }
        let empty = try write([], "empty.tiff")
        XCTAssertThrowsError(try WholeSlideImage(empty))
        // The right magic and nothing after it.
        assertFailsCleanly(try write([0x49, 0x49, 0x2A, 0x00, 0x08, 0x00, 0x00, 0x00], "magic-only.tiff"), "magic only")
    }

    func testTruncated() throws {
        let b = try validTIFF(quality: 90)
        for fraction in [0.1, 0.5, 0.9] {
            let cut = Array(b.prefix(Int(Double(b.count) * fraction)))
            assertFailsCleanly(try write(cut, "truncated-\(fraction).tiff"), "truncated to \(fraction)")
        }
    }

    func testHugeDeclaredDimensions() throws {
        var b = try validTIFF()
        let e = entries(b)
        for tag in [256, 257] {  // ImageWidth, ImageLength
            put16(&b, e[tag]!.at + 2, 4)
            put32(&b, e[tag]!.at + 4, 1)
            put32(&b, e[tag]!.at + 8, 2_000_000_000)
        }
        let path = try write(b, "huge.tiff")
        assertFailsCleanly(path, "2e9 x 2e9 declared")
        // Whatever opens, a read larger than the limit is refused before any allocation.
        if let slide = try? WholeSlideImage(path) {
            XCTAssertThrowsError(try slide.readRGB(x: 0, y: 0, level: 0, width: 1 << 15, height: 1 << 15)) {
                XCTAssertTrue("\($0)".contains("limit"), "\($0)")
            }
        }
    }

    func testTilesThatLieAboutTheirOffsets() throws {
        for (name, quality) in [("deflate", 0), ("jpeg", 90)] {
            let b = try validTIFF(quality: quality)
            let e = entries(b)
            let offsets = e[324]!, counts = e[325]!  // TileOffsets, TileByteCounts: four tiles, arrays elsewhere
            XCTAssertEqual(offsets.count, 4)
            // Past the end of the file.
            var past = b
            for i in 0..<4 { put32(&past, offsets.value + 4 * i, b.count + 1000 * (i + 1)) }
            assertFailsCleanly(try write(past, "past-end-\(name).tiff"), "\(name) tiles past the end")
            // Into the file's header: bytes that are not a compressed tile.
            var header = b
            for i in 0..<4 { put32(&header, offsets.value + 4 * i, 0) }
            assertFailsCleanly(try write(header, "header-\(name).tiff"), "\(name) tiles at the header")
            // Byte counts far beyond the file.
            var long = b
            for i in 0..<4 { put32(&long, counts.value + 4 * i, 0x7FFF_FFFF) }
            assertFailsCleanly(try write(long, "long-\(name).tiff"), "\(name) tile byte counts beyond the file")
        }
    }
}

/// CLAM patch files written, read back through the HDF5 C API, and read by h5py as CLAM reads them.
final class PatchFileTests: XCTestCase {
    func testRoundTripThroughTheHDF5API() throws {
        let path = NSTemporaryDirectory() + "smil-patches-\(getpid()).h5"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let coords = try IntTensor([512, 512, 768, 512, 512, 768, 1 << 40, 3], shape: [4, 2])
        let attrs: [String: H5Attribute] = ["patch_size": .int(256), "patch_level": .int(0), "downsample": .floats([1, 1]),
                                            "downsampled_level_dim": .ints([5120, 4096]), "level_dim": .ints([5120, 4096]),
                                            "name": .string("slide-é"), "save_path": .string("/tmp/x")]
        try PatchFile(coords: coords, attributes: attrs).write(to: path)
        do {
            let file = try HDF5File(path)
            XCTAssertEqual(try file.datasetNames, ["coords"])
            let (shape, isFloat) = try file.shape("coords")
            XCTAssertEqual(shape, [4, 2])
            XCTAssertFalse(isFloat)
            XCTAssertEqual(try file.readInts("coords"), coords)
            XCTAssertEqual(try file.readFloats("coords").shape, [4, 2])
            XCTAssertEqual(try file.attributes(of: "coords"), attrs)
        }
        XCTAssertEqual(try PatchFile.read(path).coords, coords)

        // Appending grows the first dimension (the dataset is chunked with an unlimited first axis).
        do {
            let more = try HDF5File(path, mode: .readWrite)
            try more.append("coords", try IntTensor([7, 8], shape: [1, 2]))
            try more.write("features", try Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]))
            XCTAssertEqual(try more.readInts("coords").shape, [5, 2])
            XCTAssertEqual(try more.readFloats("features").scalars, [1, 2, 3, 4, 5, 6])
            XCTAssertThrowsError(try more.readInts("features")) { XCTAssertTrue("\($0)".contains("floating-point"), "\($0)") }
            XCTAssertThrowsError(try more.readFloats("nothing")) { XCTAssertTrue("\($0)".contains("no dataset nothing"), "\($0)") }
        }

        // What CLAM's extract_features_fp.py reads, read by h5py.
        let script = """
        import sys
        try:
            import h5py
        except ImportError as e:
            print("NO_H5PY", e); sys.exit(0)
        f = h5py.File(sys.argv[1], "r")
        d = f["coords"]
        print(d.dtype, d.shape, d.maxshape, d[0].tolist(), d[4].tolist(), int(d.attrs["patch_size"]), int(d.attrs["patch_level"]),
              d.attrs["name"], list(d.attrs["level_dim"]), f["features"].dtype)
        """
        let (status, output) = try runPeerPython(script, [path])
        XCTAssertEqual(status, 0, output)
        if output.hasPrefix("NO_H5PY") { throw XCTSkip("skipped: no h5py in the peers' Python: \(output)") }
        XCTAssertEqual(output.trimmingCharacters(in: .whitespacesAndNewlines),
                       "int64 (5, 2) (None, 2) [512, 512] [7, 8] 256 0 slide-é [np.int64(5120), np.int64(4096)] float32")
    }

    func testBadFiles() throws {
        let path = NSTemporaryDirectory() + "smil-not-h5-\(getpid()).h5"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("plain text".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try PatchFile.read(path)) { XCTAssertTrue("\($0)".contains("\(path): not an HDF5 file"), "\($0)") }
        XCTAssertThrowsError(try PatchFile.read(path + ".missing")) { XCTAssertTrue("\($0)".contains("no such HDF5 file"), "\($0)") }
        let empty = try HDF5File(path, mode: .create)
        try empty.write("features", Tensor.zeros([2, 2]))
        XCTAssertThrowsError(try PatchFile.read(path)) { XCTAssertTrue("\($0)".contains("no coords dataset"), "\($0)") }
        XCTAssertThrowsError(try PatchFile(coords: IntTensor([1, 2, 3]), attributes: [:]).write(to: path)) {
            XCTAssertTrue("\($0)".contains("[N, 2]"), "\($0)")
        }
    }
}

/// SlideDataset over a folder of slide files: its own tiling cached, CLAM's labels, clear errors.
final class SlideFileDatasetTests: XCTestCase {
    func testTilesItselfCachesAndReadsTheCacheBack() throws {
        let tiles = try WholeSlideTests.tissueTiles()
        let folder = NSTemporaryDirectory() + "smil-slide-dataset-\(getpid())"
        try? FileManager.default.removeItem(atPath: folder)
        try FileManager.default.createDirectory(atPath: folder + "/slides", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let block = [".......", ".#####.", ".#####.", ".#####.", ".#####.", "......."]
        for (i, name) in ["s-0", "s-1", "s-2"].enumerated() {
            try SlideWriter.write(try SlideWriter.mosaic(Array(tiles[i...]), layout: block), to: folder + "/slides/\(name).svs",
                                  downsamples: [1, 4, 16], quality: 80, mpp: 0.5)
        }
        // CLAM's three-column labels, one slide left out of them.
        try "case_id,slide_id,label\nc0,s-0,tumor\nc1,s-1,normal\n".write(toFile: folder + "/labels.csv", atomically: true, encoding: .utf8)
        setenv("XDG_CACHE_HOME", folder + "/cache", 1)
        defer { unsetenv("XDG_CACHE_HOME") }
        let data = try SlideDataset(root: folder + "/slides", labels: folder + "/labels.csv", tilesPerSlide: 4)
        XCTAssertEqual(data.slides.map(\.id), ["s-0", "s-1"])
        XCTAssertEqual(data.classes, ["normal", "tumor"])
        XCTAssertEqual(data.slides.map(\.tileCount), [80, 80])
        var rng = RandomGenerator(seed: 1)
        let sample = try data.sample(0, rng: &rng)
        XCTAssertEqual(sample.tiles.shape, [4, 3, 256, 256])
        XCTAssertEqual(sample.label, 1)
        // Coordinates in tile units: 256-pixel tiles of the slots 1-5 across (tiles 2-11) and 1-4 down (2-9).
        for k in 0..<4 {
            XCTAssertTrue((2...9).contains(Int(sample.coords[k, 0])) && (2...11).contains(Int(sample.coords[k, 1])), "\(sample.coords)")
        }
        // The tile read is the slide's pixels there.
        let (row, col) = (Int(sample.coords[0, 0]), Int(sample.coords[0, 1]))
        let direct = try WholeSlideImage(folder + "/slides/s-0.svs").readRegion(x: col * 256, y: row * 256, level: 0, width: 256, height: 256)
        XCTAssertEqual(try sample.tiles.slice(dim: 0, start: 0, end: 1).reshaped([3, 256, 256]).scalars, direct.scalars)

        // The tiling was cached as patch files; a cached file is what a second dataset reads.
        let cacheRoot = folder + "/cache/smil/patches"
        let cacheFolder = cacheRoot + "/" + (try FileManager.default.contentsOfDirectory(atPath: cacheRoot)).first!
        let cached = try FileManager.default.contentsOfDirectory(atPath: cacheFolder).sorted()
        XCTAssertEqual(cached.count, 2)
        XCTAssertTrue(cached[0].hasPrefix("s-0-") && cached[0].hasSuffix(".h5"), "\(cached)")
        var file = try PatchFile.read(cacheFolder + "/" + cached[0])
        file.coords = try IntTensor([512, 512, 768, 512], shape: [2, 2])
        try file.write(to: cacheFolder + "/" + cached[0])
        let again = try SlideDataset(root: folder + "/slides", labels: folder + "/labels.csv", tilesPerSlide: 4)
        XCTAssertEqual(again.slides.map(\.tileCount), [2, 80])
    }

    func testSlideWithoutTissueIsAnErrorNamingIt() throws {
        let folder = NSTemporaryDirectory() + "smil-slide-blank-\(getpid())"
        try? FileManager.default.removeItem(atPath: folder)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        for name in ["a", "b"] {
            try SlideWriter.write(RGBImage(width: 1024, height: 1024), to: folder + "/\(name).tiff", downsamples: [1, 4], quality: 80)
        }
        try "a,x\nb,y\n".write(toFile: folder + "/labels.csv", atomically: true, encoding: .utf8)
        var options = SlideTilingOptions()
        options.patches = folder + "/patches"
        XCTAssertThrowsError(try SlideDataset(root: folder, slideTiling: options)) {
            XCTAssertTrue("\($0)".contains("a.tiff: no tissue tiles found"), "\($0)")
        }
    }
}
