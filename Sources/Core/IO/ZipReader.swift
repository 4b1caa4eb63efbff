// ZipReader.swift: reads the stored (uncompressed) entries of a zip archive, as torch.save writes
// them, from a file that may be hostile. Every size and offset in the archive is checked against the
// file before it is used. (ZIPFoundation, which writes smil's archives, traps on a central-directory
// offset past 2^63 when reading: found by libFuzzer on smil-fuzz-torchfile, so untrusted archives
// are read here instead.)

import Foundation

struct ZipReader {
    struct Entry {
        let name: String
        let method: UInt16
        let crc: UInt32
        let compressedSize: Int
        let size: Int
        let localHeader: Int
    }

    let data: Data
    let path: String
    private(set) var entries: [String: Entry] = [:]

    init(path: String) throws {
        self.path = path
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw CoreError.file(path: path, "cannot read: \(error.localizedDescription)")
        }
        try readDirectory()
    }

    func fail(_ message: String) -> CoreError { .file(path: path, "not a readable zip archive (truncated or corrupt?): \(message)") }

    func u16(_ at: Int) throws -> Int {
        guard at >= 0, at <= data.count - 2 else { throw fail("a field at byte \(at) lies past the end of the file") }
        return Int(data[data.startIndex + at]) | Int(data[data.startIndex + at + 1]) << 8
    }

    func u32(_ at: Int) throws -> Int { try u16(at) | u16(at + 2) << 16 }

    func u64(_ at: Int) throws -> Int {
        let v = UInt64(try u32(at)) | UInt64(try u32(at + 4)) << 32
        guard v <= UInt64(Int.max) else { throw fail("a 64-bit field at byte \(at) is beyond any file (\(v))") }
        return Int(v)
    }

    /// `start..<start + count` if it lies inside the file.
    func range(_ start: Int, _ count: Int, _ what: String) throws -> Range<Int> {
        let (end, overflow) = start.addingReportingOverflow(count)
        guard start >= 0, count >= 0, !overflow, end <= data.count else {
            throw fail("\(what) (\(count) bytes at \(start)) lies past the end of the file (\(data.count) bytes)")
        }
        return (data.startIndex + start)..<(data.startIndex + end)
    }

    private mutating func readDirectory() throws {
        // The end-of-central-directory record: 22 bytes plus a comment of up to 65,535, at the end.
        var eocd = -1
        var at = data.count - 22
        while at >= max(0, data.count - 22 - 65_535) {
            if try u32(at) == 0x0605_4B50 { eocd = at; break }
            at -= 1
        }
        guard eocd >= 0 else { throw fail("no end-of-central-directory record") }
        var count = try u16(eocd + 10), size = try u32(eocd + 12), offset = try u32(eocd + 16)
        if count == 0xFFFF || size == 0xFFFF_FFFF || offset == 0xFFFF_FFFF {
            // Zip64: a locator just before the record gives the zip64 record's offset.
            guard eocd >= 20, try u32(eocd - 20) == 0x0706_4B50 else { throw fail("a zip64 archive without its locator") }
            let record = try u64(eocd - 12)
            guard try u32(record) == 0x0606_4B50 else { throw fail("the zip64 end-of-central-directory record is not where its locator says") }
            count = try u64(record + 32)
            size = try u64(record + 40)
            offset = try u64(record + 48)
        }
        let directory = try range(offset, size, "the central directory")
        // Each entry takes at least 46 bytes: a count beyond that is a lie.
        guard count <= size / 46 else { throw fail("\(count) entries cannot fit in a central directory of \(size) bytes") }
        var p = directory.lowerBound - data.startIndex
        for _ in 0..<count {
            guard try u32(p) == 0x0201_4B50 else { throw fail("a central directory entry without its signature at byte \(p)") }
            let method = UInt16(try u16(p + 10)), crc = UInt32(try u32(p + 16))
            var compressed = try u32(p + 20), uncompressed = try u32(p + 24)
            let nameLength = try u16(p + 28), extraLength = try u16(p + 30), commentLength = try u16(p + 32)
            var local = try u32(p + 42)
            let name = String(decoding: data[try range(p + 46, nameLength, "an entry name")], as: UTF8.self)
            // Zip64 sizes and offset, in that order, for the fields that are 0xFFFFFFFF.
            var e = p + 46 + nameLength
            let extraEnd = e + extraLength
            _ = try range(e, extraLength, "an extra field")
            while e + 4 <= extraEnd {
                let id = try u16(e), length = try u16(e + 2)
                if id == 0x0001 {
                    var q = e + 4
                    for field in 0..<3 {
                        let value = field == 0 ? uncompressed : field == 1 ? compressed : local
                        guard value == 0xFFFF_FFFF, q + 8 <= e + 4 + length else { continue }
                        let wide = try u64(q)
                        q += 8
                        if field == 0 { uncompressed = wide } else if field == 1 { compressed = wide } else { local = wide }
                    }
                }
                e += 4 + length
            }
            entries[name] = Entry(name: name, method: method, crc: crc, compressedSize: compressed, size: uncompressed, localHeader: local)
            p += 46 + nameLength + extraLength + commentLength
        }
    }

    /// An entry's bytes (stored entries only, as torch.save writes them), checked against its CRC-32
    /// when `verify`.
    func contents(_ entry: Entry, verify: Bool) throws -> Data {
        guard entry.method == 0 else {
            throw CoreError.file(path: path, "\(entry.name) is compressed (method \(entry.method)); torch.save stores entries uncompressed, and only those are read")
        }
        guard entry.compressedSize == entry.size else { throw fail("\(entry.name): a stored entry whose sizes differ") }
        guard try u32(entry.localHeader) == 0x0403_4B50 else { throw fail("\(entry.name): no local header where the directory says") }
        let start = entry.localHeader + 30 + (try u16(entry.localHeader + 26)) + (try u16(entry.localHeader + 28))
        let bytes = data.subdata(in: try range(start, entry.size, entry.name))
        if verify {
            guard crc32(bytes) == entry.crc else { throw CoreError.file(path: path, "\(entry.name) is corrupt (its CRC-32 does not match)") }
        }
        return bytes
    }
}

/// CRC-32 (IEEE 802.3, as zip uses it).
func crc32(_ data: Data) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
        for b in raw { crc = crc32Table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
    }
    return crc ^ 0xFFFF_FFFF
}

let crc32Table: [UInt32] = (0..<256).map { n -> UInt32 in
    var c = UInt32(n)
    for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    return c
}
