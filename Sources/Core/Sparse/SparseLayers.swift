// SparseLayers.swift: SparseConvNet's layers over SparseTensor — input layer with duplicate
// merging, submanifold and strided convolutions, max pooling, batch norm, ReLU, global pooling.

import Foundation

/// A layer from a sparse map to a sparse map.
open class SparseModule: Module {
    open func forward(_ x: SparseTensor) throws -> SparseTensor {
        throw CoreError.invalidArgument(op: typeName, "this layer does not take a sparse map")
    }

    public func callAsFunction(_ x: SparseTensor) throws -> SparseTensor {
        try Interrupt.check()
        let y = try forward(x)
        ModelSummary.observe(self, "sparse \(shapeString(y.features.shape))")
        return y
    }

    /// Dense tensors are not sparse maps: an error naming the layer.
    public override func forward(_ input: Tensor) throws -> Tensor {
        throw CoreError.invalidArgument(op: typeName, "expects a sparse map (from InputLayer), got a dense tensor of shape \(shapeString(input.shape))")
    }
}

/// How InputLayer merges features of sites given more than once.
public enum DuplicateMode: String, CaseIterable {
    /// Average (SparseConvNet's mode 4).
    case mean
    case sum
    case first
    case last
}

/// Builds a sparse map from coordinates `[N, 3]` (row, col, batch) and features `[N, C]`, merging
/// repeated sites; output sites are in order of first appearance.
public final class InputLayer: Module {
    public let mode: DuplicateMode

    public init(mode: DuplicateMode = .mean) { self.mode = mode }

    public func callAsFunction(_ coords: IntTensor, _ features: Tensor, spatialSize: (Int, Int)? = nil) throws -> SparseTensor {
        try forward(coords, features, spatialSize: spatialSize)
    }

    public func forward(_ coords: IntTensor, _ features: Tensor, spatialSize: (Int, Int)? = nil) throws -> SparseTensor {
        guard coords.rank == 2, coords.shape[1] == 3 else {
            throw CoreError.shapeMismatch(op: "InputLayer", "coordinates must be [N, 3] (row, col, batch), got \(shapeString(coords.shape))")
        }
        let n = coords.shape[0]
        guard features.rank == 2, features.shape[0] == n else {
            throw CoreError.shapeMismatch(op: "InputLayer", "features of shape \(shapeString(features.shape)) do not match \(n) coordinate rows (expected [\(n), C])")
        }
        let c = features.shape[1]
        let cs = coords.scalars
        var maxRow = -1, maxCol = -1, maxBatch = -1
        for i in 0..<n {
            let (r, col, b) = (cs[3 * i], cs[3 * i + 1], cs[3 * i + 2])
            guard r >= 0, col >= 0, b >= 0 else {
                throw CoreError.invalidArgument(op: "InputLayer", "coordinate row \(i) is (\(r), \(col), \(b)): coordinates must be non-negative")
            }
            guard r <= maxSiteCoordinate, col <= maxSiteCoordinate, b < maxSparseBatch else {
                throw CoreError.invalidArgument(op: "InputLayer", "coordinate row \(i) is (\(r), \(col), \(b)): rows and columns go up to \(maxSiteCoordinate), batch indices below \(maxSparseBatch)")
            }
            if let (h, w) = spatialSize, r >= h || col >= w {
                throw CoreError.invalidArgument(op: "InputLayer", "coordinate row \(i) is (\(r), \(col), \(b)), outside the \(h) x \(w) map")
            }
            maxRow = max(maxRow, r); maxCol = max(maxCol, col); maxBatch = max(maxBatch, b)
        }
        let size = spatialSize ?? (maxRow + 1, maxCol + 1)
        // Deduplicate: dst[i] is the output site of input row i, first[s] the input row where
        // site s first appears; the distinct sites' coordinates are copied out afterwards. Raw
        // buffers throughout: array appends and writes checked uniqueness on every site.
        let hash = SiteHash(capacity: n)
        var dst = [Int32](repeating: 0, count: n)
        var m = 0
        var rows: [Int32] = [], cols: [Int32] = [], batches: [Int32] = []
        dst.withUnsafeMutableBufferPointer { dp in
            let d = dp.baseAddress!
            let first = UnsafeMutablePointer<Int32>.allocate(capacity: max(1, n))
            defer { first.deallocate() }
            cs.withUnsafeBufferPointer { cp in
                let c = cp.baseAddress!
                for i in 0..<n {
                    // Random sites miss the cache on every probe: fetch the slot a few sites ahead.
                    if i + hashLookahead < n {
                        let a = 3 * (i + hashLookahead)
                        hash.prefetch(siteKey(c[a], c[a + 1], c[a + 2]))
                    }
                    let o = hash.insert(siteKey(c[3 * i], c[3 * i + 1], c[3 * i + 2]), Int32(m))
                    if Int(o) == m { first[m] = Int32(i); m += 1 }
                    d[i] = o
                }
                func column(_ j: Int) -> [Int32] {
                    [Int32](unsafeUninitializedCapacity: m) { out, count in
                        for s in 0..<m { out[s] = Int32(truncatingIfNeeded: c[3 * Int(first[s]) + j]) }
                        count = m
                    }
                }
                rows = column(0); cols = column(1); batches = column(2)
            }
        }
        let sites = SiteSet(rows: rows, cols: cols, batches: batches, spatialSize: size, batchSize: maxBatch + 1, hash: hash)
        if m == n {
            // No repeated site: every mode passes the features through unchanged.
            return try SparseTensor(sites: sites, features: features)
        }
        // Per input row, its weight in its output site (0 for rows that do not contribute).
        var weightOf = [Float](repeating: 1, count: n)
        switch mode {
        case .sum: break
        case .mean:
            var counts = [Int](repeating: 0, count: m)
            for i in 0..<n { counts[Int(dst[i])] += 1 }
            for i in 0..<n { weightOf[i] = 1 / Float(counts[Int(dst[i])]) }
        case .first, .last:
            var chosen = [Int](repeating: -1, count: m)
            for i in 0..<n where mode == .last || chosen[Int(dst[i])] < 0 { chosen[Int(dst[i])] = i }
            for i in 0..<n { weightOf[i] = chosen[Int(dst[i])] == i ? 1 : 0 }
        }
        var out = Tensor(repeating: 0, shape: [m, c])
        let f = features.detached()
        out.withUnsafeMutableBufferPointer { o in
            f.withUnsafeBufferPointer { src in
                for i in 0..<n where weightOf[i] != 0 {
                    let d = Int(dst[i]) * c, s = i * c, w = weightOf[i]
                    for j in 0..<c { o[d + j] += w * src[s + j] }
                }
            }
        }
        let merged = out.recorded("input_layer", [features]) { g in
            var gf = Tensor(uninitializedShape: [n, c])
            let gp = g.storage.pointer
            gf.withUnsafeMutableBufferPointer { o in
                for i in 0..<n {
                    let d = Int(dst[i]) * c, w = weightOf[i]
                    for j in 0..<c { o[i * c + j] = w * gp[d + j] }
                }
            }
            return [gf]
        }
        return try SparseTensor(sites: sites, features: merged)
    }

    public override var extraDescription: String { "mode=\"\(mode.rawValue)\"" }
}

/// Shared by the sparse convolutions: weight `[filter^2, in, out]`, which also loads from
/// SparseConvNet's `[filter^2, 1, in, out]`.
open class SparseConvolutionBase: SparseModule {
    public let inChannels, outChannels, filter: Int
    public let weight: Parameter
    public let bias: Parameter?

    init(channels inChannels: Int, _ outChannels: Int, filter: Int, bias: Bool, op: String) throws {
        try Require.positive(inChannels, "in_channels", op: op)
        try Require.positive(outChannels, "out_channels", op: op)
        try Require.positive(filter, "filter", op: op)
        let (area, overflow) = filter.multipliedReportingOverflow(by: filter)
        guard !overflow else { throw Memory.tooLarge([filter, filter, inChannels, outChannels], bytes: nil, op: op) }
        try Memory.checkAllocation([area, inChannels, outChannels], op: op)
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.filter = filter
        // SparseConvNet: normal with std sqrt(2 / (in * filter^2)), bias zero.
        let std = (2 / Float(inChannels * filter * filter)).squareRoot()
        weight = Parameter(try Tensor.randn([area, inChannels, outChannels], std: std))
        self.bias = bias ? Parameter(try .zeros([outChannels])) : nil
        super.init()
        registerParameter("weight", weight)
        if let b = self.bias { registerParameter("bias", b) }
    }

    open override func adapt(_ value: AnyTensor, forLocal name: String, expected: [Int], key: String) throws -> AnyTensor {
        if name == "weight", value.shape.count == 4, value.shape[1] == 1,
           [value.shape[0], value.shape[2], value.shape[3]] == expected {
            return .float(try value.asFloat.reshaped(expected))
        }
        return try super.adapt(value, forLocal: name, expected: expected, key: key)
    }

    func convolve(_ x: SparseTensor, rulebook: Rulebook, outSites: SiteSet) throws -> SparseTensor {
        guard x.channels == inChannels else {
            throw CoreError.shapeMismatch(op: typeName, "expects \(inChannels) input channels, got features of shape \(shapeString(x.features.shape))")
        }
        let nIn = x.sites.count, nOut = outSites.count
        let (cin, cout) = (inChannels, outChannels)
        let input = x.features.detached(), w = weight.value.detached(), b = bias?.value.detached()
        let out = Tensor(uninitializedShape: [nOut, cout])
        // Four routes: on the fused kernels, submanifold 3 x 3 layers on densely filled maps by
        // Winograd over 2 x 2 tiles (SparseWinograd.swift), other submanifold rulebooks straight
        // from the neighbour table, sparse or dense map alike; without the fused kernels, dense
        // submanifold rulebooks as one implicit GEMM (BLAS) over gathered neighbourhoods;
        // everything else (strided layers, sparse maps on the BLAS path) offset by offset.
        let table = SparseKernels.apply(cin: cin, cout: cout) ? rulebook.neighbours : nil
        let implicit = table == nil && rulebook.isDense ? rulebook.neighbours : nil
        let tiles = table != nil && SparseKernels.winograd && max(cin, cout) <= winogradMaxChannels
            ? x.sites.winogradTiles(rulebook) : nil
        if let tiles = tiles {
            submanifoldWinogradForward(tiles, input: input.storage.pointer, output: out.storage.pointer, weight: w.storage.pointer,
                                       bias: b?.storage.pointer, cin: cin, cout: cout)
        } else if let nb = implicit {
            submanifoldForwardImplicit(input: input.storage.pointer, output: out.storage.pointer, weight: w.storage.pointer,
                                       bias: b?.storage.pointer, neighbours: nb, n: nOut, offsets: rulebook.offsets, cin: cin, cout: cout)
        } else if let table = table {
            table.withUnsafeBufferPointer { t in
                submanifoldTableProduct(t.baseAddress!, rows: nOut, offsets: rulebook.offsets, dense: rulebook.isDense,
                                        source: input.storage.pointer, width: cin, target: out.storage.pointer,
                                        targetWidth: cout, matrices: w.storage.pointer, bias: b?.storage.pointer, mirrored: false)
            }
        } else {
            sparseConvolutionForward(input: input.storage.pointer, output: out.storage.pointer, weight: w.storage.pointer,
                                     bias: b?.storage.pointer, rulebook: rulebook, nOut: nOut, cin: cin, cout: cout)
        }
        var inputs = [x.features, weight.value]
        if let bias = bias { inputs.append(bias.value) }
        let needInput = x.features.requiresGrad
        let result = out.recorded(typeName, inputs, addingInto: { g, sums in
            // The input gradient goes straight into the sum the engine holds for it, if any.
            let sum = needInput ? sums.take(0) : nil
            let accumulate = sum != nil
            let gi = needInput ? sum ?? Tensor(uninitializedShape: [nIn, cin]) : nil
            let gw = Tensor(uninitializedShape: w.shape)
            let gb = b == nil ? nil : Tensor(uninitializedShape: [cout])
            if let tiles = tiles {
                submanifoldWinogradBackward(tiles, input: input.storage.pointer, gradOutput: g.storage.pointer,
                                            weight: w.storage.pointer, gradInput: gi?.storage.pointer, gradWeight: gw.storage.pointer,
                                            gradBias: gb?.storage.pointer, n: nOut, cin: cin, cout: cout,
                                            accumulateInput: accumulate)
            } else if let nb = implicit {
                submanifoldBackwardImplicit(input: input.storage.pointer, gradOutput: g.storage.pointer, weight: w.storage.pointer,
                                            gradInput: gi?.storage.pointer, gradWeight: gw.storage.pointer, gradBias: gb?.storage.pointer,
                                            neighbours: nb, n: nOut, offsets: rulebook.offsets, cin: cin, cout: cout,
                                            accumulateInput: accumulate)
            } else if let table = table {
                submanifoldBackwardTable(table, input: input.storage.pointer, gradOutput: g.storage.pointer,
                                         weight: w.storage.pointer, gradInput: gi?.storage.pointer,
                                         gradWeight: gw.storage.pointer, gradBias: gb?.storage.pointer, n: nOut,
                                         offsets: rulebook.offsets, dense: rulebook.isDense, cin: cin, cout: cout,
                                         accumulateInput: accumulate)
            } else {
                sparseConvolutionBackward(input: input.storage.pointer, gradOutput: g.storage.pointer, weight: w.storage.pointer,
                                          gradInput: gi?.storage.pointer, gradWeight: gw.storage.pointer, gradBias: gb?.storage.pointer,
                                          rulebook: rulebook, nIn: nIn, nOut: nOut, cin: cin, cout: cout,
                                          accumulateInput: accumulate)
            }
            return b == nil ? [gi, gw] : [gi, gw, gb]
        })
        return try SparseTensor(sites: outSites, features: result)
    }
}

/// Submanifold convolution: outputs exactly at the input's active sites; an inactive neighbour
/// contributes nothing.
public final class SubmanifoldConv2d: SparseConvolutionBase {
    public init(_ inChannels: Int, _ outChannels: Int, filter: Int, bias: Bool = true) throws {
        guard filter > 0, filter % 2 == 1 else {
            throw CoreError.invalidArgument(op: "SubmanifoldConv2d", "filter must be odd and positive, got \(filter)")
        }
        try super.init(channels: inChannels, outChannels, filter: filter, bias: bias, op: "SubmanifoldConv2d")
    }

    public override func forward(_ x: SparseTensor) throws -> SparseTensor {
        try convolve(x, rulebook: x.sites.submanifoldRulebook(filter: filter), outSites: x.sites)
    }

    public override var extraDescription: String { "\(inChannels), \(outChannels), filter=\(filter), bias=\(bias != nil)" }
}

/// Strided convolution (no padding): shrinks the map to (size - filter) / stride + 1; an output site
/// is active where any input in its window is.
public final class SparseConv2d: SparseConvolutionBase {
    public let stride: Int

    public init(_ inChannels: Int, _ outChannels: Int, filter: Int, stride: Int, bias: Bool = false) throws {
        guard filter > 0, stride > 0 else {
            throw CoreError.invalidArgument(op: "SparseConv2d", "filter and stride must be positive, got \(filter) and \(stride)")
        }
        self.stride = stride
        try super.init(channels: inChannels, outChannels, filter: filter, bias: bias, op: "SparseConv2d")
    }

    public override func forward(_ x: SparseTensor) throws -> SparseTensor {
        let (outSites, book) = try x.sites.stridedRulebook(filter: filter, stride: stride)
        return try convolve(x, rulebook: book, outSites: outSites)
    }

    public override var extraDescription: String { "\(inChannels), \(outChannels), filter=\(filter), stride=\(stride)" }
}

/// Max pooling over windows of `size` with `stride` (no padding), on the strided output sites.
public final class SparseMaxPool2d: SparseModule {
    public let size, stride: Int

    public init(_ size: Int, stride: Int? = nil) throws {
        try Require.positive(size, "size", op: "SparseMaxPool2d")
        if let stride { try Require.positive(stride, "stride", op: "SparseMaxPool2d") }
        self.size = size
        self.stride = stride ?? size
    }

    public override func forward(_ x: SparseTensor) throws -> SparseTensor {
        let (outSites, book) = try x.sites.stridedRulebook(filter: size, stride: stride)
        let c = x.channels, nOut = outSites.count, nIn = x.sites.count
        let out = Tensor(uninitializedShape: [nOut, c])
        let argmax = ArgmaxHolder(.allocate(capacity: max(1, nOut * c)))
        sparseMaxPoolForward(input: x.features.storage.pointer, output: out.storage.pointer, argmax: argmax.pointer,
                             rulebook: book, nOut: nOut, channels: c)
        let pooled = out.recorded("sparse_max_pool", [x.features]) { g in
            var gi = Tensor(repeating: 0, shape: [nIn, c])
            let gp = g.storage.pointer, arg = argmax.pointer
            // Split by channel: an input may win several windows, but each channel is one thread's.
            gi.withUnsafeMutableBufferPointer { d in
                let dp = d.baseAddress!
                Parallel.forEach(c) { j in
                    for o in 0..<nOut { dp[Int(arg[o * c + j]) * c + j] += gp[o * c + j] }
                }
            }
            return [gi]
        }
        return try SparseTensor(sites: outSites, features: pooled)
    }

    public override var extraDescription: String { "size=\(size), stride=\(stride)" }
}

/// `max(x, 0)` on the features.
public final class SparseReLU: SparseModule {
    public override func forward(_ x: SparseTensor) throws -> SparseTensor {
        try SparseTensor(sites: x.sites, features: x.features.relu())
    }
}

/// Batch normalisation of the features over all active sites (per channel), with running
/// statistics as BatchNorm2d.
public final class SparseBatchNorm: SparseModule {
    public let norm: BatchNorm2d

    public init(_ channels: Int, eps: Float = 1e-4, momentum: Float = 0.1) throws {
        norm = try BatchNorm2d(channels, eps: eps, momentum: momentum)
        super.init()
        for (name, p) in norm.parameters { registerParameter(name, p) }
        for (name, b) in norm.buffers { registerBuffer(name, b) }
    }

    public override func forward(_ x: SparseTensor) throws -> SparseTensor {
        norm.train(training)
        let n = x.sites.count, c = x.channels
        let y = try norm(x.features.reshaped([n, c, 1, 1]))
        return try SparseTensor(sites: x.sites, features: y.reshaped([n, c]))
    }

    public override var extraDescription: String { "\(norm.numFeatures), eps=\(norm.eps), momentum=\(norm.momentum)" }
}

/// Per-sample pooling of a sparse map into a dense `[batch, C]`; a sample without active sites is
/// an error naming it.
public final class SparseGlobalPool: SparseModule {
    public enum Kind { case average, max }
    public let kind: Kind

    public init(_ kind: Kind) { self.kind = kind }

    public override var typeName: String { kind == .average ? "SparseGlobalAvgPool" : "SparseGlobalMaxPool" }

    /// Pools `x` to `[batch, C]`.
    public func pool(_ x: SparseTensor) throws -> Tensor {
        let b = x.batchSize, c = x.channels, n = x.sites.count
        var counts = [Int](repeating: 0, count: b)
        for i in 0..<n { counts[Int(x.sites.batches[i])] += 1 }
        if let empty = counts.firstIndex(of: 0) {
            throw CoreError.invalidArgument(op: typeName, "sample \(empty) of the batch has no active site to pool")
        }
        let f = x.features.detached(), batches = x.sites.batches, kind = self.kind
        var out = Tensor(repeating: kind == .average ? 0 : -.infinity, shape: [b, c])
        var arg = [Int32](repeating: -1, count: b * c)
        out.withUnsafeMutableBufferPointer { o in
            f.withUnsafeBufferPointer { src in
                for i in 0..<n {
                    let s = Int(batches[i])
                    for j in 0..<c {
                        let v = src[i * c + j]
                        if kind == .average { o[s * c + j] += v / Float(counts[s]) }
                        else if arg[s * c + j] < 0 || v > o[s * c + j] { o[s * c + j] = v; arg[s * c + j] = Int32(i) }
                    }
                }
            }
        }
        return out.recorded(typeName, [x.features]) { g in
            var gi = Tensor(repeating: 0, shape: [n, c])
            let gp = g.storage.pointer
            gi.withUnsafeMutableBufferPointer { d in
                if kind == .average {
                    for i in 0..<n {
                        let s = Int(batches[i])
                        for j in 0..<c { d[i * c + j] = gp[s * c + j] / Float(counts[s]) }
                    }
                } else {
                    for s in 0..<b { for j in 0..<c { d[Int(arg[s * c + j]) * c + j] += gp[s * c + j] } }
                }
            }
            return [gi]
        }
    }
}

/// `SparseGlobalPool(.average)`: the mean of each sample's active sites.
public func SparseGlobalAvgPool() -> SparseGlobalPool { SparseGlobalPool(.average) }
/// `SparseGlobalPool(.max)`: the channel-wise max over each sample's active sites.
public func SparseGlobalMaxPool() -> SparseGlobalPool { SparseGlobalPool(.max) }

/// Applies sparse layers in order (children "0", "1", ...). If the last layer is a global pool,
/// the result is dense `[batch, C]`.
public final class SparseSequential: SparseModule {
    public init(_ modules: [Module]) throws {
        super.init()
        for (i, m) in modules.enumerated() {
            guard m is SparseModule else {
                throw CoreError.invalidArgument(op: "SparseSequential", "layer \(i) (\(m.typeName)) is not a sparse layer")
            }
            if m is SparseGlobalPool && i != modules.count - 1 {
                throw CoreError.invalidArgument(op: "SparseSequential", "the global pooling layer \(i) must be the last")
            }
            registerChild(String(i), m)
        }
    }

    /// Whether the sequence ends with a global pooling layer (and so returns a dense tensor).
    public var pools: Bool { children.last?.module is SparseGlobalPool }

    /// Applies every layer but a final global pool.
    public override func forward(_ x: SparseTensor) throws -> SparseTensor {
        var y = x
        for (_, m) in children where !(m is SparseGlobalPool) { y = try (m as! SparseModule).forward(y) }
        return y
    }

    /// Applies every layer, ending with the global pool: `[batch, C]`.
    public func pooled(_ x: SparseTensor) throws -> Tensor {
        guard let pool = children.last?.module as? SparseGlobalPool else {
            throw CoreError.invalidArgument(op: "SparseSequential", "does not end with a global pooling layer")
        }
        return try pool.pool(forward(x))
    }
}
