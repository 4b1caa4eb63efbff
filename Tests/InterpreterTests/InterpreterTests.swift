// InterpreterTests.swift: the Interpreter target links against Core and reports its version.

import XCTest
import Core
import Interpreter

final class InterpreterTests: XCTestCase {
    func testLanguageVersionFollowsSmil() {
        XCTAssertEqual(languageVersion, smilVersion)
        XCTAssertEqual(languageVersion.split(separator: ".").count, 3, "semantic version")
    }
}
