import Foundation
import XCTest
@testable import MCPOptProtocol

/// The captured HTTP exchanges, split into byte streams per connection and direction.
enum Tap {
    struct Stream {
        var connection: String
        var toServer: Bool
        var bytes: [UInt8]
    }

    /// Segments look like "=== conn1 >>C2S 295B t=... ===\n" followed by exactly that many bytes.
    static func streams(_ name: String) throws -> [Stream] {
        let data = try [UInt8](Data(contentsOf: Vectors.directory.appendingPathComponent(name)))
        var streams: [Stream] = []
        var i = 0
        let marker = Array("=== ".utf8)
        while i < data.count {
            guard data[i...].starts(with: marker), let end = data[i...].firstIndex(of: 0x0A) else { i += 1; continue }
            let header = String(decoding: data[i..<end], as: UTF8.self).split(separator: " ")
            let connection = String(header[1])
            let toServer = header[2] == ">>C2S"
            let size = Int(header[3].dropLast())!
            let body = Array(data[(end + 1)..<(end + 1 + size)])
            if let last = streams.indices.last, streams[last].connection == connection, streams[last].toServer == toServer {
                streams[last].bytes += body
            } else if let index = streams.firstIndex(where: { $0.connection == connection && $0.toServer == toServer }) {
                streams[index].bytes += body
            } else {
                streams.append(Stream(connection: connection, toServer: toServer, bytes: body))
            }
            i = end + 1 + size
        }
        return streams
    }
}

final class HTTPParserTests: XCTestCase {
    /// Parses every message of a stream, feeding it in small chunks (worst case for a streaming
    /// parser), and returns (status or method, headers, body) per message.
    func parseAll(_ bytes: [UInt8], kind: HTTPParser.Kind, chunk: Int) throws -> [(head: String, headers: [(String, String)], body: [UInt8])] {
        let parser = HTTPParser(kind)
        var out: [(String, [(String, String)], [UInt8])] = []
        var body: [UInt8] = []
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + chunk, bytes.count)
            let used = try bytes[offset..<end].withUnsafeBytes { try parser.feed($0) }
            body += parser.takeBody()
            offset += used
            if parser.isComplete {
                out.append((kind == .response ? String(parser.status) : "\(parser.method) \(parser.target)", parser.headers, body))
                body = []
                parser.next()
            } else if used == 0 && end == offset {
                XCTFail("parser made no progress")
                break
            }
        }
        // A stream still open at the end of the capture (the GET stream) counts once its head is in.
        if parser.isHeadComplete && !parser.isComplete {
            out.append((kind == .response ? String(parser.status) : "\(parser.method) \(parser.target)", parser.headers, body))
        }
        return out
    }

    func testCapturedExchangesParseInAnyChunking() throws {
        let decoder = MessageDecoder()
        var messages = 0
        for file in ["tap_sdk_modern.log", "tap_sdk_legacy.log", "tap_fm_modern.log", "tap_fm_legacy.log", "tap_stub.log"] {
            for stream in try Tap.streams(file) {
                for chunk in [1, 7, 4096] {
                    let parsed = try parseAll(stream.bytes, kind: stream.toServer ? .request : .response, chunk: chunk)
                    XCTAssertFalse(parsed.isEmpty, "\(file) \(stream.connection)")
                    for message in parsed where !message.body.isEmpty {
                        let type = message.headers.first { $0.0.lowercased() == "content-type" }?.1 ?? ""
                        if type.hasPrefix("text/event-stream") {
                            var sse = SSEParser()
                            var events = 0
                            try message.body.withUnsafeBytes { try sse.feed($0) { event in
                                if !event.data.isEmpty { _ = try decoder.decodeOwned(event.data); events += 1 }
                            } }
                            XCTAssertGreaterThan(events, 0, "\(file): an SSE body without events")
                        } else if type.hasPrefix("application/json") {
                            _ = try decoder.decodeOwned(message.body)
                        }
                        if chunk == 4096 { messages += 1 }
                    }
                }
            }
        }
        XCTAssertGreaterThan(messages, 30)
    }

    func testSessionHeaderAndStatusFromCapture() throws {
        let streams = try Tap.streams("tap_fm_legacy.log")
        let response = try XCTUnwrap(streams.first { !$0.toServer })
        let parsed = try parseAll(response.bytes, kind: .response, chunk: 4096)
        XCTAssertEqual(parsed.first?.head, "200")
        XCTAssertEqual(parsed.first?.headers.first { $0.0.lowercased() == "mcp-session-id" }?.1, "f324808a99c7441aa07e254a6808e203")
    }

    func testKeepAliveChunkedAndPipelined() throws {
        let text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
        let parser = HTTPParser(.response)
        let bytes = Array(text.utf8)
        let used = try bytes.withUnsafeBytes { try parser.feed($0) }
        XCTAssertTrue(parser.isComplete)
        XCTAssertTrue(parser.isChunked)
        XCTAssertTrue(parser.keepAlive)
        XCTAssertEqual(parser.takeBody(), Array("hello".utf8))
        parser.next()
        _ = try bytes[used...].withUnsafeBytes { try parser.feed($0) }
        XCTAssertTrue(parser.isComplete)
        XCTAssertEqual(parser.status, 202)
        XCTAssertEqual(parser.contentLength, 0)
    }

    func testBodyUntilCloseAndTruncation() throws {
        let parser = HTTPParser(.response)
        _ = try Array("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc".utf8).withUnsafeBytes { try parser.feed($0) }
        XCTAssertFalse(parser.isComplete)
        try parser.finish()
        XCTAssertTrue(parser.isComplete)
        XCTAssertFalse(parser.keepAlive)
        let truncated = HTTPParser(.response)
        _ = try Array("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".utf8).withUnsafeBytes { try truncated.feed($0) }
        XCTAssertThrowsError(try truncated.finish())
    }

    func testRequestsAndLimits() throws {
        let parser = HTTPParser(.request, maxHeadBytes: 256, maxHeaders: 3)
        XCTAssertThrowsError(try Array("POST /mcp?x=1 HTTP/1.1\r\nHost: a\r\nMcp-Method: tools/call\r\nmcp-method: x\r\nContent-Length: 2\r\n\r\n{}".utf8).withUnsafeBytes {
            try parser.feed($0)
        }) { error in XCTAssertEqual("\(error)", "too many headers") }
        let ok = HTTPParser(.request)
        _ = try Array("POST /mcp?x=1 HTTP/1.1\r\nHost: a\r\nMcp-Method: tools/call\r\nmcp-method: x\r\nContent-Length: 2\r\n\r\n{}".utf8).withUnsafeBytes { try ok.feed($0) }
        XCTAssertEqual(ok.method, "POST")
        XCTAssertEqual(ok.target, "/mcp?x=1")
        XCTAssertEqual(ok.header("MCP-METHOD"), "tools/call")
        XCTAssertEqual(ok.headerOccurrences("mcp-method"), 2)
        XCTAssertEqual(ok.takeBody(), Array("{}".utf8))
        let big = HTTPParser(.request, maxHeadBytes: 64, maxHeaders: 100)
        XCTAssertThrowsError(try Array(("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 200) + "\r\n\r\n").utf8).withUnsafeBytes { try big.feed($0) })
        let garbage = HTTPParser(.response)
        XCTAssertThrowsError(try Array("HTTX/9 nope\r\n\r\n".utf8).withUnsafeBytes { try garbage.feed($0) })
    }
}

/// The fast path for plain heads against http-parser alone: on thousands of messages built
/// from pieces at the edge of the plain shape, both read the same (fuzzed further by the
/// `http` fuzz target).
final class HTTPFastPathTests: XCTestCase {
    static let requestLines = [
        "POST /mcp HTTP/1.1", "GET / HTTP/1.1", "DELETE /mcp?x=1&y=%20 HTTP/1.1", "GET /a#frag HTTP/1.1", "POST http://h/mcp HTTP/1.1",
        "OPTIONS * HTTP/1.1", "post /mcp HTTP/1.1", "POST  /mcp HTTP/1.1", "POST /mcp HTTP/1.0", "POST /mcp HTTP/1.1 ", "PATCH /p HTTP/1.1",
        "HEAD /h HTTP/1.1", "PUT /\u{7F} HTTP/1.1", "\r\nPOST /mcp HTTP/1.1", "BREW /pot HTTP/1.1", "POST /é HTTP/1.1",
    ]
    static let statusLines = [
        "HTTP/1.1 200 OK", "HTTP/1.1 202 Accepted", "HTTP/1.1 404 Not Found", "HTTP/1.1 204 No Content", "HTTP/1.1 304 Not Modified",
        "HTTP/1.1 101 Switching Protocols", "HTTP/1.1 100 Continue", "HTTP/1.0 200 OK", "HTTP/1.1 200 ", "HTTP/1.1 200", "HTTP/1.1 999 Odd",
        "HTTP/1.1 20 OK", "HTTP/1.1 500 Internal\tError", "http/1.1 200 OK",
    ]
    static let headers = [
        "Host: 127.0.0.1:8080", "Content-Type: application/json", "Accept: application/json, text/event-stream", "Mcp-Session-Id: abc123",
        "X-Empty:", "X-Blank: ", "X-Tab:\tv", "X-Inner: a  b", "X-Trailing: v ", "X-Ctl: v\u{1}", "X-Utf8: é", "X-Fold: a\r\n b",
        "X Space: v", "X-Colon : v", ": novalue", "X-Bare-LF: v\nY: w", "Connection: close", "Connection: keep-alive", "Connection: Keep-Alive",
        "Connection: keep-alive, Upgrade", "Upgrade: websocket", "Proxy-Connection: close", "Transfer-Encoding: chunked", "Transfer-Encoding: identity",
        "Expect: 100-continue", "x-lower: y", "X-UPPER: Y", "Transfer-Encodingx: chunked", "transfer-encoding-x: identity",
        "X-Long-Ctl: abcdefghij\u{1}klmnopqr", "X-Long-Del: abcdefghijklmn\u{7F}opqrstuv", "X-Long-Tab: abcdefgh\tijklmnopqrst",
        "X-Long-LF: abcdefghijklmnop\nqrstuvwxyz", "X-Long-Utf8: abcdefghijklmnopqrs\u{E9}tuv", "X-Long: abcdefghijklmnopqrstuvwxyz0123456789",
    ]
    static let lengths = ["", "Content-Length: 5", "Content-Length: 05", "Content-Length:5", "Content-Length: 5 ", "Content-Length: +5",
                          "Content-Length: 5\r\nContent-Length: 5", "content-length: 0", "Content-Length: 99999999999999999999", "Content-Length: 12"]
    static let bodies = ["", "hello", "hello world!", "5\r\nhello\r\n0\r\n\r\n", "{\"jsonrpc\":\"2.0\"}"]

    /// Choice `salt` of stream `i` from `list`: every piece meets every other across the
    /// streams, and half the choices are among the plain first three of the list.
    static func pick(_ list: [String], _ i: Int, _ salt: Int) -> String {
        let n = i &* (2 &* salt &+ 3) &+ salt &* 7 &+ i / (salt &+ 5)
        return (i / (salt + 2)) % 2 == 0 ? list[n % 3] : list[n % list.count]
    }

    /// Message `m` of stream `i`: one choice of each piece, with 0-4 extra headers.
    static func message(_ kind: HTTPParser.Kind, _ i: Int, _ m: Int) -> String {
        let salt = m * 11
        var text = pick(kind == .request ? requestLines : statusLines, i, salt) + "\r\n"
        var lines = (0..<((i / 3 + m) % 5)).map { pick(headers, i, salt + 1 + $0) }
        let length = pick(lengths, i, salt + 6)
        if !length.isEmpty { lines.insert(length, at: (i / 7) % (lines.count + 1)) }
        for line in lines { text += line + "\r\n" }
        return text + "\r\n" + pick(bodies, i, salt + 7)
    }

    func testTheFastPathReadsWhatHTTPParserReads() {
        var fastReads = 0
        for i in 0..<6000 {
            let kind: HTTPParser.Kind = i % 2 == 0 ? .request : .response
            let text = (0..<(1 + (i / 2) % 3)).map { Self.message(kind, i / 2, $0) }.joined()
            let bytes = Array(text.utf8)
            let split = 1 + (i &* 7919) % max(1, bytes.count)
            bytes.withUnsafeBytes { stream in
                let slow = HTTPParser.transcript(stream, kind: kind, chunk: .max / 2, fastPath: false, maxHeadBytes: 512, maxHeaders: 6)
                for chunk in [Int.max / 2, split] {
                    let fast = HTTPParser.transcript(stream, kind: kind, chunk: chunk, fastPath: true, maxHeadBytes: 512, maxHeaders: 6)
                    XCTAssertEqual(fast, slow, "chunk \(chunk == .max / 2 ? "whole" : String(chunk)) of \(text.debugDescription)")
                }
                let probe = HTTPParser(kind, maxHeadBytes: 512, maxHeaders: 6)
                if (try? probe.feed(stream)) != nil, probe.readByFastPath { fastReads += 1 }
            }
        }
        // The plain shape is common among the pieces: the comparison covered the fast path.
        XCTAssertGreaterThan(fastReads, 1000)
    }

    func testPlainRequestsAndResponsesTakeTheFastPathAndOthersDoNot() throws {
        func first(_ text: String, _ kind: HTTPParser.Kind) throws -> HTTPParser {
            let parser = HTTPParser(kind)
            _ = try Array(text.utf8).withUnsafeBytes { try parser.feed($0) }
            return parser
        }
        let request = try first("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nMcp-Session-Id: s1\r\nContent-Length: 2\r\n\r\n{}", .request)
        XCTAssertTrue(request.readByFastPath)
        XCTAssertTrue(request.isComplete)
        XCTAssertEqual(request.method, "POST")
        XCTAssertEqual(request.header("mcp-session-id"), "s1")
        XCTAssertEqual(request.takeBody(), Array("{}".utf8))
        let response = try first("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", .response)
        XCTAssertTrue(response.readByFastPath)
        XCTAssertEqual(response.status, 200)
        for (text, kind) in [("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HTTPParser.Kind.response),
                             ("HTTP/1.1 200 OK\r\n\r\n", .response), ("POST /mcp HTTP/1.1\r\nConnection: close\r\n\r\n", .request),
                             ("POST /mcp HTTP/1.1\r\nHost: a", .request)] {
            XCTAssertFalse(try first(text, kind).readByFastPath, text)
        }
    }

    /// Header lookups ignore ASCII case only: a long name in any case, and names that differ by
    /// characters one case bit apart (^ and ~, @ and `) are told apart, on either path.
    func testHeaderLookupsIgnoreASCIICaseOnly() throws {
        let head = "GET / HTTP/1.1\r\nX^A: caret\r\nX~A: tilde\r\nAccess-Control-Request-Headers: long\r\nX`B: tick\r\n\r\n"
        for fast in [true, false] {
            let parser = HTTPParser(.request, fastPath: fast)
            _ = try Array(head.utf8).withUnsafeBytes { try parser.feed($0) }
            XCTAssertEqual(parser.readByFastPath, fast)
            XCTAssertEqual(parser.header("x~a"), "tilde")
            XCTAssertEqual(parser.header("X^a"), "caret")
            XCTAssertEqual(parser.header("ACCESS-control-REQUEST-headers"), "long")
            XCTAssertNil(parser.header("access-control-request-headerz"))
            XCTAssertNil(parser.header("x@b"))
            XCTAssertEqual(parser.header("X`b"), "tick")
        }
    }

    /// A body split across reads after a fast head, then a pipelined request the fast path
    /// reads again; a message http-parser read in between does not stop it.
    func testBodiesAcrossReadsAndAlternatingPaths() throws {
        let parser = HTTPParser(.request)
        let stream = Array(("POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n01234" + "56789"
            + "POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
            + "POST /c HTTP/1.1\r\nContent-Length: 1\r\n\r\nz").utf8)
        var offset = 0
        var seen: [(String, Bool, [UInt8])] = []
        var body: [UInt8] = []
        for cut in [45, stream.count] {
            while offset < cut {
                let used = try stream[offset..<cut].withUnsafeBytes { try parser.feed($0) }
                offset += used
                body += parser.takeBody()
                if parser.isComplete {
                    seen.append((parser.target, parser.readByFastPath, body))
                    body = []
                    parser.next()
                } else if used == 0 { break }
            }
        }
        XCTAssertEqual(seen.map(\.0), ["/a", "/b", "/c"])
        XCTAssertEqual(seen.map(\.1), [true, false, true])
        XCTAssertEqual(seen.map { String(decoding: $0.2, as: UTF8.self) }, ["0123456789", "hi", "z"])
    }
}

final class SSEParserTests: XCTestCase {
    func events(_ chunks: [String]) throws -> [SSEEvent] {
        var parser = SSEParser()
        var out: [SSEEvent] = []
        for chunk in chunks {
            try Array(chunk.utf8).withUnsafeBytes { try parser.feed($0) { out.append($0) } }
        }
        return out
    }

    func testFieldsLineEndingsAndDispatch() throws {
        let got = try events([": comment\r\nevent: message\r\nid: 7\r\ndata: {\"a\":\r", "\n", "data:1}\n\nretry: 3000\ndata\n\n", "data: x\rdata: y\r\r"])
        XCTAssertEqual(got.count, 3)
        XCTAssertEqual(got[0].event, "message")
        XCTAssertEqual(got[0].id, "7")
        XCTAssertEqual(String(decoding: got[0].data, as: UTF8.self), "{\"a\":\n1}")
        XCTAssertEqual(got[1].retry, 3000)
        XCTAssertEqual(got[1].data, [])
        XCTAssertEqual(got[1].id, "7")  // the last id persists
        XCTAssertNil(got[1].event)
        XCTAssertEqual(String(decoding: got[2].data, as: UTF8.self), "x\ny")
    }

    func testEventsWithoutDataAndPartialEventsAreDropped() throws {
        XCTAssertEqual(try events(["event: ping\n\n", "data: unfinished"]).count, 0)
    }

    func testEveryChunkingGivesTheSameEvents() throws {
        let text = "\u{FEFF}event: message\r\ndata: {\"jsonrpc\":\"2.0\"}\r\n\r\nid: 2\ndata: a\ndata: b\n\n"
        let whole = try events([text])
        XCTAssertEqual(whole.count, 2)
        let bytes = Array(text.utf8)
        for split in 1..<bytes.count {
            var parser = SSEParser()
            var got: [SSEEvent] = []
            for part in [bytes[..<split], bytes[split...]] {
                try Array(part).withUnsafeBytes { try parser.feed($0) { got.append($0) } }
            }
            if split >= 3 { XCTAssertEqual(got, whole, "split at \(split)") }
        }
    }

    func testEventSizeLimit() {
        var parser = SSEParser(maxEventBytes: 16)
        XCTAssertThrowsError(try Array("data: 0123456789abcdefghij\n\n".utf8).withUnsafeBytes { try parser.feed($0) { _ in } })
    }
}
