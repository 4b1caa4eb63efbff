// Pooling.swift: max and adaptive average pooling over NCHW planes, forward and backward.
// Every (image, channel) plane is independent, so work is split by plane.

/// Max pooling geometry (PyTorch's floor mode, implicit -inf padding).
public struct PoolGeometry: Equatable {
    public var height, width, kernel, stride, padding: Int
    public var outHeight: Int { (height + 2 * padding - kernel) / stride + 1 }
    public var outWidth: Int { (width + 2 * padding - kernel) / stride + 1 }
}

/// Max-pools `planes` planes; `argmax` receives the flat in-plane index of each maximum. Separable:
/// each input row of a window is reduced horizontally, then rows are compared top to bottom, so
/// ties go to the first maximum in row-major order, as PyTorch's.
func maxPoolForward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>,
                    planes: Int, _ g: PoolGeometry) {
    let oh = g.outHeight, ow = g.outWidth
    Parallel.forEach(planes) { p in
        let src = x + p * g.height * g.width, dst = y + p * oh * ow, arg = argmax + p * oh * ow
        let rowMax = UnsafeMutablePointer<Float>.allocate(capacity: ow)
        let rowArg = UnsafeMutablePointer<Int32>.allocate(capacity: ow)
        defer { rowMax.deallocate(); rowArg.deallocate() }
        for oy in 0..<oh {
            let y0 = oy * g.stride - g.padding
            let ys = max(y0, 0), ye = min(y0 + g.kernel, g.height)
            let out = dst + oy * ow, outArg = arg + oy * ow
            out.update(repeating: -.infinity, count: ow)
            outArg.update(repeating: Int32(ys * g.width + max(-g.padding, 0)), count: ow)
            for iy in ys..<ye {
                let row = src + iy * g.width
                for ox in 0..<ow {
                    let x0 = ox * g.stride - g.padding
                    let xs = max(x0, 0), xe = min(x0 + g.kernel, g.width)
                    var m = -Float.infinity, mi = xs
                    for ix in xs..<xe where row[ix] > m || row[ix].isNaN { m = row[ix]; mi = ix }
                    rowMax[ox] = m
                    rowArg[ox] = Int32(iy * g.width + mi)
                }
                for ox in 0..<ow where rowMax[ox] > out[ox] || (rowMax[ox].isNaN && !out[ox].isNaN) || (iy == ys && rowMax[ox] == out[ox]) {
                    out[ox] = rowMax[ox]
                    outArg[ox] = rowArg[ox]
                }
            }
        }
    }
}

/// Max-pools without recording where the maxima were (inference). Separable: each output row is
/// the elementwise max of its window's input rows, each reduced horizontally first.
func maxPoolForwardNoIndices(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, planes: Int, _ g: PoolGeometry) {
    let oh = g.outHeight, ow = g.outWidth
    Parallel.forEach(planes) { p in
        let src = x + p * g.height * g.width, dst = y + p * oh * ow
        let rowMax = UnsafeMutablePointer<Float>.allocate(capacity: ow)
        defer { rowMax.deallocate() }
        // Horizontal window of each output column (clipped to the row).
        for oy in 0..<oh {
            let y0 = oy * g.stride - g.padding
            let ys = max(y0, 0), ye = min(y0 + g.kernel, g.height)
            let out = dst + oy * ow
            out.update(repeating: -.infinity, count: ow)
            for iy in ys..<ye {
                let row = src + iy * g.width
                for ox in 0..<ow {
                    let x0 = ox * g.stride - g.padding
                    let xs = max(x0, 0), xe = min(x0 + g.kernel, g.width)
                    var m = -Float.infinity
                    for ix in xs..<xe { m = max(m, row[ix]) }
                    rowMax[ox] = m
                }
                for ox in 0..<ow { out[ox] = max(out[ox], rowMax[ox]) }
            }
        }
    }
}

/// Routes each output gradient to its maximum's position.
func maxPoolBackward(_ gradOutput: UnsafePointer<Float>, _ gradInput: UnsafeMutablePointer<Float>,
                     argmax: UnsafePointer<Int32>, planes: Int, _ g: PoolGeometry) {
    let inPlane = g.height * g.width, outPlane = g.outHeight * g.outWidth
    Parallel.forEach(planes) { p in
        let gi = gradInput + p * inPlane, go = gradOutput + p * outPlane, arg = argmax + p * outPlane
        gi.update(repeating: 0, count: inPlane)
        for i in 0..<outPlane { gi[Int(arg[i])] += go[i] }
    }
}

/// The input window of adaptive pooling's output cell `i` of `outSize` over `inSize` (PyTorch's).
@inline(__always) func adaptiveRange(_ i: Int, _ outSize: Int, _ inSize: Int) -> Range<Int> {
    let start = (i * inSize) / outSize
    let end = ((i + 1) * inSize + outSize - 1) / outSize
    return start..<end
}

/// Adaptive average pooling of `planes` planes from `h x w` to `oh x ow`.
func adaptiveAvgPoolForward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, planes: Int,
                            h: Int, w: Int, oh: Int, ow: Int) {
    Parallel.forEach(planes) { p in
        let src = x + p * h * w, dst = y + p * oh * ow
        for oy in 0..<oh {
            let ry = adaptiveRange(oy, oh, h)
            for ox in 0..<ow {
                let rx = adaptiveRange(ox, ow, w)
                var s: Double = 0
                for iy in ry { for ix in rx { s += Double(src[iy * w + ix]) } }
                dst[oy * ow + ox] = Float(s / Double(ry.count * rx.count))
            }
        }
    }
}

/// Spreads each output gradient evenly over its window.
func adaptiveAvgPoolBackward(_ gradOutput: UnsafePointer<Float>, _ gradInput: UnsafeMutablePointer<Float>, planes: Int,
                             h: Int, w: Int, oh: Int, ow: Int) {
    Parallel.forEach(planes) { p in
        let gi = gradInput + p * h * w, go = gradOutput + p * oh * ow
        gi.update(repeating: 0, count: h * w)
        for oy in 0..<oh {
            let ry = adaptiveRange(oy, oh, h)
            for ox in 0..<ow {
                let rx = adaptiveRange(ox, ow, w)
                let v = go[oy * ow + ox] / Float(ry.count * rx.count)
                for iy in ry { for ix in rx { gi[iy * w + ix] += v } }
            }
        }
    }
}
