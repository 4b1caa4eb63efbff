// Pooling.swift: max and adaptive average pooling over NCHW planes, forward and backward.
// Every (image, channel) plane is independent, so work is split by plane.

import CKernels

/// Max pooling geometry (PyTorch's floor mode, implicit -inf padding).
public struct PoolGeometry: Equatable {
    public var height, width, kernel, stride, padding: Int
    public var outHeight: Int { slidingOutputSize(height, kernel: kernel, stride: stride, padding: padding) }
    public var outWidth: Int { slidingOutputSize(width, kernel: kernel, stride: stride, padding: padding) }
}

/// Max-pools `planes` planes; `argmax`, where given, receives the flat in-plane index of each
/// maximum (inference passes nil). Each window is scanned row by row and a value takes over when
/// greater or NaN, as PyTorch's: ties go to the first maximum in row-major order, and a NaN to
/// the last NaN. (Eight windows at a time on AVX2 at stride 2; the branching loop it replaced
/// was about 5% of a ResNet-18 train step, mispredicting on every other comparison.)
func maxPoolForward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>?,
                    planes: Int, _ g: PoolGeometry) {
    let inPlane = g.height * g.width, oh = g.outHeight, ow = g.outWidth
    Parallel.forEach(planes) { p in
        smil_max_pool_plane(x + p * inPlane, Int32(g.height), Int32(g.width), y + p * oh * ow, argmax.map { $0 + p * oh * ow },
                            Int32(oh), Int32(ow), Int32(g.kernel), Int32(g.stride), Int32(g.padding))
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
