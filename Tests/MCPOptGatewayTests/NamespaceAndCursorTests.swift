import XCTest
@testable import MCPOptGateway

final class ToolNamespaceTests: XCTestCase {
    func testUniqueNamesStayAndSharedNamesArePrefixedForEveryGroup() {
        let ns = ToolNamespace(offers: [(group: "git", names: ["git_status", "search"]), (group: "web", names: ["search", "fetch"])])
        XCTAssertEqual(ns.entries.map(\.exposed).sorted(), ["fetch", "git__search", "git_status", "web__search"])
        XCTAssertEqual(ns.resolve("web__search"), .init(exposed: "web__search", group: "web", original: "search"))
        XCTAssertEqual(ns.resolve("git_status")?.group, "git")
        XCTAssertNil(ns.resolve("search"), "an ambiguous bare name resolves to nothing")
        XCTAssertEqual(ns.exposedName(group: "git", original: "search"), "git__search")
    }

    func testInvalidAndLongNamesAreMadeValidStablyAndUniquely() {
        let long = String(repeating: "x", count: 80)
        let ns = ToolNamespace(offers: [(group: "a.b", names: ["read.file", "read_file", long, "ns:tool"])])
        let names = ns.entries.map(\.exposed)
        XCTAssertEqual(Set(names).count, 4)
        for name in names { XCTAssertTrue(ToolNamespace.isValid(name), name) }
        XCTAssertTrue(names.contains("read_file"))
        XCTAssertTrue(names.contains("ns_tool"))
        let again = ToolNamespace(offers: [(group: "a.b", names: [long, "ns:tool", "read_file", "read.file"])])
        XCTAssertEqual(Set(again.entries.map(\.exposed)), Set(names), "the same offers give the same names")
        XCTAssertEqual(ns.resolve(ns.exposedName(group: "a.b", original: long)!)?.original, long)
    }

    func testSharedNamesOfGroupsWithDotsFit() {
        let ns = ToolNamespace(offers: [(group: "srv.one", names: ["t"]), (group: "srv.two", names: ["t"])])
        XCTAssertEqual(ns.entries.map(\.exposed).sorted(), ["srv_one__t", "srv_two__t"])
    }
}

final class GatewayCursorTests: XCTestCase {
    func testRoundTrip() {
        for cursor in [GatewayCursor(backend: 0, backendCursor: nil), GatewayCursor(backend: 3, backendCursor: "page|2=é"), GatewayCursor(backend: 12, backendCursor: "")] {
            let text = cursor.encoded
            XCTAssertTrue(text.utf8.allSatisfy { Base64URL.alphabet.contains($0) }, text)
            XCTAssertEqual(GatewayCursor(encoded: text), cursor)
        }
    }

    func testForeignCursorsAreRefused() {
        for text in ["", "!!", "abc", Base64URL.encode(Array("v2|1|n".utf8)), Base64URL.encode(Array("v1|-1|n".utf8)), Base64URL.encode(Array("v1|1|x".utf8)), Base64URL.encode(Array("v1|1".utf8))] {
            XCTAssertNil(GatewayCursor(encoded: text), text)
        }
    }
}
