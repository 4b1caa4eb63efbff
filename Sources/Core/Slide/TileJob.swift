// TileJob.swift: `smil tile` — each slide segmented and tiled into CLAM's layout (patches/SLIDE.h5),
// with a stitched preview, optional PNG tiles in the reference layout, and a process list that a
// rerun reads to skip what is done. Slides run in parallel; one that fails is recorded, not fatal.

import Foundation

public struct TileJobOptions: Sendable {
    public var size = 256
    public var level: Int? = nil
    public var mpp: Double? = nil
    public var step: Int? = nil
    public var tissue = TissueParameters()
    public var test: ContourTest = .fourPoint
    /// Also write every tile as `tiles/SLIDE/ROW_COL.png`.
    public var writePNG = false
    /// Drop tiles whose mean saturation is below this (CLAM's white_thresh), or nil.
    public var whiteThreshold: Int? = nil
    /// Drop tiles whose channel means are all below this (CLAM's black_thresh), or nil.
    public var blackThreshold: Int? = nil
    /// The longest side of the stitched preview, in pixels.
    public var previewSize = 1600

    public init() {}
}

/// What happened to one slide.
public struct TileJobRecord: Sendable, Equatable {
    public enum Status: String, Sendable { case processed, noTissue = "no_tissue", failed }
    public var slideID: String
    public var path: String
    public var status: Status
    public var tiles: Int
    public var seconds: Double
    public var message: String
}

/// Progress of one slide: `phase` ("segment", "tiles", "png", "done"), and counts within it.
public struct TileJobEvent: Sendable {
    public var slideID: String
    public var phase: String
    public var done: Int
    public var total: Int
}

public final class TileJob: @unchecked Sendable {
    public let output: String
    public let options: TileJobOptions
    let lock = NSLock()
    /// Held across taking the list and renaming it into place, so a later list never loses to an earlier one.
    let writeLock = NSLock()
    var records: [String: TileJobRecord] = [:]

    public var processListPath: String { (output as NSString).appendingPathComponent("process_list.csv") }
    public func patchPath(_ id: String) -> String { (output as NSString).appendingPathComponent("patches/\(id).h5") }
    public func previewPath(_ id: String) -> String { (output as NSString).appendingPathComponent("stitches/\(id).png") }
    public func tileFolder(_ id: String) -> String { (output as NSString).appendingPathComponent("tiles/\(id)") }

    public init(output: String, options: TileJobOptions) throws {
        self.output = output
        self.options = options
        for sub in ["patches", "stitches"] + (options.writePNG ? ["tiles"] : []) {
            try FileManager.default.createDirectory(atPath: (output as NSString).appendingPathComponent(sub), withIntermediateDirectories: true)
        }
        records = try Self.readProcessList(processListPath)
    }

    /// Slides recorded as done (processed with their patch file present, or without tissue).
    public func isDone(_ id: String) -> Bool {
        guard let r = lock.withLock({ records[id] }) else { return false }
        switch r.status {
        case .processed: return FileManager.default.fileExists(atPath: patchPath(id)) && (!options.writePNG || FileManager.default.fileExists(atPath: tileFolder(id)))
        case .noTissue: return true
        case .failed: return false
        }
    }

    /// Tiles every slide not already done, `workers` at a time. Returns this run's records (skipped
    /// slides are not in it); the process list holds every slide's.
    public func run(_ slides: [String], workers: Int = 1, progress: @escaping @Sendable (TileJobEvent) -> Void = { _ in }) throws -> [TileJobRecord] {
        let ids = slides.map(WholeSlideImage.slideID)
        if let dup = Dictionary(grouping: zip(ids, slides), by: \.0).first(where: { $0.value.count > 1 }) {
            throw CoreError.invalidArgument(op: "tile", "two slides share the id \"\(dup.key)\": \(dup.value.map(\.1).joined(separator: ", "))")
        }
        let todo = slides.filter { !isDone(WholeSlideImage.slideID($0)) }
        let results = Results(count: todo.count)
        let next = Counter()
        let group = DispatchGroup()
        for _ in 0..<max(1, min(workers, todo.count)) {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                while true {
                    let i = next.take()
                    guard i < todo.count, !Interrupt.isRequested else { return }
                    let record = self.tile(todo[i], progress: progress)
                    results.set(i, record)
                    self.lock.withLock { self.records[record.slideID] = record }
                    try? self.writeProcessList()
                }
            }
        }
        group.wait()
        try Interrupt.check()
        try writeProcessList()
        return results.all
    }

    final class Results: @unchecked Sendable {
        let lock = NSLock()
        var items: [TileJobRecord?]
        init(count: Int) { items = Array(repeating: nil, count: count) }
        func set(_ i: Int, _ r: TileJobRecord) { lock.withLock { items[i] = r } }
        var all: [TileJobRecord] { lock.withLock { items.compactMap { $0 } } }
    }

    final class Counter: @unchecked Sendable {
        let lock = NSLock()
        var value = 0
        func take() -> Int { lock.withLock { defer { value += 1 }; return value } }
    }

    /// One slide, start to end; every failure becomes a record naming it.
    func tile(_ path: String, progress: @Sendable (TileJobEvent) -> Void) -> TileJobRecord {
        let id = WholeSlideImage.slideID(path)
        let start = Date()
        func record(_ status: TileJobRecord.Status, _ tiles: Int, _ message: String) -> TileJobRecord {
            TileJobRecord(slideID: id, path: path, status: status, tiles: tiles, seconds: Date().timeIntervalSince(start), message: message)
        }
        do {
            progress(TileJobEvent(slideID: id, phase: "segment", done: 0, total: 1))
            let slide = try WholeSlideImage(path)
            let seg = try Tissue.segment(slide, options.tissue)
            let g = try TileGeometry(slide: slide, size: options.size, level: options.level, mpp: options.mpp, step: options.step)
            var coords = Tiling.coordinates(seg, geometry: g, slideSize: slide.dimensions, test: options.test)
            if options.whiteThreshold != nil || options.blackThreshold != nil {
                var kept: [Point] = []
                for (i, p) in coords.enumerated() {
                    try Interrupt.check()
                    if !Tiling.isBlank(try Tiling.readTile(slide, at: p, geometry: g), white: options.whiteThreshold, black: options.blackThreshold) { kept.append(p) }
                    progress(TileJobEvent(slideID: id, phase: "tiles", done: i + 1, total: coords.count))
                }
                coords = kept
            }
            try writePreview(slide, seg, coords, g, id)
            guard !coords.isEmpty else {
                progress(TileJobEvent(slideID: id, phase: "done", done: 1, total: 1))
                return record(.noTissue, 0, seg.regions.isEmpty ? "no tissue found" : "tissue found but no tile passes the \(options.test.rawValue) test")
            }
            let flat = coords.flatMap { [$0.x, $0.y] }
            try PatchFile(coords: try IntTensor(flat, shape: [coords.count, 2]),
                          attributes: PatchFile.attributes(slide: slide, geometry: g, savePath: (output as NSString).appendingPathComponent("patches")))
                .write(to: patchPath(id))
            if options.writePNG { try writeTiles(slide, coords, g, id, progress) }
            progress(TileJobEvent(slideID: id, phase: "done", done: 1, total: 1))
            return record(.processed, coords.count, "")
        } catch {
            progress(TileJobEvent(slideID: id, phase: "done", done: 1, total: 1))
            return record(.failed, 0, "\(error)")
        }
    }

    /// The tiles as `tiles/SLIDE/ROW_COL.png`, written into a fresh folder renamed into place.
    func writeTiles(_ slide: WholeSlideImage, _ coords: [Point], _ g: TileGeometry, _ id: String, _ progress: @Sendable (TileJobEvent) -> Void) throws {
        let fm = FileManager.default
        let folder = tileFolder(id), partial = folder + ".partial"
        try? fm.removeItem(atPath: partial)
        try fm.createDirectory(atPath: partial, withIntermediateDirectories: true)
        for (i, p) in coords.enumerated() {
            try Interrupt.check()
            let (row, col) = Tiling.gridPosition(p, geometry: g)
            try ImageIO.writePNG(try Tiling.readTile(slide, at: p, geometry: g), to: (partial as NSString).appendingPathComponent("\(row)_\(col).png"))
            progress(TileJobEvent(slideID: id, phase: "png", done: i + 1, total: coords.count))
        }
        if fm.fileExists(atPath: folder) { try fm.removeItem(atPath: folder) }
        try fm.moveItem(atPath: partial, toPath: folder)
    }

    /// CLAM's stitch: a thumbnail with the tissue contours (green), holes (blue) and tiles (outlined).
    func writePreview(_ slide: WholeSlideImage, _ seg: TissueSegmentation, _ coords: [Point], _ g: TileGeometry, _ id: String) throws {
        var image = try slide.thumbnail(maxWidth: options.previewSize, maxHeight: options.previewSize)
        let sx = Double(image.width) / Double(slide.dimensions.width), sy = Double(image.height) / Double(slide.dimensions.height)
        for p in coords {
            image.rectangle(x: Int(Double(p.x) * sx), y: Int(Double(p.y) * sy), width: max(2, Int(Double(g.extent) * sx)),
                            height: max(2, Int(Double(g.extent) * sy)), color: (40, 40, 40))
        }
        func draw(_ contour: [Point], _ color: (UInt8, UInt8, UInt8)) {
            guard var last = contour.last else { return }
            for p in contour {
                image.line(Int(Double(last.x) * sx), Int(Double(last.y) * sy), Int(Double(p.x) * sx), Int(Double(p.y) * sy), color: color, thickness: 2)
                last = p
            }
        }
        for r in seg.regions {
            draw(r.contour, (0, 200, 0))
            for h in r.holes { draw(h, (0, 0, 255)) }
        }
        try ImageIO.writePNG(image, to: previewPath(id))
    }

    // MARK: - The process list

    static let header = "slide_id,path,status,tiles,seconds,message"

    static func readProcessList(_ path: String) throws -> [String: TileJobRecord] {
        guard FileManager.default.fileExists(atPath: path) else { return [:] }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw CoreError.file(path: path, "cannot read the process list") }
        var out: [String: TileJobRecord] = [:]
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            if n == 0 && line.hasPrefix("slide_id,") { continue }
            let f = csvFields(String(line))
            guard f.count >= 5, let status = TileJobRecord.Status(rawValue: f[2]), let tiles = Int(f[3]), let seconds = Double(f[4]) else {
                throw CoreError.file(path: path, "line \(n + 1): expected \(header), got \"\(line)\"")
            }
            out[f[0]] = TileJobRecord(slideID: f[0], path: f[1], status: status, tiles: tiles, seconds: seconds, message: f.count > 5 ? f[5] : "")
        }
        return out
    }

    func writeProcessList() throws {
        writeLock.lock()
        defer { writeLock.unlock() }
        let text = lock.withLock {
            ([Self.header] + records.values.sorted { $0.slideID < $1.slideID }.map { r in
                [r.slideID, r.path, r.status.rawValue, String(r.tiles), String(format: "%.3f", r.seconds), r.message].map(csvQuote).joined(separator: ",")
            }).joined(separator: "\n") + "\n"
        }
        try writeAtomically(Data(text.utf8), to: processListPath)
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
func csvQuote(_ s: String) -> String {
    guard s.contains(where: { ",\"\n\r".contains($0) }) else { return s }
    return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"").replacingOccurrences(of: "\n", with: " ") + "\""
}

/// The fields of one CSV line (quotes and doubled quotes handled).
func csvFields(_ line: String) -> [String] {
    var fields: [String] = [], field = "", quoted = false
    var chars = Array(line.trimmingCharacters(in: CharacterSet(charactersIn: "\r")))[...]
    while let c = chars.popFirst() {
        if quoted {
            if c == "\"" {
                if chars.first == "\"" { field.append("\""); chars.removeFirst() } else { quoted = false }
            } else { field.append(c) }
        } else if c == "\"" { quoted = true } else if c == "," { fields.append(field); field = "" } else { field.append(c) }
    }
    fields.append(field)
    return fields
}
