// OptimizerBindingTests.swift: what optimizers refuse, with the tensor at fault named
// (tests/train/optimizers.smil has the steps themselves).

import XCTest
@testable import Interpreter

final class OptimizerBindingTests: XCTestCase {
    func error(_ code: String) -> String {
        do { _ = try Interpreter().run(code, name: "<t>"); return "no error" } catch { return "\(error)" }
    }

    func testTensorsAnOptimizerCannotUpdateAreRefused() {
        XCTAssertTrue(error("Adam([tensor([1.0])])").contains("Adam(): params[0] does not require grad"))
        XCTAssertTrue(error("var q = tensor([1.0])\nq.requires_grad = true\nSGD([q * 2], lr: 0.1)").contains("SGD(): params[0] is not a leaf tensor"))
        XCTAssertTrue(error("var q = tensor([1.0])\nq.requires_grad = true\nAdamW([q, q])").contains("AdamW(): params[1] appears twice"))
        XCTAssertTrue(error("Adam([1, 2])").contains("params"))
        XCTAssertEqual(error("var q = tensor([1.0])\nq.requires_grad = true\nlet o = Adam([q])\nlet m = Linear(2, 2)\nlet o2 = SGD(m.parameters() + [q], lr: 0.1)"), "no error")
    }
}
