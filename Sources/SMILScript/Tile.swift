// Tile.swift: `smil tile SLIDE... -o DIR` — CLAM's segmentation and patching from the command line,
// with a progress line per slide on a terminal and plain lines otherwise.

import Foundation
import Core

let tileUsage = """
usage: smil tile SLIDE_OR_FOLDER... -o DIR [options]
  writes DIR/patches/SLIDE.h5 (CLAM's coords + attributes), DIR/stitches/SLIDE.png (a preview with
  tissue contours and tiles) and DIR/process_list.csv; a rerun skips the slides it lists as done.
  --size N          tile size in pixels (default 256)
  --level L         read tiles at level L (default 0)
  --mpp M           read tiles at M microns per pixel (nearest finer level, resized); not with --level
  --step N          pixels between tiles at the tile resolution (default: the size, no overlap)
  --preset NAME     CLAM's segmentation preset: tcga (default), bwh_biopsy, bwh_resection
  --seg-level L     segment at level L (default: the level nearest a 64x downsample)
  --sthresh N       saturation threshold (preset's by default); --otsu for Otsu's threshold
  --contour-fn F    four_pt (default), four_pt_hard, center, basic
  --white N         drop tiles whose mean saturation is below N (reads every tile)
  --black N         drop tiles whose channel means are all below N (reads every tile)
  --png             also write DIR/tiles/SLIDE/ROW_COL.png, the reference layout
  --workers N       slides tiled at once (default 1)
"""

/// The slide files named: files as given, folders searched (not recursively) for slide extensions.
func slideFiles(_ arguments: [String]) throws -> [String] {
    let extensions: Set<String> = ["svs", "tif", "tiff", "ndpi", "vms", "vmu", "scn", "mrxs", "svslide", "bif"]
    var out: [String] = []
    let fm = FileManager.default
    for a in arguments {
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: a, isDirectory: &isDir) else { throw CoreError.file(path: a, "no such slide file or folder") }
        if isDir.boolValue && !a.hasSuffix(".mrxs") {
            let found = try fm.contentsOfDirectory(atPath: a).sorted().filter { extensions.contains(($0 as NSString).pathExtension.lowercased()) }
            if found.isEmpty { throw CoreError.file(path: a, "folder holds no slide files (\(extensions.sorted().joined(separator: ", ")))") }
            out += found.map { (a as NSString).appendingPathComponent($0) }
        } else {
            out.append(a)
        }
    }
    return out
}

func runTile(_ arguments: [String]) -> Int32 {
    var options = TileJobOptions()
    var output: String? = nil, workers = 1, preset = "tcga"
    var slides: [String] = [], sthresh: Int? = nil, segLevel: Int? = nil, otsu = false
    var i = 0
    func value(_ flag: String) -> String {
        guard i + 1 < arguments.count else { fail("smil tile: \(flag) needs a value\n\n\(tileUsage)") }
        i += 1
        return arguments[i]
    }
    func int(_ flag: String, min lo: Int = 0) -> Int {
        let v = value(flag)
        guard let n = Int(v), n >= lo else { fail("smil tile: \(flag) needs a whole number of at least \(lo), got \(v)") }
        return n
    }
    while i < arguments.count {
        let a = arguments[i]
        switch a {
        case "-o", "--output": output = value(a)
        case "--size": options.size = int(a, min: 1)
        case "--level": options.level = int(a)
        case "--mpp":
            let v = value(a)
            guard let m = Double(v), m > 0 else { fail("smil tile: --mpp needs a positive number, got \(v)") }
            options.mpp = m
        case "--step": options.step = int(a, min: 1)
        case "--preset": preset = value(a)
        case "--seg-level": segLevel = int(a)
        case "--sthresh": sthresh = int(a)
        case "--otsu": otsu = true
        case "--contour-fn":
            let v = value(a)
            guard let t = ContourTest(rawValue: v) else { fail("smil tile: --contour-fn must be one of \(ContourTest.allCases.map(\.rawValue).joined(separator: ", ")), got \(v)") }
            options.test = t
        case "--white": options.whiteThreshold = int(a)
        case "--black": options.blackThreshold = int(a)
        case "--png": options.writePNG = true
        case "--workers": workers = int(a, min: 1)
        case "-h", "--help": print(tileUsage); return 0
        default:
            if a.hasPrefix("-") { fail("smil tile: unknown option \(a)\n\n\(tileUsage)") }
            slides.append(a)
        }
        i += 1
    }
    guard let out = output else { fail("smil tile: give the output folder with -o DIR\n\n\(tileUsage)") }
    guard !slides.isEmpty else { fail("smil tile: give at least one slide file or folder\n\n\(tileUsage)") }
    if options.level != nil && options.mpp != nil { fail("smil tile: give --level or --mpp, not both") }
    do {
        options.tissue = try TissueParameters.preset(preset)
        if let s = sthresh { options.tissue.saturationThreshold = s }
        options.tissue.level = segLevel
        options.tissue.useOtsu = otsu
        let files = try slideFiles(slides)
        let job = try TileJob(output: out, options: options)
        let skipped = files.filter { job.isDone(WholeSlideImage.slideID($0)) }
        if !skipped.isEmpty { print("smil tile: \(skipped.count) of \(files.count) slides already done (\(job.processListPath))") }
        let terminal = isatty(1) != 0
        let printLock = NSLock()
        signal(SIGINT) { _ in Interrupt.request() }
        let started = Date()
        let records = try job.run(files, workers: workers) { e in
            guard terminal, e.phase != "done" else { return }
            printLock.withLock {
                let bar = e.total > 0 ? progressLine(done: e.done, total: e.total, elapsed: 0, loss: nil) : "\r"
                print("\(bar)  \(e.slideID)  \(e.phase)\u{1B}[K", terminator: "")
                fflush(stdout)
            }
        }
        if terminal { print("\r\u{1B}[K", terminator: "") }
        var failed = 0
        for r in records.sorted(by: { $0.slideID < $1.slideID }) {
            switch r.status {
            case .processed: print(String(format: "%@: %d tiles in %.2f s", r.slideID, r.tiles, r.seconds))
            case .noTissue: print("\(r.slideID): skipped, \(r.message)")
            case .failed: failed += 1; printError("\(r.slideID): failed: \(r.message)")
            }
        }
        let total = records.reduce(0) { $0 + $1.tiles }
        print(String(format: "smil tile: %d slides, %d tiles in %.1f s; %@", records.count, total, Date().timeIntervalSince(started), job.processListPath))
        return failed > 0 ? 1 : 0
    } catch CoreError.interrupted {
        printError("smil tile: interrupted; finished slides are in the process list, a rerun goes on from there")
        return 130
    } catch {
        printError("smil tile: \(error)")
        return 1
    }
}
