// Random.swift: the one seeded generator behind everything random in smil.

import Foundation

/// A xoshiro256** generator. Every random draw in smil (weights, sampling, dropout, augmentation,
/// shuffling) comes from `RandomGenerator.global` unless a generator is passed explicitly, so one
/// seed fixes them all. Draws happen on the calling thread, so results do not depend on threads.
public struct RandomGenerator: RandomNumberGenerator {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    /// Seeds the state with splitmix64, as the xoshiro authors recommend.
    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    @inline(__always) private static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    public mutating func next() -> UInt64 {
        let result = Self.rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = Self.rotl(s.3, 45)
        return result
    }

    /// A uniform double in [0, 1) with 53 random bits.
    public mutating func nextUniform() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// A uniform float in [0, 1).
    public mutating func nextUniformFloat() -> Float {
        Float(next() >> 40) * 0x1.0p-24
    }

    /// A standard normal draw (Box-Muller, both halves used in turn).
    public mutating func nextNormal() -> Double {
        if let z = spare { spare = nil; return z }
        var u1 = nextUniform()
        while u1 <= 0 { u1 = nextUniform() }
        let u2 = nextUniform()
        let r = (-2 * Foundation.log(u1)).squareRoot()
        spare = r * Foundation.sin(2 * .pi * u2)
        return r * Foundation.cos(2 * .pi * u2)
    }

    /// A uniform integer in `lo..<hi`.
    public mutating func nextInt(_ lo: Int, _ hi: Int) -> Int {
        precondition(hi > lo, "empty range \(lo)..<\(hi)")
        return lo + Int(next(upperBound: UInt64(hi - lo)))
    }

    private var spare: Double? = nil

    /// The full state (for checkpoints): four words, then the cached normal's bits or a marker.
    public var state: [UInt64] {
        get { [s.0, s.1, s.2, s.3, spare.map { $0.bitPattern } ?? UInt64.max, spare == nil ? 0 : 1] }
        set {
            guard newValue.count == 6 else { return }
            s = (newValue[0], newValue[1], newValue[2], newValue[3])
            spare = newValue[5] == 1 ? Double(bitPattern: newValue[4]) : nil
        }
    }

    /// The process-wide generator; `seed(n)` resets it. The default seed is 0, or `SMIL_SEED`.
    nonisolated(unsafe) public static var global = RandomGenerator(seed: defaultSeed)

    /// The seed used at start-up: `SMIL_SEED` if set, else 0.
    public static var defaultSeed: UInt64 {
        if let s = ProcessInfo.processInfo.environment["SMIL_SEED"], let v = UInt64(s) { return v }
        return 0
    }

    /// Re-seeds the global generator.
    public static func seed(_ value: UInt64) { global = RandomGenerator(seed: value) }
}
