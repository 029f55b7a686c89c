import XCTest
import MCPOptJSON
@testable import MCPOptProtocol

/// Test vectors: captures of real exchanges (official Python SDK, FastMCP, mcp-server-time).
enum Vectors {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("vectors/mcp-wire")

    static func lines(_ name: String) throws -> [String] {
        try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8).split(separator: "\n").map(String.init)
    }

    /// JSON bodies of an HTTP capture (lines that start with '{').
    static func bodies(_ name: String) throws -> [String] {
        try lines(name).filter { $0.hasPrefix("{") }
    }
}

final class DecoderTests: XCTestCase {
    let decoder = MessageDecoder()

    func decode(_ text: String) throws -> Message {
        try decoder.decodeOwned(Array(text.utf8))
    }

    func testToolsCallExtractsNameArgumentsAndCanonicalHash() throws {
        let m = try decode(#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","arguments":{"b":3, "a":2}}}"#)
        XCTAssertEqual(m.kind, .request)
        XCTAssertEqual(m.id, .int(3))
        XCTAssertEqual(m.method, "tools/call")
        XCTAssertEqual(m.name, "add")
        XCTAssertEqual(m.arguments.map { String(decoding: $0, as: UTF8.self) }, #"{"b":3, "a":2}"#)
        XCTAssertEqual(m.canonicalArguments.map { String(decoding: $0, as: UTF8.self) }, #"{"a":2,"b":3}"#)
        let reordered = try decode(#"{"params":{"arguments":{ "a" : 2 , "b":3 },"name":"add"},"method":"tools/call","id":"x","jsonrpc":"2.0"}"#)
        XCTAssertEqual(reordered.id, .string("x"))
        XCTAssertEqual(reordered.argumentsHash, m.argumentsHash)
        XCTAssertNotEqual(try decode(#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","arguments":{"a":3,"b":2}}}"#).argumentsHash, m.argumentsHash)
    }

    /// The decoder skips decoding bytes equal to the message it decoded last (a message passed
    /// down the layers): the answer must be the one a fresh decode gives, whatever came between.
    func testDecodingTheSameBytesAgainGivesTheSameViewAndNothingStale() throws {
        let a = Array(#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"y":1,"x":2}}}"#.utf8)
        let b = Array(#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"b","arguments":{"z":3}}}"#.utf8)
        let first = try decoder.decodeOwned(a)
        // The same bytes in another buffer, again, after another message, after a failure and
        // after a canonicalization (which reuses the decoder's buffers).
        XCTAssertEqual(try decoder.decodeOwned(Array(a)).canonicalArguments, first.canonicalArguments)
        XCTAssertEqual(try decoder.decodeOwned(b).name, "b")
        XCTAssertEqual(try decoder.decodeOwned(a).name, "a")
        XCTAssertThrowsError(try decoder.decodeOwned(Array("{".utf8)))
        XCTAssertEqual(try decoder.decodeOwned(a).id, .int(1))
        _ = try Array(#"{"q":[1,2]}"#.utf8).withUnsafeBytes { try decoder.canonicalize($0) }
        let again = try decoder.decodeOwned(a)
        XCTAssertEqual(again.name, "a")
        XCTAssertEqual(again.canonicalArguments.map { String(decoding: $0, as: UTF8.self) }, #"{"x":2,"y":1}"#)
        // A message differing in one byte (same length) is decoded afresh.
        var changed = a
        changed[changed.firstIndex(of: UInt8(ascii: "1"))!] = UInt8(ascii: "7")
        XCTAssertEqual(try decoder.decodeOwned(changed).id, .int(7))
        // Views of the same bytes, one decoded right after the other, agree field by field.
        try a.withUnsafeBytes { bytes in
            let view1 = try decoder.decode(bytes)
            let name1 = view1.name.string
            let view2 = try decoder.decode(bytes)
            XCTAssertEqual(view2.name.string, name1)
            XCTAssertEqual(view2.method.string, "tools/call")
        }
    }

    func testCanonicalFormIsDeterministicForNestedValuesAndEscapes() throws {
        XCTAssertThrowsError(try decoder.canonicalize(UnsafeRawBufferPointer(start: nil, count: 0)))
        func canon(_ s: String) throws -> String {
            var s = s
            return try s.withUTF8 { b in String(decoding: try decoder.canonicalize(UnsafeRawBufferPointer(b)).canonical, as: UTF8.self) }
        }
        XCTAssertEqual(try canon(#"{"z":[{"y":1,"x":"\u0041\n"}],"a":null, "m":true}"#), #"{"a":null,"m":true,"z":[{"x":"A\n","y":1}]}"#)
        XCTAssertEqual(try canon(#" "é\u00e9" "#), #""éé""#)
        XCTAssertEqual(try canon("1.50"), "1.50")
        XCTAssertEqual(try canon(#"{"\u0001":"\t"}"#), #"{"\u0001":"\t"}"#)
        XCTAssertThrowsError(try canon("{"))
        XCTAssertThrowsError(try canon("[1] 2"))
    }

    func testNotificationsResponsesAndErrors() throws {
        let n = try decode(#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        XCTAssertEqual(n.kind, .notification)
        XCTAssertNil(n.id)
        let e = try decode(#"{"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "Method not found"}}"#)
        XCTAssertEqual(e.kind, .error)
        XCTAssertEqual(e.errorCode, -32601)
        XCTAssertEqual(e.errorMessage, "Method not found")
        let r = try decode(#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"5"}],"isError":true}}"#)
        XCTAssertEqual(r.kind, .result)
        XCTAssertTrue(r.resultIsError)
        XCTAssertEqual(r.result.map { String(decoding: $0, as: UTF8.self) }, #"{"content":[{"type":"text","text":"5"}],"isError":true}"#)
    }

    func testModernMetaAndCacheHints() throws {
        let lines = try Vectors.lines("stdio_time.in") + Vectors.lines("stdio_time.out")
        let discover = try decode(lines[0])
        XCTAssertEqual(discover.method, "server/discover")
        XCTAssertEqual(discover.protocolVersion, "2026-07-28")
        var bytes = Array(lines[0].utf8)
        try bytes.withUnsafeMutableBytes { b in
            let view = try decoder.decode(UnsafeRawBufferPointer(b))
            XCTAssertTrue(view.meta.string?.hasPrefix(#"{"io.modelcontextprotocol/protocolVersion""#) == true)
            XCTAssertTrue(view.method.equals("server/discover"))
        }
        bytes.removeAll()
        let outputs = try Vectors.lines("stdio_time.out")
        let discovered = try decoder.decode(outputs[0])
        XCTAssertEqual(discovered.resultType, "complete")
        let list = try decoder.decodeView(outputs[1]) { view in
            (view.resultCacheScope.string, view.resultTTLMilliseconds, view.resultType.string)
        }
        XCTAssertEqual(list.0, "private")
        XCTAssertEqual(list.2, "complete")
    }

    func testEveryCapturedMessageDecodes() throws {
        var count = 0
        for file in ["stdio_stub.in", "stdio_stub.out", "stdio_time.in", "stdio_time.out"] {
            for line in try Vectors.lines(file) where !line.isEmpty {
                _ = try decode(line)
                count += 1
            }
        }
        for file in ["tap_sdk_modern.log", "tap_sdk_legacy.log", "tap_fm_modern.log", "tap_fm_legacy.log", "tap_stub.log"] {
            for body in try Vectors.bodies(file) {
                XCTAssertNoThrow(try decode(body), "\(file): \(body.prefix(120))")
                count += 1
            }
        }
        XCTAssertGreaterThan(count, 30)
    }

    func testInvalidMessages() {
        let cases: [(String, DecodeError.Kind)] = [
            ("{", .notJSON),
            ("", .notJSON),
            (#"{"jsonrpc":"2.0","id":1,"method":"x"} {}"#, .notJSON),
            (#"[{"jsonrpc":"2.0","method":"x"}]"#, .batch),
            (#""hello""#, .invalid),
            (#"{"id":1,"method":"x"}"#, .invalid),
            (#"{"jsonrpc":"1.0","id":1,"method":"x"}"#, .invalid),
            (#"{"jsonrpc":"2.0","id":1,"method":5}"#, .invalid),
            (#"{"jsonrpc":"2.0","id":1}"#, .invalid),
            (#"{"jsonrpc":"2.0","id":1,"method":"x","result":{}}"#, .invalid),
            (#"{"jsonrpc":"2.0","result":{}}"#, .invalid),
            (#"{"jsonrpc":"2.0","id":{},"method":"x"}"#, .invalid),
            (#"{"jsonrpc":"2.0","id":1,"error":{"message":"m"}}"#, .invalid),
            (#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#, .invalid),
        ]
        for (text, kind) in cases {
            XCTAssertThrowsError(try decode(text), text) { error in
                XCTAssertEqual((error as? DecodeError)?.kind, kind, "\(text): \(error)")
            }
        }
        XCTAssertEqual(DecodeError(kind: .notJSON, detail: "").rpcCode, -32700)
        XCTAssertEqual(DecodeError(kind: .batch, detail: "").rpcCode, -32600)
    }

    func testInvalidUTF8IsNotJSON() {
        let bytes: [UInt8] = Array(#"{"jsonrpc":"2.0","method":""#.utf8) + [0xC0, 0xAF] + Array(#""}"#.utf8)
        XCTAssertThrowsError(try decoder.decodeOwned(bytes)) { error in
            XCTAssertEqual((error as? DecodeError)?.kind, .notJSON)
        }
    }

    func testDeepArgumentsAreRefused() {
        let deep = String(repeating: "[", count: 300) + String(repeating: "]", count: 300)
        XCTAssertThrowsError(try decode(#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":\#(deep)}}}"#)) { error in
            XCTAssertEqual((error as? DecodeError)?.kind, .tooDeep)
        }
    }

    func testContinuationAndProgressToken() throws {
        try decoder.decodeView(#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"t","arguments":{},"requestState":"abc","inputResponses":{"r1":{}},"_meta":{"progressToken":"p-1"}}}"#) { view in
            XCTAssertTrue(view.isContinuation)
            XCTAssertEqual(view.requestState.string, "abc")
            XCTAssertEqual(view.progressToken.string, #""p-1""#)
            XCTAssertFalse(view.logLevel.isPresent)
        }
    }

    func testModernLogLevel() throws {
        try decoder.decodeView(#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"t","_meta":{"io.modelcontextprotocol/logLevel":"debug","progressToken":1}}}"#) { view in
            XCTAssertEqual(view.logLevel.string, "debug")
        }
        // Not a string: as if absent (the request is not refused for it).
        try decoder.decodeView(#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"t","_meta":{"io.modelcontextprotocol/logLevel":3}}}"#) { view in
            XCTAssertFalse(view.logLevel.isPresent)
        }
    }
}

extension MessageDecoder {
    /// Test helper: decode text and look at the view inside the closure.
    func decodeView<T>(_ text: String, _ body: (MessageView) throws -> T) throws -> T {
        let bytes = Array(text.utf8)
        return try bytes.withUnsafeBytes { try body(try decode($0)) }
    }

    func decode(_ text: String) throws -> Message { try decodeOwned(Array(text.utf8)) }
}
