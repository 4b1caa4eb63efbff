// Rulebook.swift: per kernel offset, the (input row, output row) pairs a sparse convolution or
// pooling touches — built once from the site hash and cached on the site set.

/// The pairs of one sparse layer: for each of `offsets` kernel offsets, parallel arrays of input
/// and output rows. Within one offset no output row and no input row appears twice, so an offset's
/// pairs can be processed in parallel without races.
public final class Rulebook {
    public let offsets: Int
    /// `inputs[k][p]` feeds `outputs[k][p]` through kernel offset k.
    public let inputs, outputs: [[Int32]]
    /// For a submanifold rulebook, the centre offset maps every site to itself and is left out of
    /// the pair lists (it is one GEMM straight into the output).
    public let centre: Int?

    init(offsets: Int, inputs: [[Int32]], outputs: [[Int32]], centre: Int?) {
        self.offsets = offsets
        self.inputs = inputs
        self.outputs = outputs
        self.centre = centre
    }

    /// Total pairs, the centre included.
    public var pairCount: Int { inputs.reduce(0) { $0 + $1.count } + (centre == nil ? 0 : countForCentre) }
    var countForCentre = 0
}

extension SiteSet {
    /// The rulebook of a submanifold convolution with an odd `filter`: offset k = filter * (dr + r)
    /// + (dc + r) (first coordinate slowest, as SparseConvNet) pairs the site at (row + dr, col + dc)
    /// with the output at (row, col).
    public func submanifoldRulebook(filter: Int) -> Rulebook {
        let key = "subm\(filter)"
        if let r = rulebooks[key] { return r }
        let half = filter / 2, k2 = filter * filter
        let centre = k2 / 2
        // Split the sites into fixed blocks, build each block's pairs in parallel, then join in
        // block order: the same rulebook whatever the thread count.
        let n = count, block = 4096
        let blocks = (n + block - 1) / block
        var partIn = [[[Int32]]](repeating: [], count: blocks), partOut = partIn
        partIn.withUnsafeMutableBufferPointer { pin in
            partOut.withUnsafeMutableBufferPointer { pout in
                let pinBase = pin.baseAddress!, poutBase = pout.baseAddress!
                Parallel.forEach(blocks) { b in
                    var ins = [[Int32]](repeating: [], count: k2), outs = ins
                    for i in (b * block)..<min(n, (b + 1) * block) {
                        let r = Int(rows[i]), c = Int(cols[i]), bt = Int(batches[i])
                        for dr in -half...half {
                            for dc in -half...half where dr != 0 || dc != 0 {
                                let j = index(row: r + dr, col: c + dc, batch: bt)
                                if j >= 0 {
                                    let k = filter * (dr + half) + (dc + half)
                                    ins[k].append(Int32(j))
                                    outs[k].append(Int32(i))
                                }
                            }
                        }
                    }
                    pinBase[b] = ins
                    poutBase[b] = outs
                }
            }
        }
        var inputs = [[Int32]](repeating: [], count: k2), outputs = inputs
        for b in 0..<blocks {
            for k in 0..<k2 {
                inputs[k] += partIn[b][k]
                outputs[k] += partOut[b][k]
            }
        }
        let book = Rulebook(offsets: k2, inputs: inputs, outputs: outputs, centre: centre)
        book.countForCentre = n
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
        var outHash = SiteHash(capacity: count)
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
        let out = SiteSet(rows: oRows, cols: oCols, batches: oBatch, spatialSize: (outRows, outCols), batchSize: batchSize)
        let result = (out, Rulebook(offsets: filter * filter, inputs: inputs, outputs: outputs, centre: nil))
        strided[key] = result
        return result
    }
}
