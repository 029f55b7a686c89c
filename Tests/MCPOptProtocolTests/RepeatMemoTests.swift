import XCTest
@testable import MCPOptProtocol

/// The memo of requests by their bytes, id aside: a repeat matches only when it is the kept
/// bytes around a plain id token, and then it decodes as the first request did, with its own id.
final class RepeatMemoTests: XCTestCase {
    final class Value {
        let name: String
        init(_ name: String) { self.name = name }
    }

    private func scan(_ text: String) -> String? {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { b in RepeatMemo.topLevelID(b).map { String(decoding: bytes[$0], as: UTF8.self) } }
    }

    func testTheScanFindsOnlyAPlainTopLevelID() {
        XCTAssertEqual(scan(#"{"jsonrpc":"2.0","id":12,"method":"m"}"#), "12")
        XCTAssertEqual(scan(#" { "method" : "m" , "params" : {"id":1,"a":[{"id":2}]}, "id" : "ab-c" } "#), #""ab-c""#)
        XCTAssertEqual(scan(#"{"params":{"x":"\"id\":3"},"id":-4}"#), "-4", "an id inside a string or a nested object is not the message's")
        XCTAssertEqual(scan(#"{"a":"x\\","id":0}"#), "0", "an escaped backslash ends no string early")
        XCTAssertEqual(scan(#"{"a":true,"b":null,"c":-1.5e3,"id":7}"#), "7")
        // Not plain, or not there: no token.
        for text in [#"{"id":1.5}"#, #"{"id":01}"#, #"{"id":1e3}"#, #"{"id":"a\"b"}"#, #"{"id":null}"#, #"{"id":{"x":1}}"#,
                     #"{"id":1234567890123456}"#, #"{"id":"\#(String(repeating: "x", count: 65))"}"#, #"{"id":"tab\#t"}"#,
                     #"{"method":"m"}"#, #"{"params":{"id":1}}"#, #"[{"id":1}]"#, #"{"i\d":1}"#, #"{"id":1"#, #"{"id" 1}"#, "", "{", #"{"a":"#,
                     #"{"a":[1,2}"#, #"{"id":-}"#] {
            XCTAssertNil(scan(text), text)
        }
        XCTAssertEqual(scan(#"{"id":"\#(String(repeating: "x", count: 64))"}"#)?.count, 66)
        XCTAssertEqual(scan(#"{"id":123456789012345}"#), "123456789012345")
    }

    /// A request as an HTTP front sees it: head, then body; `id` where the body's id goes.
    private func request(id: String, session: String = "s1", arguments: String = #"{"path":"/a"}"#) -> [UInt8] {
        let body = #"{"jsonrpc":"2.0","id":\#(id),"method":"tools/call","params":{"name":"read","arguments":\#(arguments)}}"#
        return Array("POST /mcp HTTP/1.1\r\nMcp-Session-Id: \(session)\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
    }

    private func bodyStart(_ request: [UInt8]) -> Int {
        let marker = Array("\r\n\r\n".utf8)
        for i in 0...(request.count - 4) where Array(request[i..<(i + 4)]) == marker { return i + 4 }
        return request.count
    }

    /// Keeps `value` for `request`, with the id span a JSON decoder reports.
    private func remember(_ memo: RepeatMemo, _ request: [UInt8], _ value: Value, epoch: UInt64 = 0) {
        let start = bodyStart(request)
        let range: Range<Int>? = Array(request[start...]).withUnsafeBytes { body in
            MessageDecoder.withPooled { decoder in
                guard let view = try? decoder.decode(body), let offset = view.offset(of: view.idRaw) else { return nil }
                return (start + offset)..<(start + offset + view.idRaw.count)
            }
        }
        guard let range else { return XCTFail("not a request") }
        request.withUnsafeBytes { memo.remember($0, bodyStart: start, id: range, value: value, footprint: 0, epoch: epoch) }
    }

    private func find(_ memo: RepeatMemo, _ request: [UInt8], epoch: UInt64 = 0) -> (String, String)? {
        request.withUnsafeBytes { raw in
            memo.find(raw, bodyStart: bodyStart(request), epoch: epoch).map { (($0.entry.value as! Value).name, String(decoding: $0.id, as: UTF8.self)) }
        }
    }

    func testARepeatWithAnotherIDMatchesAndNothingElseDoes() {
        let memo = RepeatMemo()
        let value = Value("read /a")
        remember(memo, request(id: "1"), value)
        XCTAssertEqual(memo.count, 1)
        XCTAssertEqual(find(memo, request(id: "7"))?.0, "read /a")
        XCTAssertEqual(find(memo, request(id: "7"))?.1, "7")
        // A longer id changes Content-Length: another request as far as bytes go.
        XCTAssertNil(find(memo, request(id: "10")))
        XCTAssertNil(find(memo, request(id: "7", session: "s2")), "another session's header")
        XCTAssertNil(find(memo, request(id: "7", arguments: #"{"path":"/b"}"#)), "other arguments")
        remember(memo, request(id: "11", arguments: "{}"), Value("two digits"))
        XCTAssertEqual(find(memo, request(id: "-3", arguments: "{}"))?.0, "two digits")
        for id in ["1.", "1e", "07", "--", "[]", #""\""#] {
            XCTAssertNil(find(memo, request(id: id, arguments: "{}")), "\(id) is not a plain id")
        }
        XCTAssertNil(find(memo, request(id: "7"), epoch: 1), "an entry of an older epoch")
        var tampered = request(id: "7")
        tampered[5] = UInt8(ascii: "X")   // the path
        XCTAssertNil(find(memo, tampered))
    }

    func testARepeatAtTheStartOfBytesIsFoundWithoutParsingWhenItsIDHasTheKeptLength() throws {
        let memo = RepeatMemo()
        remember(memo, request(id: "1"), Value("read /a"))
        let kept = request(id: "1")
        let entry = try XCTUnwrap(kept.withUnsafeBytes { memo.find($0, bodyStart: bodyStart(kept), epoch: 0)?.entry })
        XCTAssertEqual(entry.requestLength, kept.count)
        func at(_ bytes: [UInt8], epoch: UInt64 = 0) -> String? {
            bytes.withUnsafeBytes { RepeatMemo.repeatAt(entry, in: $0, epoch: epoch).map { String(decoding: $0, as: UTF8.self) } }
        }
        XCTAssertEqual(at(request(id: "8")), "8")
        XCTAssertEqual(at(request(id: "8") + request(id: "9")), "8", "a pipelined request after it stays")
        XCTAssertNil(at(Array(request(id: "8").dropLast())), "not all there yet")
        XCTAssertNil(at(request(id: "12")), "another length: the head's Content-Length differs")
        XCTAssertNil(at(request(id: "8", arguments: #"{"path":"/b"}"#)))
        XCTAssertNil(at(request(id: "8"), epoch: 1))
        for id in ["x", "-", "."] { XCTAssertNil(at(request(id: id)), "\(id) is not a plain id") }
    }

    func testTheDecoderSpanDecidesAndADuplicateIDIsNeverMatchedAtTheWrongPlace() {
        // Two top-level ids: the decoder reads the last, the scan finds the first. The entry is
        // not kept (no repeat could be found by the scan at the decoder's place).
        let memo = RepeatMemo()
        let body = #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read"},"id":2}"#
        let raw = Array("POST /mcp HTTP/1.1\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
        remember(memo, raw, Value("dup"))
        XCTAssertEqual(memo.count, 0)
        let swapped = Array(String(decoding: raw, as: UTF8.self).replacingOccurrences(of: #""id":1"#, with: #""id":3"#).utf8)
        XCTAssertNil(find(memo, swapped))
    }

    func testEveryMatchDecodesAsTheKeptRequestWithItsOwnID() throws {
        // Generated requests with the id anywhere among the members, spaces around it, and
        // repeats with ids of every plain kind: each match decodes to the same method and
        // params as the kept request, and the id the memo gives is the one the decoder reads.
        var generator = SystemRandomNumberGenerator()
        let memo = RepeatMemo()
        var matched = 0
        for round in 0..<300 {
            var members = [#""jsonrpc":"2.0""#, #""method":"tools/call""#, #""params":{"name":"t\#(round % 7)","arguments":{"id":"n\#(round)","s":"a,b}"}}"#]
            let space = [" ", "", "\n "][round % 3]
            let idLength = 1 + round % 4
            let original = String(repeating: "1", count: idLength)
            members.insert(#""id":\#(space)\#(original)\#(space)"#, at: Int.random(in: 0...members.count, using: &generator))
            let body = "{" + members.joined(separator: ",") + "}"
            let head = "POST /mcp HTTP/1.1\r\nContent-Length: \(body.utf8.count)\r\n\r\n"
            let raw = Array((head + body).utf8)
            remember(memo, raw, Value(body))
            let candidates = [String(repeating: "9", count: idLength), "\"" + String(repeating: "k", count: max(0, idLength - 2)) + "\"", "-" + String(repeating: "2", count: idLength - 1)]
            for id in candidates where id.utf8.count == idLength && id != "-" {
                let repeatBody = body.replacingOccurrences(of: #""id":\#(space)\#(original)"#, with: #""id":\#(space)\#(id)"#)
                let repeated = Array((head + repeatBody).utf8)
                guard let (name, token) = find(memo, repeated) else {
                    XCTFail("no match for \(repeatBody)")
                    continue
                }
                matched += 1
                XCTAssertEqual(name, body)
                XCTAssertEqual(token, id)
                try Array(repeatBody.utf8).withUnsafeBytes { bytes in
                    try MessageDecoder.withPooled { decoder in
                        let view = try decoder.decode(bytes)
                        XCTAssertEqual(view.idRaw.string, id)
                        XCTAssertEqual(view.params.string, #"{"name":"t\#(round % 7)","arguments":{"id":"n\#(round)","s":"a,b}"}}"#)
                    }
                }
            }
        }
        XCTAssertGreaterThan(matched, 500)
    }

    func testTheMemoStaysWithinItsLimits() {
        var limits = RepeatMemo.Limits()
        limits.maxEntries = 8
        limits.maxRequestBytes = 400
        let memo = RepeatMemo(limits: limits)
        for n in 0..<20 { remember(memo, request(id: "1", arguments: #"{"n":\#(n)}"#), Value("\(n)")) }
        XCTAssertLessThanOrEqual(memo.count, 8)
        XCTAssertEqual(memo.resets, 2)
        XCTAssertEqual(find(memo, request(id: "2", arguments: #"{"n":19}"#))?.0, "19", "the latest entry survives a reset")
        remember(memo, request(id: "1", arguments: #"{"long":"\#(String(repeating: "x", count: 400))"}"#), Value("long"))
        XCTAssertNil(find(memo, request(id: "2", arguments: #"{"long":"\#(String(repeating: "x", count: 400))"}"#)), "a request over maxRequestBytes is not kept")
        memo.removeAll()
        XCTAssertEqual(memo.count, 0)
        XCTAssertEqual(memo.bytes, 0)
    }
}
