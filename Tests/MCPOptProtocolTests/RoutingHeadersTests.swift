import XCTest
import MCPOptJSON
@testable import MCPOptProtocol

final class RoutingHeadersTests: XCTestCase {
    let decoder = MessageDecoder()

    /// The official SDK's weather call in the capture: our headers match what it sent.
    func testHeadersMatchTheSDKCapture() throws {
        let bodies = try Vectors.bodies("tap_sdk_modern.log")
        let list = try XCTUnwrap(bodies.first { $0.contains(#""name":"weather""#) && $0.contains(#""result""#) })
        let tools = try JSONParser.parse(try decoder.decodeOwned(Array(list.utf8)).result!)
        let weather = try XCTUnwrap(tools["tools"]?.arrayValue?.first { $0["name"] == "weather" })
        let mapping = RoutingHeaders.parameterHeaders(inputSchema: weather["inputSchema"]!)
        XCTAssertEqual(mapping.map(\.argument), ["region"])
        XCTAssertEqual(mapping.map(\.header), ["Region"])

        let call = try XCTUnwrap(bodies.first { $0.contains(#""method":"tools/call","params":{"name":"weather""#) })
        let headers = try Array(call.utf8).withUnsafeBytes { b in
            RoutingHeaders.headers(for: try decoder.decode(b), version: .v2026_07_28, parameterHeaders: mapping)
        }
        XCTAssertEqual(headers.map { "\($0.0.lowercased()): \($0.1)" }, [
            "mcp-protocol-version: 2026-07-28", "mcp-method: tools/call", "mcp-name: weather", "mcp-param-region: us-east",
        ])
    }

    func testHandshakeEraCarriesOnlyTheVersion() throws {
        let headers = try Array(#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}"#.utf8).withUnsafeBytes { b in
            RoutingHeaders.headers(for: try decoder.decode(b), version: .v2025_11_25)
        }
        XCTAssertEqual(headers.map(\.0), ["MCP-Protocol-Version"])
    }

    func testResourceReadsAreNamedByURI() throws {
        let headers = try Array(#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a b"}}"#.utf8).withUnsafeBytes { b in
            RoutingHeaders.headers(for: try decoder.decode(b), version: .v2026_07_28)
        }
        XCTAssertEqual(headers.last?.0, "Mcp-Name")
        XCTAssertEqual(headers.last?.1, "file:///a b")
    }

    func testValueEncoding() {
        XCTAssertEqual(RoutingHeaders.headerValue(.int(42)), "42")
        XCTAssertEqual(RoutingHeaders.headerValue(.bool(false)), "false")
        XCTAssertEqual(RoutingHeaders.headerValue(.string("plain")), "plain")
        XCTAssertEqual(RoutingHeaders.headerValue(.string("Zürich")), "=?base64?WsO8cmljaA==?=")
        XCTAssertEqual(RoutingHeaders.headerValue(.string(" pad")), "=?base64?IHBhZA==?=")
        XCTAssertEqual(RoutingHeaders.headerValue(.string("a\nb")), "=?base64?YQpi?=")
        XCTAssertNil(RoutingHeaders.headerValue(.array([])))
        XCTAssertNil(RoutingHeaders.headerValue(.double(1.5)))
        for (text, encoded) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")] {
            XCTAssertEqual(RoutingHeaders.base64(Array(text.utf8)), encoded)  // RFC 4648 test vectors
        }
    }

    func testPostRequestParsesBack() throws {
        let bytes = HTTPRequestWriter.post(path: "/mcp", host: "127.0.0.1:8080", headers: [("Mcp-Method", "tools/list")], body: Array("{}".utf8))
        let parser = HTTPParser(.request)
        _ = try bytes.withUnsafeBytes { try parser.feed($0) }
        XCTAssertTrue(parser.isComplete)
        XCTAssertEqual(parser.header("mcp-method"), "tools/list")
        XCTAssertEqual(parser.header("accept"), "application/json, text/event-stream")
        XCTAssertEqual(parser.takeBody(), Array("{}".utf8))
    }

    func testRequestsAreWrittenExactly() {
        let head = HTTPRequestWriter.postHead(path: "/mcp", host: "[::1]:9", headers: [("Authorization", "Bearer t")])
        let post = HTTPRequestWriter.post(head: head, headers: [("Mcp-Session-Id", "abc")], body: Array("{}".utf8))
        XCTAssertEqual(String(decoding: post, as: UTF8.self),
                       "POST /mcp HTTP/1.1\r\nHost: [::1]:9\r\nAccept: application/json, text/event-stream\r\nContent-Type: application/json\r\n"
                           + "Authorization: Bearer t\r\nMcp-Session-Id: abc\r\nContent-Length: 2\r\n\r\n{}")
        XCTAssertEqual(HTTPRequestWriter.post(path: "/mcp", host: "[::1]:9", headers: [("Authorization", "Bearer t"), ("Mcp-Session-Id", "abc")], body: Array("{}".utf8)), post)
        let get = HTTPRequestWriter.request(method: "GET", path: "/", host: "h:1", headers: [("Accept", "text/event-stream")])
        XCTAssertEqual(String(decoding: get, as: UTF8.self), "GET / HTTP/1.1\r\nHost: h:1\r\nAccept: text/event-stream\r\n\r\n")
        for n in [0, 7, 10, 99, 12345, 1 << 40] {
            var out: [UInt8] = []
            out.append(decimal: n)
            XCTAssertEqual(String(decoding: out, as: UTF8.self), String(n))
        }
    }
}
