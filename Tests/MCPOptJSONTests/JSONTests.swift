import XCTest
@testable import MCPOptJSON

final class JSONParserTests: XCTestCase {
    func testParsesEveryKindOfValue() throws {
        let value = try JSONParser.parse(#"{"s":"h\u00e9\n","i":-42,"u":18446744073709551615,"d":1.5,"t":true,"f":false,"n":null,"a":[1,[2]],"o":{}}"#)
        XCTAssertEqual(value["s"], .string("hé\n"))
        XCTAssertEqual(value["i"], .int(-42))
        XCTAssertEqual(value["u"], .double(18446744073709551615.0))
        XCTAssertEqual(value["d"], .double(1.5))
        XCTAssertEqual(value["t"], .bool(true))
        XCTAssertEqual(value["f"], .bool(false))
        XCTAssertEqual(value["n"], .null)
        XCTAssertEqual(value["a"], .array([.int(1), .array([.int(2)])]))
        XCTAssertEqual(value["o"], .object(JSONObject()))
    }

    func testKeepsMemberOrderAndDuplicates() throws {
        let value = try JSONParser.parse(#"{"b":1,"a":2,"b":3}"#)
        XCTAssertEqual(value.objectValue?.keys, ["b", "a", "b"])
    }

    func testMalformedJSONIsASyntaxError() {
        for text in [#"{"a":"#, "", "[1,]", "{'a':1}", "nul", #"{"a" 1}"#] {
            XCTAssertThrowsError(try JSONParser.parse(text), text) { error in
                XCTAssertEqual((error as? JSONParseError)?.kind, .syntax, text)
            }
        }
    }

    func testInvalidUTF8IsReportedAsSuch() {
        let bytes: [UInt8] = Array(#"{"a":""#.utf8) + [0xFF, 0xFE] + Array(#""}"#.utf8)
        XCTAssertThrowsError(try JSONParser.parse(bytes)) { error in
            XCTAssertEqual((error as? JSONParseError)?.kind, .invalidUTF8)
        }
    }

    func testDepthLimit() {
        let deep = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
        XCTAssertNoThrow(try JSONParser.parse(deep, maxDepth: 64))
        XCTAssertThrowsError(try JSONParser.parse(deep, maxDepth: 16)) { error in
            XCTAssertEqual((error as? JSONParseError)?.kind, .tooDeep)
        }
    }

    func testEmptyBufferWithNilBaseAddress() {
        XCTAssertThrowsError(try JSONParser.parse(UnsafeRawBufferPointer(start: nil, count: 0)))
    }
}

final class JSONWriterTests: XCTestCase {
    func testRoundTripsThroughTheParser() throws {
        let original: JSONValue = ["q": "a\"b\\c\u{01}\t", "n": [1, 2.5, -3, nil, true], "o": ["x": "é🙂"]]
        XCTAssertEqual(try JSONParser.parse(original.jsonString), original)
    }

    func testCanonicalFormIgnoresMemberOrder() throws {
        let a = try JSONParser.parse(#"{"b":{"y":1,"x":2},"a":[3,{"d":4,"c":5}]}"#)
        let b = try JSONParser.parse(#"{"a":[3,{"c":5,"d":4}],"b":{"x":2,"y":1}}"#)
        XCTAssertNotEqual(a.jsonString, b.jsonString)
        XCTAssertEqual(a.canonicalJSONString, b.canonicalJSONString)
        XCTAssertEqual(a.canonicalJSONString, #"{"a":[3,{"c":5,"d":4}],"b":{"x":2,"y":1}}"#)
    }

    func testControlCharactersAreEscaped() {
        XCTAssertEqual(JSONValue.string("\u{1F}\u{08}").jsonString, #""\u001f\b""#)
    }

    func testNonFiniteNumbersBecomeNull() {
        XCTAssertEqual(JSONValue.double(.nan).jsonString, "null")
        XCTAssertEqual(JSONValue.double(.infinity).jsonString, "null")
        XCTAssertEqual(JSONValue.double(0.1).jsonString, "0.1")
    }
}
