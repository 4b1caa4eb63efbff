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

/// A subcommand's arguments, read front to back: flags with values, and the other words. Bad
/// values end the process with a message naming the command and the flag.
struct CommandLineOptions {
    let command: String, usage: String
    let arguments: [String]
    var index = 0

    init(_ command: String, _ arguments: [String], usage: String) {
        self.command = command
        self.arguments = arguments
        self.usage = usage
    }

    /// The next argument, or nil at the end.
    mutating func next() -> String? {
        guard index < arguments.count else { return nil }
        defer { index += 1 }
        return arguments[index]
    }

    mutating func value(_ flag: String) -> String {
        guard let v = next() else { fail("smil \(command): \(flag) needs a value\n\n\(usage)") }
        return v
    }

    mutating func int(_ flag: String, min lo: Int = 0) -> Int {
        let v = value(flag)
        guard let n = Int(v), n >= lo else { fail("smil \(command): \(flag) needs a whole number of at least \(lo), got \(v)") }
        return n
    }

    mutating func positive(_ flag: String) -> Double {
        let v = value(flag)
        guard let x = Double(v), x > 0, x.isFinite else { fail("smil \(command): \(flag) needs a positive number, got \(v)") }
        return x
    }

    func unknown(_ flag: String) -> Never { fail("smil \(command): unknown option \(flag)\n\n\(usage)") }
}

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
    var o = CommandLineOptions("tile", arguments, usage: tileUsage)
    while let a = o.next() {
        switch a {
        case "-o", "--output": output = o.value(a)
        case "--size": options.size = o.int(a, min: 1)
        case "--level": options.level = o.int(a)
        case "--mpp": options.mpp = o.positive(a)
        case "--step": options.step = o.int(a, min: 1)
        case "--preset": preset = o.value(a)
        case "--seg-level": segLevel = o.int(a)
        case "--sthresh": sthresh = o.int(a)
        case "--otsu": otsu = true
        case "--contour-fn":
            let v = o.value(a)
            guard let t = ContourTest(rawValue: v) else { fail("smil tile: --contour-fn must be one of \(ContourTest.allCases.map(\.rawValue).joined(separator: ", ")), got \(v)") }
            options.test = t
        case "--white": options.whiteThreshold = o.int(a)
        case "--black": options.blackThreshold = o.int(a)
        case "--png": options.writePNG = true
        case "--workers": workers = o.int(a, min: 1)
        case "-h", "--help": print(tileUsage); return 0
        default:
            if a.hasPrefix("-") { o.unknown(a) }
            slides.append(a)
        }
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
