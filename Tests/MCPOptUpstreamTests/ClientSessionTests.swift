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

    func testAModernCallersEnvelopeIsDroppedOnAHandshakeHop() throws {
        let session = readySession()
        let params = #"{"name":"t","arguments":{"a":1},"_meta":{"progressToken":"p","io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"c"}}}"#
        let call = sent(session.send(UpstreamRequest(method: "tools/call", paramsJSON: params), token: 1))
        let sentParams = try JSONParser.parse(call[0].params!)
        XCTAssertEqual(sentParams["_meta"], ["progressToken": "p"], "the caller's own key stays, the envelope goes")
        XCTAssertEqual(sentParams["arguments"], ["a": 1])
        let bare = sent(session.send(UpstreamRequest(method: "tools/call", paramsJSON: #"{"name":"t","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#), token: 2))
        XCTAssertNil(try JSONParser.parse(bare[0].params!)["_meta"])
    }

    // MARK: subscriptions/listen (modern era)

    func modernReady(capabilities: String) -> ClientSession {
        let session = ClientSession(mode: .auto)
        _ = session.open()
        _ = receive(session, #"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28"],"capabilities":\#(capabilities),"resultType":"complete"}}"#)
        return session
    }

    func testModernSessionListensForWhatTheServerAnnounces() throws {
        let session = modernReady(capabilities: #"{"tools":{"listChanged":true},"resources":{"subscribe":true,"listChanged":false}}"#)
        let listen = sent(session.startListening())
        XCTAssertEqual(listen.map(\.method), ["subscriptions/listen"])
        let params = try JSONParser.parse(listen[0].params!)
        XCTAssertEqual(params["notifications"], ["toolsListChanged": true])
        XCTAssertEqual(params["_meta"]?[MetaKey.protocolVersion], "2026-07-28")
        XCTAssertTrue(session.startListening().isEmpty, "one stream at a time")
        // The ack is the session's business; the change notification is the owner's.
        let id = try XCTUnwrap(listen[0].id)
        XCTAssertTrue(receive(session, #"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"notifications":{"toolsListChanged":true},"_meta":{"io.modelcontextprotocol/subscriptionId":\#(id.json)}}}"#).isEmpty)
        let change = receive(session, #"{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":\#(id.json)}}}"#)
        guard case .notification(let method, _)? = change.first else { return XCTFail("\(change)") }
        XCTAssertEqual(method, "notifications/tools/list_changed")
        // The server closes the stream gracefully: listen again later.
        XCTAssertEqual(receive(session, #"{"jsonrpc":"2.0","id":\#(id.json),"result":{"_meta":{}}}"#), [.listenEnded(retry: true)])
        XCTAssertEqual(sent(session.startListening()).map(\.method), ["subscriptions/listen"])
    }

    func testNothingToListenForAndRefusal() throws {
        let quiet = modernReady(capabilities: #"{"tools":{}}"#)
        XCTAssertTrue(quiet.startListening().isEmpty, "no list changes announced, nothing subscribed")
        let session = modernReady(capabilities: #"{"prompts":{"listChanged":true}}"#)
        let id = try XCTUnwrap(sent(session.startListening()).first?.id)
        let refused = receive(session, #"{"jsonrpc":"2.0","id":\#(id.json),"error":{"code":-32601,"message":"Method not found"}}"#)
        XCTAssertTrue(refused.contains(.listenEnded(retry: false)))
        XCTAssertTrue(session.startListening().isEmpty, "not asked again")
        // Subscriptions cannot be bridged either: a clear error, not a silent success.
        let answer = session.send(UpstreamRequest(method: "resources/subscribe", paramsJSON: #"{"uri":"file:///a"}"#), token: 9)
        guard case .response(9, let bytes)? = answer.first else { return XCTFail("\(answer)") }
        XCTAssertEqual(try decoder.decodeOwned(bytes).errorCode, RPCErrorCode.methodNotFound)
    }

    func testModernSubscribeRelistensAndStopsTheOldStreamOnceTheNewOneIsAcknowledged() throws {
        let session = modernReady(capabilities: #"{"resources":{"subscribe":true,"listChanged":true}}"#)
        let first = try XCTUnwrap(sent(session.startListening()).first?.id)
        // resources/subscribe does not exist in the modern era: answered here, a new stream opens.
        let events = session.send(UpstreamRequest(method: "resources/subscribe", paramsJSON: #"{"uri":"file:///a.txt"}"#), token: 3)
        guard case .response(3, let ok)? = events.first else { return XCTFail("\(events)") }
        XCTAssertEqual(try decoder.decodeOwned(ok).kind, .result)
        let relisten = sent(events)
        XCTAssertEqual(relisten.map(\.method), ["subscriptions/listen"])
        XCTAssertEqual(try JSONParser.parse(relisten[0].params!)["notifications"], ["resourcesListChanged": true, "resourceSubscriptions": ["file:///a.txt"]])
        let second = try XCTUnwrap(relisten[0].id)
        XCTAssertNotEqual(second, first)
        XCTAssertFalse(events.contains { if case .stopListen = $0 { true } else { false } }, "the old stream stays until the new one is acknowledged")
        // An ack for the old stream stops nothing; the new stream's ack stops the old one.
        XCTAssertTrue(receive(session, #"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"notifications":{},"_meta":{"io.modelcontextprotocol/subscriptionId":\#(first.json)}}}"#).isEmpty)
        let acked = receive(session, #"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"notifications":{},"_meta":{"io.modelcontextprotocol/subscriptionId":\#(second.json)}}}"#)
        guard case .stopListen(let stopped, let cancel)? = acked.first else { return XCTFail("\(acked)") }
        XCTAssertEqual(RequestID.int(stopped), first)
        let cancelled = try decoder.decodeOwned(cancel)
        XCTAssertEqual(cancelled.method, "notifications/cancelled")
        XCTAssertEqual(try JSONParser.parse(cancelled.params!)["requestId"], .int(stopped))
        // The old stream's late end is nobody's business; the new one's is.
        XCTAssertTrue(receive(session, #"{"jsonrpc":"2.0","id":\#(first.json),"result":{}}"#).isEmpty)
        XCTAssertEqual(session.subscribedURIs, ["file:///a.txt"])
        // Unsubscribing the last URI keeps the stream for list changes (a new filter).
        let after = sent(session.send(UpstreamRequest(method: "resources/unsubscribe", paramsJSON: #"{"uri":"file:///a.txt"}"#), token: 4))
        XCTAssertEqual(try JSONParser.parse(after[0].params!)["notifications"], ["resourcesListChanged": true])
        XCTAssertTrue(session.subscribedURIs.isEmpty)
    }

    func testHandshakeSubscriptionsAreRestoredInANewSession() throws {
        let old = ClientSession(mode: .handshake)
        _ = old.open()
        _ = receive(old, #"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{"resources":{"subscribe":true}},"serverInfo":{"name":"x","version":"1"}}}"#)
        _ = old.send(UpstreamRequest(method: "resources/subscribe", paramsJSON: #"{"uri":"file:///b"}"#), token: 1)
        _ = old.send(UpstreamRequest(method: "resources/subscribe", paramsJSON: #"{"uri":"file:///c"}"#), token: 2)
        _ = old.send(UpstreamRequest(method: "resources/unsubscribe", paramsJSON: #"{"uri":"file:///c"}"#), token: 3)
        let fresh = ClientSession(mode: .handshake)
        fresh.restoreSubscriptions(old.subscribedURIs)
        _ = fresh.open()
        let ready = sent(receive(fresh, #"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"x","version":"1"}}}"#))
        XCTAssertEqual(ready.map(\.method), ["notifications/initialized", "resources/subscribe"])
        XCTAssertEqual(try JSONParser.parse(ready[1].params!)["uri"], "file:///b")
    }

    func testModernSubscriptionsCarryOverIntoTheListenFilter() throws {
        let fresh = ClientSession(mode: .auto)
        fresh.restoreSubscriptions(["file:///z"])
        _ = fresh.open()
        _ = receive(fresh, #"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28"],"capabilities":{},"resultType":"complete"}}"#)
        let listen = sent(fresh.startListening())
        XCTAssertEqual(try JSONParser.parse(listen[0].params!)["notifications"], ["resourceSubscriptions": ["file:///z"]])
    }
}

enum Vectors {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("vectors/mcp-wire")
    static func lines(_ name: String) throws -> [String] {
        try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8).split(separator: "\n").map(String.init)
    }
}
