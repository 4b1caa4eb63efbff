// Rulebook.swift: per kernel offset, the (input row, output row) pairs a sparse convolution or
// pooling touches — built once from the site hash and cached on the site set.

/// The pairs of one sparse layer: for each of `offsets` kernel offsets, parallel arrays of input
/// and output rows. Within one offset no output row and no input row appears twice, so an offset's
/// pairs can be processed in parallel without races.
public final class Rulebook {
    public let offsets: Int
    /// For a submanifold rulebook, the centre offset maps every site to itself and is left out of
    /// the pair lists (it is one GEMM straight into the output).
    public let centre: Int?
    /// For a submanifold rulebook, the pairs output-major: `neighbours[i * offsets + k]` is the
    /// input row at offset k of output i, or -1. The fused kernels work from this table alone.
    let neighbours: [Int32]?
    /// Total pairs, the centre included.
    public let pairCount: Int
    private var lists: (inputs: [[Int32]], outputs: [[Int32]])?

    /// `inputs[k][p]` feeds `outputs[k][p]` through kernel offset k (outputs in ascending order for
    /// a submanifold rulebook, where they are built from the neighbour table on first use).
    public var inputs: [[Int32]] { pairLists.inputs }
    public var outputs: [[Int32]] { pairLists.outputs }

    init(offsets: Int, inputs: [[Int32]], outputs: [[Int32]], centre: Int?) {
        self.offsets = offsets
        self.centre = centre
        self.neighbours = nil
        self.lists = (inputs, outputs)
        self.pairCount = inputs.reduce(0) { $0 + $1.count }
    }

    init(submanifold table: [Int32], offsets: Int, pairCount: Int) {
        self.offsets = offsets
        self.centre = offsets / 2
        self.neighbours = table
        self.pairCount = pairCount
    }

    /// Built on first use and kept; like the site set's rulebook cache, not safe to build from two
    /// threads at once (a site set serves one layer call at a time).
    var pairLists: (inputs: [[Int32]], outputs: [[Int32]]) {
        if let l = lists { return l }
        let l = Self.pairLists(table: neighbours ?? [], offsets: offsets, centre: centre)
        lists = l
        return l
    }

    /// Offset-major pair lists from an output-major table, in output order, one offset per task;
    /// the centre's list is left empty.
    static func pairLists(table: [Int32], offsets k2: Int, centre: Int?) -> (inputs: [[Int32]], outputs: [[Int32]]) {
        let n = table.count / max(k2, 1)
        let lists = UnsafeMutablePointer<(ins: [Int32], outs: [Int32])>.allocate(capacity: k2)
        lists.initialize(repeating: ([], []), count: k2)
        defer { lists.deinitialize(count: k2); lists.deallocate() }
        table.withUnsafeBufferPointer { t in
            Parallel.forEach(k2) { k in
                guard k != centre else { return }
                var ins: [Int32] = [], outs: [Int32] = []
                for i in 0..<n where t[i * k2 + k] >= 0 {
                    ins.append(t[i * k2 + k])
                    outs.append(Int32(i))
                }
                lists[k] = (ins, outs)
            }
        }
        return ((0..<k2).map { lists[$0].ins }, (0..<k2).map { lists[$0].outs })
    }

    /// Whether most (site, offset) slots hold a pair: then one implicit GEMM over gathered
    /// neighbourhoods beats a GEMM per offset with its gather and scatter (on the BLAS path; the
    /// fused kernels read the neighbour table for sparse and dense maps alike).
    var isDense: Bool {
        guard let n = neighbours, !n.isEmpty else { return false }
        return Self.isDense(pairs: pairCount, slots: n.count)
    }

    static func isDense(pairs: Int, slots: Int) -> Bool { Double(pairs) >= 0.4 * Double(slots) }
}

extension SiteSet {
    /// The rulebook of a submanifold convolution with an odd `filter`: offset k = filter * (dr + r)
    /// + (dc + r) (first coordinate slowest, as SparseConvNet) pairs the site at (row + dr, col + dc)
    /// with the output at (row, col).
    public func submanifoldRulebook(filter: Int) -> Rulebook {
        let key = "subm\(filter)"
        if let r = rulebooks[key] { return r }
        let half = filter / 2, k2 = filter * filter, n = count
        let (h, w) = spatialSize
        // Output-major neighbour table, filled in parallel. The neighbour relation is symmetric
        // (site j at offset k of site i means i is at offset k2 - 1 - k of j), so only the offsets
        // after the centre are looked up and each hit fills both entries: half the hash probes,
        // which are memory-latency bound. No slot is written twice: a hit writes slot (i, k) with
        // k after the centre, and slot (j, k2 - 1 - k), whose site j and mirrored offset determine i.
        let centre = k2 / 2
        // Each offset's (row, column) step, computed once rather than divided out per probe.
        let dr = (0..<k2).map { $0 / filter - half }, dc = (0..<k2).map { $0 % filter - half }
        var table = [Int32](repeating: -1, count: n * k2)
        // Neighbours found after the centre, per piece of 2,048 sites (summed in order).
        var hits = [Int](repeating: 0, count: (n + 2047) / 2048)
        // On a sparse map (under a quarter of the cells hold a site) most lookups find nothing:
        // a filter in the cache answers those without touching the hash table.
        let cells = Double(h) * Double(w) * Double(max(1, batchSize))
        let filter = Double(n) < 0.25 * cells
            ? SiteFilter(keys: n) { siteKey(Int(self.rows[$0]), Int(self.cols[$0]), Int(self.batches[$0])) } : nil
        rows.withUnsafeBufferPointer { rp in cols.withUnsafeBufferPointer { cp in batches.withUnsafeBufferPointer { bp in
            table.withUnsafeMutableBufferPointer { tp in hits.withUnsafeMutableBufferPointer { hp in
                let t = tp.baseAddress!, hash = self.hash
                Parallel.forRanges(n, grain: 2048) { range in
                    var found = 0
                    defer { hp[range.lowerBound / 2048] = found }
                    // The lookups, less those the filter rules out (true neighbours and a few
                    // false positives pass), then their probes, which miss the cache for random
                    // sites: each fetches the slot of the one a few ahead.
                    withUnsafeTemporaryAllocation(of: (key: UInt64, site: Int32, offset: Int32).self,
                                                  capacity: max(1, range.count * (k2 - 1 - centre))) { buffer in
                        let queue = buffer.baseAddress!
                        var m = 0
                        for i in range {
                            let r = Int(rp[i]), c = Int(cp[i]), b = Int(bp[i])
                            t[i * k2 + centre] = Int32(i)
                            for k in (centre + 1)..<k2 {
                                let rr = r + dr[k], cc = c + dc[k]
                                guard rr >= 0 && rr < h && cc >= 0 && cc < w else { continue }
                                let key = siteKey(rr, cc, b)
                                if filter?.mayContain(key) ?? true { queue[m] = (key, Int32(i), Int32(k)); m += 1 }
                            }
                        }
                        for q in 0..<m {
                            if q + hashLookahead < m { hash.prefetch(queue[q + hashLookahead].key) }
                            let j = hash.find(queue[q].key)
                            if j >= 0 {
                                let i = Int(queue[q].site), k = Int(queue[q].offset)
                                t[i * k2 + k] = j
                                t[Int(j) * k2 + (k2 - 1 - k)] = Int32(i)
                                found += 1
                            }
                        }
                    }
                }
            } }
        } } }
        // Every site with itself, and each hit both ways.
        let book = Rulebook(submanifold: table, offsets: k2, pairCount: n + 2 * hits.reduce(0, +))
        rulebooks[key] = book
        return book
    }

    /// Output sites and rulebook of a strided convolution or pooling (no padding): output (o_r, o_c)
    /// covers inputs o*stride + (a, b), 0 <= a, b < filter; offset k = filter * a + b. The output map
    /// has (size - filter) / stride + 1 rows and columns; output sites appear in order of their first
    /// contributing input.
    public func stridedRulebook(filter: Int, stride: Int) throws -> (SiteSet, Rulebook) {
        let key = "f\(filter)s\(stride)"
        if let r = strided[key] { return r }
        let outRows = (spatialSize.rows - filter) / stride + 1, outCols = (spatialSize.cols - filter) / stride + 1
        guard spatialSize.rows >= filter, spatialSize.cols >= filter else {
            throw CoreError.shapeMismatch(op: "sparse_conv", "a \(spatialSize.rows) x \(spatialSize.cols) map is smaller than the \(filter) x \(filter) filter")
        }
        let outHash = SiteHash(capacity: count)
        var oRows: [Int32] = [], oCols: [Int32] = [], oBatch: [Int32] = []
        var inputs = [[Int32]](repeating: [], count: filter * filter), outputs = inputs
        for i in 0..<count {
            let r = Int(rows[i]), c = Int(cols[i]), bt = Int(batches[i])
            for a in 0..<filter where (r - a) >= 0 && (r - a) % stride == 0 {
                let orow = (r - a) / stride
                if orow >= outRows { continue }
                for b in 0..<filter where (c - b) >= 0 && (c - b) % stride == 0 {
                    let ocol = (c - b) / stride
                    if ocol >= outCols { continue }
                    let o = outHash.insert(siteKey(orow, ocol, bt), Int32(oRows.count))
                    if Int(o) == oRows.count {
                        oRows.append(Int32(orow)); oCols.append(Int32(ocol)); oBatch.append(Int32(bt))
                    }
                    inputs[filter * a + b].append(Int32(i))
                    outputs[filter * a + b].append(o)
                }
            }
        }
        let out = SiteSet(rows: oRows, cols: oCols, batches: oBatch, spatialSize: (outRows, outCols), batchSize: batchSize,
                          hash: outHash)
        let result = (out, Rulebook(offsets: filter * filter, inputs: inputs, outputs: outputs, centre: nil))
        strided[key] = result
        return result
    }
}
