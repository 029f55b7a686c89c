import XCTest
import MCPOptJSON
@testable import MCPOptGateway

/// The bridge between a handshake-era server's requests and a modern client's input_required
/// rounds, without a gateway: the server's side asks, the client's side takes rounds.
final class InputBridgeTests: XCTestCase {
    static func request(_ method: String, _ params: JSONValue = [:]) -> [UInt8] {
        Array(JSONValue.object(["jsonrpc": "2.0", "id": 7, "method": .string(method), "params": params]).jsonString.utf8)
    }

    func testARoundAsksTheServersRequestAndTheRetryAnswersIt() async throws {
        let bridge = InputBridge()
        let answer = Task { await bridge.ask(InputBridgeTests.request("elicitation/create", ["message": "name?"])) }
        guard case .needsInput(let asked) = await bridge.next() else { return XCTFail("expected a round") }
        XCTAssertEqual(asked.count, 1)
        XCTAssertEqual(asked[0].request, ["method": "elicitation/create", "params": ["message": "name?"]])
        bridge.answer([asked[0].key: ["action": "accept", "content": ["name": "Ada"]]])
        let value = await answer.value
        let reply = try XCTUnwrap(value)
        XCTAssertEqual(try JSONParser.parse(reply)["result"], ["action": "accept", "content": ["name": "Ada"]])
        bridge.finish(Array(#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#.utf8))
        guard case .finished(let message) = await bridge.next() else { return XCTFail("expected the result") }
        XCTAssertEqual(try JSONParser.parse(message)["result"], ["content": []])
    }

    func testUnansweredRequestsAreAskedAgainAndAbandonAnswersNothing() async throws {
        let bridge = InputBridge()
        let first = Task { await bridge.ask(InputBridgeTests.request("roots/list")) }
        let second = Task { await bridge.ask(InputBridgeTests.request("sampling/createMessage")) }
        var keys: [String] = []
        while keys.count < 2 {   // both arrive, in one round or two
            guard case .needsInput(let asked) = await bridge.next() else { return XCTFail() }
            keys += asked.map(\.key)
        }
        // The retry answers one: the other is asked again in the next round.
        bridge.answer([keys[0]: ["roots": []]])
        guard case .needsInput(let again) = await bridge.next() else { return XCTFail() }
        XCTAssertEqual(again.map(\.key), [keys[1]])
        bridge.abandon()
        let answers = [await first.value, await second.value]
        XCTAssertEqual(answers.compactMap { $0 }.count, 1, "the answered one got its answer, the abandoned one nil")
        // A request the server sends after that is not kept waiting.
        let late = await bridge.ask(InputBridgeTests.request("roots/list"))
        XCTAssertNil(late)
    }

    func testAParkedBridgeIsTakenOnceAndExpires() async throws {
        let bridges = GatewayInputBridges(expiry: .milliseconds(50))
        let bridge = InputBridge()
        let state = bridges.park(bridge)
        XCTAssertTrue(state.hasPrefix(GatewayInputBridges.statePrefix))
        XCTAssertTrue(bridges.take(state) === bridge)
        XCTAssertNil(bridges.take(state), "a state is good for one retry")
        // Parked again (a new state) and never retried: it expires, and the server's request
        // waiting on it gets no answer.
        let waiting = Task { await bridge.ask(InputBridgeTests.request("roots/list")) }
        guard case .needsInput = await bridge.next() else { return XCTFail() }
        let next = bridges.park(bridge)
        XCTAssertNotEqual(next, state)
        let answer = await waiting.value
        XCTAssertNil(answer)
        XCTAssertNil(bridges.take(next))
        XCTAssertEqual(bridges.count, 0)
    }

    func testConcurrentAsksAndRoundsLoseNothing() async throws {
        let bridge = InputBridge()
        let n = 50
        let asks = (0..<n).map { i in Task { await bridge.ask(InputBridgeTests.request("roots/list", ["i": .int(Int64(i))])) } }
        var answered = 0
        while answered < n {
            guard case .needsInput(let asked) = await bridge.next() else { return XCTFail() }
            var responses = JSONObject()
            for item in asked { responses[item.key] = ["roots": []] }
            bridge.answer(responses)
            answered += asked.count
        }
        for task in asks {
            let value = await task.value
            XCTAssertNotNil(value)
        }
    }
}
