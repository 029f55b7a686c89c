import Dispatch
import Glibc
import XCTest
@testable import MCPOpt

/// mcpopt_cache_* as a C host calls them, including every kind of bad input.
final class CacheABITests: XCTestCase {
    private var engine: OpaquePointer?

    override func setUp() {
        var handle: OpaquePointer?
        let config = #"{"mcpServers":{"a":{"command":"x"}},"caching":{"memoryCacheSize":"4MiB","coherenceTimeout":"50ms"}}"#
        XCTAssertEqual(config.withCString { mcpopt_engine_create($0, -1, &handle) }, 0)
        engine = handle
    }

    override func tearDown() { mcpopt_engine_destroy(engine) }

    private func set(_ key: String, _ value: String, options: UnsafeRawPointer? = nil) -> Int32 {
        key.withCString { k in value.withCString { v in mcpopt_cache_set(engine, k, strlen(k), v, strlen(v), options) } }
    }

    private func get(_ key: String) -> String? {
        var value: UnsafeMutableRawPointer?
        var length = 0
        let status = key.withCString { mcpopt_cache_get_copy(engine, $0, strlen($0), &value, &length) }
        guard status == 0, let value else { return nil }
        defer { mcpopt_free(value) }
        return String(decoding: UnsafeRawBufferPointer(start: value, count: length), as: UTF8.self)
    }

    private func lastMessage() -> String { String(cString: mcpopt_last_error_message()) }

    /// An mcpopt_cache_options in C layout.
    private func withOptions<R>(structSize: Int = 40, ttl: Int64 = 0, group: String? = nil, tags: [String] = [], tagCount: Int? = nil,
                                _ body: (UnsafeRawPointer) -> R) -> R {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: 40, alignment: 8)
        defer { raw.deallocate() }
        let groupC = group.map { strdup($0)! }
        let tagsC = tags.map { UnsafePointer(strdup($0)!) as UnsafePointer<CChar>? }
        let tagArray = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: max(1, tagsC.count))
        tagArray.initialize(from: tagsC, count: tagsC.count)
        defer {
            free(groupC)
            for tag in tagsC { free(UnsafeMutableRawPointer(mutating: tag)) }
            tagArray.deallocate()
        }
        raw.storeBytes(of: structSize, as: Int.self)
        raw.storeBytes(of: ttl, toByteOffset: 8, as: Int64.self)
        raw.storeBytes(of: groupC.map { UnsafePointer($0) }, toByteOffset: 16, as: UnsafePointer<CChar>?.self)
        raw.storeBytes(of: tags.isEmpty ? nil : UnsafePointer(tagArray), toByteOffset: 24, as: UnsafePointer<UnsafePointer<CChar>?>?.self)
        raw.storeBytes(of: tagCount ?? tags.count, toByteOffset: 32, as: Int.self)
        return body(raw)
    }

    func testSetGetDeleteThroughTheABI() {
        XCTAssertEqual(set("k", "value"), 0)
        XCTAssertEqual(get("k"), "value")
        // Into a caller buffer: fits, too small (size reported), and size query with NULL.
        var buffer = [UInt8](repeating: 0, count: 16)
        var length = 0
        XCTAssertEqual("k".withCString { mcpopt_cache_get(engine, $0, 1, &buffer, 16, &length) }, 0)
        XCTAssertEqual(length, 5)
        XCTAssertEqual(Array(buffer.prefix(5)), Array("value".utf8))
        XCTAssertEqual("k".withCString { mcpopt_cache_get(engine, $0, 1, &buffer, 2, &length) }, ABIStatus.bufferTooSmall.rawValue)
        XCTAssertEqual(length, 5)
        XCTAssertEqual("k".withCString { mcpopt_cache_get(engine, $0, 1, nil, 0, &length) }, ABIStatus.bufferTooSmall.rawValue)
        XCTAssertEqual("k".withCString { mcpopt_cache_delete(engine, $0, 1) }, 0)
        XCTAssertEqual("k".withCString { mcpopt_cache_delete(engine, $0, 1) }, ABIStatus.notFound.rawValue)
        XCTAssertNil(get("k"))
        XCTAssertEqual(mcpopt_last_status(), ABIStatus.notFound.rawValue)
        // Binary keys and an empty value.
        let key: [UInt8] = [0, 255, 1]
        XCTAssertEqual(mcpopt_cache_set(engine, key, 3, nil, 0, nil), 0)
        XCTAssertEqual(mcpopt_cache_get(engine, key, 3, nil, 0, &length), 0)
        XCTAssertEqual(length, 0)
    }

    func testOptionsGroupsTagsAndInvalidation() {
        XCTAssertEqual(withOptions(group: "fs", tags: ["src"]) { set("Read:/src/a", "1", options: $0) }, 0)
        XCTAssertEqual(withOptions(tags: ["src", "lib"]) { set("Read:/src/b", "2", options: $0) }, 0)
        XCTAssertEqual(withOptions(group: "fs") { set("Read:/docs/c", "3", options: $0) }, 0)
        XCTAssertEqual(set("other", "4"), 0)
        var removed = 0
        XCTAssertEqual(mcpopt_cache_invalidate_tag(engine, "lib", -1, &removed), 0)
        XCTAssertEqual(removed, 1)
        XCTAssertEqual(mcpopt_cache_invalidate(engine, "Read:/src/*", -1, &removed), 0)
        XCTAssertEqual(removed, 1)
        XCTAssertEqual(mcpopt_cache_invalidate_group(engine, "fs", -1, &removed), 0)
        XCTAssertEqual(removed, 1)
        XCTAssertEqual(get("other"), "4")
        XCTAssertEqual(mcpopt_cache_invalidate_group(engine, "nobody", -1, &removed), 0)
        XCTAssertEqual(removed, 0)
        // TTL, and the coherence timeout (50 ms in this engine's config) bounding grouped items.
        XCTAssertEqual(withOptions(ttl: 30) { set("short", "s", options: $0) }, 0)
        XCTAssertEqual(withOptions(ttl: 60_000, group: "g") { set("grouped", "g", options: $0) }, 0)
        XCTAssertEqual(withOptions(ttl: 60_000) { set("long", "l", options: $0) }, 0)
        usleep(150_000)
        XCTAssertNil(get("short"))
        XCTAssertNil(get("grouped"))
        XCTAssertEqual(get("long"), "l")
        XCTAssertEqual(mcpopt_cache_clear(engine), 0)
        XCTAssertNil(get("long"))
    }

    func testBadInputGetsAStatusAndAMessage() {
        var length = 0
        XCTAssertEqual(mcpopt_cache_set(engine, nil, 3, "v", 1, nil), ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(mcpopt_cache_set(engine, "k", 0, "v", 1, nil), ABIStatus.invalidArgument.rawValue)
        XCTAssertTrue(lastMessage().contains("key is empty"))
        XCTAssertEqual(mcpopt_cache_set(engine, "k", 1, nil, 5, nil), ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(mcpopt_cache_set(engine, "k", -5, "v", 1, nil), ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(mcpopt_cache_set(nil, "k", 1, "v", 1, nil), ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(mcpopt_cache_set(OpaquePointer(bitPattern: 0x1234), "k", 1, "v", 1, nil), ABIStatus.invalidHandle.rawValue)
        let huge = [UInt8](repeating: 0, count: 2 << 20)
        XCTAssertEqual(mcpopt_cache_set(engine, "k", 1, huge, huge.count, nil), ABIStatus.tooLarge.rawValue)
        XCTAssertTrue(lastMessage().hasPrefix("too large to cache"), lastMessage())
        XCTAssertEqual(withOptions(structSize: 8) { set("k", "v", options: $0) }, ABIStatus.invalidArgument.rawValue)
        XCTAssertTrue(lastMessage().contains("struct_size"), lastMessage())
        XCTAssertEqual(withOptions(ttl: -1) { set("k", "v", options: $0) }, ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(withOptions(tagCount: 2) { set("k", "v", options: $0) }, ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(withOptions(group: "") { set("k", "v", options: $0) }, ABIStatus.invalidArgument.rawValue)
        let badGroup = withOptions(group: "ok") { raw -> Int32 in
            // Invalid UTF-8 in the group name.
            let bad = UnsafeMutablePointer<CChar>.allocate(capacity: 3)
            defer { bad.deallocate() }
            bad[0] = CChar(bitPattern: 0xC3); bad[1] = CChar(bitPattern: 0x28); bad[2] = 0
            UnsafeMutableRawPointer(mutating: raw).storeBytes(of: UnsafePointer(bad), toByteOffset: 16, as: UnsafePointer<CChar>?.self)
            return set("k", "v", options: raw)
        }
        XCTAssertEqual(badGroup, ABIStatus.invalidUTF8.rawValue)
        XCTAssertEqual(mcpopt_cache_get(engine, "k", 1, nil, 0, nil), ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(mcpopt_cache_get(engine, "k", 1, nil, 10, &length), ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(mcpopt_cache_get_copy(engine, "k", 1, nil, &length), ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(mcpopt_cache_invalidate(engine, nil, 0, nil), ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(mcpopt_cache_invalidate(engine, "", -1, nil), ABIStatus.invalidArgument.rawValue)
        let invalid: [CChar] = [CChar(bitPattern: 0xFF), 0]
        XCTAssertEqual(mcpopt_cache_invalidate_tag(engine, invalid, -1, nil), ABIStatus.invalidUTF8.rawValue)
        XCTAssertEqual(mcpopt_cache_stats(engine, nil, nil), ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(mcpopt_cache_hot_keys(engine, -1, nil, nil), ABIStatus.invalidArgument.rawValue)
        // Nothing else was lost.
        XCTAssertEqual(set("still", "works"), 0)
        XCTAssertEqual(get("still"), "works")
    }

    func testStatsAndHotKeysAsJSON() throws {
        XCTAssertEqual(set("hot", "h"), 0)
        XCTAssertEqual(set("cold", "c"), 0)
        for _ in 0..<3 { _ = get("hot") }
        _ = get("missing")
        var json: UnsafeMutablePointer<CChar>?
        var length = 0
        XCTAssertEqual(mcpopt_cache_stats(engine, &json, &length), 0)
        let stats = try JSONSerialization.jsonObject(with: Data(bytes: try XCTUnwrap(json), count: length)) as? [String: Any]
        mcpopt_free(json)
        XCTAssertEqual(stats?["hits"] as? Int, 3)
        XCTAssertEqual(stats?["misses"] as? Int, 1)
        XCTAssertEqual(stats?["items"] as? Int, 2)
        XCTAssertEqual(stats?["memoryBudget"] as? Int, 4 << 20)
        XCTAssertEqual(mcpopt_cache_hot_keys(engine, 10, &json, &length), 0)
        let hot = try JSONSerialization.jsonObject(with: Data(bytes: try XCTUnwrap(json), count: length)) as? [[String: Any]]
        mcpopt_free(json)
        XCTAssertEqual(hot?.first?["key"] as? String, "hot")
        XCTAssertEqual(hot?.count, 1)
    }

    func testConcurrentCacheCalls() {
        let handle = UInt(bitPattern: engine)
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            let engine = OpaquePointer(bitPattern: handle)
            for index in 0..<2_000 {
                let key = "k\(index % 100)"
                if worker % 2 == 0 {
                    let value = "v\(index)"
                    _ = key.withCString { k in value.withCString { v in mcpopt_cache_set(engine, k, strlen(k), v, strlen(v), nil) } }
                } else {
                    var buffer = [UInt8](repeating: 0, count: 32)
                    var length = 0
                    let status = key.withCString { mcpopt_cache_get(engine, $0, strlen($0), &buffer, 32, &length) }
                    if status == 0 { XCTAssertEqual(buffer.first, UInt8(ascii: "v")) }
                }
            }
        }
        var json: UnsafeMutablePointer<CChar>?
        XCTAssertEqual(mcpopt_cache_stats(engine, &json, nil), 0)
        mcpopt_free(json)
    }

    /// Destroying an engine while other threads call it: their calls finish or get
    /// INVALID_HANDLE, never a crash; the engine is freed once they are done.
    func testConcurrentDestroyWhileInUse() {
        for _ in 0..<20 {
            var created: OpaquePointer?
            XCTAssertEqual(mcpopt_engine_create("{}", -1, &created), 0)
            let handle = UInt(bitPattern: created)
            let unexpected = ManagedAtomicCounter()
            DispatchQueue.concurrentPerform(iterations: 3) { worker in
                let engine = OpaquePointer(bitPattern: handle)
                if worker == 2 {
                    usleep(500)
                    if mcpopt_engine_destroy(engine) != 0 { unexpected.add() }
                    return
                }
                for index in 0..<3_000 {
                    let status = "k\(index % 10)".withCString { k -> Int32 in
                        if worker == 0 { return mcpopt_cache_set(engine, k, strlen(k), "v", 1, nil) }
                        var buffer = [UInt8](repeating: 0, count: 8)
                        var length = 0
                        return mcpopt_cache_get(engine, k, strlen(k), &buffer, 8, &length)
                    }
                    if ![0, ABIStatus.notFound.rawValue, ABIStatus.invalidHandle.rawValue].contains(status) { unexpected.add() }
                }
            }
            XCTAssertEqual(unexpected.value, 0)
            XCTAssertEqual(mcpopt_cache_set(OpaquePointer(bitPattern: handle), "k", 1, "v", 1, nil), ABIStatus.invalidHandle.rawValue)
        }
    }
}

final class ManagedAtomicCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
