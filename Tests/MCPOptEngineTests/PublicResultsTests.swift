import Foundation
import XCTest
import MCPOptGateway
import MCPOptJSON
import MCPOptMock
@testable import MCPOptEngine

/// Results a server marks `cacheScope: "public"` are shared by every caller; any other result
/// stays in its caller's partition (the anonymous caller's included). A mock server over HTTP,
/// in the modern era, whose `tools/list` results are public (60 s) and whose tool results are
/// not marked.
final class PublicResultsTests: XCTestCase, @unchecked Sendable {
    private func startEngine() async throws -> Engine {
        let profile = MockProfile(name: "m", tools: [MockProfile.Tool(name: "lookup", kind: .read, medianMs: 0, p99Ms: 0)])
        var settings = HTTPFront<MockServer>.Settings()
        settings.port = 0
        let front = try HTTPFront(service: MockServer(profile: profile), settings: settings)
        let port = try front.start()
        addTeardownBlock { front.stop() }
        let engine = try Engine(json: #"""
            {"mcpServers": {"m": {"url": "http://127.0.0.1:\#(port)/mcp", "protocol": "modern"}}, "caching": {"tools": {"lookup": "60s"}}}
            """#)
        await engine.start()
        addTeardownBlock { await engine.stop() }
        return engine
    }

    private func send(_ engine: Engine, _ body: String, partition: String?) async -> OptimizedResponse {
        await engine.optimizeRequest(Array(body.utf8), OptimizeOptions(partition: partition, servers: ["m"]))
    }

    func testAPublicResultIsSharedByEveryCallerAndAPrivateOneIsNot() async throws {
        let engine = try await startEngine()
        XCTAssertEqual(engine.runtime.publicResults.load(), 0)
        // A private result: alice's, not bob's nor the anonymous caller's.
        let call = #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"lookup","arguments":{"key":"k"}}}"#
        let sources = [await send(engine, call, partition: "alice").source, await send(engine, call, partition: "alice").source,
                       await send(engine, call, partition: "bob").source, await send(engine, call, partition: nil).source]
        XCTAssertEqual(sources, [.origin, .memory, .origin, .origin])
        XCTAssertEqual(engine.runtime.publicResults.load(), 0, "nothing public yet: misses look no further than their own key")
        // A public result: fetched once, then every caller's hit.
        let list = #"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#
        let first = await send(engine, list, partition: "alice")
        XCTAssertEqual(first.source, .origin, String(decoding: first.message, as: UTF8.self))
        XCTAssertEqual(try JSONParser.parse(first.message)["result"]?["cacheScope"], "public")
        XCTAssertGreaterThan(engine.runtime.publicResults.load(), 0)
        for partition in ["bob", nil, "carol"] as [String?] {
            let shared = await send(engine, list, partition: partition)
            XCTAssertEqual(shared.source, .memory, "\(partition ?? "anonymous") reads the shared entry")
            XCTAssertEqual(try JSONParser.parse(shared.message)["result"]?["tools"], try JSONParser.parse(first.message)["result"]?["tools"])
        }
    }
}
