// Heatmap.swift: tiles coloured by score over a slide's thumbnail, with a colour bar — CLAM's and
// Slideflow's picture of where a model looks.

import Foundation

public enum Colormap: String, CaseIterable, Sendable {
    case viridis, magma, jet, coolwarm

    /// Anchor colours from low to high, interpolated linearly (viridis and magma at nine of
    /// matplotlib's points; jet and coolwarm at their defining ones).
    var anchors: [(Double, Double, Double)] {
        switch self {
        case .viridis:
            return [(68, 1, 84), (71, 45, 123), (59, 82, 139), (44, 114, 142), (33, 145, 140), (40, 174, 128), (94, 201, 98), (173, 220, 48), (253, 231, 37)]
        case .magma:
            return [(0, 0, 4), (28, 16, 68), (79, 18, 123), (129, 37, 129), (181, 54, 122), (229, 80, 100), (251, 135, 97), (254, 194, 135), (252, 253, 191)]
        case .jet:
            return [(0, 0, 128), (0, 0, 255), (0, 128, 255), (0, 255, 255), (128, 255, 128), (255, 255, 0), (255, 128, 0), (255, 0, 0), (128, 0, 0)]
        case .coolwarm:
            return [(59, 76, 192), (98, 130, 234), (141, 176, 254), (184, 208, 249), (221, 221, 221), (245, 196, 173), (244, 154, 123), (222, 96, 77), (180, 4, 38)]
        }
    }

    /// The colour of `t` in [0, 1] (clamped).
    public func color(_ t: Double) -> (UInt8, UInt8, UInt8) {
        let a = anchors
        let x = min(1, max(0, t.isFinite ? t : 0)) * Double(a.count - 1)
        let i = min(a.count - 2, Int(x)), f = x - Double(i)
        func mix(_ p: Double, _ q: Double) -> UInt8 { UInt8(max(0, min(255, (p + (q - p) * f).rounded()))) }
        return (mix(a[i].0, a[i + 1].0), mix(a[i].1, a[i + 1].1), mix(a[i].2, a[i + 1].2))
    }
}

public enum Heatmap {
    /// `base` (a thumbnail, `scale` of its pixels per level-0 pixel) with each tile at level-0
    /// `coords` (top-left, `tile` level-0 pixels square) blended with its score's colour at
    /// `alpha`, and a colour bar labelled with the score range on the right. Scores are scaled from
    /// `range` (default: their minimum and maximum) to the colormap.
    public static func render(base: RGBImage, scale: Double, coords: [Point], tile: Int, scores: [Double], alpha: Double = 0.5,
                              colormap: Colormap = .viridis, range: (Double, Double)? = nil) throws -> RGBImage {
        guard coords.count == scores.count, !coords.isEmpty else {
            throw CoreError.shapeMismatch(op: "heatmap", "\(coords.count) coordinates and \(scores.count) scores; one score per tile, at least one tile")
        }
        guard scale > 0, scale.isFinite, tile > 0, (0...1).contains(alpha) else {
            throw CoreError.invalidArgument(op: "heatmap", "scale and tile must be positive and alpha in [0, 1], got scale \(scale), tile \(tile), alpha \(alpha)")
        }
        let finite = scores.filter(\.isFinite)
        let (lo, hi) = range ?? (finite.min() ?? 0, finite.max() ?? 1)
        let span = hi > lo ? hi - lo : 1
        let bar = 90
        var out = RGBImage(width: base.width + bar, height: max(base.height, 160))
        for y in 0..<base.height {
            let s = y * base.width * 3, d = y * out.width * 3
            out.pixels.replaceSubrange(d..<(d + base.width * 3), with: base.pixels[s..<(s + base.width * 3)])
        }
        for (p, score) in zip(coords, scores) where score.isFinite {
            let c = colormap.color((score - lo) / span)
            let x0 = Int((Double(p.x) * scale).rounded(.down)), y0 = Int((Double(p.y) * scale).rounded(.down))
            let x1 = max(x0 + 1, Int((Double(p.x + tile) * scale).rounded(.down))), y1 = max(y0 + 1, Int((Double(p.y + tile) * scale).rounded(.down)))
            let (ya, yb, xa, xb) = (max(0, y0), min(base.height, y1), max(0, x0), min(base.width, x1))
            guard ya < yb, xa < xb else { continue }
            for y in ya..<yb {
                for x in xa..<xb {
                    let i = 3 * (y * out.width + x)
                    out.pixels[i] = UInt8((1 - alpha) * Double(out.pixels[i]) + alpha * Double(c.0))
                    out.pixels[i + 1] = UInt8((1 - alpha) * Double(out.pixels[i + 1]) + alpha * Double(c.1))
                    out.pixels[i + 2] = UInt8((1 - alpha) * Double(out.pixels[i + 2]) + alpha * Double(c.2))
                }
            }
        }
        // The colour bar: high at the top, with the range's ends written beside it.
        let (bx, top, bottom) = (base.width + 14, 20, out.height - 20)
        for y in top..<bottom {
            let c = colormap.color(Double(bottom - 1 - y) / Double(max(1, bottom - top - 1)))
            for x in bx..<(bx + 18) { out.plot(x, y, c) }
        }
        out.rectangle(x: bx - 1, y: top - 1, width: 20, height: bottom - top + 2, color: (60, 60, 60))
        out.text(label(hi), x: bx + 22, y: top, color: (30, 30, 30))
        out.text(label(lo), x: bx + 22, y: bottom - 10, color: (30, 30, 30))
        return out
    }

    static func label(_ v: Double) -> String {
        abs(v) >= 1000 || (abs(v) < 0.01 && v != 0) ? String(format: "%.1e", v) : String(format: "%.2f", v)
    }
}

extension RGBImage {
    /// Text in the plots' 3 x 5 pixel font, doubled.
    mutating func text(_ s: String, x: Int, y: Int, color: (UInt8, UInt8, UInt8)) {
        var cx = x
        for ch in s.uppercased() {
            let glyph = Canvas.font[ch] ?? [7, 5, 5, 5, 7]
            for (row, bits) in glyph.enumerated() {
                for col in 0..<3 where bits & (4 >> col) != 0 {
                    for dy in 0..<2 { for dx in 0..<2 { plot(cx + 2 * col + dx, y + 2 * row + dy, color) } }
                }
            }
            cx += 8
        }
    }
}
