import XCTest
import MCPOptJSON
@testable import MCPOptProtocol

/// The modern-era POST rules, in the order the notes give them.
final class FrontDoorTests: XCTestCase {
    let decoder = MessageDecoder()
    let known: Set<String> = ["server/discover", "tools/list", "tools/call", "resources/read"]

    static let meta = #""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#

    func verdict(method: String = "POST", headers: [(String, String)] = [], body: String,
                 policy: FrontDoor.Policy = .init(), mapping: [(argument: String, header: String)] = []) throws -> FrontDoor.Verdict {
        var head = "\(method) /mcp HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept: application/json, text/event-stream\r\nContent-Length: \(body.utf8.count)\r\n"
        for (n, v) in headers { head += "\(n): \(v)\r\n" }
        let parser = HTTPParser(.request)
        _ = try Array((head + "\r\n" + body).utf8).withUnsafeBytes { try parser.feed($0) }
        let bytes = parser.takeBody()
        return bytes.withUnsafeBytes { FrontDoor.check(parser, body: $0, decoder: decoder, policy: policy, knownMethods: known, parameterHeaders: { _ in mapping }) }
    }

    let modern = [("MCP-Protocol-Version", "2026-07-28")]

    func call(_ params: String, id: String = "1") -> String {
        #"{"jsonrpc":"2.0","id":\#(id),"method":"tools/call","params":{\#(params)}}"#
    }

    func code(_ v: FrontDoor.Verdict) -> (Int, Int64?) {
        guard case .answer(let status, _, let body) = v else { return (0, nil) }
        return (status, body.isEmpty ? nil : (try? decoder.decodeOwned(body))?.errorCode)
    }

    func testAValidModernRequestPasses() throws {
        let v = try verdict(headers: modern + [("Mcp-Method", "tools/call"), ("Mcp-Name", "add")], body: call(#""name":"add","arguments":{},"# + Self.meta))
        XCTAssertEqual(v, .modern(.v2026_07_28))
    }

    func testEraIsPickedByTheHeaderAlone() throws {
        XCTAssertEqual(try verdict(body: #"{"jsonrpc":"2.0","id":1,"method":"initialize"}"#), .handshake(nil))
        XCTAssertEqual(try verdict(headers: [("MCP-Protocol-Version", "2025-06-18")], body: "{}"), .handshake(.v2025_06_18))
    }

    func testHostAndOrigin() throws {
        var foreign = FrontDoor.Policy()
        foreign.allowedHosts = ["mcp.example:443"]
        XCTAssertEqual(code(try verdict(headers: modern, body: "{}", policy: foreign)).0, 403)
        XCTAssertEqual(code(try verdict(headers: modern + [("Origin", "http://evil.example")], body: "{}")).0, 403)
        XCTAssertEqual(try verdict(headers: modern + [("Origin", "http://localhost:3000")], body: call(#""name":"a","# + Self.meta)), .modern(.v2026_07_28))
    }

    func testLoopbackHostsAreReadWithoutTheirPort() {
        let open = FrontDoor.Policy()
        for host in ["127.0.0.1", "127.0.0.1:8080", "localhost", "LocalHost:1", "[::1]", "[::1]:8080"] {
            XCTAssertTrue(FrontDoor.hostAllowed(host, open), host)
        }
        for host in ["", ":8080", "127.0.0.2", "localhost.evil.example", "evil.example:localhost", "[::2]", "[::1", "127.0.0.1.nip.io:80"] {
            XCTAssertFalse(FrontDoor.hostAllowed(host, open), host)
        }
        for origin in ["http://localhost:3000", "HTTPS://127.0.0.1", "http://[::1]:9"] {
            XCTAssertTrue(FrontDoor.originAllowed(origin, open), origin)
        }
        for origin in ["null", "file://", "http://", "ftp://localhost", "http://localhost.evil.example", "https://evil.example"] {
            XCTAssertFalse(FrontDoor.originAllowed(origin, open), origin)
        }
        var listed = FrontDoor.Policy()
        listed.allowedHosts = ["mcp.example:443"]
        XCTAssertTrue(FrontDoor.hostAllowed("MCP.example:443", listed))
        XCTAssertFalse(FrontDoor.hostAllowed("localhost", listed))
    }

    func testMethodAcceptAndBody() throws {
        guard case .answer(405, let headers, _) = try verdict(method: "GET", headers: modern, body: "") else { return XCTFail() }
        XCTAssertEqual(headers, [FrontDoor.Header("Allow", "POST")])
        let parser = HTTPParser(.request)
        _ = try Array("POST /mcp HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nMCP-Protocol-Version: 2026-07-28\r\nContent-Length: 2\r\n\r\n{}".utf8).withUnsafeBytes { try parser.feed($0) }
        XCTAssertEqual(code(Array("{}".utf8).withUnsafeBytes { FrontDoor.check(parser, body: $0, decoder: decoder, policy: .init(), knownMethods: known) }).0, 406)
        XCTAssertEqual(code(try verdict(headers: modern, body: "{not json")).1, -32700)
        XCTAssertEqual(code(try verdict(headers: modern, body: "{not json")).0, 400)
        XCTAssertEqual(code(try verdict(headers: modern, body: "[]")).1, -32600)
        XCTAssertEqual(code(try verdict(headers: modern, body: #"{"jsonrpc":"2.0","method":"notifications/x"}"#)).0, 202)
    }

    func testRoutingHeadersMustAgreeWithTheBody() throws {
        XCTAssertEqual(code(try verdict(headers: modern + [("Mcp-Method", "tools/call"), ("mcp-method", "tools/call")], body: call(#""name":"a","# + Self.meta))).1, -32020)
        XCTAssertEqual(code(try verdict(headers: modern + [("Mcp-Method", "tools/list")], body: call(#""name":"a","# + Self.meta))).1, -32020)
        XCTAssertEqual(code(try verdict(headers: modern + [("Mcp-Name", "b")], body: call(#""name":"a","# + Self.meta))).1, -32020)
        XCTAssertEqual(code(try verdict(headers: [("MCP-Protocol-Version", "2026-07-28")], body: call(#""name":"a","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-29","io.modelcontextprotocol/clientCapabilities":{}}"#))).1, -32020)
    }

    func testMetaKeysAreRequired() throws {
        XCTAssertEqual(code(try verdict(headers: modern, body: call(#""name":"a""#))).1, -32602)
        XCTAssertEqual(code(try verdict(headers: modern, body: call(#""name":"a","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}"#))).1, -32602)
    }

    func testUnsupportedVersionListsWhatIsSupported() throws {
        let v = try verdict(headers: [("MCP-Protocol-Version", "2027-01-01")], body: call(#""name":"a","_meta":{"io.modelcontextprotocol/protocolVersion":"2027-01-01","io.modelcontextprotocol/clientCapabilities":{}}"#))
        guard case .answer(400, _, let body) = v else { return XCTFail("\(v)") }
        let error = try JSONParser.parse(body)["error"]
        XCTAssertEqual(error?["code"], -32022)
        XCTAssertEqual(error?["data"]?["supported"], ["2026-07-28"])
        XCTAssertEqual(error?["data"]?["requested"], "2027-01-01")
    }

    func testParameterHeadersAreChecked() throws {
        let mapping = [(argument: "region", header: "Region")]
        let body = call(#""name":"weather","arguments":{"region":"us-east"},"# + Self.meta)
        XCTAssertEqual(try verdict(headers: modern + [("Mcp-Param-Region", "us-east")], body: body, mapping: mapping), .modern(.v2026_07_28))
        XCTAssertEqual(code(try verdict(headers: modern + [("Mcp-Param-Region", "eu")], body: body, mapping: mapping)).1, -32020)
        XCTAssertEqual(code(try verdict(headers: modern, body: body, mapping: mapping)).1, -32020)
    }

    func testUnknownMethodIs404() throws {
        let v = try verdict(headers: modern, body: #"{"jsonrpc":"2.0","id":"x","method":"ping","params":{"# + Self.meta + "}}")
        XCTAssertEqual(code(v).0, 404)
        XCTAssertEqual(code(v).1, -32601)
        guard case .answer(_, _, let body) = v else { return }
        XCTAssertEqual(try decoder.decodeOwned(body).id, .string("x"), "the error keeps the request's id")
    }
}
