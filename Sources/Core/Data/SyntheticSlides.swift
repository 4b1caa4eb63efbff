// SyntheticSlides.swift: a built-in dataset whose classes differ only in the spatial arrangement of
// two tile types (equal proportions of each), so order-blind pooling cannot tell them apart and
// a spatially aware model can. Written in the reference layout.

import Foundation

public enum SyntheticSlides {
    /// The two classes: tile types in two solid blocks, or alternating like a checkerboard.
    public static let classes = ["blocks", "checkerboard"]

    /// Writes `slidesPerClass` slides of each class under `root` (slide folders of ROW_COL.png
    /// tiles and labels.csv, no header). Each slide is a `grid` x `grid` patch of tiles (grid even)
    /// at a random place; half its tiles are pink "tissue", half purple "nuclei", in noise.
    public static func write(to root: String, slidesPerClass: Int = 20, grid: Int = 4, tileSize: Int = 32, seed: UInt64 = 0) throws {
        guard grid >= 2, grid % 2 == 0 else { throw CoreError.invalidArgument(op: "synthetic_slides", "grid must be even and at least 2, got \(grid)") }
        var rng = RandomGenerator(seed: seed)
        let fm = FileManager.default
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        var lines: [String] = []
        for s in 0..<(2 * slidesPerClass) {
            let cls = s % 2
            let id = String(format: "synthetic-%03d", s)
            let folder = (root as NSString).appendingPathComponent(id)
            // A slide folder of ours from an earlier run is replaced, never mixed with this one.
            if fm.fileExists(atPath: folder) { try fm.removeItem(atPath: folder) }
            try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let r0 = rng.nextInt(0, 50), c0 = rng.nextInt(0, 50)
            let vertical = rng.nextInt(0, 2) == 0, flip = rng.nextInt(0, 2) == 0
            for r in 0..<grid {
                for c in 0..<grid {
                    var type: Int
                    if cls == 0 { type = (vertical ? c : r) < grid / 2 ? 0 : 1 } else { type = (r + c) % 2 }
                    if flip { type = 1 - type }
                    try ImageIO.writePNG(tile(type: type, size: tileSize, rng: &rng),
                                         to: (folder as NSString).appendingPathComponent("\(r0 + r)_\(c0 + c).png"))
                }
            }
            lines.append("\(id),\(classes[cls])")
        }
        try writeAtomically(Data((lines.joined(separator: "\n") + "\n").utf8), to: (root as NSString).appendingPathComponent("labels.csv"))
    }

    /// A noisy tile of one of two colours.
    static func tile(type: Int, size: Int, rng: inout RandomGenerator) -> Tensor {
        let base: [Float] = type == 0 ? [0.92, 0.62, 0.75] : [0.45, 0.30, 0.65]
        var t = Tensor(uninitializedShape: [3, size, size])
        t.withUnsafeMutableBufferPointer { p in
            for ch in 0..<3 {
                for i in 0..<(size * size) {
                    p[ch * size * size + i] = min(1, max(0, base[ch] + 0.12 * Float(rng.nextNormal())))
                }
            }
        }
        return t
    }
}
