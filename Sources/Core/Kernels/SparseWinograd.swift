// SparseWinograd.swift: a submanifold 3 x 3 convolution on a densely filled map by Winograd's
// minimal filtering over 2 x 2 tiles of active sites (Lavin & Gray, 2016): 16 products per tile
// where the neighbour table needs up to 36 (one per site and offset). Only tiles holding a site
// are computed, so the memory is proportional to the sites, never to the grid; a missing site
// reads as zero and is never written, which is exactly the submanifold rule.
//
// Forward and input gradient, F(2x2, 3x3): for each tile, V = B^T d B of its 4 x 4 patch of
// rows, M[xi] = V[xi] x U[xi] (16 row products on the AVX2 kernel) and the tile's outputs
// A^T M A. The input gradient is the same over the output gradient, with the kernel mirrored and
// transposed (the neighbour relation is symmetric). Weight gradient, F(3x3, 2x2): per tile the
// 3 x 3 correlation of the input patch with the tile's 2 x 2 output gradient, so
// P[xi] = sum over tiles of V'[xi]^T Gt[xi] (16 outer-product sums) and gradWeight = A'^T P A'.
// Every sum runs in an order fixed by the map, so the bits do not depend on the thread count.

import CKernels

/// The 2 x 2 tiles of a map's sites, with each tile's 4 x 4 patch read from the neighbour table
/// (see `smil_winograd_input` in kernels.h for the layout).
final class WinogradTiles {
    let count: Int
    /// `patch[16 t + 4 a + b]`: the site at (2 ty - 1 + a, 2 tx - 1 + b), or -1.
    let patch: [Int32]
    /// `cells[4 t + 2 i + j]`: the site at (2 ty + i, 2 tx + j), or -1.
    let cells: [Int32]

    init(count: Int, patch: [Int32], cells: [Int32]) {
        (self.count, self.patch, self.cells) = (count, patch, cells)
    }
}

/// The most channels the transforms take (WINO_MAX_CHANNELS in CKernels/winograd_avx2.c).
let winogradMaxChannels = 1024
/// Tiles per block: the block's transformed patches and products stay in the core's L2 cache.
let winogradBlock = 24

extension SiteSet {
    /// The map's tiles for a submanifold 3 x 3 rulebook on these sites when the Winograd route pays
    /// (a tile costs `SparseKernels.winogradTileCost` pairs of the table route), built once and
    /// kept; nil otherwise.
    func winogradTiles(_ book: Rulebook) -> WinogradTiles? {
        // A tile holds at most 4 sites: with fewer pairs per site than a quarter of a tile's
        // cost, no tiling pays, and the tiles are not built.
        let cost = SparseKernels.winogradTileCost, pairs = Double(book.pairCount)
        guard book.offsets == 9, let table = book.neighbours, count > 0, pairs >= cost / 4 * Double(count) else { return nil }
        if let plan = winogradPlan { return Double(plan.count) * cost <= pairs ? plan : nil }
        // Tiles in order of their first site, found through the neighbour table alone (a tile's
        // four cells are within one step of each other): a site owns its tile when no other
        // site of the tile comes before it; a prefix count numbers the owners, and each owner
        // fills its tile's cells and patch.
        let n = count
        var owned = [Int32](repeating: -1, count: n)
        var cells: [Int32] = [], patch: [Int32] = [], tiles = 0
        table.withUnsafeBufferPointer { nbp in rows.withUnsafeBufferPointer { rp in cols.withUnsafeBufferPointer { cp in
            let nb = nbp.baseAddress!
            /// The site at cell (a, b) of site i's tile, or -1: the neighbour one step away, or i.
            @inline(__always) func cell(_ i: Int, _ a: Int, _ b: Int) -> Int32 {
                nb[9 * i + 3 * (a - Int(rp[i] & 1) + 1) + (b - Int(cp[i] & 1) + 1)]
            }
            owned.withUnsafeMutableBufferPointer { ow in
                Parallel.forRanges(n, grain: 4096) { range in
                    for i in range {
                        var first = true
                        for q in 0..<4 {
                            let s = cell(i, q >> 1, q & 1)
                            if s >= 0 && Int(s) < i { first = false }
                        }
                        if first { ow[i] = 0 }
                    }
                }
                for i in 0..<n where ow[i] == 0 {
                    ow[i] = Int32(tiles)
                    tiles += 1
                }
            }
            cells = [Int32](repeating: -1, count: 4 * tiles)
            patch = [Int32](repeating: -1, count: 16 * tiles)
            owned.withUnsafeBufferPointer { ow in cells.withUnsafeMutableBufferPointer { clp in patch.withUnsafeMutableBufferPointer { pt in
                let cl = clp.baseAddress!
                Parallel.forRanges(n, grain: 4096) { range in
                    for site in range where ow[site] >= 0 {
                        let t = Int(ow[site])
                        for q in 0..<4 { cl[4 * t + q] = cell(site, q >> 1, q & 1) }
                        // Patch position (a, b) is the neighbour at offset 3 (a - i) + (b - j) of
                        // any present cell (i, j) whose 3 x 3 neighbourhood covers it; with none,
                        // no output reads it: zero.
                        for a in 0..<4 { for b in 0..<4 {
                            search: for i in max(0, a - 2)...min(1, a) {
                                for j in max(0, b - 2)...min(1, b) {
                                    let s = Int(cl[4 * t + 2 * i + j])
                                    if s >= 0 {
                                        pt[16 * t + 4 * a + b] = nb[9 * s + 3 * (a - i) + (b - j)]
                                        break search
                                    }
                                }
                            }
                        } }
                    }
                }
            } } }
        } } }
        let plan = WinogradTiles(count: tiles, patch: patch, cells: cells)
        winogradPlan = plan
        return Double(tiles) * cost <= pairs ? plan : nil
    }
}

/// The weight `[9, cin, cout]` in the Winograd domain, `[16, cin, cout]`: U = G g G^T for each
/// channel pair's 3 x 3 kernel g, G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]. `mirrored`, the input
/// gradient's kernel, `[16, cout, cin]`: offset 8 - k's matrix transposed (the caller frees it).
func winogradWeight(_ w: UnsafePointer<Float>, cin: Int, cout: Int, mirrored: Bool) -> UnsafeMutablePointer<Float> {
    let size = cin * cout
    let u = UnsafeMutablePointer<Float>.allocate(capacity: 16 * size)
    Parallel.forRanges(cin, grain: max(1, 4096 / max(cout, 1))) { channels in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 21) { scratch in
            let g = scratch.baseAddress!, h = g + 9  // the kernel, then G g (4 x 3)
            for c in channels {
                for o in 0..<cout {
                    let at = c * cout + o, to = mirrored ? o * cin + c : at
                    for k in 0..<9 { g[k] = w[(mirrored ? 8 - k : k) * size + at] }
                    for b in 0..<3 {
                        let g0 = g[b], g1 = g[3 + b], g2 = g[6 + b]
                        h[b] = g0
                        h[3 + b] = 0.5 * (g0 + g1 + g2)
                        h[6 + b] = 0.5 * (g0 - g1 + g2)
                        h[9 + b] = g2
                    }
                    for r in 0..<4 {
                        let h0 = h[3 * r], h1 = h[3 * r + 1], h2 = h[3 * r + 2]
                        u[(4 * r) * size + to] = h0
                        u[(4 * r + 1) * size + to] = 0.5 * (h0 + h1 + h2)
                        u[(4 * r + 2) * size + to] = 0.5 * (h0 - h1 + h2)
                        u[(4 * r + 3) * size + to] = h2
                    }
                }
            }
        }
    }
    return u
}

/// Forward (or, with the mirrored weight, input gradient) over tiles `range`: `target`'s rows at
/// the tiles' sites from `source`'s rows around them, written or (`accumulate`) added to them.
/// `v` and `m` hold a block's 16 x `winogradBlock` rows of `width` and `targetWidth` floats.
func winogradProductBlocks(_ range: Range<Int>, _ tiles: WinogradTiles, source: UnsafePointer<Float>, width: Int,
                           u: UnsafePointer<Float>, target: UnsafeMutablePointer<Float>, targetWidth: Int,
                           bias: UnsafePointer<Float>?, v: UnsafeMutablePointer<Float>, m: UnsafeMutablePointer<Float>,
                           accumulate: Bool = false) {
    let vs = winogradBlock * width, ms = winogradBlock * targetWidth, size = width * targetWidth
    tiles.patch.withUnsafeBufferPointer { patch in tiles.cells.withUnsafeBufferPointer { cells in
        for lo in stride(from: range.lowerBound, to: range.upperBound, by: winogradBlock) {
            let count = Int32(min(winogradBlock, range.upperBound - lo))
            _ = smil_winograd_input(count, patch.baseAddress! + 16 * lo, source, Int32(width), 0, v, vs)
            for xi in 0..<16 {
                _ = smil_rows_gemm(count, Int32(targetWidth), Int32(width), v + xi * vs, nil, Int32(width), u + xi * size,
                                   Int32(targetWidth), m + xi * ms, nil, Int32(targetWidth), 0)
            }
            _ = smil_winograd_output(count, cells.baseAddress! + 4 * lo, m, ms, Int32(targetWidth), bias, target, accumulate ? 1 : 0)
        }
    } }
}

/// Forward submanifold 3 x 3 convolution over the map's tiles: `output` `[n, cout]`.
func submanifoldWinogradForward(_ tiles: WinogradTiles, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, cin: Int, cout: Int) {
    let u = winogradWeight(weight, cin: cin, cout: cout, mirrored: false)
    defer { u.deallocate() }
    Parallel.forRanges(tiles.count, grain: 10 * winogradBlock) { range in
        let v = UnsafeMutablePointer<Float>.allocate(capacity: 16 * winogradBlock * (cin + cout))
        defer { v.deallocate() }
        winogradProductBlocks(range, tiles, source: input, width: cin, u: u, target: output, targetWidth: cout, bias: bias,
                              v: v, m: v + 16 * winogradBlock * cin)
    }
}

/// The weight gradient's tiles are summed in this many segments (fewer for small maps, each at
/// least `winogradSegmentTiles` tiles): partial sums fixed by the map, added in order.
let winogradSegments = 8, winogradSegmentTiles = 20 * winogradBlock

/// Backward of `submanifoldWinogradForward`: `gradInput` `[n, cin]` (if given; written, or added
/// to with `accumulateInput`), `gradWeight` `[9, cin, cout]`, `gradBias` `[cout]` (if given), in
/// one parallel pass over segments of tiles.
func submanifoldWinogradBackward(_ tiles: WinogradTiles, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                 weight: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>?,
                                 gradWeight: UnsafeMutablePointer<Float>, gradBias: UnsafeMutablePointer<Float>?,
                                 n: Int, cin: Int, cout: Int, accumulateInput: Bool = false) {
    if let gb = gradBias { columnSums(gradOutput, rows: n, cols: cout, into: gb) }
    let size = cin * cout, block = winogradBlock
    let u = gradInput == nil ? nil : winogradWeight(weight, cin: cin, cout: cout, mirrored: true)
    defer { u?.deallocate() }
    let blocks = (tiles.count + block - 1) / block
    let segmentTiles = max(winogradSegmentTiles, (blocks + winogradSegments - 1) / winogradSegments * block)
    let segments = (tiles.count + segmentTiles - 1) / segmentTiles
    let partial = UnsafeMutablePointer<Float>.allocate(capacity: segments * 16 * size)
    defer { partial.deallocate() }
    tiles.patch.withUnsafeBufferPointer { patch in tiles.cells.withUnsafeBufferPointer { cells in
        Parallel.forEach(segments) { s in
            let range = (s * segmentTiles)..<min(tiles.count, (s + 1) * segmentTiles)
            let v = UnsafeMutablePointer<Float>.allocate(capacity: 16 * block * (cin + cout))
            defer { v.deallocate() }
            let m = v + 16 * block * cin
            if let gi = gradInput, let u = u {
                // Here the source is cout wide and the target cin: the two halves swap roles.
                winogradProductBlocks(range, tiles, source: gradOutput, width: cout, u: u, target: gi, targetWidth: cin,
                                      bias: nil, v: m, m: v, accumulate: accumulateInput)
            }
            // P[xi] = sum over the segment's tiles of V'[xi]^T Gt[xi].
            let p = partial + s * 16 * size, vs = block * cin, gs = block * cout
            for lo in stride(from: range.lowerBound, to: range.upperBound, by: block) {
                let count = Int32(min(block, range.upperBound - lo))
                _ = smil_winograd_input(count, patch.baseAddress! + 16 * lo, input, Int32(cin), 1, v, vs)
                _ = smil_winograd_tile_kernel(count, cells.baseAddress! + 4 * lo, gradOutput, Int32(cout), m, gs)
                for xi in 0..<16 {
                    _ = smil_outer_gemm(count, Int32(cin), Int32(cout), v + xi * vs, nil, Int32(cin), m + xi * gs, nil,
                                        Int32(cout), p + xi * size, Int32(cout), lo == range.lowerBound ? 0 : 1)
                }
            }
        }
    } }
    // Sum the segments in order (each element on its own, so split over the threads), then
    // gradWeight[3a + b] = (A'^T P A')[a][b] with A'^T = [1 1 1 0; 0 1 -1 0; 0 1 1 1].
    Parallel.forRanges(16 * size, grain: 16384) { r in
        for s in 1..<max(1, segments) {
            let p = partial + s * 16 * size
            for x in r { partial[x] += p[x] }
        }
    }
    let at: [[Float]] = [[1, 1, 1, 0], [0, 1, -1, 0], [0, 1, 1, 1]]
    Parallel.forEach(9) { k in
        let a = k / 3, b = k % 3, out = gradWeight + k * size
        out.update(repeating: 0, count: size)
        for i in 0..<4 where at[a][i] != 0 {
            for j in 0..<4 where at[b][j] != 0 {
                let f = at[a][i] * at[b][j], p = partial + (4 * i + j) * size
                for x in 0..<size { out[x] += f * p[x] }
            }
        }
    }
}
