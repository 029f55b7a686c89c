import XCTest
import MCPOptProtocol
@testable import MCPOptEngine

final class CachePolicyTests: XCTestCase {
    let decoder = MessageDecoder()
    let responses = MessageDecoder()

    func lookup(_ policy: CachePolicy, _ request: String, group: String = "fs", annotations: CachePolicy.ToolAnnotations? = nil, partition: String = "agent-a") throws -> CachePolicy.Lookup? {
        try Array(request.utf8).withUnsafeBytes { policy.lookup(try decoder.decode($0), group: group, annotations: annotations, partition: partition) }
    }

    func store(_ policy: CachePolicy, _ response: String, _ lookup: CachePolicy.Lookup) throws -> (ttl: Duration, shared: Bool)? {
        try Array(response.utf8).withUnsafeBytes { policy.store(try responses.decode($0), for: lookup) }
    }

    func call(_ tool: String, _ args: String, extra: String = "") -> String {
        #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\#(tool)","arguments":\#(args)\#(extra)}}"#
    }

    func testToolCallsAreCachedOnlyWhenConfiguredOrTrustedReadOnlyIdempotent() throws {
        var policy = CachePolicy(defaultTTL: .seconds(60))
        let readOnly = CachePolicy.ToolAnnotations(readOnly: true, idempotent: true)
        XCTAssertNil(try lookup(policy, call("read_file", #"{"path":"a"}"#), annotations: readOnly), "annotations of an untrusted server are not believed")
        policy.trustedGroups = ["fs"]
        XCTAssertNotNil(try lookup(policy, call("read_file", #"{"path":"a"}"#), annotations: readOnly))
        XCTAssertNil(try lookup(policy, call("read_file", #"{"path":"a"}"#), annotations: .init(readOnly: true, idempotent: false)))
        XCTAssertNil(try lookup(policy, call("write_file", #"{"path":"a"}"#), annotations: nil), "annotations default to not read-only")
        policy.toolRules = ["fs/search": .cache(.seconds(5)), "read_file": .never]
        XCTAssertEqual(try lookup(policy, call("search", "{}"))?.ttl, .seconds(5))
        XCTAssertNil(try lookup(policy, call("search", "{}"), group: "other"))
        XCTAssertNil(try lookup(policy, call("read_file", #"{"path":"a"}"#), annotations: readOnly), "an explicit never wins over annotations")
    }

    func testKeysIgnoreMemberOrderButNotValuesToolsGroupsOrCallers() throws {
        var policy = CachePolicy(defaultTTL: .seconds(60))
        policy.toolRules = ["t": .cache(.seconds(60))]
        let a = try XCTUnwrap(try lookup(policy, call("t", #"{"x":1,"y":[1,2]}"#)))
        XCTAssertEqual(try lookup(policy, call("t", #"{ "y":[1,2], "x":1 }"#))?.key, a.key)
        XCTAssertNotEqual(try lookup(policy, call("t", #"{"x":2,"y":[1,2]}"#))?.key, a.key)
        XCTAssertNotEqual(try lookup(policy, call("t", #"{"x":1,"y":[1,2]}"#), group: "g2")?.key, a.key)
        XCTAssertNotEqual(try lookup(policy, call("t", #"{"x":1,"y":[1,2]}"#), partition: "agent-b")?.key, a.key)
        // The shared key is no caller's key, the anonymous caller's (partition "") included,
        // and every caller's lookup of the same request has the same shared key.
        let anonymous = try XCTUnwrap(try lookup(policy, call("t", #"{"x":1,"y":[1,2]}"#), partition: ""))
        let other = try XCTUnwrap(try lookup(policy, call("t", #"{"x":1,"y":[1,2]}"#), partition: "agent-b"))
        XCTAssertNotEqual(policy.sharedKey(a), anonymous.key)
        XCTAssertNotEqual(policy.sharedKey(a), a.key)
        XCTAssertEqual(policy.sharedKey(a), policy.sharedKey(anonymous))
        XCTAssertEqual(policy.sharedKey(a), policy.sharedKey(other))
        // A partition cannot be written to look like the shared key.
        XCTAssertNotEqual(try lookup(policy, call("t", #"{"x":1,"y":[1,2]}"#), partition: "*")?.key, policy.sharedKey(a))
    }

    func testListsReadsAndDiscoveryAreCacheableOtherMethodsNot() throws {
        let policy = CachePolicy(defaultTTL: .seconds(300))
        for method in ["tools/list", "resources/list", "prompts/list", "resources/templates/list", "server/discover"] {
            XCTAssertNotNil(try lookup(policy, #"{"jsonrpc":"2.0","id":1,"method":"\#(method)"}"#), method)
        }
        XCTAssertNotNil(try lookup(policy, #"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}"#))
        XCTAssertNotEqual(try lookup(policy, #"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"p2"}}"#)?.key,
                          try lookup(policy, #"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)?.key, "each page is its own entry")
        for method in ["initialize", "ping", "resources/subscribe", "logging/setLevel", "completion/complete"] {
            XCTAssertNil(try lookup(policy, #"{"jsonrpc":"2.0","id":1,"method":"\#(method)"}"#), method)
        }
    }

    func testContinuationsAreNeverCached() throws {
        var policy = CachePolicy(defaultTTL: .seconds(60))
        policy.toolRules = ["t": .cache(.seconds(60))]
        XCTAssertNil(try lookup(policy, call("t", "{}", extra: #","requestState":"s1""#)))
        XCTAssertNil(try lookup(policy, call("t", "{}", extra: #","inputResponses":{}"#)))
    }

    func testResponsesStoredOnlyWhenCompleteAndNotErrorsHonouringHints() throws {
        var policy = CachePolicy(defaultTTL: .seconds(60))
        policy.toolRules = ["t": .cache(.seconds(60))]
        let l = try XCTUnwrap(try lookup(policy, call("t", "{}")))
        XCTAssertEqual(try store(policy, #"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#, l)?.ttl, .seconds(60))
        XCTAssertNil(try store(policy, #"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}"#, l))
        XCTAssertNil(try store(policy, #"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required","inputRequests":{}}}"#, l))
        XCTAssertNil(try store(policy, #"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"x"}}"#, l))
        XCTAssertNil(try store(policy, #"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"ttlMs":0}}"#, l), "ttlMs 0 means do not keep")
        let hinted = try XCTUnwrap(try store(policy, #"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"ttlMs":1500,"cacheScope":"public","resultType":"complete"}}"#, l))
        XCTAssertEqual(hinted.ttl, .milliseconds(1500))
        XCTAssertTrue(hinted.shared)
        XCTAssertEqual(try store(policy, #"{"jsonrpc":"2.0","id":1,"result":{"ttlMs":999999999999}}"#, l)?.ttl, .seconds(86_400), "capped at 24 h")
        XCTAssertEqual(try store(policy, #"{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private"}}"#, l)?.shared, false)
    }
}
