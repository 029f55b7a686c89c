import Foundation
import XCTest
import MCPOptTestSupport
import MCPOptJSON
@testable import MCPOptEngine

/// The shared (L2) cache between two engine instances, against a real redis-server started
/// here: a fill in one is a hit in the other; a write through one invalidates the other's L1;
/// partitions stay apart; Redis killed mid-run costs no request, and when it comes back L2
/// resumes and nothing stale is served.
final class SharedCacheTests: XCTestCase, @unchecked Sendable {
    final class Redis {
        let port: Int
        private var process: Process?
        private let extra: [String]
        /// rediss: the directory of make_test_certs.sh's files; Redis listens with TLS only.
        let certificates: String?
        init(_ extra: [String] = [], certificates: String? = nil) throws {
            self.extra = extra
            self.certificates = certificates
            guard FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-server") else {
                if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("redis-server is missing: run scripts/setup"); throw CancellationError() }
                throw XCTSkip("redis-server is missing: run scripts/setup")
            }
            // Below the kernel's ephemeral range (32768-60999): no outgoing connection can hold it.
            port = Int.random(in: 12_000..<32_000)
            try start()
        }
        func start() throws {
            let p = Process()
            // setpriv execs redis-server (same pid) with a parent-death signal: a test process that
            // crashes takes its Redis with it instead of leaving it running.
            p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            let listen = certificates.map { ["--port", "0", "--tls-port", String(port), "--tls-cert-file", "\($0)/server.pem", "--tls-key-file", "\($0)/server.key",
                                             "--tls-ca-cert-file", "\($0)/ca.pem", "--tls-auth-clients", "no"] } ?? ["--port", String(port)]
            p.arguments = ["--pdeathsig", "KILL", "/usr/bin/redis-server"] + listen + ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning"] + extra
            p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
            try p.run()
            process = p
            for _ in 0..<200 {   // bounded: 2 s
                if let fd = connectLoopback(port) {
                    close(fd)
                    return
                }
                usleep(10_000)
            }
            XCTFail("redis-server did not start on port \(port)")
        }
        /// Freezes Redis (connections stay open, nothing answers) or thaws it.
        func freeze(_ frozen: Bool) {
            if let p = process { Glibc.kill(p.processIdentifier, frozen ? SIGSTOP : SIGCONT) }
        }
        func kill() {
            guard let p = process else { return }
            Glibc.kill(p.processIdentifier, SIGCONT)
            Glibc.kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            process = nil
        }
        deinit { kill() }
    }

    /// `commandTimeout` is generous by default: an L2 read these tests expect to hit must not
    /// be timed out by a busy machine (the slow-Redis test sets its own).
    func makeEngine(redisPort: Int, commandTimeout: String = "2s", caFile: String? = nil) throws -> Engine {
        let kv = try RequestPathTests.kvServer("kv")
        let url = caFile == nil ? "redis://127.0.0.1:\(redisPort)" : "rediss://localhost:\(redisPort)"
        let l2 = #"{"url": "\#(url)", "commandTimeout": "\#(commandTimeout)"\#(caFile.map { #", "caFile": "\#($0)""# } ?? "")}"#
        return try Engine(json: #"{"mcpServers": {\#(kv)}, "caching": {"distributed": \#(l2), "coherenceTimeout": "1s", "tools": {"reads_served": false}}}"#)
    }

    func call(_ engine: Engine, _ tool: String, _ arguments: String, partition: String? = nil) async -> OptimizedResponse {
        await engine.optimizeRequest(Array(#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\#(tool)","arguments":\#(arguments)}}"#.utf8),
                                     OptimizeOptions(partition: partition))
    }

    func text(_ r: OptimizedResponse) -> String? {
        (try? JSONParser.parse(r.message))?["result"]?["content"]?.arrayValue?.first?["text"]?.stringValue
    }

    func l2(_ engine: Engine) -> JSONValue { engine.getOptimizationMetrics()["cache"]?["l2"] ?? .null }

    /// Polls (bounded) until `condition` holds.
    /// A Redis and two engine instances connected to it (all stopped at teardown).
    func twoInstances(certificates: String? = nil) async throws -> (Redis, Engine, Engine) {
        let redis = try Redis(certificates: certificates)
        addTeardownBlock { redis.kill() }
        let caFile = certificates.map { "\($0)/ca.pem" }
        let a = try makeEngine(redisPort: redis.port, caFile: caFile), b = try makeEngine(redisPort: redis.port, caFile: caFile)
        await a.start()
        await b.start()
        addTeardownBlock {
            await a.stop()
            await b.stop()
        }
        await eventually("both instances connected to Redis") { l2(a)["state"] == "up" && l2(b)["state"] == "up" }
        return (redis, a, b)
    }

    func testAFillInOneInstanceIsAHitInTheOtherAndAWriteInvalidatesBoth() async throws {
        try await fillHitAndInvalidate(certificates: nil)
    }

    /// The same over rediss:// (Redis with TLS only, a CA made for the test, given as caFile).
    func testTheSharedTierOverTLS() async throws {
        let certificates = try TestCertificates.make(for: self)
        try await fillHitAndInvalidate(certificates: certificates)
    }

    func fillHitAndInvalidate(certificates: String?) async throws {
        let (_, a, b) = try await twoInstances(certificates: certificates)

        _ = await call(a, "put", #"{"key":"k","value":"v1"}"#)
        let filled = await call(a, "get", #"{"key":"k"}"#)
        XCTAssertEqual(filled.source, .origin)
        XCTAssertEqual(text(filled), "v1")
        // B's own server has no "k": a "v1" can only come from A's fill, through Redis.
        await eventually("A's fill reaches L2") { l2(a)["writes"]?.integerValue == 1 }
        let shared = await call(b, "get", #"{"key":"k"}"#)
        XCTAssertEqual(shared.source, .shared)
        XCTAssertEqual(text(shared), "v1")
        let promoted = await call(b, "get", #"{"key":"k"}"#)
        XCTAssertEqual(promoted.source, .memory, "an L2 hit is promoted to L1")

        // A write through A: B's L1 and L2 drop the read; B never serves v1 again.
        _ = await call(a, "put", #"{"key":"k","value":"v2"}"#)
        await eventually("B's L1 is invalidated") { await call(b, "get", #"{"key":"k"}"#).source != .memory }
        let after = await call(b, "get", #"{"key":"k"}"#)
        XCTAssertNotEqual(text(after), "v1")
        XCTAssertGreaterThan(l2(b)["invalidationsReceived"]?.integerValue ?? 0, 0)

        // Partitions stay apart across instances.
        _ = await call(a, "get", #"{"key":"p"}"#, partition: "tenant-1")
        await eventually("A's partitioned fill reaches L2") { (l2(a)["writes"]?.integerValue ?? 0) >= 2 }
        let other = await call(b, "get", #"{"key":"p"}"#, partition: "tenant-2")
        XCTAssertEqual(other.source, .origin)
        let same = await call(b, "get", #"{"key":"p"}"#, partition: "tenant-1")
        XCTAssertEqual(same.source, .shared)
    }

    func testRedisDownCostsNoRequestAndNothingStaleIsServedWhenItReturns() async throws {
        let (redis, a, b) = try await twoInstances()
        _ = await call(a, "put", #"{"key":"k","value":"v1"}"#)
        _ = await call(a, "get", #"{"key":"k"}"#)
        await eventually("A's fill reaches L2") { l2(a)["writes"]?.integerValue == 1 }
        let hit = await call(b, "get", #"{"key":"k"}"#)
        XCTAssertEqual(hit.source, .shared)

        redis.kill()
        // Every request still succeeds: L1 serves (until the coherence timeout, 1 s: asked
        // first), misses go to the origin.
        let local = await call(a, "get", #"{"key":"k"}"#)
        XCTAssertEqual(local.source, .memory)
        for i in 0..<20 {
            let r = await call(b, "get", #"{"key":"n\#(i)"}"#)
            XCTAssertTrue(r.success, r.error ?? "")
        }
        await eventually("the instances see Redis down") { l2(a)["state"] == "down" && l2(b)["state"] == "down" }
        // A write while Redis is down cannot reach B: B must not keep serving v1 past the
        // coherence timeout (1 s).
        _ = await call(a, "put", #"{"key":"k","value":"v2"}"#)
        await eventually("B drops what may be stale", seconds: 5) { l2(b)["l1Clears"]?.integerValue ?? 0 > 0 }
        let dropped = await call(b, "get", #"{"key":"k"}"#)
        XCTAssertNotEqual(dropped.source, .memory)
        XCTAssertNotEqual(text(dropped), "v1")

        try redis.start()
        await eventually("L2 resumes", seconds: 10) { l2(a)["state"] == "up" && l2(b)["state"] == "up" }
        _ = await call(a, "get", #"{"key":"fresh"}"#)
        await eventually("A's fill reaches the new Redis") { (l2(a)["writes"]?.integerValue ?? 0) >= 2 }
        let resumed = await call(b, "get", #"{"key":"fresh"}"#)
        XCTAssertEqual(resumed.source, .shared)
        XCTAssertGreaterThan(l2(b)["bypassed"]?.integerValue ?? 0, 0, "while Redis was down, L2 was skipped, not waited for")
    }

    func testASlowRedisIsBypassedAfterTheCommandTimeout() async throws {
        let redis = try Redis()
        addTeardownBlock { redis.kill() }
        let a = try makeEngine(redisPort: redis.port, commandTimeout: "100ms")
        await a.start()
        addTeardownBlock { await a.stop() }
        await eventually("connected to Redis") { l2(a)["state"] == "up" }
        redis.freeze(true)
        // Each read waits at most commandTimeout (100 ms) for L2, then goes to the server.
        for i in 0..<5 {
            let r = await call(a, "get", #"{"key":"s\#(i)"}"#)
            XCTAssertTrue(r.success, r.error ?? "")
            XCTAssertEqual(r.source, .origin)
        }
        XCTAssertGreaterThan(l2(a)["errors"]?.integerValue ?? 0, 0, "the timeouts are counted")
        redis.freeze(false)
        await eventually("L2 resumes after the stall", seconds: 10) { l2(a)["state"] == "up" }
    }

    func testKeyPatternAndGroupInvalidationsReachTheOtherInstance() async throws {
        let (redis, a, b) = try await twoInstances()
        // Entries a host put in each instance's cache (the C ABI's mcpopt_cache_set).
        for (key, group) in [("user:1", "people"), ("user:2", "people"), ("doc:a", "docs"), ("doc:b", "docs"), ("note", "misc")] {
            _ = try b.cache.set(key, Array("v".utf8), .init(coherenceGroup: group))
        }
        XCTAssertTrue(a.invalidate(key: Array("note".utf8)) == false, "not in A's own cache")
        await eventually("a key invalidated through A leaves B") { b.cache.get("note") == nil }
        _ = a.invalidate(pattern: "doc:*")
        await eventually("a pattern invalidated through A reaches B") { b.cache.get("doc:a") == nil && b.cache.get("doc:b") == nil }
        _ = a.invalidateGroup("people")
        await eventually("a group invalidated through A reaches B") { b.cache.get("user:1") == nil && b.cache.get("user:2") == nil }
        XCTAssertGreaterThanOrEqual(l2(b)["invalidationsReceived"]?.integerValue ?? 0, 3)

        // A pattern reaches the engine's own entries in L2 as well.
        _ = await call(a, "get", #"{"key":"p1"}"#)
        _ = await call(a, "get", #"{"key":"p2"}"#)
        await eventually("the fills reach L2") { redisKeys(redis.port, "mcpopt:v:*") == 2 }
        _ = a.invalidate(pattern: "*")
        await eventually("a pattern empties the matching L2 entries") { redisKeys(redis.port, "mcpopt:v:*") == 0 }
    }

    /// How many keys match `pattern` in the test's Redis (redis-cli --scan).
    func redisKeys(_ port: Int, _ pattern: String) -> Int {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/redis-cli")
        p.arguments = ["-p", String(port), "--scan", "--pattern", pattern]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return -1 }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").count
    }
}
