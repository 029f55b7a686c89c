import Foundation
import XCTest
@testable import MCPOpt

/// mcpopt_route_* as a C host calls them.
final class RouteABITests: XCTestCase {
    private var engine: OpaquePointer?

    override func setUp() {
        var handle: OpaquePointer?
        let config = #"""
        {"mcpServers": {"fs-a": {"command": "x", "group": "fs"}, "fs-b": {"command": "x", "group": "fs"}, "web": {"url": "http://127.0.0.1:9/mcp"}},
         "agents": {"reader": {"allowedTools": ["read_*"], "allowedServers": ["fs"], "requirements": {"minSuccessRate": 0.5}}}}
        """#
        XCTAssertEqual(config.withCString { mcpopt_engine_create($0, -1, &handle) }, 0, String(cString: mcpopt_last_error_message()))
        engine = handle
    }

    override func tearDown() { mcpopt_engine_destroy(engine) }

    private func route(_ request: String) -> (Int32, [String: Any]?) {
        var out: UnsafeMutablePointer<CChar>?
        var length = 0
        let status = request.withCString { mcpopt_route(engine, $0, -1, &out, &length) }
        guard status == 0, let out else { return (status, nil) }
        defer { mcpopt_free(out) }
        return (status, try? JSONSerialization.jsonObject(with: Data(bytes: out, count: length)) as? [String: Any])
    }

    private func setTools(_ server: String, _ json: String) -> Int32 {
        server.withCString { s in json.withCString { mcpopt_route_set_tools(engine, s, -1, $0, -1) } }
    }

    private func record(_ server: String, _ tool: String, micros: Int64, success: Bool = true, times: Int = 10) {
        for _ in 0..<times {
            XCTAssertEqual(server.withCString { s in tool.withCString { mcpopt_route_record(engine, s, -1, $0, -1, micros, success ? 1 : 0) } }, 0)
        }
    }

    private var lastMessage: String { String(cString: mcpopt_last_error_message()) }

    func testRouteConfiguredServersByTools() {
        let list = #"{"tools": [{"name": "read_file", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}}, {"name": "write_file"}]}"#
        XCTAssertEqual(setTools("fs-a", list), 0)
        XCTAssertEqual(setTools("fs-b", list), 0)
        XCTAssertEqual(setTools("web", #"[{"name": "fetch"}, {"name": "read_page"}]"#), 0)
        let (status, unknown) = route(#"{"tool": "nope"}"#)
        XCTAssertEqual(status, 0)
        XCTAssertEqual(unknown?["outcome"] as? String, "unknown-tool")
        XCTAssertTrue(unknown?["server"] is NSNull)
        // Enough samples for the default 0.7 confidence threshold.
        record("fs-a", "read_file", micros: 900, times: 30)
        record("fs-b", "read_file", micros: 200, times: 30)
        let (_, decision) = route(#"{"method": "tools/call", "params": {"name": "read_file", "arguments": {"path": "/x"}}, "requirements": {"strategy": "predictive"}}"#)
        XCTAssertEqual(decision?["outcome"] as? String, "chosen")
        XCTAssertEqual(decision?["server"] as? String, "fs-b")
        XCTAssertEqual(decision?["fallbacks"] as? [String], ["fs-a"])
        XCTAssertEqual(decision?["predictedLatencyMs"] as? Double ?? 0, 0.2, accuracy: 0.01)
        XCTAssertTrue((decision?["reasoning"] as? String ?? "").contains("lowest predicted latency"))
        XCTAssertNotNil(decision?["decisionTimeNs"] as? Int)
        // Requirements no server meets: a decision, not an error.
        let (_, unmet) = route(#"{"tool": "read_file", "requirements": {"maxResponseTime": "0.1ms"}}"#)
        XCTAssertEqual(unmet?["outcome"] as? String, "no-server-meets-requirements")
        // Agents: allowed tools and servers (a group name) apply.
        XCTAssertEqual(route(#"{"tool": "read_file", "agent": "reader"}"#).1?["outcome"] as? String, "chosen")
        XCTAssertEqual(route(#"{"tool": "write_file", "agent": "reader"}"#).0, ABIStatus.invalidArgument.rawValue)
        XCTAssertTrue(lastMessage.contains("may not call tool"), lastMessage)
        XCTAssertEqual(route(#"{"tool": "read_page", "agent": "reader"}"#).1?["outcome"] as? String, "no-server-meets-requirements",
                       "read_page is an allowed tool, but only on a server outside the agent's allowed group")
        XCTAssertEqual(route(#"{"tool": "read_file", "agent": "ghost"}"#).0, ABIStatus.notFound.rawValue)
    }

    func testRegisterRemoveAndStats() throws {
        let server = #"{"id": "extra", "transport": "http", "group": "g", "weight": 2, "tags": ["eu"], "tools": [{"name": "t", "annotations": {"idempotentHint": true}}], "health": "healthy"}"#
        XCTAssertEqual(mcpopt_route_register_server(engine, server, -1), 0, lastMessage)
        XCTAssertEqual(route(#"{"tool": "t"}"#).1?["server"] as? String, "extra")
        record("extra", "t", micros: 1500, success: false, times: 12)
        var out: UnsafeMutablePointer<CChar>?
        var length = 0
        XCTAssertEqual(mcpopt_route_stats(engine, &out, &length), 0)
        let stats = try JSONSerialization.jsonObject(with: Data(bytes: try XCTUnwrap(out), count: length)) as? [String: Any]
        mcpopt_free(out)
        let extra = (stats?["servers"] as? [[String: Any]])?.first { $0["id"] as? String == "extra" }
        XCTAssertEqual(extra?["circuit"] as? String, "open")
        XCTAssertEqual(extra?["successRate"] as? Double, 0)
        XCTAssertEqual(route(#"{"tool": "t"}"#).1?["outcome"] as? String, "last-resort")
        XCTAssertEqual(mcpopt_route_remove_server(engine, "extra", -1), 0)
        XCTAssertEqual(mcpopt_route_remove_server(engine, "extra", -1), ABIStatus.notFound.rawValue)
        XCTAssertEqual(route(#"{"tool": "t"}"#).1?["outcome"] as? String, "unknown-tool")
    }

    func testBadInputGetsStatusAndPath() {
        var out: UnsafeMutablePointer<CChar>?
        XCTAssertEqual(mcpopt_route(engine, nil, 0, &out, nil), ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(mcpopt_route(engine, "{}", -1, nil, nil), ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(route("{not json").0, ABIStatus.malformedJSON.rawValue)
        XCTAssertEqual(route("[1]").0, ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(route("{}").0, ABIStatus.invalidArgument.rawValue)
        XCTAssertTrue(lastMessage.contains("$.tool: required"), lastMessage)
        XCTAssertEqual(route(#"{"tool": "t", "requirements": {"minSuccessRate": 7}}"#).0, ABIStatus.invalidArgument.rawValue)
        XCTAssertTrue(lastMessage.contains("$.requirements.minSuccessRate"), lastMessage)
        XCTAssertEqual(route(#"{"tool": "t", "requirements": {"strategy": "fastest"}}"#).0, ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(route(#"{"tool": "t", "requirements": {"maxResponseTime": "soon"}}"#).0, ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(route(#"{"tool": "t", "requirements": {"colour": 1}}"#).0, ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(route(#"{"method": "tools/list"}"#).0, ABIStatus.invalidArgument.rawValue)
        let invalid: [CChar] = [0x7B, CChar(bitPattern: 0xFF), 0x7D, 0]
        XCTAssertEqual(mcpopt_route(engine, invalid, -1, &out, nil), ABIStatus.invalidUTF8.rawValue)
        XCTAssertEqual(mcpopt_route_register_server(engine, #"{"id": ""}"#, -1), ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(mcpopt_route_register_server(engine, #"{"id": "x", "tools": [{"name": 3}]}"#, -1), ABIStatus.invalidArgument.rawValue)
        XCTAssertTrue(lastMessage.contains("$.tools[0].name"), lastMessage)
        XCTAssertEqual(mcpopt_route_register_server(engine, #"{"id": "x", "tools": [{"name": "t", "annotations": {"readOnlyHint": "yes"}}]}"#, -1), ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(mcpopt_route_register_server(engine, #"{"id": "x", "port": 3}"#, -1), ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(setTools("nobody", "[]"), ABIStatus.notFound.rawValue)
        XCTAssertEqual(mcpopt_route_record(engine, "fs-a", -1, "t", -1, -5, 1), ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(mcpopt_route_record(engine, "nobody", -1, "t", -1, 5, 1), ABIStatus.notFound.rawValue)
        XCTAssertEqual(mcpopt_route_record(engine, "", -1, "t", -1, 5, 1), ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(mcpopt_route_stats(engine, nil, nil), ABIStatus.invalidArgument.rawValue)
        // Nothing else was lost.
        XCTAssertEqual(setTools("fs-a", #"[{"name": "ok"}]"#), 0)
        XCTAssertEqual(route(#"{"tool": "ok"}"#).1?["server"] as? String, "fs-a")
    }
}
