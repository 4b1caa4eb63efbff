// SiteSet.swift: the active sites of a sparse map — integer (row, col, batch) coordinates with an
// open-addressing hash from coordinate to row index, and the rulebooks built on them, cached.

import CKernels

/// Packs a site into one 64-bit key: 24 bits each for row and column, 16 for the batch index.
@inline(__always) func siteKey(_ row: Int, _ col: Int, _ batch: Int) -> UInt64 {
    UInt64(truncatingIfNeeded: batch) << 48 | UInt64(truncatingIfNeeded: row) << 24 | UInt64(truncatingIfNeeded: col)
}

/// The largest row or column a site may have (24 bits), and the most samples in a batch (16 bits).
public let maxSiteCoordinate = (1 << 24) - 1, maxSparseBatch = 1 << 16

/// How many sites ahead loops over random sites prefetch their hash slots.
let hashLookahead = 12

/// An open-addressing hash table from site keys to row indices (linear probing, power-of-two size,
/// multiplicative hashing): several times faster than `Dictionary` for the rulebook's lookups.
/// Each slot packs the key and its row in one 128-bit entry, so a probe touches one cache line.
final class SiteHash {
    private let slots: UnsafeMutablePointer<(key: UInt64, value: Int64)>
    private let mask: Int
    static let empty = UInt64.max

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = .allocate(capacity: size)
        // 1 MB for 20,000 sites: filled by the compute threads, 16 K slots (256 KB) a piece.
        let s = slots
        Parallel.forRanges(size, grain: 1 << 14) { r in (s + r.lowerBound).initialize(repeating: (SiteHash.empty, -1), count: r.count) }
        mask = size - 1
    }

    deinit { slots.deallocate() }

    /// Hashes (batch, row, column / 8) and adds column % 8, so the 3 x 3 neighbourhood of a site
    /// falls in a few adjacent slots (cache lines) instead of nine random ones, while runs of
    /// occupied slots stay short.
    @inline(__always) private func slot(_ key: UInt64) -> Int {
        let group = key >> 3, lane = Int(truncatingIfNeeded: key & 7)
        return (Int(truncatingIfNeeded: (group &* 0x9E37_79B9_7F4A_7C15) >> 20) &+ lane) & mask
    }

    /// Starts loading the slot where a probe for `key` begins (a miss that a later `find` or
    /// `insert` would otherwise wait on).
    @inline(__always) func prefetch(_ key: UInt64) { smil_prefetch(slots + slot(key)) }

    /// The index stored for `key`, or -1.
    @inline(__always) func find(_ key: UInt64) -> Int32 {
        var i = slot(key)
        while true {
            let e = slots[i]
            if e.key == key { return Int32(truncatingIfNeeded: e.value) }
            if e.key == SiteHash.empty { return -1 }
            i = (i + 1) & mask
        }
    }

    /// Inserts `key -> value` unless present; returns the index now stored for `key`.
    @inline(__always) func insert(_ key: UInt64, _ value: Int32) -> Int32 {
        var i = slot(key)
        while true {
            let e = slots[i]
            if e.key == key { return Int32(truncatingIfNeeded: e.value) }
            if e.key == SiteHash.empty {
                slots[i] = (key, Int64(value))
                return value
            }
            i = (i + 1) & mask
        }
    }
}

/// A Bloom filter over site keys, two bits per key in one 64-bit word (a "blocked" filter: one
/// memory access per test), at least 16 bits per site: a clear bit means no site has the key. On a
/// sparse map most neighbour lookups find nothing; the filter (64 KB for 20,000 sites) answers all
/// but about 1% of those from the cache, where each would be a probe into the hash table in memory.
/// (One bit per key at 8 bits per site let about 7% through: W3a input layer + rulebook 0.70-0.83
/// -> 0.60-0.68 ms, alternating in one process.)
final class SiteFilter {
    private let words: UnsafeMutablePointer<UInt64>
    private let shift: Int

    init(keys n: Int, _ key: (Int) -> UInt64) {
        var bits = 4096
        while bits < 16 * n { bits <<= 1 }
        shift = 64 - (bits / 64).trailingZeroBitCount
        words = .allocate(capacity: bits / 64)
        words.initialize(repeating: 0, count: bits / 64)
        for i in 0..<n {
            let (w, mask) = SiteFilter.position(key(i), shift)
            words[w] |= mask
        }
    }

    deinit { words.deallocate() }

    /// The word of `key` (top bits of one multiplicative hash) and its two bits (top bits of a
    /// second).
    @inline(__always) private static func position(_ key: UInt64, _ shift: Int) -> (Int, UInt64) {
        let w = Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> UInt64(shift))
        let h = (key ^ (key >> 31)) &* 0xBF58_476D_1CE4_E5B9
        return (w, (1 << (h >> 58)) | (1 << ((h >> 52) & 63)))
    }

    /// False only if no site has `key`.
    @inline(__always) func mayContain(_ key: UInt64) -> Bool {
        let (w, mask) = SiteFilter.position(key, shift)
        return words[w] & mask == mask
    }
}

/// The distinct active sites of a sparse map, in a fixed order, with a hash for neighbour lookups.
/// Shared (a class) by every layer that keeps the same sites, so rulebooks are built once.
public final class SiteSet {
    /// Row, column and batch index of each site.
    public let rows, cols, batches: [Int32]
    /// Rows and columns of the map.
    public let spatialSize: (rows: Int, cols: Int)
    /// Number of samples (batch entries) in the map.
    public let batchSize: Int
    let hash: SiteHash
    /// Rulebooks built on these sites, by kind and filter (submanifold) or filter and stride.
    var rulebooks: [String: Rulebook] = [:]
    /// Output sites of strided layers, by filter and stride.
    var strided: [String: (SiteSet, Rulebook)] = [:]
    /// The 2 x 2 tiles of a submanifold 3 x 3 layer on the Winograd route, once looked at.
    var winogradPlan: WinogradTiles?

    public var count: Int { rows.count }

    /// Builds a set from distinct sites (the caller guarantees they are distinct and in range);
    /// `hash`, when given, already maps every site's key to its row.
    init(rows: [Int32], cols: [Int32], batches: [Int32], spatialSize: (Int, Int), batchSize: Int, hash: SiteHash? = nil) {
        self.rows = rows
        self.cols = cols
        self.batches = batches
        self.spatialSize = spatialSize
        self.batchSize = batchSize
        if let hash = hash {
            self.hash = hash
        } else {
            let h = SiteHash(capacity: rows.count)
            for i in 0..<rows.count {
                _ = h.insert(siteKey(Int(rows[i]), Int(cols[i]), Int(batches[i])), Int32(i))
            }
            self.hash = h
        }
    }

    /// The index of the site at (row, col, batch), or -1 (also for coordinates off the map).
    @inline(__always) public func index(row: Int, col: Int, batch: Int) -> Int {
        guard row >= 0, col >= 0, row < spatialSize.rows, col < spatialSize.cols else { return -1 }
        return Int(hash.find(siteKey(row, col, batch)))
    }

    /// The sites as an `[N, 3]` integer tensor of (row, col, batch).
    public var coordinates: IntTensor {
        var flat = [Int](repeating: 0, count: count * 3)
        for i in 0..<count {
            flat[3 * i] = Int(rows[i])
            flat[3 * i + 1] = Int(cols[i])
            flat[3 * i + 2] = Int(batches[i])
        }
        return try! IntTensor(flat, shape: [count, 3])
    }
}
