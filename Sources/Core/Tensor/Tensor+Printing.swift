// Tensor+Printing.swift: PyTorch-like text for tensors, eliding the middle of large dimensions.

extension Tensor: CustomStringConvertible {
    /// Values (edge items only when a dimension is long), then the shape.
    public var description: String {
        let values = formatNested(scalars.map { formatElement($0) }, shape: shape)
        return "tensor(\(values), shape: \(shapeString(shape)))"
    }

    private func formatElement(_ v: Float) -> String {
        if v.isNaN { return "nan" }
        if v.isInfinite { return v > 0 ? "inf" : "-inf" }
        let a = Swift.abs(v)
        if a != 0 && (a >= 1e5 || a < 1e-4) {
            return String(format4e: v)
        }
        return String(format4f: v)
    }
}

extension IntTensor: CustomStringConvertible {
    public var description: String {
        "tensor(\(formatNested(scalars.map(String.init), shape: shape)), shape: \(shapeString(shape)), dtype: int64)"
    }
}

/// Nested brackets over `shape`, showing the first and last 3 entries of dimensions longer than 6.
func formatNested(_ items: [String], shape: [Int]) -> String {
    guard !shape.isEmpty else { return items.first ?? "" }
    let width = items.map(\.count).max() ?? 0
    let strides = contiguousStrides(shape)
    func render(_ dim: Int, _ offset: Int, indent: Int) -> String {
        let n = shape[dim]
        let idx: [Int?] = n > 6 ? [0, 1, 2, nil, n - 3, n - 2, n - 1] : (0..<n).map { $0 }
        if dim == shape.count - 1 {
            let parts = idx.map { i in i.map { String(repeating: " ", count: width - items[offset + $0].count) + items[offset + $0] } ?? "..." }
            return "[" + parts.joined(separator: ", ") + "]"
        }
        let sep = "," + String(repeating: "\n", count: shape.count - dim - 1) + String(repeating: " ", count: indent + 1)
        let parts = idx.map { i in i.map { render(dim + 1, offset + $0 * strides[dim], indent: indent + 1) } ?? "..." }
        return "[" + parts.joined(separator: sep) + "]"
    }
    return render(0, 0, indent: 7)
}

extension String {
    /// Fixed notation with 4 decimals ("1.2346").
    init(format4f v: Float) {
        let d = Double(v)
        let scaled = (Swift.abs(d) * 10_000).rounded()
        let ip = Int(scaled / 10_000), fp = Int(scaled) % 10_000
        let frac = String(fp)
        self = (d < 0 && scaled != 0 ? "-" : "") + "\(ip)." + String(repeating: "0", count: 4 - frac.count) + frac
    }

    /// Scientific notation with 4 decimals ("1.2346e-05").
    init(format4e v: Float) {
        var m = Double(Swift.abs(v)), e = 0
        while m >= 10 { m /= 10; e += 1 }
        while m < 1 && m > 0 { m *= 10; e -= 1 }
        if (m * 10_000).rounded() >= 100_000 { m /= 10; e += 1 }
        let es = String(Swift.abs(e))
        self = (v < 0 ? "-" : "") + String(format4f: Float(m)) + "e" + (e < 0 ? "-" : "+") + (es.count < 2 ? "0" : "") + es
    }
}
