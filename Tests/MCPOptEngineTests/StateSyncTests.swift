import Foundation
import XCTest
import MCPOptCoordination
import MCPOptJSON
import MCPOptTestSupport
@testable import MCPOptEngine

/// Shared state between two engine instances through a real redis-server started here:
/// concurrent conflicting writes converge under `eventual`; read-modify-write cycles are
/// serialized under `strong` (no lost update); writes made while Redis was away reach the
/// other instance once it is back; an engine without Redis keeps its state to itself.
final class StateSyncTests: XCTestCase, @unchecked Sendable {
    typealias Redis = SharedCacheTests.Redis

    func makeEngine(_ model: String, redisPort: Int, interval: String = "100ms") throws -> Engine {
        try Engine(json: #"{"mcpServers": {}, "coordination": {"enableStateSynchronization": true, "consistencyModel": "\#(model)", "syncInterval": "\#(interval)", "redisUrl": "redis://127.0.0.1:\#(redisPort)"}}"#)
    }

    /// A real Redis and two started engines sharing state through it, all stopped at the end.
    func twoEngines(_ model: String, prepare: (Engine, Engine) -> Void = { _, _ in }) async throws -> (Engine, Engine, Redis) {
        let redis = try Redis()
        addTeardownBlock { redis.kill() }
        let a = try makeEngine(model, redisPort: redis.port), b = try makeEngine(model, redisPort: redis.port)
        prepare(a, b)
        await a.start()
        await b.start()
        addTeardownBlock { await a.stop(); await b.stop() }
        return (a, b, redis)
    }

    func text(_ v: VersionedValue?) -> String? { v.map { String(decoding: $0.value, as: UTF8.self) } }

    func testEventualConcurrentWritesConverge() async throws {
        let (a, b, _) = try await twoEngines("eventual")   // the teardown block keeps the server

        // A write in one reaches the other, with its version.
        let written = a.state.put("greeting", Array("hello".utf8))
        await eventually("b sees a's write") { b.state.get("greeting")?.stamp == written.stamp }

        // Both write the same keys at once, many times: both end with the same value per key,
        // the one with the later stamp.
        let keys = (0..<20).map { "k\($0)" }
        await withTaskGroup(of: Void.self) { group in
            for (engine, name) in [(a, "a"), (b, "b")] {
                group.addTask {
                    for round in 0..<30 { for key in keys { engine.state.put(key, Array("\(name)-\(round)".utf8)) } }
                }
            }
        }
        await eventually("both converge on every key") {
            keys.allSatisfy { key in
                guard let x = a.state.get(key), let y = b.state.get(key) else { return false }
                return x == y
            }
        }
        for key in keys {
            let final = a.state.get(key)!
            XCTAssertTrue(text(final)!.hasSuffix("-29"), "the last round's write wins: \(text(final)!)")
        }

        // Deletes replicate as tombstones.
        b.state.delete("greeting")
        await eventually("a sees the delete") { a.state.get("greeting") == nil }
        XCTAssertGreaterThan(a.getOptimizationMetrics()["coordination"]?["stateSync"]?["received"]?.doubleValue ?? 0, 0)
    }

    func testConcurrentWritesMergeWithTheHostsMerge() async throws {
        // A set union of comma-separated items: deterministic, so both reach the same value.
        let union: @Sendable (String, VersionedValue, VersionedValue) -> [UInt8] = { _, older, newer in
            let items = Set((String(decoding: older.value, as: UTF8.self) + "," + String(decoding: newer.value, as: UTF8.self)).split(separator: ","))
            return Array(items.sorted().joined(separator: ",").utf8)
        }
        let (a, b, _) = try await twoEngines("eventual") { a, b in
            a.setStateMerge(union)
            b.setStateMerge(union)
        }
        await withTaskGroup(of: Void.self) { group in
            for (engine, name) in [(a, "a"), (b, "b")] {
                group.addTask { for i in 0..<20 { engine.state.put("tags", Array("\(name)\(i)".utf8)) } }
            }
        }
        await eventually("both agree") { a.state.get("tags") != nil && a.state.get("tags") == b.state.get("tags") }
        let merged = Set(text(a.state.get("tags"))!.split(separator: ",").map(String.init))
        // Each side's last write survives the merge (earlier local writes were overwritten locally).
        XCTAssertTrue(merged.contains("a19") && merged.contains("b19"), "\(merged)")
    }

    func testEventualCatchesUpAfterRedisWasAway() async throws {
        let (a, b, redis) = try await twoEngines("eventual")
        redis.kill()
        // Written while Redis is down: kept locally, sent by anti-entropy once Redis is back.
        a.state.put("offline", Array("written while away".utf8))
        XCTAssertEqual(text(a.state.get("offline")), "written while away")
        try redis.start()
        await eventually("b receives what a wrote while Redis was away", seconds: 10) { text(b.state.get("offline")) == "written while away" }
    }

    func testConcurrentStrongReadModifyWriteIsSerialized() async throws {
        let (a, b, redis) = try await twoEngines("strong")

        // Two instances each add 1 to a counter 100 times with compare-and-set: every increment
        // lands (an unserialized read-modify-write would lose some).
        func increment(_ engine: Engine, times: Int) async throws -> Int {
            var conflicts = 0
            for _ in 0..<times {
                for _ in 0..<1000 {   // bounded retries
                    let current = try await engine.getState("counter")
                    let n = current.flatMap { Int(String(decoding: $0.value, as: UTF8.self)) } ?? 0
                    do throws(StateSyncError) {
                        try await engine.compareAndSetState("counter", expected: current?.stamp, Array(String(n + 1).utf8))
                        break
                    } catch {
                        XCTAssertEqual(error.kind, .conflict)
                        conflicts += 1
                    }
                }
            }
            return conflicts
        }
        async let x = increment(a, times: 100)
        async let y = increment(b, times: 100)
        let conflicts = try await x + y
        let fromA = try await a.getState("counter"), fromB = try await b.getState("counter")
        XCTAssertEqual(text(fromA), "200")
        XCTAssertEqual(text(fromB), "200", "a linearizable read sees the last write at once")
        print("strong: 200 increments from two instances, \(conflicts) compare-and-set conflicts retried")

        // A plain write is visible to the other's next read at once (no waiting for replication).
        try await a.putState("now", Array("1".utf8))
        let seen = try await b.getState("now")
        XCTAssertEqual(text(seen), "1")
        try await b.deleteState("now")
        let gone = try await a.getState("now")
        XCTAssertNil(gone)

        // Without Redis, strong calls fail clearly (and nothing is written locally by halves).
        redis.kill()
        await eventually("the replicator notices Redis is gone") { !(a.stateReplicator?.isConnected ?? true) }
        do {
            try await a.putState("k", Array("v".utf8))
            XCTFail("a strong write without Redis must fail")
        } catch {
            XCTAssertEqual(error.kind, .unavailable)
            XCTAssertTrue(error.description.contains("Redis"), error.description)
        }
    }

    func testWithoutRedisStateIsLocal() async throws {
        let engine = try Engine(json: #"{"mcpServers": {}, "coordination": {"enableStateSynchronization": true, "consistencyModel": "strong"}}"#)
        XCTAssertFalse(engine.stateIsStrong, "no Redis configured: the embedded single-instance mode")
        let v = try await engine.putState("k", Array("v".utf8))
        let read = try await engine.getState("k")
        XCTAssertEqual(read, v)
        do {
            try await engine.compareAndSetState("k", expected: nil, Array("w".utf8))
            XCTFail("the key exists: a compare-and-set expecting none conflicts")
        } catch {
            XCTAssertEqual(error.kind, .conflict)
            XCTAssertEqual(error.current, v)
        }
        let next = try await engine.compareAndSetState("k", expected: v.stamp, Array("w".utf8))
        XCTAssertGreaterThan(next.stamp, v.stamp)
    }
}

extension StateSyncTests {
    /// Without coordination.redisUrl, shared state goes to the shared cache's Redis, with what
    /// is configured beside its URL: here rediss:// and a private CA (`caFile`), which a
    /// connection made from the URL alone would refuse.
    func testStateFollowsTheSharedCachesRedisWithItsTLSSettings() async throws {
        let certificates = try TestCertificates.make(for: self)
        let redis = try Redis(certificates: certificates)
        addTeardownBlock { redis.kill() }
        let json = #"{"mcpServers": {}, "caching": {"distributed": {"url": "rediss://localhost:\#(redis.port)", "caFile": "\#(certificates)/ca.pem"}}, "coordination": {"enableStateSynchronization": true, "syncInterval": "100ms"}}"#
        let a = try Engine(json: json), b = try Engine(json: json)
        await a.start()
        await b.start()
        addTeardownBlock { await a.stop(); await b.stop() }
        let written = a.state.put("over-tls", Array("yes".utf8))
        await eventually("b sees a's write through the TLS Redis") { b.state.get("over-tls")?.stamp == written.stamp }
        XCTAssertEqual(text(b.state.get("over-tls")), "yes")
    }
}
