// TensorStorage.swift: the reference-counted, 64-byte aligned buffer behind Tensor's value semantics.

#if canImport(Glibc)
import Glibc
#endif

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

/// A flat buffer of `Float`s owned by one or more tensors; tensors copy it before writing when shared.
@usableFromInline
final class TensorStorage {
    @usableFromInline let count: Int
    @usableFromInline let pointer: UnsafeMutablePointer<Float>
    /// What `malloc` returned; `pointer` is this rounded up to the next 64-byte boundary.
    private let block: UnsafeMutableRawPointer

    /// Allocates `count` uninitialised floats, aligned for AVX-512 loads.
    ///
    /// The alignment is done by hand on a plain `malloc` block 64 bytes longer. glibc's
    /// `posix_memalign` (behind Swift's aligned `allocate`) splits each large block it returns,
    /// and the fragments it leaves stop freed activations from being reused: the heap grew by
    /// every iteration's activations and each one faulted in afresh (measured: 16 K page faults per
    /// iteration of two 33 MB buffers, against none with `malloc`).
    @usableFromInline init(uninitializedCount count: Int) {
        _ = mallocTuned
        self.count = count
        // Every shape a script or a file can choose is checked by `Memory.checkAllocation` first, with
        // an error naming it; reaching either failure here is a missing check, reported as such.
        let (payload, overflow) = max(count, 1).multipliedReportingOverflow(by: MemoryLayout<Float>.stride)
        guard !overflow, payload <= Memory.limitBytes, let raw = malloc(payload + 64) else {
            fatalError("out of memory: a tensor of \(count) elements is more than this machine can hold, and the operation that asked for it did not check its size first (a bug: please report it with the call)")
        }
        block = raw
        let aligned = (Int(bitPattern: raw) + 63) & ~63
        pointer = UnsafeMutableRawPointer(bitPattern: aligned)!.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    /// Filled with `value`; large buffers are filled by the compute threads, 64 K elements a piece.
    @usableFromInline convenience init(repeating value: Float, count: Int) {
        self.init(uninitializedCount: count)
        let p = pointer
        Parallel.forRanges(count, grain: elementwiseGrain) { r in (p + r.lowerBound).initialize(repeating: value, count: r.count) }
    }

    @usableFromInline func copy() -> TensorStorage {
        let s = TensorStorage(uninitializedCount: count)
        s.pointer.update(from: pointer, count: count)
        return s
    }

    deinit { free(block) }
}
