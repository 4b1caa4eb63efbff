// Augmentation.swift: tile augmentation as in the paper — flips, right-angle rotations, H&E colour
// augmentation by colour deconvolution, and per-channel normalisation.

import Foundation

public struct TileAugmentation {
    public var flips = true
    public var rotations = true
    /// Each stain's concentration is scaled by a factor in [1 - s, 1 + s]; 0 turns it off.
    public var stainStrength: Float = 0.05
    /// Per-channel mean and std; nil leaves values in [0, 1].
    public var mean: [Float]? = nil
    public var std: [Float]? = nil

    public init(flips: Bool = true, rotations: Bool = true, stainStrength: Float = 0.05, mean: [Float]? = nil, std: [Float]? = nil) {
        self.flips = flips
        self.rotations = rotations
        self.stainStrength = stainStrength
        self.mean = mean
        self.std = std
    }

    /// Haematoxylin and eosin stain vectors (method.md) and their complement, normalised.
    static let stains: [[Float]] = {
        func norm(_ v: [Float]) -> [Float] { let n = (v.map { $0 * $0 }.reduce(0, +)).squareRoot(); return v.map { $0 / n } }
        let h = norm([0.650, 0.704, 0.286]), e = norm([0.071, 0.994, 0.112])
        let r = norm([h[1] * e[2] - h[2] * e[1], h[2] * e[0] - h[0] * e[2], h[0] * e[1] - h[1] * e[0]])
        return [h, e, r]
    }()

    /// The inverse of the stain matrix (rows H, E, residual), for deconvolution.
    static let unmix: [[Float]] = {
        let m = stains
        let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
        var inv = [[Float]](repeating: [0, 0, 0], count: 3)
        for i in 0..<3 { for j in 0..<3 {
            let a = m[(j + 1) % 3], b = m[(j + 2) % 3]
            inv[i][j] = (a[(i + 1) % 3] * b[(i + 2) % 3] - a[(i + 2) % 3] * b[(i + 1) % 3]) / det
        } }
        return inv
    }()

    /// Applies the augmentation to a `[3, S, S]` tile.
    public func apply(_ tile: Tensor, rng: inout RandomGenerator) -> Tensor {
        var t = tile
        let h = t.shape[1], w = t.shape[2]
        if stainStrength > 0 {
            let scale = (0..<2).map { _ in 1 + stainStrength * (2 * rng.nextUniformFloat() - 1) }
            let m = Self.stains, u = Self.unmix
            t.withUnsafeMutableBufferPointer { p in
                let n = h * w
                for i in 0..<n {
                    // Optical density, concentrations (OD = c M), scaled, back to RGB.
                    let od = (0..<3).map { -Foundation.log(max(p[$0 * n + i], 1e-6)) }
                    var c = (0..<3).map { k in od[0] * u[0][k] + od[1] * u[1][k] + od[2] * u[2][k] }
                    c[0] *= scale[0]; c[1] *= scale[1]
                    for ch in 0..<3 {
                        let v = c[0] * m[0][ch] + c[1] * m[1][ch] + c[2] * m[2][ch]
                        p[ch * n + i] = min(1, max(0, Foundation.exp(-v)))
                    }
                }
            }
        }
        if (flips && rng.nextInt(0, 2) == 1) { t = flipped(t, h: h, w: w) }
        if rotations, h == w {
            for _ in 0..<rng.nextInt(0, 4) { t = rotated(t, n: h) }
        }
        if let mean = mean, let std = std, mean.count == 3, std.count == 3 {
            t.withUnsafeMutableBufferPointer { p in
                for ch in 0..<3 { for i in 0..<(h * w) { p[ch * h * w + i] = (p[ch * h * w + i] - mean[ch]) / std[ch] } }
            }
        }
        return t
    }

    func flipped(_ t: Tensor, h: Int, w: Int) -> Tensor {
        var out = t
        out.withUnsafeMutableBufferPointer { o in
            for ch in 0..<3 { for y in 0..<h { for x in 0..<w { o[(ch * h + y) * w + x] = t[flat: (ch * h + y) * w + (w - 1 - x)] } } }
        }
        return out
    }

    /// A quarter turn of a square tile.
    func rotated(_ t: Tensor, n: Int) -> Tensor {
        var out = t
        out.withUnsafeMutableBufferPointer { o in
            for ch in 0..<3 { for y in 0..<n { for x in 0..<n { o[(ch * n + y) * n + x] = t[flat: (ch * n + (n - 1 - x)) * n + y] } } }
        }
        return out
    }
}
