// Memory.swift: checks that a tensor of a given shape can be allocated at all, before anything is
// allocated, so that `zeros([100000, 100000])` on a 24 GB machine is an error naming the shape and
// the bytes instead of the end of the process.

#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The largest allocation one tensor may make, and the shape checks every creation and every
/// operation whose output can outgrow its inputs (broadcasting, matrix products, concatenation,
/// convolutions, layer weights) runs first.
public enum Memory {
    /// The most bytes one tensor may take: physical memory plus swap, lowered to the control
    /// group's limit where one is set (a container or a Slurm job, whose limit ends a process that
    /// goes past it), and to `SMIL_MEMORY_LIMIT` (bytes, or with a `K`, `M`, `G` suffix) where that is
    /// smaller. A single buffer larger than this cannot succeed: Linux refuses it outright or kills
    /// the process when its pages are touched.
    public static let limitBytes: Int = {
        var limit = physicalPlusSwap()
        if let c = controlGroupLimit() { limit = Swift.min(limit, c) }
        if let text = ProcessInfo.processInfo.environment["SMIL_MEMORY_LIMIT"], let v = parseBytes(text), v > 0 {
            limit = Swift.min(limit, v)
        }
        return limit
    }()

    /// The number of elements of `shape`, after checking that every size is non-negative, that
    /// the product does not overflow, and that `elementSize`-byte elements fit in `limitBytes`.
    /// `op` names the operation in the error.
    @discardableResult
    public static func checkAllocation(_ shape: [Int], elementSize: Int = MemoryLayout<Float>.stride, op: String) throws -> Int {
        if let (i, d) = shape.enumerated().first(where: { $0.element < 0 }) {
            throw CoreError.invalidArgument(op: op, "size \(d) at dimension \(i) of shape \(shapeString(shape)) is negative")
        }
        var count = 1
        for d in shape {
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            if overflow { throw tooLarge(shape, bytes: nil, op: op) }
            count = p
        }
        if count == 0 { return 0 }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: elementSize)
        if overflow || bytes > limitBytes { throw tooLarge(shape, bytes: overflow ? nil : bytes, op: op) }
        return count
    }

    /// Bytes as people read them: `40.0 GB` (decimal units, as `free -h` and PyTorch's messages).
    public static func describe(bytes: Int) -> String {
        let units = ["bytes", "KB", "MB", "GB", "TB", "PB", "EB"]
        var v = Double(bytes), u = 0
        while v >= 1000 && u < units.count - 1 { v /= 1000; u += 1 }
        return u == 0 ? "\(bytes) bytes" : String(format: "%.1f %@", v, units[u])
    }

    static func tooLarge(_ shape: [Int], bytes: Int?, op: String) -> CoreError {
        let size = bytes.map { "\(describe(bytes: $0)) (\($0) bytes)" } ?? "more than 2^63 bytes"
        return .invalidArgument(op: op, "cannot allocate a tensor of shape \(shapeString(shape)): it needs \(size), more than this machine can hold (\(describe(bytes: limitBytes)) of memory and swap for one tensor)")
    }

    static func physicalPlusSwap() -> Int {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, pageSize > 0 else { return Int.max }
        var total = pages * pageSize
        // /proc/meminfo: "SwapTotal:       2097148 kB".
        if let info = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
           let line = info.split(separator: "\n").first(where: { $0.hasPrefix("SwapTotal:") }),
           let kb = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) {
            total += kb * 1024
        }
        return total
    }

    /// cgroup v2's `memory.max` plus `memory.swap.max`, or cgroup v1's `memory.limit_in_bytes`, for
    /// this process's group; nil where there is no limit or it cannot be read.
    static func controlGroupLimit() -> Int? {
        func read(_ path: String) -> Int? {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
            return Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        var group = ""
        if let lines = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) {
            for line in lines.split(separator: "\n") where line.hasPrefix("0::") { group = String(line.dropFirst(3)) }
        }
        for dir in Set(["/sys/fs/cgroup" + group, "/sys/fs/cgroup"]) {
            if let max = read(dir + "/memory.max") {
                let swap = read(dir + "/memory.swap.max") ?? 0
                let (sum, overflow) = max.addingReportingOverflow(swap)
                return overflow ? max : sum
            }
        }
        // cgroup v1 reports "no limit" as a huge number rounded to the page size.
        if let v1 = read("/sys/fs/cgroup/memory/memory.limit_in_bytes"), v1 < 1 << 60 { return v1 }
        return nil
    }

    /// `1073741824`, `512M`, `4G`, `16GB` (binary multiples, as `ulimit` and Slurm's `--mem`).
    static func parseBytes(_ text: String) -> Int? {
        var s = text.trimmingCharacters(in: .whitespaces).uppercased()
        if s.hasSuffix("B") { s.removeLast() }
        let scale: Int
        switch s.last {
        case "K": scale = 1 << 10
        case "M": scale = 1 << 20
        case "G": scale = 1 << 30
        case "T": scale = 1 << 40
        default: scale = 1
        }
        if scale > 1 { s.removeLast() }
        guard let v = Int(s), v >= 0 else { return nil }
        let (p, overflow) = v.multipliedReportingOverflow(by: scale)
        return overflow ? nil : p
    }
}
