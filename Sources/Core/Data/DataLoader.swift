// DataLoader.swift: batches of sampled slides — shuffled or class-balanced, decoded by background
// workers while the model computes, and the same for a seed whatever the workers' timing.

import Foundation

/// A batch: tiles `[B, K, 3, S, S]` (or feature bags `[B, N, D]`), coordinates `[B, K, 2]`,
/// labels `[B]`. Feature bags of different sizes are concatenated instead: tiles `[N1 + ... + NB, D]`,
/// coordinates `[N1 + ... + NB, 2]`, and `lengths` `[N1, ..., NB]` says where each bag ends.
public struct SlideBatch {
    public let tiles: Tensor
    public let coords: Tensor
    public let labels: IntTensor
    public let slideIDs: [String]
    public let lengths: [Int]?

    public init(tiles: Tensor, coords: Tensor, labels: IntTensor, slideIDs: [String], lengths: [Int]? = nil) {
        self.tiles = tiles
        self.coords = coords
        self.labels = labels
        self.slideIDs = slideIDs
        self.lengths = lengths
    }
}

public final class DataLoader {
    public let dataset: SlideDataset
    public let batchSize: Int
    public let shuffle: Bool
    /// Sample slides with probabilities inversely proportional to their class's count.
    public let balanced: Bool
    /// Background decoding threads (0 decodes on the calling thread).
    public let workers: Int

    public init(_ dataset: SlideDataset, batchSize: Int = 2, shuffle: Bool = true, balanced: Bool = false, workers: Int = 2) throws {
        guard batchSize > 0 else { throw CoreError.invalidArgument(op: "DataLoader", "batch must be positive, got \(batchSize)") }
        guard workers >= 0 else { throw CoreError.invalidArgument(op: "DataLoader", "workers must be 0 or more, got \(workers)") }
        self.dataset = dataset
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.balanced = balanced
        self.workers = workers
    }

    /// Batches per epoch.
    public var count: Int { (dataset.count + batchSize - 1) / batchSize }

    /// The slide order of one epoch, drawn from `rng`.
    func order(_ rng: inout RandomGenerator) -> [Int] {
        let n = dataset.count
        if balanced {
            let counts = dataset.classCounts
            let weights = dataset.slides.map { 1 / Double(counts[$0.classIndex]) }
            let total = weights.reduce(0, +)
            return (0..<n).map { _ in
                var u = rng.nextUniform() * total
                for (i, w) in weights.enumerated() { u -= w; if u < 0 { return i } }
                return n - 1
            }
        }
        var idx = Array(0..<n)
        if shuffle { idx.shuffle(using: &rng) }
        return idx
    }

    /// One epoch's batches. The epoch's randomness is drawn from the global generator when the
    /// epoch starts; each slide then gets its own generator, so workers cannot change the result.
    public func makeIterator() -> Iterator {
        var epochRNG = RandomGenerator(seed: RandomGenerator.global.next())
        _ = RandomGenerator.global.next()
        let order = self.order(&epochRNG)
        let seeds = order.map { _ in epochRNG.next() }
        return Iterator(loader: self, order: order, seeds: seeds)
    }

    func makeBatch(_ b: Int, order: [Int], seeds: [UInt64]) throws -> SlideBatch {
        let range = (b * batchSize)..<min(order.count, (b + 1) * batchSize)
        var samples: [SlideSample] = []
        for p in range {
            var rng = RandomGenerator(seed: seeds[p])
            samples.append(try dataset.sample(order[p], rng: &rng))
        }
        if let bad = samples.first(where: { $0.tiles.shape != samples[0].tiles.shape }) {
            // Feature bags of different sizes: one concatenated bag with lengths.
            if samples.allSatisfy({ $0.tiles.rank == 2 && $0.tiles.shape[1] == samples[0].tiles.shape[1] }) {
                return SlideBatch(tiles: try Tensor.cat(samples.map(\.tiles), dim: 0), coords: try Tensor.cat(samples.map(\.coords), dim: 0),
                                  labels: IntTensor(samples.map(\.label)), slideIDs: samples.map(\.slideID), lengths: samples.map { $0.tiles.shape[0] })
            }
            throw CoreError.invalidArgument(op: "DataLoader", "slide \(bad.slideID)'s tiles \(shapeString(bad.tiles.shape)) differ from \(shapeString(samples[0].tiles.shape)) in the same batch; set tile_size")
        }
        return SlideBatch(tiles: try Tensor.stack(samples.map(\.tiles)), coords: try Tensor.stack(samples.map(\.coords)),
                          labels: IntTensor(samples.map(\.label)), slideIDs: samples.map(\.slideID))
    }

    /// Iterates an epoch, keeping up to `workers` batches decoding ahead.
    public final class Iterator {
        let loader: DataLoader
        let order: [Int]
        let seeds: [UInt64]
        var position = 0
        var pending: [Int: (DispatchSemaphore, Box)] = [:]
        let queue = DispatchQueue(label: "smil.dataloader", attributes: .concurrent)

        final class Box { var result: Result<SlideBatch, Error>? }

        init(loader: DataLoader, order: [Int], seeds: [UInt64]) {
            self.loader = loader
            self.order = order
            self.seeds = seeds
        }

        public var count: Int { (order.count + loader.batchSize - 1) / loader.batchSize }

        func schedule(_ b: Int) {
            guard b < count, pending[b] == nil else { return }
            let done = DispatchSemaphore(value: 0), box = Box()
            pending[b] = (done, box)
            let (loader, order, seeds) = (self.loader, self.order, self.seeds)
            queue.async {
                box.result = Result { try loader.makeBatch(b, order: order, seeds: seeds) }
                done.signal()
            }
        }

        /// The next batch, or an error (an unreadable tile names its file).
        public func nextBatch() throws -> SlideBatch? {
            guard position < count else { return nil }
            defer { position += 1 }
            if loader.workers == 0 { return try loader.makeBatch(position, order: order, seeds: seeds) }
            for b in position...(position + loader.workers) { schedule(b) }
            let (done, box) = pending.removeValue(forKey: position)!
            done.wait()
            return try box.result!.get()
        }
    }
}
