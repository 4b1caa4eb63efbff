// Printing.swift: how values print (Python's rules for numbers, quoted strings inside
// collections) and Python format specs for interpolation (`{x:.3f}`, `{x:>8}`).

import Foundation
import Core

/// The shortest text that reads back as `d`, always with a '.' or an exponent, as Python's repr:
/// positional from 1e-4 up to (not including) 1e16, exponent form outside (`1e-05`, `1e+16`).
func formatFloat(_ d: Double) -> String {
    if d.isNaN { return "nan" }
    if d.isInfinite { return d > 0 ? "inf" : "-inf" }
    if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
    // Swift's description has the shortest round-trip digits; only its switch to exponent form
    // (at 2^53 and 1e-4) differs from Python's, so take its digits and exponent and lay them out.
    let (digits, exponent) = shortestDigits(Swift.abs(d))
    let sign = d < 0 ? "-" : ""
    if exponent < -4 || exponent >= 16 {
        var mantissa = String(digits.first!)
        if digits.count > 1 { mantissa += "." + digits.dropFirst() }
        return sign + mantissa + "e" + (exponent < 0 ? "-" : "+") + (abs(exponent) < 10 ? "0" : "") + String(abs(exponent))
    }
    if exponent < 0 { return sign + "0." + String(repeating: "0", count: -exponent - 1) + digits }
    if digits.count <= exponent + 1 { return sign + digits + String(repeating: "0", count: exponent + 1 - digits.count) + ".0" }
    let point = digits.index(digits.startIndex, offsetBy: exponent + 1)
    return sign + digits[..<point] + "." + digits[point...]
}

/// The shortest round-trip decimal digits of a positive finite `d` (no leading or trailing zeros)
/// and the decimal exponent of the first: 1234.5 -> ("12345", 3), 0.001 -> ("1", -3).
private func shortestDigits(_ d: Double) -> (String, Int) {
    let text = d.description
    let parts = text.split(separator: "e")
    var exponent = parts.count == 2 ? Int(parts[1])! : 0
    let mantissa = parts[0]
    let point = mantissa.firstIndex(of: ".")
    let whole = point.map { mantissa[..<$0] } ?? mantissa[...]
    let fraction = point.map { mantissa[mantissa.index(after: $0)...] } ?? ""
    var digits = String(whole + fraction)
    exponent += whole.count - 1
    while digits.hasPrefix("0") && digits.count > 1 { digits.removeFirst(); exponent -= 1 }
    while digits.hasSuffix("0") && digits.count > 1 { digits.removeLast() }
    return (digits, exponent)
}

extension String {
    func trimmingPrefix(while p: (Character) -> Bool) -> String { String(drop(while: p)) }
}

/// Text for a value: strings bare at the top level and quoted inside collections. A list or dict
/// that contains itself shows the inner occurrence as `[...]` or `{...}`, as Python does.
public func render(_ v: Value, quoted: Bool) -> String {
    var open = Set<ObjectIdentifier>()
    return render(v, quoted: quoted, open: &open)
}

private func render(_ v: Value, quoted: Bool, open: inout Set<ObjectIdentifier>) -> String {
    switch v {
    case .list(let l):
        guard open.insert(ObjectIdentifier(l)).inserted else { return "[...]" }
        defer { open.remove(ObjectIdentifier(l)) }
        return "[" + l.items.map { render($0, quoted: true, open: &open) }.joined(separator: ", ") + "]"
    case .dict(let d):
        guard open.insert(ObjectIdentifier(d)).inserted else { return "{...}" }
        defer { open.remove(ObjectIdentifier(d)) }
        return "{" + zip(d.keys, d.values).map { "\(render($0, quoted: true, open: &open)): \(render($1, quoted: true, open: &open))" }.joined(separator: ", ") + "}"
    default: break
    }
    switch v {
    case .int(let i): return String(i)
    case .float(let d): return formatFloat(d)
    case .bool(let b): return b ? "true" : "false"
    case .nilValue: return "nil"
    case .string(let s): return quoted ? quote(s) : s
    case .list, .dict: return ""  // handled above
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

/// Applies a Python format spec: `[[fill]align][sign][#][0][width][,][.precision][type]`, with
/// the types `s d n b o x X c` for integers and `e E f F g G n %` for numbers.
func formatValue(_ v: Value, spec: String) throws -> String {
    var chars = Array(spec)
    var fill: Character = " ", align: Character? = nil, sign: Character = "-"
    var width = 0, precision: Int? = nil, comma = false, type: Character? = nil, alternate = false
    if chars.count >= 2, "<>^=".contains(chars[1]) { fill = chars[0]; align = chars[1]; chars.removeFirst(2) }
    else if let c = chars.first, "<>^=".contains(c) { align = c; chars.removeFirst() }
    if let c = chars.first, "+- ".contains(c) { sign = c; chars.removeFirst() }
    if chars.first == "#" { alternate = true; chars.removeFirst() }
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
        let flag = alternate ? "#" : ""
        switch t {
        case "f", "F": return String(format: "%\(flag).\(precision ?? 6)f", a)
        case "e", "E":
            let s = String(format: "%\(flag).\(precision ?? 6)e", a)
            return t == "E" ? s.uppercased() : s
        case "g", "G", "n":
            let s = String(format: "%\(alternate ? "#" : "").\(max(1, precision ?? 6))g", a)
            return t == "G" ? s.uppercased() : s
        case "%": return String(format: "%.\(precision ?? 6)f", a * 100) + "%"
        default: throw ScriptError(.runtime, "bad format spec '\(spec)': unknown type '\(t)' for a number")
        }
    }
    var prefix = ""
    if case .int = v, precision != nil, type.map({ "dnbBoxXc".contains($0) }) ?? true {
        throw ScriptError(.runtime, "bad format spec '\(spec)': precision not allowed in integer format specifier")
    }
    switch v {
    case .int(let i) where type == nil || type == "d" || type == "n":
        negative = i < 0
        body = String(i.magnitude)
        if comma { body = grouped(body) }
    case .int(let i) where type.map { "bBoxX".contains($0) } ?? false:
        negative = i < 0
        let radix = type == "b" ? 2 : type == "o" ? 8 : 16
        body = String(i.magnitude, radix: radix, uppercase: type == "X")
        if alternate { prefix = type == "b" ? "0b" : type == "o" ? "0o" : type == "X" ? "0X" : "0x" }
    case .int(let i) where type == "c":
        guard let scalar = i >= 0 && i <= 0x10FFFF ? Unicode.Scalar(UInt32(i)) : nil else {
            throw ScriptError(.runtime, "bad format spec '\(spec)': %c arg not in range(0x110000): \(i)")
        }
        body = String(Character(scalar))
    case .float where type.map { "bBoxXc".contains($0) } ?? false:
        throw ScriptError(.runtime, "bad format spec '\(spec)': unknown format code '\(type!)' for a float")
    case .int, .float:
        let d: Double
        if case .int(let i) = v { d = Double(i) } else if case .float(let f) = v { d = f } else { d = 0 }
        if type == "d" { throw ScriptError(.runtime, "bad format spec '\(spec)': 'd' needs an integer, got a float") }
        if type == nil && precision == nil {
            negative = d < 0 || (d == 0 && d.sign == .minus)
            body = formatFloat(Swift.abs(d))
        } else if type == nil, let p = precision {
            body = shortFloat(Swift.abs(d), significant: max(1, p))
            negative = d < 0 || (d == 0 && d.sign == .minus)
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
    let signText = (negative ? "-" : (sign == "+" ? "+" : (sign == " " ? " " : ""))) + prefix
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

/// Python's format with a precision and no type: `p` significant digits as 'g' gives them, but in
/// exponent form from an exponent of p - 1 (not p) up, and fixed-point keeps a digit after the
/// point ("2.0", not "2").
func shortFloat(_ a: Double, significant p: Int) -> String {
    guard a.isFinite else { return a.isNaN ? "nan" : "inf" }
    let scientific = String(format: "%.\(p - 1)e", a)
    let exponent = Int(scientific.split(separator: "e")[1])!
    func trimmed(_ s: String) -> String {
        guard s.contains(".") else { return s }
        var t = s
        while t.hasSuffix("0") { t.removeLast() }
        if t.hasSuffix(".") { t.removeLast() }
        return t
    }
    if exponent < -4 || exponent >= p - 1 {
        let parts = scientific.split(separator: "e")
        return trimmed(String(parts[0])) + "e" + parts[1]
    }
    let fixed = trimmed(String(format: "%.\(max(0, p - 1 - exponent))f", a))
    return fixed.contains(".") ? fixed : fixed + ".0"
}

func grouped(_ digits: String) -> String {
    var out = ""
    for (i, c) in digits.reversed().enumerated() {
        if i > 0 && i % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return String(out.reversed())
}
