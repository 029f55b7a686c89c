import MCPOptDemo
import MCPOptJSON
import XCTest

final class TraceTests: XCTestCase {
    func testTheGeneratorIsDeterministicUnderItsSeed() {
        let a = TraceGenerator(seed: 7).generate(calls: 2_000)
        XCTAssertEqual(a, TraceGenerator(seed: 7).generate(calls: 2_000))
        XCTAssertNotEqual(a, TraceGenerator(seed: 8).generate(calls: 2_000))
        XCTAssertGreaterThanOrEqual(a.callCount, 2_000)
    }
}
