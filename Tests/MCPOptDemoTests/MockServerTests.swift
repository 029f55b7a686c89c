import MCPOptDemo
import MCPOptGateway
import MCPOptJSON
import MCPOptMock
import MCPOptSync
import XCTest

final class MockServerTests: XCTestCase {
    private func call(_ server: MockServer, _ message: String) async -> JSONValue? {
        guard let answer = await server.handle(Array(message.utf8)) else { return nil }
        return try? JSONParser.parse(answer)
    }

    private func toolCall(_ id: Int, _ tool: String, _ argument: String, key: String = "path") -> String {
        #"{"jsonrpc":"2.0","id":\#(id),"method":"tools/call","params":{"name":"\#(tool)","arguments":{"\#(key)":"\#(argument)"}}}"#
    }

    func testListsToolsWithAnnotationsAndAnswersCallsDeterministically() async throws {
        let server = MockServer(profile: MockProfile.preset("files", name: "f")!)
        let list = await call(server, #"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        let tools = list?["result"]?["tools"]?.arrayValue ?? []
        XCTAssertEqual(tools.compactMap { $0["name"]?.stringValue }, ["read_file", "list_dir", "write_file"])
        XCTAssertEqual(tools[0]["annotations"]?["readOnlyHint"], true)
        XCTAssertEqual(tools[2]["annotations"]?["readOnlyHint"], false)
        let a = await call(server, toolCall(2, "read_file", "/x"))
        let b = await call(server, toolCall(3, "read_file", "/x"))
        XCTAssertEqual(a?["id"], 2)
        XCTAssertEqual(a?["result"]?["content"], b?["result"]?["content"])
        XCTAssertEqual(a?["result"]?["content"]?.arrayValue?.first?["text"]?.stringValue?.hasPrefix("read_file(/x): "), true)
        XCTAssertEqual(server.callCount, 2)
    }

    func testBadCallsGetClearErrorsAndNotificationsNoAnswer() async {
        let server = MockServer(profile: MockProfile.preset("records", name: "r")!)
        let unknown = await call(server, toolCall(1, "nope", "1", key: "id"))
        XCTAssertEqual(unknown?["error"]?["code"], -32602)
        let missing = await call(server, #"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_record","arguments":{}}}"#)
        XCTAssertEqual(missing?["error"]?["message"]?.stringValue?.contains("\"id\""), true)
        let notJSON = await call(server, "{oops")
        XCTAssertEqual(notJSON?["error"]?["code"], -32700)
        let method = await call(server, #"{"jsonrpc":"2.0","id":3,"method":"resources/list"}"#)
        XCTAssertEqual(method?["error"]?["code"], -32601)
        let none = await server.handle(Array(#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.utf8))
        XCTAssertNil(none)
        XCTAssertEqual(server.callCount, 0)
    }

    func testModernRequestsGetModernResults() async {
        let server = MockServer(profile: MockProfile.preset("docs", name: "d")!)
        let meta = #""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}"#
        let list = await call(server, #"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{\#(meta)}}"#)
        XCTAssertEqual(list?["result"]?["resultType"], "complete")
        XCTAssertNotNil(list?["result"]?["ttlMs"])
        let ping = await call(server, #"{"jsonrpc":"2.0","id":2,"method":"ping","params":{\#(meta)}}"#)
        XCTAssertEqual(ping?["error"]?["code"], -32601)
    }

    func testFaultsHappenAsTheProfileSays() async {
        var profile = MockProfile.preset("records", name: "r")!
        profile.errorRate = 1
        let failing = MockServer(profile: profile)
        let error = await call(failing, toolCall(1, "get_record", "7", key: "id"))
        XCTAssertEqual(error?["error"]?["code"], -32603)

        profile.errorRate = 0
        profile.crashAfter = 2
        let crashing = MockServer(profile: profile)
        let crashes = AtomicCounter()
        crashing.crash = { crashes.add() }
        for i in 0..<2 { _ = await call(crashing, toolCall(i, "get_record", "\(i)", key: "id")) }
        XCTAssertEqual(crashes.load(), 0)
        _ = await call(crashing, toolCall(3, "get_record", "3", key: "id"))
        XCTAssertEqual(crashes.load(), 1)

        // A hang from call 2 on: answers held until hangMs after it began.
        var hanging = MockProfile(name: "h", tools: [MockProfile.Tool(name: "t", kind: .read, medianMs: 1, p99Ms: 1)])
        hanging.hangAfter = 1
        hanging.hangMs = 500
        let server = MockServer(profile: hanging)
        func delayMs(_ id: Int) -> Double {
            guard case .pending(let p) = server.handleImmediately(Array(toolCall(id, "t", "a", key: "key").utf8), caller: .init()) else { return -1 }
            return Double(p.delayNanos) / 1e6
        }
        XCTAssertEqual(delayMs(1), 1, accuracy: 0.2)
        XCTAssertEqual(delayMs(2), 501, accuracy: 5)
        XCTAssertGreaterThan(delayMs(3), 490)
    }

    func testABoundedServerQueuesCallsBeyondItsWorkers() {
        var profile = MockProfile(name: "q", tools: [MockProfile.Tool(name: "t", kind: .read, medianMs: 10, p99Ms: 10)])
        profile.capacity = 1
        let server = MockServer(profile: profile)
        func delay(_ id: Int) -> UInt64? {
            guard case .pending(let p) = server.handleImmediately(Array(toolCall(id, "t", "a", key: "key").utf8), caller: .init()) else { return nil }
            return p.delayNanos
        }
        let first = delay(1), second = delay(2)
        XCTAssertEqual(Double(first ?? 0) / 1e6, 10, accuracy: 0.5)
        XCTAssertEqual(Double(second ?? 0) / 1e6, 20, accuracy: 2, "the second call waits for the only worker")
        profile.capacity = 0
        let unbounded = MockServer(profile: profile)
        for id in 0..<3 {
            guard case .pending(let p) = unbounded.handleImmediately(Array(toolCall(id, "t", "a", key: "key").utf8), caller: .init()) else { return XCTFail() }
            XCTAssertEqual(Double(p.delayNanos) / 1e6, 10, accuracy: 0.5)
        }
    }

    func testLatencyDrawsAreDeterministicUnderTheSeedAndFollowTheProfile() {
        var a = SeededRandom(seed: 9), b = SeededRandom(seed: 9)
        let drawsA = (0..<10_000).map { _ in a.lognormal(median: 10, p99: 100) }
        let drawsB = (0..<10_000).map { _ in b.lognormal(median: 10, p99: 100) }
        XCTAssertEqual(drawsA, drawsB)
        let sorted = drawsA.sorted()
        XCTAssertEqual(sorted[5_000], 10, accuracy: 1)
        XCTAssertEqual(sorted[9_900], 100, accuracy: 20)
    }

    func testProfilesParseWithPathsInTheirErrors() throws {
        let p = try MockProfile.parse(Array(#"{"preset":"search","name":"s1","seed":5,"crashAfter":10,"degrade":{"afterMs":100,"ratePerSecond":2}}"#.utf8))
        XCTAssertEqual(p.name, "s1")
        XCTAssertEqual(p.tools.map(\.name), ["search"])
        XCTAssertEqual(p.crashAfter, 10)
        XCTAssertEqual(p.degrade?.ratePerSecond, 2)
        XCTAssertEqual(try MockProfile.parse(Array(p.json.jsonString.utf8)), p)
        for (text, path) in [(#"{"tools":[{"name":"t","kind":"nap"}]}"#, "$.tools[0].kind"), (#"{"preset":"files","errorRate":2}"#, "$.errorRate"),
                             (#"{"preset":"nope"}"#, "$.preset"), (#"{"tools":[]}"#, "$.tools"), (#"{"preset":"files","colour":1}"#, "$.colour"),
                             (#"{"tools":[{"name":"t","medianMs":10,"p99Ms":5}]}"#, "$.tools[0].p99Ms"), ("[1]", "$")] {
            XCTAssertThrowsError(try MockProfile.parse(Array(text.utf8)), text) { XCTAssertEqual(($0 as? MockProfile.Problem)?.path, path, text) }
        }
    }

    func testFleetPlansCoverEveryKindAndScale() {
        for n in [7, 12, 13, 100] {
            let plan = FleetPlan.make(servers: n, seed: 1, degradeAfterMs: 1000, crashEvery: 50)
            XCTAssertEqual(plan.count, n)
            XCTAssertEqual(Set(plan.map(\.group)).count, 7)
            XCTAssertEqual(Set(plan.map(\.name)).count, n)
        }
        let plan = FleetPlan.make(servers: 12, seed: 1, degradeAfterMs: 1000, crashEvery: 50)
        XCTAssertEqual(plan.filter { $0.group == "files" }.count, 3)
        XCTAssertNotNil(plan.first { $0.name == "files-1" }?.profile.degrade)
        XCTAssertEqual(plan.first { $0.name == "records-1" }?.profile.crashAfter, 50)
        XCTAssertEqual(plan.filter(\.http).count, 5)
    }
}
