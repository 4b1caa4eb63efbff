// Plot.swift: line charts — rasterised to an RGB image (axes, ticks, tick values, title, axis
// labels and a legend in a built-in 3x5 pixel font) or drawn in a terminal with braille dots.

import Foundation

/// One or more series of (x, y) points.
public struct LineChart {
    public var series: [[(x: Double, y: Double)]]
    public var title: String?
    public var labels: [String]?
    public var xLabel: String?
    public var yLabel: String?

    public init(series: [[(x: Double, y: Double)]], title: String? = nil, labels: [String]? = nil) {
        self.series = series
        self.title = title
        self.labels = labels
    }

    static let palette: [[Float]] = [[0.12, 0.47, 0.71], [1.0, 0.50, 0.05], [0.17, 0.63, 0.17], [0.84, 0.15, 0.16],
                                     [0.58, 0.40, 0.74], [0.55, 0.34, 0.29]]

    /// Whether a point is drawn: finite, and small enough that spans between points stay finite
    /// (NaN, infinities and values past 1e300 are left out, as gaps).
    static func drawn(_ p: (x: Double, y: Double)) -> Bool { abs(p.x) <= 1e300 && abs(p.y) <= 1e300 }

    var bounds: (x0: Double, x1: Double, y0: Double, y1: Double) {
        let pts = series.flatMap { $0 }.filter(LineChart.drawn)
        var x0 = pts.map(\.x).min() ?? 0, x1 = pts.map(\.x).max() ?? 1, y0 = pts.map(\.y).min() ?? 0, y1 = pts.map(\.y).max() ?? 1
        if x1 == x0 { x0 -= 0.5; x1 += 0.5 }
        if y1 == y0 { y0 -= 0.5; y1 += 0.5 }
        let pad = (y1 - y0) * 0.05
        return (x0, x1, y0 - pad, y1 + pad)
    }

    /// A `[3, height, width]` image in [0, 1].
    public func render(width: Int = 640, height: Int = 400) -> Tensor {
        var canvas = Canvas(width: width, height: height)
        let (x0, x1, y0, y1) = bounds
        let left = 56, right = width - 16, top = title == nil ? 16 : 30, bottom = height - 34
        func px(_ x: Double) -> Double { Double(left) + (x - x0) / (x1 - x0) * Double(right - left) }
        func py(_ y: Double) -> Double { Double(bottom) - (y - y0) / (y1 - y0) * Double(bottom - top) }
        let grey: [Float] = [0.85, 0.85, 0.85], black: [Float] = [0.15, 0.15, 0.15]
        // Grid and tick values.
        for t in LineChart.ticks(y0, y1) {
            let y = Int(py(t).rounded())
            canvas.line(Double(left), Double(y), Double(right), Double(y), grey)
            canvas.text(LineChart.tickText(t), x: left - 4, y: y - 5, color: black, alignRight: true)
        }
        for t in LineChart.ticks(x0, x1) {
            let x = Int(px(t).rounded())
            canvas.line(Double(x), Double(top), Double(x), Double(bottom), grey)
            canvas.text(LineChart.tickText(t), x: x, y: bottom + 6, color: black, center: true)
        }
        canvas.line(Double(left), Double(bottom), Double(right), Double(bottom), black)
        canvas.line(Double(left), Double(top), Double(left), Double(bottom), black)
        for (i, s) in series.enumerated() {
            let color = LineChart.palette[i % LineChart.palette.count]
            for (a, b) in zip(s, s.dropFirst()) where LineChart.drawn(a) && LineChart.drawn(b) {
                canvas.line(px(a.x), py(a.y), px(b.x), py(b.y), color, thick: true)
            }
            if s.count == 1, LineChart.drawn(s[0]) { canvas.dot(px(s[0].x), py(s[0].y), color) }
        }
        if let t = title { canvas.text(t, x: width / 2, y: 8, color: black, center: true) }
        if let xl = xLabel { canvas.text(xl, x: (left + right) / 2, y: height - 14, color: black, center: true) }
        if let yl = yLabel { canvas.text(yl, x: 4, y: top - 12, color: black) }
        if let labels = labels {
            for (i, l) in labels.prefix(series.count).enumerated() {
                let y = top + 6 + 14 * i
                canvas.fill(x: right - 120, y: y, w: 12, h: 6, LineChart.palette[i % LineChart.palette.count])
                canvas.text(l, x: right - 104, y: y - 2, color: black)
            }
        }
        return canvas.tensor
    }

    /// The chart in a terminal: braille dots (2 x 4 per character), y range on the left.
    public func text(width: Int = 60, height: Int = 12) -> String {
        let (x0, x1, y0, y1) = bounds
        let w = width * 2, h = height * 4
        var dots = [[Bool]](repeating: [Bool](repeating: false, count: w), count: h)
        for s in series {
            var prev: (Int, Int)? = nil
            for p in s where LineChart.drawn(p) {
                let x = Int(((p.x - x0) / (x1 - x0) * Double(w - 1)).rounded()), y = Int(((y1 - p.y) / (y1 - y0) * Double(h - 1)).rounded())
                if let (a, b) = prev {
                    let steps = max(abs(x - a), abs(y - b), 1)
                    for k in 0...steps { dots[b + (y - b) * k / steps][a + (x - a) * k / steps] = true }
                } else { dots[y][x] = true }
                prev = (x, y)
            }
        }
        let bits: [(Int, Int, UInt32)] = [(0, 0, 0x01), (0, 1, 0x02), (0, 2, 0x04), (1, 0, 0x08), (1, 1, 0x10), (1, 2, 0x20), (0, 3, 0x40), (1, 3, 0x80)]
        var lines: [String] = []
        if let t = title { lines.append(t) }
        let top = LineChart.tickText(y1), bottomText = LineChart.tickText(y0)
        let margin = max(top.count, bottomText.count)
        for row in 0..<height {
            var line = ""
            for col in 0..<width {
                var code: UInt32 = 0x2800
                for (dx, dy, bit) in bits where dots[row * 4 + dy][col * 2 + dx] { code |= bit }
                line.unicodeScalars.append(Unicode.Scalar(code)!)
            }
            let label = row == 0 ? top : (row == height - 1 ? bottomText : "")
            lines.append(String(repeating: " ", count: margin - label.count) + label + " ┤" + line)
        }
        lines.append(String(repeating: " ", count: margin) + " └" + String(repeating: "─", count: width))
        lines.append(String(repeating: " ", count: margin + 2) + LineChart.tickText(x0) + String(repeating: " ", count: max(1, width - LineChart.tickText(x0).count - LineChart.tickText(x1).count)) + LineChart.tickText(x1))
        if let labels = labels, series.count > 1 { lines.append("series: " + labels.joined(separator: ", ")) }
        return lines.joined(separator: "\n")
    }

    /// About five round tick values covering [a, b].
    static func ticks(_ a: Double, _ b: Double) -> [Double] {
        let span = b - a
        guard span > 0, span.isFinite else { return [a] }
        let raw = span / 5, mag = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? raw
        var out: [Double] = []
        var t = ceil(a / step) * step
        while t <= b + step * 1e-9 { out.append(abs(t) < step * 1e-9 ? 0 : t); t += step }
        return out
    }

    static func tickText(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e6 { return String(Int(v)) }
        let s = String(format: "%.3g", v)
        return s
    }
}

/// An RGB pixel buffer with lines (Wu-free, thick option) and 3x5 pixel text at scale 2.
struct Canvas {
    let width, height: Int
    var pixels: [Float]

    init(width: Int, height: Int) {
        self.width = width
        self.height = height
        pixels = [Float](repeating: 1, count: 3 * width * height)
    }

    mutating func set(_ x: Int, _ y: Int, _ c: [Float]) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        for k in 0..<3 { pixels[k * width * height + y * width + x] = c[k] }
    }

    mutating func fill(x: Int, y: Int, w: Int, h: Int, _ c: [Float]) {
        for yy in y..<(y + h) { for xx in x..<(x + w) { set(xx, yy, c) } }
    }

    mutating func dot(_ x: Double, _ y: Double, _ c: [Float]) { fill(x: Int(x) - 2, y: Int(y) - 2, w: 5, h: 5, c) }

    mutating func line(_ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double, _ c: [Float], thick: Bool = false) {
        let steps = max(1, Int(max(abs(x1 - x0), abs(y1 - y0)).rounded(.up)))
        for i in 0...steps {
            let t = Double(i) / Double(steps)
            let x = Int((x0 + (x1 - x0) * t).rounded()), y = Int((y0 + (y1 - y0) * t).rounded())
            set(x, y, c)
            if thick { set(x + 1, y, c); set(x, y + 1, c) }
        }
    }

    /// 3x5 glyphs, rows top to bottom, 3 bits each (lower case drawn as upper case).
    static let font: [Character: [UInt8]] = [
        "0": [7, 5, 5, 5, 7], "1": [2, 6, 2, 2, 7], "2": [7, 1, 7, 4, 7], "3": [7, 1, 7, 1, 7], "4": [5, 5, 7, 1, 1],
        "5": [7, 4, 7, 1, 7], "6": [7, 4, 7, 5, 7], "7": [7, 1, 1, 1, 1], "8": [7, 5, 7, 5, 7], "9": [7, 5, 7, 1, 7],
        "A": [2, 5, 7, 5, 5], "B": [6, 5, 6, 5, 6], "C": [3, 4, 4, 4, 3], "D": [6, 5, 5, 5, 6], "E": [7, 4, 6, 4, 7],
        "F": [7, 4, 6, 4, 4], "G": [3, 4, 5, 5, 3], "H": [5, 5, 7, 5, 5], "I": [7, 2, 2, 2, 7], "J": [1, 1, 1, 5, 2],
        "K": [5, 5, 6, 5, 5], "L": [4, 4, 4, 4, 7], "M": [5, 7, 7, 5, 5], "N": [6, 5, 5, 5, 5], "O": [2, 5, 5, 5, 2],
        "P": [6, 5, 6, 4, 4], "Q": [2, 5, 5, 6, 3], "R": [6, 5, 6, 5, 5], "S": [3, 4, 2, 1, 6], "T": [7, 2, 2, 2, 2],
        "U": [5, 5, 5, 5, 7], "V": [5, 5, 5, 5, 2], "W": [5, 5, 7, 7, 5], "X": [5, 5, 2, 5, 5], "Y": [5, 5, 2, 2, 2],
        "Z": [7, 1, 2, 4, 7], ".": [0, 0, 0, 0, 2], "-": [0, 0, 7, 0, 0], "+": [0, 2, 7, 2, 0], "_": [0, 0, 0, 0, 7],
        ":": [0, 2, 0, 2, 0], "/": [1, 1, 2, 4, 4], "(": [2, 4, 4, 4, 2], ")": [2, 1, 1, 1, 2], "=": [0, 7, 0, 7, 0],
        "%": [5, 1, 2, 4, 5], ",": [0, 0, 0, 2, 4], "'": [2, 2, 0, 0, 0], " ": [0, 0, 0, 0, 0],
    ]

    mutating func text(_ s: String, x: Int, y: Int, color: [Float], center: Bool = false, alignRight: Bool = false) {
        let scale = 2, advance = 4 * scale
        let total = s.count * advance
        var cx = center ? x - total / 2 : (alignRight ? x - total : x)
        for ch in s.uppercased() {
            let glyph = Canvas.font[ch] ?? [7, 5, 5, 5, 7]
            for (row, bits) in glyph.enumerated() {
                for col in 0..<3 where bits & (4 >> col) != 0 {
                    fill(x: cx + col * scale, y: y + row * scale, w: scale, h: scale, color)
                }
            }
            cx += advance
        }
    }

    var tensor: Tensor { try! Tensor(pixels, shape: [3, height, width]) }
}
