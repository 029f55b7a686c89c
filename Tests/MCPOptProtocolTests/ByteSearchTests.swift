import MCPOptProtocol
import XCTest

final class ByteSearchTests: XCTestCase {
    func testBytesAgreeWithANaiveSearch() {
        var random = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let hay = (0..<Int.random(in: 0..<40, using: &random)).map { _ in UInt8.random(in: 97...100, using: &random) }
            let needle = (0..<Int.random(in: 0..<5, using: &random)).map { _ in UInt8.random(in: 97...100, using: &random) }
            let naive = needle.isEmpty || (hay.count >= needle.count && (0...(hay.count - needle.count)).contains { Array(hay[$0..<($0 + needle.count)]) == needle })
            XCTAssertEqual(ByteSearch.contains(hay, needle), naive, "\(hay) \(needle)")
        }
    }

    func testAnyAnchorByteAgreesWithANaiveSearch() {
        // Rare and common bytes mixed, so the search anchors at every position of a needle.
        let alphabet = Array("ab_A/e".utf8)
        var random = SystemRandomNumberGenerator()
        for _ in 0..<3_000 {
            let hay = (0..<Int.random(in: 0..<40, using: &random)).map { _ in alphabet.randomElement(using: &random)! }
            let needle = (0..<Int.random(in: 1..<6, using: &random)).map { _ in alphabet.randomElement(using: &random)! }
            let naive = hay.count >= needle.count && (0...(hay.count - needle.count)).contains { Array(hay[$0..<($0 + needle.count)]) == needle }
            XCTAssertEqual(ByteSearch.contains(hay, needle), naive, "\(hay) \(needle)")
        }
        XCTAssertTrue(ByteSearch.contains(Array(#"{"resultType":"input_required"}"#.utf8), Array("input_required".utf8)))
        XCTAssertFalse(ByteSearch.contains(Array(#"{"input":"required input_requirement"}"#.utf8), Array("input_required\"".utf8)))
    }

    func testAcceptMediaRangesAreReadInOnePass() {
        func ranges(_ accept: String) -> ByteSearch.MediaRanges { Array(accept.utf8).withUnsafeBytes { ByteSearch.mediaRanges($0) } }
        XCTAssertEqual(ranges("application/json, text/event-stream"), [.json, .eventStream])
        XCTAssertEqual(ranges("Application/JSON,text/Event-Stream"), [.json, .eventStream])
        XCTAssertEqual(ranges(" text/event-stream ; q=0.9 ,\tapplication/json;q=1"), [.json, .eventStream])
        XCTAssertEqual(ranges("*/*"), [.any])
        XCTAssertEqual(ranges("text/html, application/*;q=0.8"), [.anyApplication])
        // Whole ranges only: a longer type or a prefix is not the range.
        XCTAssertEqual(ranges("application/json-seq, text/event-streams, application/jso"), [])
        XCTAssertEqual(ranges("applicatioN/jsoñ"), [])
        XCTAssertEqual(ranges(""), [])
        XCTAssertEqual(ranges(",,;"), [])
        XCTAssertTrue(ranges("*/*").allowsJSONAndEventStream)
        XCTAssertTrue(ranges("text/event-stream, application/json").allowsJSONAndEventStream)
        XCTAssertFalse(ranges("application/json").allowsJSONAndEventStream)
        XCTAssertFalse(ranges("application/*").allowsJSONAndEventStream)
    }

    func testBytesAreComparedAndBuiltWithoutStrings() {
        Array("LocalHost".utf8).withUnsafeBytes { bytes in
            XCTAssertTrue(ByteSearch.equalsIgnoringCase(bytes, "localhost"))
            XCTAssertFalse(ByteSearch.equals(bytes, "localhost"))
            XCTAssertFalse(ByteSearch.equalsIgnoringCase(bytes, "localhos"))
        }
        var out: [UInt8] = []
        out.append(literal: "n=")
        for value in [0, 7, -42, 1_000_000, Int.max, Int.min] {
            out.append(decimal: value)
            out.append(UInt8(ascii: ","))
        }
        XCTAssertEqual(String(decoding: out, as: UTF8.self), "n=0,7,-42,1000000,\(Int.max),\(Int.min),")
    }
}
