// TestRunner.swift: `smil test` — runs every .smil file under the given paths, each in a fresh
// interpreter, and reports one line per failure with file:line, then "N passed, N failed".

import Foundation
import Core
import Interpreter

struct TestRunner {
    let paths: [String]

    /// The .smil files under the paths, sorted, or nil (after saying which) when a path is missing:
    /// a typo in CI's test path must fail the run, not pass it with nothing tested.
    func files() -> [String]? {
        var out: [String] = []
        var missing = false
        for p in paths {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: p, isDirectory: &isDir) else {
                printError("smil test: no such file or folder: \(p)")
                missing = true
                continue
            }
            if !isDir.boolValue { out.append(p); continue }
            let e = FileManager.default.enumerator(atPath: p)
            while let f = e?.nextObject() as? String {
                if f.hasSuffix(".smil") { out.append((p as NSString).appendingPathComponent(f)) }
            }
        }
        return missing ? nil : out.sorted()
    }

    func run() -> Int32 {
        guard let files = files() else { return 1 }
        guard !files.isEmpty else {
            printError("smil test: no .smil files under \(paths.joined(separator: ", "))")
            return 1
        }
        var passed = 0, failed = 0, skipped = 0
        for file in files {
            let interp = Interpreter()
            interp.checkExpectations = true
            interp.output = { _ in }
            RandomGenerator.seed(0)
            do {
                try interp.runFile(file)
            } catch let e as ScriptErrors {
                failed += 1
                print("FAIL \(file): \(e.errors.count) syntax error\(e.errors.count == 1 ? "" : "s")\n\(e)")
            } catch let e as ScriptError {
                failed += 1
                let loc = e.location.map { "\($0.line)" } ?? "?"
                print("FAIL \(e.file?.name ?? file):\(loc): \(e.message)")
            } catch {
                failed += 1
                print("FAIL \(file): \(error)")
            }
            for r in interp.testResults {
                if let reason = r.skipped {
                    skipped += 1
                    print("SKIP \(r.file):\(r.line): \(r.name): \(reason)")
                } else if let f = r.failure {
                    failed += 1
                    print("FAIL \(r.file):\(r.line): \(r.name): \(f)")
                } else {
                    passed += 1
                }
            }
        }
        print("\(passed) passed, \(failed) failed" + (skipped > 0 ? ", \(skipped) skipped" : ""))
        if passed + failed == 0 {
            printError("smil test: no test ran (no `test` block or `#>` check in \(files.count) file\(files.count == 1 ? "" : "s"))")
            return 1
        }
        return failed == 0 ? 0 : 1
    }
}
