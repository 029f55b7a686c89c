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

final class TraceFormatTests: XCTestCase {
    func testJSONLinesRoundTripKeepsSteps() throws {
        let trace = TraceGenerator(seed: 3).generate(calls: 500)
        XCTAssertTrue(trace.steps.contains { $0.count > 1 }, "fan-outs and bursts are multi-call steps")
        XCTAssertEqual(try Trace.parse(jsonLines: trace.jsonLines), trace)
    }

    func testLinesWithoutStepsAreStepsOfTheirOwnAndErrorsNameTheLine() throws {
        let t = try Trace.parse(jsonLines: "{\"tool\":\"a\"}\n\n{\"tool\":\"b\",\"arguments\":{\"x\":\"1\"}}\n")
        XCTAssertEqual(t.steps.count, 2)
        XCTAssertEqual(t.steps[1][0].arguments, ["x": "1"])
        for (text, line) in [("{\"tool\":\"a\"}\nnope", 2), ("{\"arguments\":{}}", 1), ("{\"tool\":\"a\",\"arguments\":[1]}", 1), ("", 0)] {
            XCTAssertThrowsError(try Trace.parse(jsonLines: text)) { XCTAssertEqual(($0 as? Trace.Problem)?.line, line, text) }
        }
    }
}
