// TileCommandTests.swift: `smil tile` on slides written from the sample tiles, then the reference
// pipeline (examples/reference.smil) on its --png output.

import XCTest
import Foundation

final class TileCommandTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let shared = ProcessInfo.processInfo.environment["SMIL_SHARED"] ?? repository.deletingLastPathComponent().appendingPathComponent("shared").path

    func testTileThenReferenceScriptOnItsTiles() throws {
        let samples = Self.shared + "/sample_data"
        guard FileManager.default.fileExists(atPath: samples) else {
            print("skipped: \(samples) is not here (tests that read ../shared run in CI, which has it)")
            throw XCTSkip("no sample_data")
        }
        let dir = NSTemporaryDirectory() + "smil-tile-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir + "/slides", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Two slides of stained sample tiles (a 7 x 5 block with a hole: 116 tiles of 256; a 5 x 4
        // block, above the tcga preset's 16-reference-patch minimum: 80), a white slide and a file
        // that is no slide.
        let script = """
        let root = "\(samples)"
        let pink = tensor([200.0, 110.0, 170.0]).reshape([3, 1, 1]) / 255.0
        var tiles = []
        for slide in list_dir(root) {
            if slide.endswith(".csv") { continue }
            for name in list_dir("{root}/{slide}") { tiles.append(read_image("{root}/{slide}/{name}") * 0.65 + pink * 0.35) }
        }
        let holed = ["..........", ".#######..", ".##...##..", ".##...##..", ".#######..", ".#######..", "..........", ".........#"]
        let block = [".......", ".#####.", ".#####.", ".#####.", ".#####.", "......."]
        write_slide("\(dir)/slides/holed.svs", mosaic(tiles, holed), mpp: 0.5)
        write_slide("\(dir)/slides/block.svs", mosaic(tiles[7:], block), mpp: 0.5)
        write_slide("\(dir)/slides/blank.tiff", full([3, 2048, 2048], 1.0), downsamples: [1, 4, 16])
        """
        let (ws, _, we) = try runSmil(["-e", script])
        XCTAssertEqual(ws, 0, we)
        try Data("not a slide".utf8).write(to: URL(fileURLWithPath: dir + "/slides/broken.svs"))

        let (status, out, err) = try runSmil(["tile", dir + "/slides", "-o", dir + "/out", "--png", "--workers", "2"])
        XCTAssertEqual(status, 1, "a failed slide makes the status 1\n\(out)\n\(err)")
        XCTAssertTrue(out.contains("holed: 116 tiles"), out)
        XCTAssertTrue(out.contains("block: 80 tiles"), out)
        XCTAssertTrue(out.contains("blank: skipped, no tissue found"), out)
        XCTAssertTrue(err.contains("broken: failed") && err.contains("broken.svs"), err)
        let list = try String(contentsOfFile: dir + "/out/process_list.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(list.first, "slide_id,path,status,tiles,seconds,message")
        XCTAssertEqual(list.dropFirst().map { $0.split(separator: ",")[0] + ":" + $0.split(separator: ",")[2] },
                       ["blank:no_tissue", "block:processed", "broken:failed", "holed:processed"])
        let fm = FileManager.default
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: dir + "/out/patches").sorted(), ["block.h5", "holed.h5"])
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: dir + "/out/stitches").sorted(), ["blank.png", "block.png", "holed.png"])
        // The reference layout: ROW_COL in tile units (256-pixel tiles, the block from slot 1 = tile 2).
        let holedTiles = try fm.contentsOfDirectory(atPath: dir + "/out/tiles/holed").sorted()
        XCTAssertEqual(holedTiles.count, 116)
        XCTAssertTrue(holedTiles.contains("2_2.png") && holedTiles.contains("11_15.png") && !holedTiles.contains("4_6.png"), "\(holedTiles.prefix(8))")
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: dir + "/out/tiles/block").count, 80)

        // A rerun skips what is done and tries the failed slide again.
        let (s2, out2, err2) = try runSmil(["tile", dir + "/slides", "-o", dir + "/out", "--png"])
        XCTAssertEqual(s2, 1)
        XCTAssertTrue(out2.contains("3 of 4 slides already done"), out2)
        XCTAssertTrue(err2.contains("broken: failed"), err2)
        XCTAssertFalse(out2.contains("holed: 116"), out2)

        // The seed's whole pipeline on the tiles cut from the slides.
        try "slide_id,label\nholed,a\nblock,b\n".write(toFile: dir + "/out/tiles/labels.csv", atomically: true, encoding: .utf8)
        let reference = Self.repository.appendingPathComponent("examples/reference.smil").path
        let (s3, out3, err3) = try runSmil([reference, dir + "/out/tiles", "2", "64"], environment: ["SMIL_THREADS": "2"])
        XCTAssertEqual(s3, 0, err3)
        XCTAssertTrue(out3.contains("2 slides, classes [\"a\", \"b\"]"), out3)
        XCTAssertTrue(out3.contains("Epoch   2/2"), out3)
    }

    func testTileUsageErrors() throws {
        let (s1, _, e1) = try runSmil(["tile", "nothing.svs"])
        XCTAssertEqual(s1, 1)
        XCTAssertTrue(e1.contains("-o DIR"), e1)
        let (s2, _, e2) = try runSmil(["tile", "nothing.svs", "-o", NSTemporaryDirectory() + "smil-tile-none"])
        XCTAssertEqual(s2, 1)
        XCTAssertTrue(e2.contains("nothing.svs: no such slide file or folder"), e2)
        let (s3, _, e3) = try runSmil(["tile", "x.svs", "-o", "o", "--level", "0", "--mpp", "0.5"])
        XCTAssertEqual(s3, 1)
        XCTAssertTrue(e3.contains("--level or --mpp, not both"), e3)
        let (s4, _, e4) = try runSmil(["tile", "x.svs", "-o", "o", "--contour-fn", "round"])
        XCTAssertEqual(s4, 1)
        XCTAssertTrue(e4.contains("four_pt, four_pt_hard, center, basic"), e4)
    }
}
