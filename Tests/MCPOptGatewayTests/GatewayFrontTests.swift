import XCTest
import MCPOptJSON
import MCPOptProtocol
@testable import MCPOptGateway

final class GatewayFrontTests: XCTestCase {
    let decoder = MessageDecoder()
    let front = GatewayFront(identity: .init(instructions: "be nice"), knownMethods: ["tools/list", "tools/call"])

    func send(_ method: String = "POST", headers: [(String, String)] = [], body: String = "") throws -> GatewayFront.Action {
        var head = "\(method) /mcp HTTP/1.1\r\nHost: localhost:8080\r\nAccept: application/json, text/event-stream\r\nContent-Length: \(body.utf8.count)\r\n"
        for (n, v) in headers { head += "\(n): \(v)\r\n" }
        let parser = HTTPParser(.request)
        _ = try Array((head + "\r\n" + body).utf8).withUnsafeBytes { try parser.feed($0) }
        return front.handle(parser, body: parser.takeBody(), decoder: decoder)
    }

    func response(_ action: GatewayFront.Action) -> (status: Int, headers: [FrontDoor.Header], json: JSONValue?) {
        guard case .respond(let status, let headers, let body) = action else { return (0, [], nil) }
        return (status, headers, try? JSONParser.parse(body))
    }

    func initialize(version: String = "2025-06-18") throws -> String {
        let r = response(try send(body: #"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"\#(version)","capabilities":{"roots":{}},"clientInfo":{"name":"t","version":"1"}}}"#))
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.json?["result"]?["instructions"], "be nice")
        return try XCTUnwrap(r.headers.first { $0.name == "Mcp-Session-Id" }?.value)
    }

    func testHandshakeSessionLifecycle() throws {
        let sid = try initialize()
        XCTAssertEqual(sid.count, 32)
        XCTAssertEqual(front.sessionCount, 1)
        XCTAssertEqual(response(try send(headers: [("Mcp-Session-Id", sid), ("MCP-Protocol-Version", "2025-06-18")], body: #"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)).status, 202)
        guard case .dispatch(let d) = try send(headers: [("Mcp-Session-Id", sid), ("MCP-Protocol-Version", "2025-06-18")], body: #"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#) else { return XCTFail() }
        XCTAssertEqual(d.era, .handshake)
        XCTAssertEqual(d.version, .v2025_06_18)
        XCTAssertEqual(d.sessionID, sid)
        XCTAssertEqual(d.clientCapabilities, ["roots": [:]])
        let pong = response(try send(headers: [("Mcp-Session-Id", sid)], body: #"{"jsonrpc":"2.0","id":3,"method":"ping"}"#))
        XCTAssertEqual(pong.json?["result"], .object([:]))
        XCTAssertEqual(response(try send("DELETE", headers: [("Mcp-Session-Id", sid)])).status, 200)
        XCTAssertEqual(response(try send(headers: [("Mcp-Session-Id", sid)], body: #"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#)).status, 404)
        XCTAssertEqual(response(try send("DELETE", headers: [("Mcp-Session-Id", sid)])).status, 404)
    }

    func testVersionNegotiation() throws {
        let r = response(try send(body: #"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2030-01-01","capabilities":{}}}"#))
        XCTAssertEqual(r.json?["result"]?["protocolVersion"], "2025-11-25", "an unknown version gets the latest this side speaks")
    }

    func testMissingUnknownSessionsAndBadVersions() throws {
        XCTAssertEqual(response(try send(body: #"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)).status, 400)
        XCTAssertEqual(response(try send(headers: [("Mcp-Session-Id", "nope")], body: #"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)).status, 404)
        let sid = try initialize()
        XCTAssertEqual(response(try send(headers: [("Mcp-Session-Id", sid), ("MCP-Protocol-Version", "2024-01-01")], body: #"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)).status, 400)
        XCTAssertEqual(response(try send(headers: [("Mcp-Session-Id", sid)], body: #"[{"jsonrpc":"2.0","id":2,"method":"tools/list"}]"#)).json?["error"]?["code"], -32600)
        XCTAssertEqual(response(try send(headers: [("Mcp-Session-Id", sid)], body: "{")).json?["error"]?["code"], -32700)
        // GET: the session's event stream, for a known session (406 without the Accept: the
        // interop check).
        XCTAssertEqual(response(try send("GET")).status, 400)
        XCTAssertEqual(response(try send("GET", headers: [("Mcp-Session-Id", "nope")])).status, 404)
        guard case .openStream(let streamed) = try send("GET", headers: [("Mcp-Session-Id", sid)]) else {
            return XCTFail("a GET with the session and Accept opens its stream")
        }
        XCTAssertEqual(streamed, sid)
        XCTAssertEqual(response(try send("PUT")).status, 405)
    }

    func testModernDiscoveryAndDispatch() throws {
        let meta = #""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{}}}"#
        let discovered = response(try send(headers: [("MCP-Protocol-Version", "2026-07-28")], body: #"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{\#(meta)}}"#))
        XCTAssertEqual(discovered.status, 200)
        XCTAssertEqual(discovered.json?["result"]?["supportedVersions"], ["2026-07-28"])
        XCTAssertEqual(discovered.json?["result"]?["_meta"]?[MetaKey.serverInfo]?["name"], "mcpopt")
        guard case .dispatch(let d) = try send(headers: [("MCP-Protocol-Version", "2026-07-28")], body: #"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{\#(meta)}}"#) else { return XCTFail() }
        XCTAssertEqual(d.era, .modern)
        XCTAssertNil(d.sessionID)
        XCTAssertEqual(d.clientCapabilities, ["sampling": [:]])
        XCTAssertEqual(response(try send(headers: [("MCP-Protocol-Version", "2026-07-28")], body: #"{"jsonrpc":"2.0","id":3,"method":"ping","params":{\#(meta)}}"#)).status, 404)
    }

    func testForeignHostIsRefused() throws {
        let head = "POST /mcp HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 2\r\n\r\n{}"
        let parser = HTTPParser(.request)
        _ = try Array(head.utf8).withUnsafeBytes { try parser.feed($0) }
        XCTAssertEqual(response(front.handle(parser, body: parser.takeBody(), decoder: decoder)).status, 403)
    }

    /// Cancellations find their request by the id as JSON re-encodes it; the request side skips
    /// parsing for integers and plain strings, and must agree with the parse on every token.
    func testRequestIDsAreCanonicalWithOrWithoutParsing() throws {
        let tokens = ["1", "0", "-7", "123456789012345", "1234567890123456789", "01", "-0", "1.0", "1e3", "-", "\"abc\"", "\"a-b_c.d:e\"",
                      "\"\"", "\"a b\"", "\"\\u0041\"", "\"caf\u{e9}\"", "\"a/b\"", "null", "\"x\\\"y\""]
        for token in tokens {
            let bytes = Array(token.utf8)
            XCTAssertEqual(canonicalRequestID(bytes), (try? JSONParser.parse(bytes))?.jsonString, token)
        }
    }
}

final class ListenFilterTests: XCTestCase {
    func filter(_ text: String) throws -> Gateway.ListenFilter {
        try Gateway.ListenFilter(try JSONParser.parse(Array(text.utf8)))
    }

    func message(_ text: String) -> String? {
        do {
            _ = try filter(text)
            return nil
        } catch {
            return (error as? Gateway.ListenFilterError)?.message
        }
    }

    func testHonoredFilterEchoesWhatWasAskedWithoutFalseFlags() throws {
        let f = try filter(#"{"toolsListChanged":true,"promptsListChanged":false,"resourceSubscriptions":["a://1","a://1","b://2"]}"#)
        XCTAssertEqual(f.honored, ["toolsListChanged": true, "resourceSubscriptions": ["a://1", "b://2"]])
        XCTAssertTrue(f.wants("notifications/tools/list_changed"))
        XCTAssertFalse(f.wants("notifications/prompts/list_changed"))
        XCTAssertFalse(f.wants("notifications/resources/updated"), "updates go by URI, not by flag")
        XCTAssertEqual(try filter("{}").honored, [:])
    }

    func testBadFiltersGetClearErrors() throws {
        XCTAssertEqual(message("[]"), "subscriptions/listen needs params.notifications, an object")
        XCTAssertEqual(message(#"{"toolsListChanged":"yes"}"#), "params.notifications.toolsListChanged must be a boolean")
        XCTAssertEqual(message(#"{"resourceSubscriptions":"a://1"}"#), "params.notifications.resourceSubscriptions must be an array of URIs")
        XCTAssertEqual(message(#"{"resourceSubscriptions":[1]}"#), "params.notifications.resourceSubscriptions must list URIs (strings)")
        XCTAssertEqual(message(#"{"resourceSubscriptions":[""]}"#), "params.notifications.resourceSubscriptions must list URIs (strings)")
    }

    func testStreamFramesCarryTheSubscriptionID() throws {
        let stream = Gateway.ListenStream(id: Array(#""listen-7""#.utf8), key: "listen:1", filter: try filter("{}"), send: { _ in })
        let frame = try JSONParser.parse(stream.stamped("notifications/resources/updated", params: ["uri": "a://1"]))
        XCTAssertEqual(frame["params"]?["uri"], "a://1")
        XCTAssertEqual(frame["params"]?["_meta"]?[MetaKey.subscriptionID], "listen-7")
    }
}
