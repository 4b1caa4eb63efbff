// SyntheticBags.swift: feature bags in CLAM's layout for tests, examples and the W6 benchmark —
// tissue-like blobs of tiles whose features are one of two types, the classes told apart either by
// the types' spatial arrangement alone (equal proportions) or by their proportions alone.

import Foundation

public enum SyntheticBags {
    public enum Kind: String, Sendable {
        /// "blocks" (each type in one contiguous half) against "checkerboard" (types alternate).
        case arrangement
        /// 30% against 70% of the first type, placed at random.
        case proportion
        /// Both classes in blocks, but "patch" bags hold a small checkerboard region somewhere
        /// (about a seventh of the bag): where the class is decided, written as dataset `truth`
        /// (1 inside the region) so tests can check where a model looks.
        case localized
    }

    public static func classes(_ kind: Kind) -> [String] {
        switch kind {
        case .arrangement: return ["blocks", "checkerboard"]
        case .proportion: return ["few", "many"]
        case .localized: return ["patch", "plain"]
        }
    }

    /// Writes `bagsPerClass` bags of each class as `root/h5_files/bag-NNN.h5` (features float32
    /// `[N, dimension]`, coords int64 `[N, 2]` level-0 x, y of 256-pixel tiles with CLAM's patch
    /// attributes) and `root/labels.csv` (slide_id,label). Each bag is an elliptical blob of about
    /// `tiles` tiles at a random place; a tile's features are its type's prototype plus noise.
    public static func write(to root: String, kind: Kind, bagsPerClass: Int = 20, tiles: Int = 150, dimension: Int = 32,
                             noise: Double = 0.5, seed: UInt64 = 0) throws {
        try Require.positive(bagsPerClass, "bags_per_class", op: "synthetic_bags")
        try Require.positive(dimension, "dim", op: "synthetic_bags")
        guard tiles >= 4 else { throw CoreError.invalidArgument(op: "synthetic_bags", "tiles must be at least 4, got \(tiles)") }
        _ = try Memory.checkAllocation([tiles, dimension], op: "synthetic_bags")
        var rng = RandomGenerator(seed: seed)
        // Two prototypes, each a random unit vector scaled to length 2.
        let prototypes: [[Float]] = (0..<2).map { _ in
            let v = (0..<dimension).map { _ in rng.nextNormal() }
            let norm = max(1e-9, sqrt(v.reduce(0) { $0 + $1 * $1 }))
            return v.map { Float(2 * $0 / norm) }
        }
        let folder = (root as NSString).appendingPathComponent("h5_files")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var lines = ["slide_id,label"]
        let names = classes(kind)
        for b in 0..<(2 * bagsPerClass) {
            let cls = b % 2
            // An ellipse of about `tiles` grid cells, aspect 1-2, at a random offset.
            let aspect = 1 + rng.nextUniform()
            let ry = sqrt(Double(tiles) / (Double.pi * aspect)), rx = ry * aspect
            let (r0, c0) = (rng.nextInt(0, 200), rng.nextInt(0, 200))
            var cells: [(Int, Int)] = []
            for r in -Int(ry) - 1...Int(ry) + 1 {
                for c in -Int(rx) - 1...Int(rx) + 1 where Double(r * r) / (ry * ry) + Double(c * c) / (rx * rx) <= 1 {
                    cells.append((r, c))
                }
            }
            var types = [Int](repeating: 0, count: cells.count)
            var truth = [Int](repeating: 0, count: cells.count)
            switch kind {
            case .localized:
                // Blocks everywhere; a "patch" bag (class 0) gets a checkerboard disc around a random tile.
                types = halves(cells, &rng)
                if cls == 0 {
                    let centre = cells[rng.nextInt(0, cells.count)]
                    let radius2 = Double(cells.count) / 7 / Double.pi
                    for (i, cell) in cells.enumerated() {
                        let dr = Double(cell.0 - centre.0), dc = Double(cell.1 - centre.1)
                        if dr * dr + dc * dc <= radius2 {
                            truth[i] = 1
                            types[i] = (cell.0 + cell.1 + 1000) % 2
                        }
                    }
                }
            case .arrangement:
                if cls == 0 {
                    types = halves(cells, &rng)
                } else {
                    let phase = rng.nextInt(0, 2)
                    for (i, cell) in cells.enumerated() { types[i] = (cell.0 + cell.1 + phase + 1000) % 2 }
                }
            case .proportion:
                let share = cls == 0 ? 0.3 : 0.7
                let order = cells.indices.shuffled(using: &rng)
                for (rank, i) in order.enumerated() { types[i] = Double(rank) < share * Double(cells.count) ? 0 : 1 }
            }
            var features = [Float](repeating: 0, count: cells.count * dimension)
            var coords = [Int](repeating: 0, count: cells.count * 2)
            for (i, cell) in cells.enumerated() {
                for d in 0..<dimension { features[i * dimension + d] = prototypes[types[i]][d] + Float(noise * rng.nextNormal()) }
                coords[2 * i] = (c0 + cell.1 + 100) * 256
                coords[2 * i + 1] = (r0 + cell.0 + 100) * 256
            }
            let id = String(format: "bag-%03d", b)
            let path = (folder as NSString).appendingPathComponent("\(id).h5")
            try replaceAtomically(path) { tmp in
                let file = try HDF5File(tmp, mode: .create)
                try file.write("features", try Tensor(features, shape: [cells.count, dimension]))
                try file.write("coords", try IntTensor(coords, shape: [cells.count, 2]))
                if kind == .localized { try file.write("truth", IntTensor(truth)) }
                for (k, v) in ["patch_size": H5Attribute.int(256), "patch_level": .int(0), "downsample": .floats([1, 1]), "name": .string(id)] {
                    try file.setAttribute(k, v, on: "coords")
                }
            }
            lines.append("\(id),\(names[cls])")
        }
        try writeAtomically(Data((lines.joined(separator: "\n") + "\n").utf8), to: (root as NSString).appendingPathComponent("labels.csv"))
    }

    /// Types 0 and 1 in two equal halves of the cells, split by a random direction through the
    /// centre at the median.
    static func halves(_ cells: [(Int, Int)], _ rng: inout RandomGenerator) -> [Int] {
        let angle = rng.nextUniform() * 2 * Double.pi
        let order = cells.indices.sorted {
            let p = Double(cells[$0].0) * sin(angle) + Double(cells[$0].1) * cos(angle)
            let q = Double(cells[$1].0) * sin(angle) + Double(cells[$1].1) * cos(angle)
            return p != q ? p < q : $0 < $1
        }
        var types = [Int](repeating: 0, count: cells.count)
        for (rank, i) in order.enumerated() { types[i] = rank < cells.count / 2 ? 0 : 1 }
        return types
    }
}
