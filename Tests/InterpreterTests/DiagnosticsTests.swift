// DiagnosticsTests.swift: every kind of error names file:line:col, shows the line with a caret,
// suggests the closest name, and runtime errors in functions show the call stack.

import XCTest
@testable import Interpreter

/// Runs `source` and returns the error text (or fails if it ran cleanly).
func errorText(_ source: String, file: StaticString = #filePath, line: UInt = #line) -> String {
    let interp = Interpreter()
    interp.output = { _ in }
    do {
        try interp.run(source, name: "t.smil")
        XCTFail("expected an error", file: file, line: line)
        return ""
    } catch {
        return "\(error)"
    }
}

final class DiagnosticsTests: XCTestCase {
    func testUndefinedNameWithSuggestionAndCaret() {
        let text = errorText("let total = 1\nprint(totl + 1)")
        XCTAssertEqual(text, """
            t.smil:2:7: error: undefined name 'totl'; did you mean 'total'?
                print(totl + 1)
                      ^^^^
            """)
    }

    func testMisspeltMemberAndLabel() {
        XCTAssertTrue(errorText("let t = zeros([2])\nt.shap").contains("t.smil:2:3: error: a tensor has no member 'shap'; did you mean 'shape'?"))
        XCTAssertTrue(errorText("fn f(alpha) => alpha\nf(alpah: 1)").contains("f() has no parameter 'alpah'; did you mean 'alpha'?"))
        XCTAssertTrue(errorText("zeros(shap: [2])").contains("zeros() has no parameter 'shap'; did you mean 'shape'?"))
        XCTAssertTrue(errorText("Linear(3)").contains("t.smil:1:7: error: Linear() is missing the argument 'out'"))
    }

    func testSyntaxErrorsAreAllReportedWithoutCascades() {
        let text = errorText("let = 3\nprint(1)\nvar x = 1 +\nlet y = 2 2\n")
        let lines = text.split(separator: "\n").filter { $0.contains("syntax error") }
        XCTAssertEqual(lines.count, 3, text)
        XCTAssertTrue(text.contains("t.smil:1:5: syntax error: expected a name after 'let', found '='"), text)
        XCTAssertTrue(text.contains("t.smil:3:12: syntax error: expected an expression, found end of line"), text)
        XCTAssertTrue(text.contains("t.smil:4:11: syntax error: expected end of line after statement, found number 2"), text)
    }

    func testCallStackInnermostLast() {
        let text = errorText("fn inner(x) { return x + \"a\" }\nfn outer() { return inner(1) }\nouter()")
        XCTAssertTrue(text.hasPrefix("t.smil:1:24: error: unsupported operand types for '+': int and string"), text)
        XCTAssertTrue(text.contains("call stack (innermost last):\n    t.smil:3:6 in outer\n    t.smil:2:26 in inner"), text)
    }

    func testCallSiteSeesANameRebound() {
        // The call site's cache of the function it called must not hide a rebinding.
        let base = "var g = fn(x) => x\nfn call(x) { return g(x) }\ncall(1)\n"
        XCTAssertTrue(errorText(base + "g = 5\ncall(1)").contains("t.smil:2:22: error: an int is not callable"), errorText(base + "g = 5\ncall(1)"))
        XCTAssertTrue(errorText(base + "g = fn(a, b) => a\ncall(1)").contains("is missing the argument 'b'"))
    }

    func testCoreErrorsPointAtTheScriptExpression() {
        let text = errorText("let a = zeros([2, 3])\nlet b = zeros([2, 3])\nlet c = a @ b")
        XCTAssertTrue(text.hasPrefix("t.smil:3:11: error: matmul: mat1 and mat2 shapes cannot be multiplied ([2, 3] @ [2, 3]: 3 != 2)"), text)
        XCTAssertTrue(text.contains("    let c = a @ b\n              ^"), text)
    }

    func testAssignmentRules() {
        XCTAssertTrue(errorText("let x = 1\nx = 2").contains("t.smil:2:1: error: cannot assign to 'x': it was declared with 'let'"))
        XCTAssertTrue(errorText("y = 2").contains("assignment to undeclared name 'y'"))
        XCTAssertTrue(errorText("break").contains("'break' outside a loop"))
        XCTAssertTrue(errorText("return 1").contains("'return' outside a function"))
    }

    func testRuntimeErrorsAndLimits() {
        XCTAssertTrue(errorText("fn f(n) => f(n + 1)\nf(0)").contains("recursion depth exceeded"))
        XCTAssertTrue(errorText("[1, 2][5]").contains("list index 5 out of range (length 2)"))
        XCTAssertTrue(errorText("1 / 0").contains("division by zero"))
        XCTAssertTrue(errorText("{\"a\": 1}[\"b\"]").contains("key \"b\" not in dict"))
        XCTAssertTrue(errorText("assert 1 == 2, \"math is broken\"").contains("t.smil:1:1: error: math is broken"))
        XCTAssertTrue(errorText("\"{1:.q}\"").contains("bad format spec"))
        XCTAssertTrue(errorText("let s = \"unterminated").contains("unterminated string"))
        XCTAssertTrue(errorText(String(repeating: "(", count: 500) + "1" + String(repeating: ")", count: 500)).contains("nested too deeply"))
    }

    func testInterruptStopsALoopWithStateIntact() throws {
        let interp = Interpreter()
        interp.output = { _ in }
        try interp.run("var n = 0")
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) { interp.interruptRequested = true }
        XCTAssertThrowsError(try interp.run("while true { n += 1 }")) { e in XCTAssertTrue("\(e)".contains("interrupted")) }
        let n = try interp.run("n")
        guard case .int(let count)? = n else { return XCTFail("n is gone") }
        XCTAssertGreaterThan(count, 0)
    }

    func testNormalizeSaysWhatIsWrongWithItsArguments() {
        XCTAssertTrue(errorText("normalize(zeros([4, 2, 2]))").contains("expects [3, H, W] images or [N, 3, H, W] batches, got [4, 2, 2]"))
        XCTAssertTrue(errorText("normalize(zeros([3, 2, 2]), {\"mean\": [0.5, 0.5, 0.5], \"std\": [0.25, 0.0, 1.0]})").contains("three positive deviations"))
        XCTAssertTrue(errorText("normalize(zeros([3, 2, 2]), \"imagnet\")").contains("stats"))
        XCTAssertTrue(errorText("normalize(zeros([3, 2, 2]), nil)").contains("stats"))
        XCTAssertTrue(errorText("read_image(\"/nonexistent.png\", normalize: \"imagenet\")").contains("/nonexistent.png"))
    }
}

final class FuzzTests: XCTestCase {
    /// Thousands of random and mutated programs: each must give a result or an error, never a
    /// crash or a hang (loops are bounded by the interrupt flag and a timer).
    func testRandomAndMutatedProgramsNeverCrash() throws {
        let seeds = [
            "let x = [1, 2, 3]\nfor i in x { print(i * 2) }",
            "fn f(a, b = 2) { return a ** b }\nf(3, b: 4)",
            "var d = {\"a\": 1}\nd[\"b\"] = d.get(\"a\", 0) + 1\nd",
            "let t = tensor([[1.0, 2.0]])\n(t @ t.transpose(0, 1)).item()",
            "if 1 < 2 and not false { \"yes {1 + 1:>4}\" } else { nil }",
            "let s = \"abc\"[1:]\nlen(s) % 2",
        ]
        let tokens = ["(", ")", "[", "]", "{", "}", ",", ":", ".", "+", "-", "*", "/", "**", "@", "=", "==", "let", "var", "fn",
                      "if", "else", "while", "for", "in", "return", "x", "1", "2.5", "\"s\"", "\n", "nil", "true", "..<", "...", "not", "and"]
        var generator = FuzzRNG(seed: 1234)
        var outcomes = 0
        for round in 0..<3000 {
            var program: String
            if round % 2 == 0 {
                var chars = Array(seeds[round % seeds.count])
                for _ in 0..<(1 + generator.next(4)) {
                    let i = generator.next(max(chars.count, 1))
                    switch generator.next(3) {
                    case 0: if !chars.isEmpty { chars.remove(at: min(i, chars.count - 1)) }
                    case 1: chars.insert(Array("()[]{},.:+-*/\"\n=x1")[generator.next(18)], at: min(i, chars.count))
                    default: if chars.count > 1 { chars.swapAt(min(i, chars.count - 1), generator.next(chars.count)) }
                    }
                }
                program = String(chars)
            } else {
                program = (0..<(1 + generator.next(25))).map { _ in tokens[generator.next(tokens.count)] }.joined(separator: " ")
            }
            let interp = Interpreter()
            interp.output = { _ in }
            interp.maxCallDepth = 200
            let timer = DispatchWorkItem { interp.interruptRequested = true }
            DispatchQueue.global().asyncAfter(deadline: .now() + 0.5, execute: timer)
            _ = try? interp.run(program, name: "fuzz.smil")
            timer.cancel()
            outcomes += 1
        }
        XCTAssertEqual(outcomes, 3000)
    }
}

/// A tiny deterministic generator for the fuzz test.
struct FuzzRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next(_ n: Int) -> Int {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Int((state >> 33) % UInt64(max(n, 1)))
    }
}
