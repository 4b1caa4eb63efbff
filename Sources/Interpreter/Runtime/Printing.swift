// Printing.swift: how values print (Python's rules for numbers, quoted strings inside
// collections) and Python format specs for interpolation (`{x:.3f}`, `{x:>8}`).

import Foundation
import Core

/// The shortest text that reads back as `d`, always with a '.' or an exponent (Python's repr).
func formatFloat(_ d: Double) -> String {
    if d.isNaN { return "nan" }
    if d.isInfinite { return d > 0 ? "inf" : "-inf" }
    var s = "\(d)"   // Swift prints the shortest round-trip form: 0.1, 3.0, 1e-08, 1e+16
    if s.contains("e") {
        // Python writes 1e-08 / 1e+16 as Swift does; make sure the exponent has two digits.
        let parts = s.split(separator: "e")
        var exp = String(parts[1])
        let sign = exp.hasPrefix("-") ? "-" : "+"
        exp = exp.trimmingPrefix { $0 == "-" || $0 == "+" }
        if exp.count < 2 { exp = "0" + exp }
        var mant = String(parts[0])
        if mant.hasSuffix(".0") { mant.removeLast(2) }
        s = mant + "e" + sign + exp
    }
    return s
}

extension String {
    func trimmingPrefix(while p: (Character) -> Bool) -> String { String(drop(while: p)) }
}

/// Text for a value: strings bare at the top level and quoted inside collections.
public func render(_ v: Value, quoted: Bool) -> String {
    switch v {
    case .int(let i): return String(i)
    case .float(let d): return formatFloat(d)
    case .bool(let b): return b ? "true" : "false"
    case .nilValue: return "nil"
    case .string(let s): return quoted ? quote(s) : s
    case .list(let l): return "[" + l.items.map { render($0, quoted: true) }.joined(separator: ", ") + "]"
    case .dict(let d): return "{" + zip(d.keys, d.values).map { "\(render($0, quoted: true)): \(render($1, quoted: true))" }.joined(separator: ", ") + "}"
    case .range(let lo, let hi): return "\(lo)..<\(hi)"
    case .function(let f): return "<fn \(f.name)>"
    case .tensor(let t): return t.value.description
    case .intTensor(let t): return t.value.description
    case .object(let o): return o.description
    }
}

func quote(_ s: String) -> String {
    var out = "\""
    for c in s {
        switch c {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        default: out.append(c)
        }
    }
    return out + "\""
}

/// Applies a Python format spec: `[[fill]align][sign][0][width][,][.precision][type]`.
func formatValue(_ v: Value, spec: String) throws -> String {
    var chars = Array(spec)
    var fill: Character = " ", align: Character? = nil, sign: Character = "-"
    var width = 0, precision: Int? = nil, comma = false, type: Character? = nil
    if chars.count >= 2, "<>^=".contains(chars[1]) { fill = chars[0]; align = chars[1]; chars.removeFirst(2) }
    else if let c = chars.first, "<>^=".contains(c) { align = c; chars.removeFirst() }
    if let c = chars.first, "+- ".contains(c) { sign = c; chars.removeFirst() }
    if chars.first == "0" { fill = "0"; if align == nil { align = "=" }; chars.removeFirst() }
    var digits = ""
    while let c = chars.first, c.isNumber { digits.append(c); chars.removeFirst() }
    width = Int(digits) ?? 0
    if chars.first == "," { comma = true; chars.removeFirst() }
    if chars.first == "." {
        chars.removeFirst()
        var p = ""
        while let c = chars.first, c.isNumber { p.append(c); chars.removeFirst() }
        guard let pi = Int(p) else { throw ScriptError(.runtime, "bad format spec '\(spec)': missing precision after '.'") }
        precision = pi
    }
    if let c = chars.first { type = c; chars.removeFirst() }
    guard chars.isEmpty else { throw ScriptError(.runtime, "bad format spec '\(spec)'") }

    var body: String
    var negative = false
    func number(_ d: Double, _ t: Character) throws -> String {
        negative = d < 0 || (d == 0 && d.sign == .minus)
        let a = Swift.abs(d)
        switch t {
        case "f", "F": return String(format: "%.\(precision ?? 6)f", a)
        case "e", "E":
            let s = String(format: "%.\(precision ?? 6)e", a)
            return t == "E" ? s.uppercased() : s
        case "g", "G": return String(format: "%.\(max(1, precision ?? 6))g", a)
        case "%": return String(format: "%.\(precision ?? 6)f", a * 100) + "%"
        default: throw ScriptError(.runtime, "bad format spec '\(spec)': unknown type '\(t)' for a number")
        }
    }
    switch v {
    case .int(let i) where type == nil || type == "d" || type == "n":
        negative = i < 0
        body = String(i.magnitude)
        if comma { body = grouped(body) }
    case .int, .float:
        let d: Double
        if case .int(let i) = v { d = Double(i) } else if case .float(let f) = v { d = f } else { d = 0 }
        if type == "d" { throw ScriptError(.runtime, "bad format spec '\(spec)': 'd' needs an integer, got a float") }
        if type == nil && precision == nil {
            negative = d < 0
            body = formatFloat(Swift.abs(d))
        } else {
            body = try number(d, type ?? "g")
        }
        if comma, let dot = body.firstIndex(where: { $0 == "." || $0 == "e" }) {
            body = grouped(String(body[..<dot])) + body[dot...]
        } else if comma { body = grouped(body) }
    case .bool, .nilValue, .string, .list, .dict, .range, .function, .tensor, .intTensor, .object:
        if let t = type, t != "s" { throw ScriptError(.runtime, "bad format spec '\(spec)': type '\(t)' needs a number, got \(an(v.typeName))") }
        body = render(v, quoted: false)
        if let p = precision { body = String(body.prefix(p)) }
    }
    let signText = negative ? "-" : (sign == "+" ? "+" : (sign == " " ? " " : ""))
    let isNumber: Bool
    switch v { case .int, .float: isNumber = true; default: isNumber = false }
    let total = signText.count + body.count
    let pad = max(0, width - total)
    let padding = String(repeating: fill, count: pad)
    switch align ?? (isNumber ? ">" : "<") {
    case "<": return signText + body + padding
    case "^": return String(repeating: fill, count: pad / 2) + signText + body + String(repeating: fill, count: pad - pad / 2)
    case "=": return signText + padding + body
    default: return padding + signText + body
    }
}

func grouped(_ digits: String) -> String {
    var out = ""
    for (i, c) in digits.reversed().enumerated() {
        if i > 0 && i % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return String(out.reversed())
}
