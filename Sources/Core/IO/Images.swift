// Images.swift: reading and writing images as [3, H, W] float tensors in [0, 1] — PNG through
// libpng's simplified API (errors come back as messages, never as a jump), BMP in Swift.

import Foundation
import CPNG
import CJPEGCodec

public enum ImageIO {
    /// Reads a PNG, JPEG or BMP file (by content) as RGB `[3, H, W]` in [0, 1]; the error names the file.
    public static func read(_ path: String) throws -> Tensor {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CoreError.file(path: path, "cannot read the image (missing or unreadable)")
        }
        if data.starts(with: [0x89, 0x50, 0x4E, 0x47]) { return try readPNG(data, path: path) }
        if data.starts(with: [0x42, 0x4D]) { return try readBMP(data, path: path) }
        if data.starts(with: [0xFF, 0xD8]) { return try readJPEG(data, path: path) }
        throw CoreError.file(path: path, "not a PNG, JPEG or BMP image")
    }

    static func readPNG(_ data: Data, path: String) throws -> Tensor {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        let ok = data.withUnsafeBytes { raw in png_image_begin_read_from_memory(&image, raw.baseAddress, raw.count) }
        guard ok != 0 else { throw CoreError.file(path: path, "corrupt PNG: \(pngMessage(&image))") }
        image.format = UInt32(PNG_FORMAT_RGB)
        let (w, h) = (Int(image.width), Int(image.height))
        guard w > 0, h > 0, w * h <= 1 << 28 else {
            png_image_free(&image)
            throw CoreError.file(path: path, "PNG of \(w) x \(h) pixels is out of range")
        }
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        let finished = pixels.withUnsafeMutableBytes { buf in
            png_image_finish_read(&image, nil, buf.baseAddress, Int32(w * 3), nil)
        }
        guard finished != 0 else { throw CoreError.file(path: path, "corrupt PNG: \(pngMessage(&image))") }
        return planar(pixels, width: w, height: h)
    }

    static func readJPEG(_ data: Data, path: String) throws -> Tensor {
        var w: Int32 = 0, h: Int32 = 0
        var pixels: UnsafeMutablePointer<UInt8>? = nil
        var message = [CChar](repeating: 0, count: 256)
        let ok = data.withUnsafeBytes { raw in
            smil_jpeg_decode(raw.bindMemory(to: UInt8.self).baseAddress, raw.count, &w, &h, &pixels, &message, Int32(message.count))
        }
        guard ok != 0, let p = pixels else {
            throw CoreError.file(path: path, "corrupt JPEG: \(String(cString: message))")
        }
        defer { free(p) }
        return planar(Array(UnsafeBufferPointer(start: p, count: Int(w) * Int(h) * 3)), width: Int(w), height: Int(h))
    }

    /// Writes `[3, H, W]` values in [0, 1] as a JPEG (quality 0-100), atomically.
    public static func writeJPEG(_ t: Tensor, to path: String, quality: Int = 95) throws {
        guard t.rank == 3, t.shape[0] == 3 else {
            throw CoreError.shapeMismatch(op: "write_image", "expected [3, H, W] for a JPEG, got \(shapeString(t.shape))")
        }
        let (h, w) = (t.shape[1], t.shape[2])
        var rgb = [UInt8](repeating: 0, count: w * h * 3)
        for i in 0..<(w * h) { for k in 0..<3 { rgb[3 * i + k] = UInt8(max(0, min(255, (t[flat: k * w * h + i] * 255).rounded()))) } }
        var out: UnsafeMutablePointer<UInt8>? = nil
        var size = 0
        var message = [CChar](repeating: 0, count: 256)
        guard smil_jpeg_encode(rgb, Int32(w), Int32(h), Int32(quality), &out, &size, &message, Int32(message.count)) != 0, let o = out else {
            throw CoreError.file(path: path, "cannot encode JPEG: \(String(cString: message))")
        }
        defer { free(o) }
        try writeAtomically(Data(bytes: o, count: size), to: path)
    }

    static func pngMessage(_ image: inout png_image) -> String {
        withUnsafeBytes(of: &image.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// Interleaved 8-bit RGB to planar floats in [0, 1].
    static func planar(_ pixels: [UInt8], width w: Int, height h: Int) -> Tensor {
        var t = Tensor(uninitializedShape: [3, h, w])
        t.withUnsafeMutableBufferPointer { out in
            for i in 0..<(w * h) {
                out[i] = Float(pixels[3 * i]) / 255
                out[w * h + i] = Float(pixels[3 * i + 1]) / 255
                out[2 * w * h + i] = Float(pixels[3 * i + 2]) / 255
            }
        }
        return t
    }

    /// Uncompressed 24- or 32-bit BMP.
    static func readBMP(_ data: Data, path: String) throws -> Tensor {
        let b = [UInt8](data)
        func u32(_ o: Int) -> Int { o + 4 <= b.count ? Int(b[o]) | Int(b[o + 1]) << 8 | Int(b[o + 2]) << 16 | Int(b[o + 3]) << 24 : -1 }
        func u16(_ o: Int) -> Int { o + 2 <= b.count ? Int(b[o]) | Int(b[o + 1]) << 8 : -1 }
        let offset = u32(10), w = u32(18), rawH = Int(Int32(truncatingIfNeeded: u32(22))), bpp = u16(28), compression = u32(30)
        let h = abs(rawH)
        guard offset > 0, w > 0, h > 0, w * h <= 1 << 28, bpp == 24 || bpp == 32, compression == 0 || compression == 3 else {
            throw CoreError.file(path: path, "unsupported or corrupt BMP (only uncompressed 24/32-bit)")
        }
        let rowBytes = ((w * bpp / 8) + 3) / 4 * 4
        guard offset + rowBytes * h <= b.count else { throw CoreError.file(path: path, "truncated BMP") }
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            let src = offset + (rawH > 0 ? h - 1 - y : y) * rowBytes
            for x in 0..<w {
                let p = src + x * bpp / 8
                pixels[3 * (y * w + x)] = b[p + 2]
                pixels[3 * (y * w + x) + 1] = b[p + 1]
                pixels[3 * (y * w + x) + 2] = b[p]
            }
        }
        return planar(pixels, width: w, height: h)
    }

    /// Writes `[3, H, W]` (or `[H, W]` grey) values in [0, 1] as an 8-bit PNG, atomically.
    public static func writePNG(_ t: Tensor, to path: String) throws {
        let (c, h, w): (Int, Int, Int)
        switch t.rank {
        case 3 where t.shape[0] == 3 || t.shape[0] == 1: (c, h, w) = (t.shape[0], t.shape[1], t.shape[2])
        case 2: (c, h, w) = (1, t.shape[0], t.shape[1])
        default: throw CoreError.shapeMismatch(op: "write_image", "expected [3, H, W], [1, H, W] or [H, W], got \(shapeString(t.shape))")
        }
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        for i in 0..<(w * h) {
            for k in 0..<3 {
                let v = t[flat: (c == 1 ? 0 : k) * w * h + i]
                pixels[3 * i + k] = UInt8(max(0, min(255, (v * 255).rounded())))
            }
        }
        try writePNG(RGBImage(width: w, height: h, pixels: pixels), to: path)
    }

    /// Writes 8-bit RGB as a PNG, atomically.
    public static func writePNG(_ rgb: RGBImage, to path: String) throws {
        let (w, h) = (rgb.width, rgb.height)
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(w)
        image.height = UInt32(h)
        image.format = UInt32(PNG_FORMAT_RGB)
        var size: Int = 0
        guard rgb.pixels.withUnsafeBytes({ png_image_write_to_memory(&image, nil, &size, 0, $0.baseAddress, Int32(w * 3), nil) }) != 0 else {
            throw CoreError.file(path: path, "cannot encode PNG: \(pngMessage(&image))")
        }
        var out = [UInt8](repeating: 0, count: size)
        let ok = out.withUnsafeMutableBytes { o in
            rgb.pixels.withUnsafeBytes { png_image_write_to_memory(&image, o.baseAddress, &size, 0, $0.baseAddress, Int32(w * 3), nil) }
        }
        guard ok != 0 else { throw CoreError.file(path: path, "cannot encode PNG: \(pngMessage(&image))") }
        try writeAtomically(Data(out.prefix(size)), to: path)
    }
}
