// RGBImage.swift: 8-bit interleaved RGB images — what slides decode to and what tissue detection,
// thumbnails and stitched previews work on — with area resampling and conversion to tensors.

import Foundation

/// An 8-bit RGB image, interleaved, row-major: `pixels[3 * (y * width + x) + channel]`.
public struct RGBImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * 3, "RGBImage: \(pixels.count) bytes for \(width) x \(height)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// A `width x height` image of one colour.
    public init(width: Int, height: Int, fill: (UInt8, UInt8, UInt8) = (255, 255, 255)) {
        self.width = width
        self.height = height
        var p = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) { p[3 * i] = fill.0; p[3 * i + 1] = fill.1; p[3 * i + 2] = fill.2 }
        pixels = p
    }

    /// From a `[3, H, W]` tensor in [0, 1] (rounded, clamped).
    public init(_ t: Tensor) throws {
        guard t.rank == 3, t.shape[0] == 3 else {
            throw CoreError.shapeMismatch(op: "image", "expected [3, H, W], got \(shapeString(t.shape))")
        }
        let (h, w) = (t.shape[1], t.shape[2])
        guard h > 0, w > 0 else { throw CoreError.shapeMismatch(op: "image", "an image needs at least one pixel, got \(shapeString(t.shape))") }
        var p = [UInt8](repeating: 0, count: w * h * 3)
        t.withUnsafeBufferPointer { src in
            for i in 0..<(w * h) {
                for k in 0..<3 { p[3 * i + k] = UInt8(max(0, min(255, (src[k * w * h + i] * 255).rounded()))) }
            }
        }
        self.init(width: w, height: h, pixels: p)
    }

    /// `[3, H, W]` floats in [0, 1].
    public var tensor: Tensor { ImageIO.planar(pixels, width: width, height: height) }

    /// Resized to `w x h` by area averaging (each output pixel the mean of the input area it
    /// covers, fractional pixels weighted), as OpenCV's INTER_AREA does when shrinking; enlarging
    /// falls back to the same weights, which is nearest-neighbour-like.
    public func resized(width w: Int, height h: Int) -> RGBImage {
        if w == width && h == height { return self }
        precondition(w > 0 && h > 0 && width > 0 && height > 0, "resized: empty image")
        let xs = Self.weights(from: width, to: w), ys = Self.weights(from: height, to: h)
        var out = [UInt8](repeating: 0, count: w * h * 3)
        var row = [Double](repeating: 0, count: w * 3)
        pixels.withUnsafeBufferPointer { src in
            for oy in 0..<h {
                for i in row.indices { row[i] = 0 }
                for (sy, wy) in ys[oy] {
                    let base = sy * width * 3
                    for ox in 0..<w {
                        var r = 0.0, g = 0.0, b = 0.0
                        for (sx, wx) in xs[ox] {
                            let p = base + 3 * sx
                            r += wx * Double(src[p]); g += wx * Double(src[p + 1]); b += wx * Double(src[p + 2])
                        }
                        row[3 * ox] += wy * r; row[3 * ox + 1] += wy * g; row[3 * ox + 2] += wy * b
                    }
                }
                for i in 0..<(w * 3) { out[oy * w * 3 + i] = UInt8(max(0, min(255, row[i].rounded()))) }
            }
        }
        return RGBImage(width: w, height: h, pixels: out)
    }

    /// For each output index, the input indices it covers and their weights (summing to 1).
    static func weights(from n: Int, to m: Int) -> [[(Int, Double)]] {
        let scale = Double(n) / Double(m)
        return (0..<m).map { o in
            if scale <= 1 {
                return [(min(n - 1, Int((Double(o) + 0.5) * scale)), 1)]
            }
            let lo = Double(o) * scale, hi = lo + scale
            var taps: [(Int, Double)] = []
            var i = Int(lo)
            while Double(i) < hi && i < n {
                let cover = min(hi, Double(i + 1)) - max(lo, Double(i))
                if cover > 1e-12 { taps.append((i, cover / scale)) }
                i += 1
            }
            return taps
        }
    }

    /// The pixels of `x..<x+w, y..<y+h` (clipped to the image).
    public func cropped(x: Int, y: Int, width w: Int, height h: Int) -> RGBImage {
        let x0 = max(0, x), y0 = max(0, y), x1 = min(width, x + w), y1 = min(height, y + h)
        guard x1 > x0, y1 > y0 else { return RGBImage(width: 1, height: 1) }
        var out = [UInt8](repeating: 0, count: (x1 - x0) * (y1 - y0) * 3)
        for yy in y0..<y1 {
            let s = (yy * width + x0) * 3, d = (yy - y0) * (x1 - x0) * 3
            out[d..<(d + (x1 - x0) * 3)] = pixels[s..<(s + (x1 - x0) * 3)]
        }
        return RGBImage(width: x1 - x0, height: y1 - y0, pixels: out)
    }

    /// Sets one pixel when it lies inside the image.
    @inline(__always) public mutating func plot(_ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let p = 3 * (y * width + x)
        pixels[p] = c.0; pixels[p + 1] = c.1; pixels[p + 2] = c.2
    }

    /// A line from (x0, y0) to (x1, y1), `thickness` pixels wide (Bresenham with a square pen).
    public mutating func line(_ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int, color: (UInt8, UInt8, UInt8), thickness: Int = 1) {
        let dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1
        var (x, y, err) = (x0, y0, dx + dy)
        let lo = -(thickness - 1) / 2, hi = thickness / 2
        while true {
            for oy in lo...hi { for ox in lo...hi { plot(x + ox, y + oy, color) } }
            if x == x1 && y == y1 { break }
            let e2 = 2 * err
            if e2 >= dy { err += dy; x += sx }
            if e2 <= dx { err += dx; y += sy }
        }
    }

    /// The outline of a rectangle.
    public mutating func rectangle(x: Int, y: Int, width w: Int, height h: Int, color: (UInt8, UInt8, UInt8), thickness: Int = 1) {
        line(x, y, x + w - 1, y, color: color, thickness: thickness)
        line(x + w - 1, y, x + w - 1, y + h - 1, color: color, thickness: thickness)
        line(x + w - 1, y + h - 1, x, y + h - 1, color: color, thickness: thickness)
        line(x, y + h - 1, x, y, color: color, thickness: thickness)
    }
}
