import XCTest
import MCPOptJSON
@testable import MCPOptProtocol

final class EncoderTests: XCTestCase {
    let decoder = MessageDecoder()

    func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    func testRequestsAndNotificationsRoundTrip() throws {
        let params = Array(#"{"name":"add","arguments":{"a":1}}"#.utf8)
        let request = params.withUnsafeBytes { MessageEncoder.request(id: .string("q\"1"), method: "tools/call", params: $0) }
        XCTAssertEqual(text(request), #"{"jsonrpc":"2.0","id":"q\"1","method":"tools/call","params":{"name":"add","arguments":{"a":1}}}"#)
        let m = try decoder.decodeOwned(request)
        XCTAssertEqual(m.id, .string("q\"1"))
        XCTAssertEqual(m.name, "add")
        let note = MessageEncoder.notification(method: "notifications/initialized", params: nil)
        XCTAssertEqual(try decoder.decodeOwned(note).kind, .notification)
    }

    func testMethodNamesThatNeedEscapingAreEscaped() throws {
        let request = MessageEncoder.request(id: .int(1), method: "odd\"method\\\n", params: nil)
        XCTAssertEqual(text(request), #"{"jsonrpc":"2.0","id":1,"method":"odd\"method\\\n"}"#)
        XCTAssertEqual(try decoder.decodeOwned(request).method, "odd\"method\\\n")
    }

    func testIntegerIdsAreWrittenAsDecimal() throws {
        for n: Int64 in [0, 5, -5, 42, 1_000_000, .max, .min] {
            let request = MessageEncoder.request(id: .int(n), method: "ping", params: nil)
            XCTAssertEqual(text(request), #"{"jsonrpc":"2.0","id":"# + String(n) + #","method":"ping"}"#)
        }
    }

    func testResponsesAndErrors() throws {
        let result = Array(#"{"content":[]}"#.utf8)
        let r = result.withUnsafeBytes { MessageEncoder.result(idJSON: Array("42".utf8), result: $0) }
        XCTAssertEqual(text(r), #"{"jsonrpc":"2.0","id":42,"result":{"content":[]}}"#)
        let e = MessageEncoder.error(idJSON: nil, code: -32700, message: "Parse \"error\"", data: ["at": 3])
        XCTAssertEqual(text(e), #"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse \"error\"","data":{"at":3}}}"#)
        let decoded = try decoder.decodeOwned(e)
        XCTAssertEqual(decoded.errorCode, -32700)
    }

    func testReplacingIDKeepsEverythingElse() throws {
        let original = Array(#"{"jsonrpc":"2.0", "id" : 17 ,"method":"tools/call","params":{"name":"t","arguments":{"id":17}}}"#.utf8)
        let renumbered = try original.withUnsafeBytes { b in MessageEncoder.replacingID(in: try decoder.decode(b), with: Array("\"gw-1\"".utf8)) }
        XCTAssertEqual(text(renumbered), #"{"jsonrpc":"2.0", "id" : "gw-1" ,"method":"tools/call","params":{"name":"t","arguments":{"id":17}}}"#)
        let response = Array(#"{"jsonrpc":"2.0","id":"gw-1","result":{"x":1}}"#.utf8)
        let back = try response.withUnsafeBytes { b in MessageEncoder.replacingID(in: try decoder.decode(b), with: Array("17".utf8)) }
        XCTAssertEqual(try decoder.decodeOwned(back).id, .int(17))
    }

    func testModernParamsInjectOrReplaceMeta() throws {
        func modern(_ request: String) throws -> String {
            let bytes = Array(request.utf8)
            return try bytes.withUnsafeBytes { b in
                text(MessageEncoder.modernParams(of: try decoder.decode(b), version: .v2026_07_28, clientCapabilities: [:], clientInfo: ["name": "mcpopt", "version": "0.1.0"]))
            }
        }
        let meta = #""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"mcpopt","version":"0.1.0"}}"#
        XCTAssertEqual(try modern(#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#), "{" + meta + "}")
        XCTAssertEqual(try modern(#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#), "{" + meta + "}")
        XCTAssertEqual(try modern(#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}"#), "{" + meta + #","name":"t"}"#)
        // An existing _meta keeps its other keys (progress token) and gets this hop's version.
        let replaced = try modern(#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"progressToken":5,"io.modelcontextprotocol/protocolVersion":"2025-01-01","io.modelcontextprotocol/logLevel":"info"},"arguments":{}}}"#)
        let params = try JSONParser.parse(replaced)
        XCTAssertEqual(params["_meta"]?[MetaKey.logLevel], "info", "the caller's log level reaches a modern-era server")
        XCTAssertEqual(params["name"], "t")
        XCTAssertEqual(params["arguments"], .object([:]))
        XCTAssertEqual(params["_meta"]?["progressToken"], 5)
        XCTAssertEqual(params["_meta"]?[MetaKey.protocolVersion], "2026-07-28")
    }

    func testVersionsAndEras() {
        XCTAssertEqual(ProtocolVersion.v2025_06_18.era, .handshake)
        XCTAssertEqual(ProtocolVersion.v2026_07_28.era, .modern)
        XCTAssertTrue(ProtocolVersion.v2025_03_26.allowsBatches)
        XCTAssertFalse(ProtocolVersion.v2025_06_18.allowsBatches)
        XCTAssertEqual(ProtocolVersion.negotiateHandshake(requested: .v2025_06_18), .v2025_06_18)
        XCTAssertEqual(ProtocolVersion.negotiateHandshake(requested: ProtocolVersion(rawValue: "2099-01-01")), .v2025_11_25)
        XCTAssertEqual(ProtocolVersion.negotiateModern(serverSupports: ["2026-07-28", "2025-11-25"]), .v2026_07_28)
        XCTAssertNil(ProtocolVersion.negotiateModern(serverSupports: ["2025-11-25"]))
        XCTAssertEqual(RPCErrorCode.httpStatus(for: -32601), 404)
        XCTAssertEqual(RPCErrorCode.httpStatus(for: -32022), 400)
        XCTAssertEqual(RPCErrorCode.httpStatus(for: -32603), 200)
    }
}
