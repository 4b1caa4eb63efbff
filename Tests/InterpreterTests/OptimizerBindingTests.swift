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

    func testParameterGroupsAndStateDictsAreChecked() {
        let two = "let a = Linear(2, 2)\nlet b = Linear(2, 1)\n"
        XCTAssertTrue(error(two + "Adam([{\"params\": a.parameters(), \"momentum\": 0.9}])").contains("Adam(): parameter group 0 has an unknown option \"momentum\""))
        XCTAssertTrue(error(two + "SGD([{\"params\": a.parameters()}, {\"params\": a.parameters()}], lr: 0.1)").contains("appears in more than one parameter group"))
        XCTAssertTrue(error(two + "SGD([{\"lr\": 0.1}], lr: 0.1)").contains("parameter group 0 has no \"params\""))
        XCTAssertTrue(error(two + "Adam(a.parameters(), lr: -1)").contains("invalid learning rate: -1"))
        XCTAssertTrue(error(two + "Adam(a.parameters(), betas: [0.9, 1.0])").contains("invalid beta parameter at index 1"))
        XCTAssertTrue(error(two + "let o = Adam(a.parameters())\no.param_groups[0][\"lr\"] = -0.5").contains("invalid learning rate"))
        XCTAssertTrue(error(two + "let o = Adam(a.parameters())\no.param_groups[0][\"momentum\"] = 0.5").contains("Adam has no option \"momentum\""))
        XCTAssertTrue(error(two + "let o = Adam(a.parameters())\nlet p = Adam([{\"params\": a.parameters()}, {\"params\": b.parameters()}])\np.load_state_dict(o.state_dict())")
            .contains("the state dict has 1 parameter groups, this Adam has 2"))
        // A refused load leaves the optimizer as it was: lr comes before amsgrad in the dict, and is rolled back.
        let interp = Interpreter()
        XCTAssertNoThrow(try interp.run(two + "let o = Adam(a.parameters())\nlet p = Adam(a.parameters(), lr: 0.5)\nlet sd = o.state_dict()\nsd[\"param_groups\"][0][\"amsgrad\"] = true", name: "<t>"))
        XCTAssertThrowsError(try interp.run("p.load_state_dict(sd)", name: "<t>")) { XCTAssertTrue("\($0)".contains("amsgrad is not supported")) }
        XCTAssertEqual(try interp.run("p.param_groups[0][\"lr\"]", name: "<t>").map { render($0, quoted: true) }, "0.5")
    }
}
