// Notebook.swift: `smil notebook FILE -o OUT.html|.md` — runs a file cell by cell (`# %%` lines)
// and writes a self-contained report: each cell's code, printed output, final value, run time
// and the images it wrote (PNG embedded); a failing cell shows its error, later cells "not run".

import Foundation
import Core
import Interpreter

struct NotebookRunner {
    let file: String
    let output: String

    struct CellResult {
        var cell: Cell
        var printed = ""
        var value: String? = nil
        var seconds = 0.0
        var images: [String] = []
        var error: String? = nil
        var ran = false
    }

    func run() -> Int32 {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            printError("smil notebook: cannot read \(file)")
            return 1
        }
        let html = output.lowercased().hasSuffix(".html") || output.lowercased().hasSuffix(".htm")
        guard html || output.lowercased().hasSuffix(".md") else {
            printError("smil notebook: the report must be .html or .md, got \(output)")
            return 1
        }
        let interp = Interpreter()
        var results = splitCells(text).map { CellResult(cell: $0) }
        var failed = false
        for i in results.indices {
            if failed { break }
            var captured = ""
            interp.output = { captured += $0 }
            interp.imagesWritten = []
            let t0 = Date()
            do {
                let source = String(repeating: "\n", count: results[i].cell.firstLine - 1) + results[i].cell.source
                if let v = try interp.run(source, name: file), !v.isNilValue { results[i].value = render(v, quoted: true) }
            } catch {
                results[i].error = "\(error)"
                failed = true
            }
            results[i].seconds = Date().timeIntervalSince(t0)
            results[i].printed = captured
            results[i].images = interp.imagesWritten
            results[i].ran = true
            print("cell \(i + 1)/\(results.count)\(results[i].cell.title.isEmpty ? "" : " (\(results[i].cell.title))"): " +
                  (results[i].error == nil ? String(format: "%.2fs", results[i].seconds) : "error"))
        }
        let report = html ? renderHTML(results) : renderMarkdown(results)
        do { try writeAtomically(Data(report.utf8), to: output) } catch {
            printError("smil notebook: \(error)")
            return 1
        }
        print("wrote \(output)")
        return failed ? 1 : 0
    }

    func dataURI(_ path: String) -> String? {
        guard let d = FileManager.default.contents(atPath: path) else { return nil }
        return "data:image/png;base64," + d.base64EncodedString()
    }

    func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    func renderHTML(_ results: [CellResult]) -> String {
        var out = """
        <!DOCTYPE html>
        <html><head><meta charset="utf-8"><title>\(escape(file))</title>
        <style>
        body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }
        .cell { border: 1px solid #ddd; border-radius: 6px; margin: 1.2rem 0; overflow: hidden; }
        .head { background: #f4f4f4; padding: .4rem .8rem; font-size: .9rem; display: flex; justify-content: space-between; }
        pre { margin: 0; padding: .6rem .8rem; overflow-x: auto; font-size: .85rem; }
        pre.code { background: #fafafa; border-bottom: 1px solid #eee; }
        pre.value { color: #0a5; } pre.error { color: #b00; background: #fff4f4; }
        .notrun { color: #888; font-style: italic; padding: .6rem .8rem; }
        img { max-width: 100%; display: block; margin: .6rem .8rem; }
        </style></head><body>
        <h1>\(escape((file as NSString).lastPathComponent))</h1>
        <p>smil \(smilVersion) notebook report, \(ISO8601DateFormatter().string(from: Date()))</p>

        """
        for (i, r) in results.enumerated() {
            let title = r.cell.title.isEmpty ? "Cell \(i + 1)" : "Cell \(i + 1): \(r.cell.title)"
            out += "<div class=\"cell\"><div class=\"head\"><span>\(escape(title))</span><span>\(r.ran ? String(format: "%.3f s", r.seconds) : "not run")</span></div>\n"
            out += "<pre class=\"code\">\(escape(r.cell.source.trimmingCharacters(in: .newlines)))</pre>\n"
            if !r.ran { out += "<div class=\"notrun\">not run (an earlier cell failed)</div></div>\n"; continue }
            if !r.printed.isEmpty { out += "<pre class=\"output\">\(escape(r.printed))</pre>\n" }
            if let v = r.value { out += "<pre class=\"value\">\(escape(v))</pre>\n" }
            for img in r.images { if let uri = dataURI(img) { out += "<img src=\"\(uri)\" alt=\"\(escape(img))\">\n" } }
            if let e = r.error { out += "<pre class=\"error\">\(escape(e))</pre>\n" }
            out += "</div>\n"
        }
        return out + "</body></html>\n"
    }

    func renderMarkdown(_ results: [CellResult]) -> String {
        var out = "# \((file as NSString).lastPathComponent)\n\nsmil \(smilVersion) notebook report\n"
        for (i, r) in results.enumerated() {
            out += "\n## Cell \(i + 1)\(r.cell.title.isEmpty ? "" : ": \(r.cell.title)")"
            out += r.ran ? String(format: " (%.3f s)\n\n", r.seconds) : " (not run)\n\n"
            out += "```\n\(r.cell.source.trimmingCharacters(in: .newlines))\n```\n"
            if !r.ran { out += "\n*not run (an earlier cell failed)*\n"; continue }
            if !r.printed.isEmpty { out += "\n```text\n\(r.printed.hasSuffix("\n") ? r.printed : r.printed + "\n")```\n" }
            if let v = r.value { out += "\n**value:** `\(v)`\n" }
            for img in r.images { if let uri = dataURI(img) { out += "\n![\(img)](\(uri))\n" } }
            if let e = r.error { out += "\n**error:**\n\n```text\n\(e)\n```\n" }
        }
        return out
    }
}
