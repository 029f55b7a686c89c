import Foundation
import XCTest
import MCPOptGateway
import MCPOptJSON
import MCPOptMock
@testable import MCPOptEngine

/// The modern multi-round-trip flow through the engine: an `input_required` result's retry
/// (with `requestState` and `inputResponses`) reaches the replica that sealed the state; the
/// other replica would refuse it. Two mock replicas over HTTP, each with its own secret.
final class ContinuationTests: XCTestCase, @unchecked Sendable {
    func testARetryReachesTheReplicaThatAskedForInputAndIsNeverCached() async throws {
        let profile = MockProfile(name: "ask", tools: [MockProfile.Tool(name: "confirm_action", kind: .interactive, argument: "action", medianMs: 0, p99Ms: 0)])
        var fronts: [HTTPFront<MockServer>] = []
        var ports: [Int] = []
        for _ in 0..<2 {
            var settings = HTTPFront<MockServer>.Settings()
            settings.port = 0
            let front = try HTTPFront(service: MockServer(profile: profile), settings: settings)
            ports.append(try front.start())
            fronts.append(front)
        }
        addTeardownBlock { for f in fronts { f.stop() } }
        let engine = try Engine(json: #"""
            {"mcpServers": {"ask-1": {"url": "http://127.0.0.1:\#(ports[0])/mcp", "group": "ask", "trustAnnotations": true},
                            "ask-2": {"url": "http://127.0.0.1:\#(ports[1])/mcp", "group": "ask", "trustAnnotations": true}}}
            """#)
        await engine.start()
        addTeardownBlock { await engine.stop() }
        var served: Set<String> = []
        for i in 0..<20 {
            let ask = await engine.optimizeRequest(Array(#"{"jsonrpc":"2.0","id":\#(i),"method":"tools/call","params":{"name":"confirm_action","arguments":{"action":"a\#(i)"}}}"#.utf8))
            let first = try JSONParser.parse(ask.message)["result"]
            XCTAssertEqual(first?["resultType"], "input_required", "\(String(decoding: ask.message, as: UTF8.self))")
            guard let state = first?["requestState"]?.stringValue, let server = ask.server else { return XCTFail("no requestState") }
            served.insert(server)
            let retry = #"{"jsonrpc":"2.0","id":\#(100 + i),"method":"tools/call","params":{"name":"confirm_action","arguments":{"action":"a\#(i)"},"inputResponses":{"confirm":{"action":"accept","content":{"ok":true}}},"requestState":"\#(state)"}}"#
            let done = await engine.optimizeRequest(Array(retry.utf8))
            XCTAssertTrue(done.success, done.error ?? String(decoding: done.message, as: UTF8.self))
            XCTAssertEqual(done.server, server, "the retry went to the replica that sealed its state")
            XCTAssertEqual(done.source, .origin, "continuations are never cached")
        }
        XCTAssertEqual(served.count, 2, "both replicas asked (so a wrong pin would have shown)")
        // The loop the upstreams ran on, and the kernel facilities it used.
        let system = engine.getOptimizationMetrics()["system"]
        guard case .array(let features)? = system?["ioFeatures"] else { return XCTFail("no ioFeatures: \(String(describing: system))") }
        if system?["ioBackend"] == "epoll" { XCTAssertEqual(features, []) }
    }
}
