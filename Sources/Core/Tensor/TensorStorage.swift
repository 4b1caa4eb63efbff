// TensorStorage.swift: the reference-counted, 64-byte aligned buffer behind Tensor's value semantics.

#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// glibc's `mallopt` (declared in malloc.h, which Swift's Glibc module does not export).
@_silgen_name("mallopt") private func mallopt(_ parameter: Int32, _ value: Int32) -> Int32
private let M_TRIM_THRESHOLD: Int32 = -1, M_MMAP_THRESHOLD: Int32 = -3

/// Keeps large freed blocks in the malloc heap instead of returning them to the kernel. A ResNet
/// step frees and reallocates the same large activations every layer; with glibc's defaults each
/// one is a fresh mmap whose pages fault in zeroed — about a tenth of inference time.
let mallocTuned: Bool = {
    _ = mallopt(M_MMAP_THRESHOLD, 1 << 30)
    _ = mallopt(M_TRIM_THRESHOLD, 1 << 30)
    return true
}()

/// A permutation of another storage's elements that has not been copied out yet: element
/// `(i_0, ..., i_r)` of the result is element `i_d` along source dimension `dims[d]`.
@usableFromInline
struct PendingPermutation {
    let source: TensorStorage
    let sourceShape: [Int]
    let dims: [Int]
}

/// A flat buffer of `Float`s owned by one or more tensors; tensors copy it before writing when shared.
///
/// A storage made by `permuted` may start as a pending permutation of its source (a view): the
/// operations that can read it in place (sums, elementwise maps, further permutations) do, and the
/// first use of `pointer` copies it out, once, in cache-sized tiles. Its source is never written
/// while the view holds it: every writer goes through copy-on-write (`Tensor.ensureUnique`), and
/// the view's reference makes the source shared.
@usableFromInline
final class TensorStorage {
    @usableFromInline let count: Int
    /// What `malloc` returned (set at init, or at the first use of a pending permutation); the
    /// elements start at the next 64-byte boundary.
    private let block: Atomic<UnsafeMutableRawPointer?>
    /// Set for a storage made as a permutation of another, whether copied out yet or not.
    let pending: PendingPermutation?

    /// The elements, contiguous and row-major (copied out of a pending permutation on first use).
    @usableFromInline var pointer: UnsafeMutablePointer<Float> {
        if let raw = block.load(ordering: .acquiring) { return TensorStorage.aligned(raw, count) }
        return materialize()
    }

    /// Whether the elements are still only a pending permutation of the source.
    var isPending: Bool { block.load(ordering: .acquiring) == nil }

    private static func aligned(_ raw: UnsafeMutableRawPointer, _ count: Int) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer(bitPattern: (Int(bitPattern: raw) + 63) & ~63)!.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    /// `count` floats' worth of `malloc` (plus 64 bytes for alignment).
    private static func allocate(_ count: Int) -> UnsafeMutableRawPointer {
        _ = mallocTuned
        // Every shape a script or a file can choose is checked by `Memory.checkAllocation` first, with
        // an error naming it; reaching either failure here is a missing check, reported as such.
        let (payload, overflow) = max(count, 1).multipliedReportingOverflow(by: MemoryLayout<Float>.stride)
        guard !overflow, payload <= Memory.limitBytes, let raw = malloc(payload + 64) else {
            fatalError("out of memory: a tensor of \(count) elements is more than this machine can hold, and the operation that asked for it did not check its size first (a bug: please report it with the call)")
        }
        return raw
    }

    /// Allocates `count` uninitialised floats, aligned for AVX-512 loads.
    ///
    /// The alignment is done by hand on a plain `malloc` block 64 bytes longer. glibc's
    /// `posix_memalign` (behind Swift's aligned `allocate`) splits each large block it returns,
    /// and the fragments it leaves stop freed activations from being reused: the heap grew by
    /// every iteration's activations and each one faulted in afresh (measured: 16 K page faults per
    /// iteration of two 33 MB buffers, against none with `malloc`).
    @usableFromInline init(uninitializedCount count: Int) {
        self.count = count
        block = Atomic(TensorStorage.allocate(count))
        pending = nil
    }

    /// A pending permutation of `source` (laid out as `sourceShape`) by `dims`.
    init(permuting source: TensorStorage, shape sourceShape: [Int], dims: [Int]) {
        count = source.count
        block = Atomic(nil)
        pending = PendingPermutation(source: source, sourceShape: sourceShape, dims: dims)
    }

    /// Copies a pending permutation out. Two threads may race here: each copies, one's block is
    /// kept and the other's freed, so no lock is held while the copy runs on the compute threads.
    private func materialize() -> UnsafeMutablePointer<Float> {
        guard let p = pending else { fatalError("a storage without elements or a pending permutation") }
        let raw = TensorStorage.allocate(count)
        let own = contiguousStrides(p.sourceShape)
        Tensor.permuteCopy(from: p.source.pointer, strides: p.dims.map { own[$0] }, shape: p.dims.map { p.sourceShape[$0] },
                           into: TensorStorage.aligned(raw, count))
        let (exchanged, current) = block.compareExchange(expected: nil, desired: raw, ordering: .acquiringAndReleasing)
        if exchanged { return TensorStorage.aligned(raw, count) }
        free(raw)
        return TensorStorage.aligned(current!, count)
    }

    /// Filled with `value`; large buffers are filled by the compute threads, 64 K elements a piece.
    @usableFromInline convenience init(repeating value: Float, count: Int) {
        self.init(uninitializedCount: count)
        let p = pointer
        Parallel.forRangesInShares(count, grain: elementwiseGrain) { r in (p + r.lowerBound).initialize(repeating: value, count: r.count) }
    }

    @usableFromInline func copy() -> TensorStorage {
        let s = TensorStorage(uninitializedCount: count)
        s.pointer.update(from: pointer, count: count)
        return s
    }

    deinit { if let raw = block.load(ordering: .relaxed) { free(raw) } }
}
