// SlideWriter.swift: pyramidal tiled TIFFs from an image — what tests build slides with, and how
// a map or a heatmap becomes a file any slide viewer (QuPath, OpenSlide) opens.

import Foundation
import CSlideIO

public enum SlideWriter {
    /// Writes `image` as a tiled pyramidal TIFF: level 0 and one level per further entry of
    /// `downsamples` (each an integer factor, area-resampled). With `mpp`, the file is written in
    /// Aperio's layout (its ImageDescription with `MPP` and `AppMag`, a thumbnail directory after
    /// level 0), so OpenSlide reads it as an `aperio` slide with microns per pixel; otherwise as a
    /// generic tiled TIFF. `quality` 1-100 gives JPEG tiles, 0 lossless Deflate ones.
    public static func write(_ image: RGBImage, to path: String, downsamples: [Int] = [1, 4, 16], tileSize: Int = 256,
                             quality: Int = 90, mpp: Double? = nil, magnification: Double? = nil) throws {
        guard downsamples.first == 1, zip(downsamples, downsamples.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw CoreError.invalidArgument(op: "write_slide", "downsamples must start at 1 and increase, got \(downsamples)")
        }
        guard image.width > 0, image.height > 0 else { throw CoreError.invalidArgument(op: "write_slide", "the image is empty") }
        guard tileSize >= 16, tileSize % 16 == 0 else {
            throw CoreError.invalidArgument(op: "write_slide", "tile size must be a multiple of 16, got \(tileSize)")
        }
        guard (0...100).contains(quality) else { throw CoreError.invalidArgument(op: "write_slide", "quality must be 0-100, got \(quality)") }
        if let m = mpp, !(m > 0 && m.isFinite) { throw CoreError.invalidArgument(op: "write_slide", "mpp must be positive, got \(m)") }
        let levels = downsamples.map { d in
            d == 1 ? image : image.resized(width: max(1, image.width / d), height: max(1, image.height / d))
        }
        var description: String? = nil
        var thumbnail: RGBImage? = nil
        if let m = mpp {
            let mag = magnification ?? (m <= 0.3 ? 40 : 20)
            let compression = quality > 0 ? "JPEG/RGB Q=\(quality)" : "Deflate/RGB"
            description = "Aperio Image Library smil \(smilVersion)\r\n\(image.width)x\(image.height) [0,0 \(image.width)x\(image.height)] (\(tileSize)x\(tileSize)) \(compression)|AppMag = \(formatNumber(mag))|MPP = \(formatNumber(m))|Filename = \(WholeSlideImage.slideID(path))"
            let scale = min(1, 768.0 / Double(max(image.width, image.height)))
            thumbnail = image.resized(width: max(1, Int(Double(image.width) * scale)), height: max(1, Int(Double(image.height) * scale)))
        }
        try replaceAtomically(path) { tmp in
            var message = [CChar](repeating: 0, count: 512)
            let ok = withExtendedLifetime((levels, thumbnail)) { () -> Int32 in
                levels.withPointers { descriptors in
                    if let t = thumbnail {
                        return t.pixels.withUnsafeBufferPointer { p in
                            var thumb = smil_tiff_image(rgb: p.baseAddress, width: Int32(t.width), height: Int32(t.height))
                            return smil_tiff_write_pyramid(tmp, descriptors, Int32(levels.count), &thumb, Int32(tileSize), Int32(quality), description, 0, &message, Int32(message.count))
                        }
                    }
                    return smil_tiff_write_pyramid(tmp, descriptors, Int32(levels.count), nil, Int32(tileSize), Int32(quality), description, 0, &message, Int32(message.count))
                }
            }
            guard ok != 0 else { throw CoreError.file(path: path, "cannot write the slide: \(String(cString: message))") }
        }
    }

    static func formatNumber(_ x: Double) -> String {
        x == x.rounded() && abs(x) < 1e9 ? String(Int(x)) : String(x)
    }
}

extension Array where Element == RGBImage {
    /// Calls `body` with C descriptors of the images, their pixels pinned for the call.
    func withPointers<R>(_ body: (UnsafePointer<smil_tiff_image>) -> R) -> R {
        func pin(_ i: Int, _ acc: [smil_tiff_image]) -> R {
            if i == count { return acc.withUnsafeBufferPointer { body($0.baseAddress!) } }
            return self[i].pixels.withUnsafeBufferPointer { p in
                pin(i + 1, acc + [smil_tiff_image(rgb: p.baseAddress, width: Int32(self[i].width), height: Int32(self[i].height))])
            }
        }
        return pin(0, [])
    }
}

extension SlideWriter {
    /// Lays tiles out on white by a character map: each row of `layout` is a row of tile slots,
    /// `#` takes the next tile (cycling through `tiles`), any other character leaves the slot white.
    /// All tiles must share one size; the result is `columns x size` by `rows x size`.
    public static func mosaic(_ tiles: [RGBImage], layout: [String]) throws -> RGBImage {
        guard let first = tiles.first, first.width > 0, first.height > 0 else { throw CoreError.invalidArgument(op: "mosaic", "needs at least one non-empty tile") }
        guard tiles.allSatisfy({ $0.width == first.width && $0.height == first.height }) else {
            throw CoreError.invalidArgument(op: "mosaic", "tiles differ in size; resize them alike first")
        }
        let rows = layout.count, columns = layout.map(\.count).max() ?? 0
        guard rows > 0, columns > 0 else { throw CoreError.invalidArgument(op: "mosaic", "layout is empty") }
        let (tw, th) = (first.width, first.height)
        _ = try Memory.checkAllocation([rows * th, columns * tw, 3], elementSize: 1, op: "mosaic")
        var out = RGBImage(width: columns * tw, height: rows * th)
        var next = 0
        for (r, line) in layout.enumerated() {
            for (c, ch) in line.enumerated() where ch == "#" {
                let tile = tiles[next % tiles.count]
                next += 1
                for y in 0..<th {
                    let dst = ((r * th + y) * out.width + c * tw) * 3, src = y * tw * 3
                    out.pixels.replaceSubrange(dst..<(dst + tw * 3), with: tile.pixels[src..<(src + tw * 3)])
                }
            }
        }
        return out
    }
}
