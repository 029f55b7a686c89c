import XCTest
import MCPOptJSON
import MCPOptProtocol
@testable import MCPOptUpstream

/// Scripted HTTP answers for the cases a live server rarely produces on demand.
final class StreamableHTTPSessionTests: XCTestCase {
    let parser = MessageDecoder()

    func requests(_ events: [StreamableHTTPSession.Event]) -> [(StreamableHTTPSession.ExchangeID, HTTPParser)] {
        events.compactMap { event in
            guard case .request(let id, let bytes) = event else { return nil }
            let p = HTTPParser(.request)
            _ = try? bytes.withUnsafeBytes { try p.feed($0) }
            return (id, p)
        }
    }

    func answer(_ s: StreamableHTTPSession, _ id: StreamableHTTPSession.ExchangeID, status: Int, headers: [(String, String)] = [("Content-Type", "application/json")], body: String) -> [StreamableHTTPSession.Event] {
        var events = s.responseHead(id, status: status, headers: headers.map { (name: $0.0, value: $0.1) })
        events += Array(body.utf8).withUnsafeBytes { s.responseBody(id, $0) }
        return events + s.responseEnd(id)
    }

    func initialized() -> (StreamableHTTPSession, [(StreamableHTTPSession.ExchangeID, HTTPParser)]) {
        let s = StreamableHTTPSession(endpoint: .init(host: "::1", port: 9, path: "/mcp"), headers: [("Authorization", "Bearer t")], mode: .handshake)
        let first = requests(s.open())
        XCTAssertEqual(first.first?.1.header("host"), "[::1]:9")
        XCTAssertNil(first.first?.1.header("mcp-protocol-version"), "initialize carries no version header")
        XCTAssertEqual(first.first?.1.header("authorization"), "Bearer t")
        let next = requests(answer(s, first[0].0, status: 200, headers: [("Content-Type", "application/json"), ("Mcp-Session-Id", "abc123")],
                                   body: #"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}"#))
        return (s, next)
    }

    func testSessionIdAndVersionHeadersFollowTheHandshake() throws {
        let (s, next) = initialized()
        XCTAssertEqual(next.count, 1)  // notifications/initialized
        XCTAssertEqual(next[0].1.header("mcp-session-id"), "abc123")
        XCTAssertEqual(next[0].1.header("mcp-protocol-version"), "2025-06-18")
        XCTAssertTrue(answer(s, next[0].0, status: 202, headers: [], body: "").isEmpty)
        let call = requests(s.send(UpstreamRequest(method: "tools/list"), token: 4))
        XCTAssertEqual(call[0].1.header("mcp-session-id"), "abc123")
        XCTAssertNil(call[0].1.header("mcp-method"), "routing headers are a modern-era thing")
        XCTAssertEqual(s.terminationRequest().map { String(decoding: $0, as: UTF8.self).hasPrefix("DELETE /mcp HTTP/1.1\r\n") }, true)
    }

    func testARequestSentAtOnceAndOneQueuedAreWrittenAlike() throws {
        let s = StreamableHTTPSession(endpoint: .init(host: "h", port: 1, path: "/mcp"), mode: .handshake)
        let first = requests(s.open())
        XCTAssertTrue(requests(s.send(UpstreamRequest(method: "tools/call", paramsJSON: #"{"name":"a"}"#), token: 1)).isEmpty, "queued until ready")
        let next = requests(answer(s, first[0].0, status: 200, headers: [("Content-Type", "application/json"), ("Mcp-Session-Id", "s1")],
                                   body: #"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}"#))
        let queued = try XCTUnwrap(next.first { String(decoding: $0.1.takeBody(), as: UTF8.self).contains("tools/call") })
        let direct = try XCTUnwrap(requests(s.send(UpstreamRequest(method: "tools/call", paramsJSON: #"{"name":"a"}"#), token: 2)).first)
        for (_, parser) in [queued, direct] {
            XCTAssertEqual(parser.header("mcp-protocol-version"), "2025-06-18")
            XCTAssertEqual(parser.header("mcp-session-id"), "s1")
            XCTAssertNil(parser.header("mcp-method"))
        }
        // Each exchange knows the request it carries: a failed connection fails its caller.
        XCTAssertEqual(s.exchangeFailed(queued.0, reason: "reset"), [.failed(token: 1, error: UpstreamError(.closed, "the connection failed: reset"))])
        XCTAssertEqual(s.exchangeFailed(direct.0, reason: "reset"), [.failed(token: 2, error: UpstreamError(.closed, "the connection failed: reset"))])
    }

    func testExpiredSessionFailsWaitersAndNegotiatesAgain() throws {
        let (s, _) = initialized()
        let call = requests(s.send(UpstreamRequest(method: "tools/list"), token: 4))
        let events = s.responseHead(call[0].0, status: 404, headers: [])
        XCTAssertTrue(events.contains(.failed(token: 4, error: UpstreamError(.closed, "the server ended the session (HTTP 404): negotiating a new one"))))
        let reopened = requests(events)
        XCTAssertEqual(reopened.count, 1)
        XCTAssertNil(reopened[0].1.header("mcp-session-id"))
        XCTAssertTrue(String(decoding: reopened[0].1.takeBody(), as: UTF8.self).contains(#""method":"initialize""#))
        XCTAssertNil(s.sessionID)
    }

    func testInvalidSessionIdIsRefused() {
        let s = StreamableHTTPSession(endpoint: .init(host: "h", port: 1, path: "/"), mode: .handshake)
        let first = requests(s.open())
        let events = s.responseHead(first[0].0, status: 200, headers: [(name: "Mcp-Session-Id", value: "bad id\u{7}")])
        XCTAssertEqual(events, [.violation("the server sent an invalid Mcp-Session-Id")])
    }

    func testModern404IsAnAnswerNotAnExpiry() throws {
        let s = StreamableHTTPSession(endpoint: .init(host: "h", port: 1, path: "/"), mode: .modern)
        let first = requests(s.open())
        XCTAssertEqual(first[0].1.header("mcp-method"), "server/discover")
        XCTAssertEqual(first[0].1.header("mcp-protocol-version"), "2026-07-28")
        _ = answer(s, first[0].0, status: 200, body: #"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28"],"capabilities":{}}}"#)
        let call = requests(s.send(UpstreamRequest(method: "nope/nope"), token: 8))
        let events = answer(s, call[0].0, status: 404, body: #"{"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"Method not found"}}"#)
        guard case .response(let token, _)? = events.first else { return XCTFail("\(events)") }
        XCTAssertEqual(token, 8)
    }

    func testParameterHeadersLearnedFromToolsList() throws {
        let s = StreamableHTTPSession(endpoint: .init(host: "h", port: 1, path: "/"), mode: .modern)
        let first = requests(s.open())
        _ = answer(s, first[0].0, status: 200, body: #"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28"],"capabilities":{}}}"#)
        let list = requests(s.send(UpstreamRequest(method: "tools/list"), token: 1))
        _ = answer(s, list[0].0, status: 200, body: #"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"weather","inputSchema":{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"}}}}]}}"#)
        let call = requests(s.send(UpstreamRequest(method: "tools/call", paramsJSON: #"{"name":"weather","arguments":{"region":"eu-west"}}"#), token: 2))
        XCTAssertEqual(call[0].1.header("mcp-param-region"), "eu-west")
        XCTAssertEqual(call[0].1.header("mcp-name"), "weather")
    }

    /// A notification on a request's own SSE stream belongs to that request (its log messages
    /// go to its caller only); one on the GET stream belongs to none.
    func testNotificationsOnARequestStreamBelongToIt() throws {
        let (s, _) = initialized()
        let first = requests(s.send(UpstreamRequest(method: "tools/call", paramsJSON: #"{"name":"a"}"#), token: 4))
        let second = requests(s.send(UpstreamRequest(method: "tools/call", paramsJSON: #"{"name":"b"}"#), token: 5))
        let log = #"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#
        let sse = [("Content-Type", "text/event-stream")]
        let events = answer(s, second[0].0, status: 200, headers: sse,
                            body: "event: message\ndata: \(log)\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\n\n")
        XCTAssertEqual(events, [.requestNotification(token: 5, method: "notifications/message", message: Array(log.utf8)),
                                .response(token: 5, message: Array(#"{"jsonrpc":"2.0","id":3,"result":{}}"#.utf8))])
        // A request no longer awaited: its messages still belong to it, not to everyone.
        _ = s.cancel(token: 4, reason: "gone")
        XCTAssertEqual(answer(s, first[0].0, status: 200, headers: sse, body: "data: \(log)\n\n"),
                       [.requestNotification(token: nil, method: "notifications/message", message: Array(log.utf8))])
        let stream = try XCTUnwrap(requests(s.openStream()).first)
        XCTAssertEqual(answer(s, stream.0, status: 200, headers: sse, body: "data: \(log)\n\n"),
                       [.notification(method: "notifications/message", message: Array(log.utf8)), .streamEnded(retry: true)])
    }

    func testHTTPErrorWithoutBodyIsReported() {
        let (s, _) = initialized()
        let call = requests(s.send(UpstreamRequest(method: "tools/list"), token: 4))
        XCTAssertEqual(answer(s, call[0].0, status: 500, headers: [], body: ""), [.failed(token: 4, error: UpstreamError(.protocolViolation, "HTTP 500 without a JSON-RPC body"))])
        let again = requests(s.send(UpstreamRequest(method: "tools/list"), token: 5))
        XCTAssertEqual(s.exchangeFailed(again[0].0, reason: "reset"), [.failed(token: 5, error: UpstreamError(.closed, "the connection failed: reset"))])
    }
}
