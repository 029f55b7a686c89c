import XCTest
import MCPOptJSON
import MCPOptProtocol
@testable import MCPOptUpstream

/// Drives a ClientSession with scripted server answers, some taken from real captures.
final class ClientSessionTests: XCTestCase {
    let decoder = MessageDecoder()

    func sent(_ events: [ClientSession.Event]) -> [Message] {
        events.compactMap { if case .send(let b) = $0 { try? decoder.decodeOwned(b) } else { nil } }
    }

    func receive(_ session: ClientSession, _ text: String) -> [ClientSession.Event] {
        Array(text.utf8).withUnsafeBytes { session.receive($0) }
    }

    func testAutoModeFallsBackToInitializeLikeTheStubCapture() throws {
        let session = ClientSession(mode: .auto)
        let opening = sent(session.open())
        XCTAssertEqual(opening.map(\.method), ["server/discover"])
        XCTAssertEqual(opening[0].protocolVersion, "2026-07-28")
        // Queued before negotiation ends.
        XCTAssertTrue(session.send(UpstreamRequest(method: "tools/list"), token: 77).isEmpty)
        // The legacy stub answers discover with "Method not found" (tap_stub / stdio_stub.out).
        let fallback = sent(receive(session, #"{"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "Method not found"}}"#))
        XCTAssertEqual(fallback.map(\.method), ["initialize"])
        XCTAssertEqual(session.phase, .initializing)
        let events = receive(session, #"{"jsonrpc": "2.0", "id": 2, "result": {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "stub", "version": "0"}}}"#)
        let messages = sent(events)
        XCTAssertEqual(messages.map(\.method), ["notifications/initialized", "tools/list"])
        XCTAssertTrue(events.contains(.ready))
        XCTAssertEqual(session.version, .v2025_06_18)
        XCTAssertEqual(session.era, .handshake)
        XCTAssertEqual(session.serverInfo?["name"], "stub")
        XCTAssertNil(messages[1].protocolVersion)  // no modern envelope in the handshake era
        let id = try XCTUnwrap(messages[1].id)
        let answer = receive(session, #"{"jsonrpc":"2.0","id":\#(id.json),"result":{"tools":[]}}"#)
        guard case .response(let token, let bytes)? = answer.first else { return XCTFail("\(answer)") }
        XCTAssertEqual(token, 77)
        XCTAssertEqual(try decoder.decodeOwned(bytes).kind, .result)
        XCTAssertEqual(session.healthProbe.method, "ping")
    }

    func testModernServerFromTimeCapture() throws {
        let session = ClientSession(mode: .auto)
        _ = session.open()
        let discovered = try Vectors.lines("stdio_time.out")[0]
        let events = receive(session, discovered)
        XCTAssertEqual(events, [.ready])
        XCTAssertEqual(session.version, .v2026_07_28)
        XCTAssertEqual(session.serverInfo?["name"], "mcp-time")
        let call = sent(session.send(UpstreamRequest(method: "tools/call", paramsJSON: #"{"name":"get_current_time","arguments":{"timezone":"UTC"}}"#), token: 5))
        XCTAssertEqual(call.first?.protocolVersion, "2026-07-28")
        XCTAssertEqual(call.first?.name, "get_current_time")
        let params = try JSONParser.parse(call[0].params!)
        XCTAssertEqual(params["_meta"]?[MetaKey.clientInfo]?["name"], "mcpopt")
        XCTAssertEqual(params["arguments"], ["timezone": "UTC"])
        XCTAssertEqual(session.healthProbe.method, "server/discover")
    }

    func testUnsupportedVersionErrorRetriesDiscoveryOrFallsBack() {
        let session = ClientSession(mode: .auto)
        _ = session.open()
        // -32022 listing only handshake versions: fall back to initialize.
        let next = sent(receive(session, #"{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"unsupported","data":{"supported":["2025-11-25"],"requested":"2026-07-28"}}}"#))
        XCTAssertEqual(next.map(\.method), ["initialize"])
        let strict = ClientSession(mode: .modern)
        _ = strict.open()
        let events = receive(strict, #"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}"#)
        XCTAssertEqual(strict.phase, .closed)
        XCTAssertTrue(events.contains { if case .violation = $0 { true } else { false } })
    }

    func testHandshakeWithUnknownVersionFails() {
        let session = ClientSession(mode: .handshake)
        _ = session.open()
        _ = session.send(UpstreamRequest(method: "tools/list"), token: 1)
        let events = receive(session, #"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"1999-01-01","capabilities":{},"serverInfo":{"name":"x","version":"1"}}}"#)
        XCTAssertTrue(events.contains(.failed(token: 1, error: UpstreamError(.negotiation, "the server answered initialize with protocol version \"1999-01-01\", which this client does not speak"))))
        XCTAssertEqual(session.send(UpstreamRequest(method: "ping"), token: 2).count, 1)
    }

    func readySession() -> ClientSession {
        let session = ClientSession(mode: .handshake)
        _ = session.open()
        _ = receive(session, #"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"x","version":"1"}}}"#)
        return session
    }

    func testManyCallersShareTheSessionWithTheirOwnIds() throws {
        let session = readySession()
        var ids: [Int64: UInt64] = [:]
        for token in UInt64(100)..<110 {
            let m = sent(session.send(UpstreamRequest(method: "tools/call", paramsJSON: #"{"name":"t","arguments":{"n":\#(token)}}"#), token: token))
            guard case .int(let id)? = m.first?.id else { return XCTFail() }
            ids[id] = token
        }
        XCTAssertEqual(Set(ids.keys).count, 10)
        // Answers in reverse order reach the right callers.
        for (id, token) in ids.sorted(by: { $0.key > $1.key }) {
            let events = receive(session, #"{"jsonrpc":"2.0","id":\#(id),"result":{"n":\#(token)}}"#)
            guard case .response(let got, _)? = events.first else { return XCTFail() }
            XCTAssertEqual(got, token)
        }
        XCTAssertEqual(session.pendingCount, 0)
    }

    func testCancelTellsTheServerAndDropsTheLateAnswer() throws {
        let session = readySession()
        let m = sent(session.send(UpstreamRequest(method: "tools/call", paramsJSON: #"{"name":"slow"}"#), token: 9))
        let id = try XCTUnwrap(m.first?.id)
        let events = session.cancel(token: 9, reason: "timeout")
        let note = sent(events)
        XCTAssertEqual(note.first?.method, "notifications/cancelled")
        XCTAssertEqual(try JSONParser.parse(note[0].params!)["requestId"], .int({ if case .int(let i) = id { i } else { -1 } }()))
        XCTAssertTrue(events.contains(.failed(token: 9, error: UpstreamError(.cancelled, "timeout"))))
        XCTAssertTrue(receive(session, #"{"jsonrpc":"2.0","id":\#(id.json),"result":{}}"#).isEmpty)
    }

    func testCloseFailsEverythingWaiting() {
        let session = ClientSession(mode: .auto)
        _ = session.open()
        _ = session.send(UpstreamRequest(method: "a"), token: 1)
        let events = session.close(reason: "process exited")
        XCTAssertEqual(events, [.failed(token: 1, error: UpstreamError(.closed, "process exited"))])
        XCTAssertEqual(session.send(UpstreamRequest(method: "a"), token: 2), [.failed(token: 2, error: UpstreamError(.closed, "the session is closed"))])
    }

    func testServerMessagesAndGarbage() {
        let session = readySession()
        let ping = sent(receive(session, #"{"jsonrpc":"2.0","id":"s1","method":"ping"}"#))
        XCTAssertEqual(ping.first?.id, .string("s1"))
        XCTAssertEqual(ping.first?.kind, .result)
        guard case .serverRequest(let method, _)? = receive(session, #"{"jsonrpc":"2.0","id":4,"method":"roots/list"}"#).first else { return XCTFail() }
        XCTAssertEqual(method, "roots/list")
        guard case .notification(let n, _)? = receive(session, #"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#).first else { return XCTFail() }
        XCTAssertEqual(n, "notifications/tools/list_changed")
        guard case .violation? = receive(session, "not json").first else { return XCTFail() }
        guard case .violation? = receive(session, #"{"jsonrpc":"2.0","id":"zz","result":{}}"#).first else { return XCTFail() }
        XCTAssertTrue(receive(session, #"{"jsonrpc":"2.0","id":999,"result":{}}"#).isEmpty)
    }
}

enum Vectors {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("vectors/mcp-wire")
    static func lines(_ name: String) throws -> [String] {
        try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8).split(separator: "\n").map(String.init)
    }
}
