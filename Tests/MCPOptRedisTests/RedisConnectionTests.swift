import Foundation
import MCPOptIO
import XCTest
import MCPOptTestSupport
@testable import MCPOptRedis

final class RedisEndpointTests: XCTestCase {
    func testURLsParseAndBadOnesAreRefused() {
        XCTAssertEqual(RedisEndpoint.parse("redis://127.0.0.1:6390/2")?.port, 6390)
        XCTAssertEqual(RedisEndpoint.parse("redis://127.0.0.1:6390/2")?.database, 2)
        let auth = RedisEndpoint.parse("redis://user:p%40ss@cache.local")
        XCTAssertEqual(auth?.username, "user")
        XCTAssertEqual(auth?.password, "p%40ss")
        XCTAssertEqual(auth?.host, "cache.local")
        XCTAssertEqual(auth?.port, 6379)
        XCTAssertEqual(RedisEndpoint.parse("redis://:secret@h")?.password, "secret")
        XCTAssertNil(RedisEndpoint.parse("redis://:secret@h")?.username)
        XCTAssertEqual(RedisEndpoint.parse("redis://[::1]:7000")?.host, "::1")
        XCTAssertEqual(RedisEndpoint.parse("unix:///run/redis.sock")?.unixPath, "/run/redis.sock")
        for bad in ["http://h", "redis://h:0", "redis://h:99999", "redis://h/x", "unix://relative", "redis://[::1"] {
            XCTAssertNil(RedisEndpoint.parse(bad), bad)
        }
    }
}

/// A connection against a real redis-server (started here): pipelining, errors as replies,
/// pub/sub, a server that goes away, a port where nothing listens.
final class RedisConnectionTests: XCTestCase {
    /// A redis-server on a random port (skipped, or failed on CI, when there is none); with
    /// `listen`, these arguments say where it listens (and with what) instead of `--port PORT`.
    func startRedis(listen: ((_ port: Int) -> [String])? = nil) throws -> (server: Process, port: Int) {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-server") else {
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("redis-server is missing: run scripts/setup") }
            throw XCTSkip("redis-server is missing")
        }
        let port = Int.random(in: 12_000..<32_000)   // below the ephemeral range: no outgoing connection holds it
        let server = Process()
        // setpriv execs redis-server (same pid) with a parent-death signal: a crashed test process
        // does not leave it running.
        server.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        server.arguments = ["--pdeathsig", "KILL", "/usr/bin/redis-server"] + (listen?(port) ?? ["--port", String(port), "--bind", "127.0.0.1"])
            + ["--save", "", "--appendonly", "no"]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        return (server, port)
    }

    /// A subscriber connection to `endpoint` gets what `publisher` publishes.
    func checkPubSub(publisher: RedisConnection, endpoint: RedisEndpoint, loop: EventLoop, message: String) async throws {
        let received = LockedBox<[[UInt8]]>([])
        let sub = RedisConnection(endpoint: endpoint, loop: loop)
        try await sub.connect(timeout: .seconds(2), onMessage: { _, payload in received.mutate { $0.append(payload) } })
        _ = try await sub.command([Array("SUBSCRIBE".utf8), Array("ch".utf8)], timeout: .seconds(2))
        let listeners = try await publisher.command([Array("PUBLISH".utf8), Array("ch".utf8), Array(message.utf8)], timeout: .seconds(2))
        XCTAssertEqual(listeners, .integer(1))
        for _ in 0..<200 where received.value.isEmpty { try await Task.sleep(for: .milliseconds(5)) }
        XCTAssertEqual(received.value, [Array(message.utf8)])
    }

    /// Stops it, also when frozen.
    func stop(_ server: Process) {
        guard server.isRunning else { return }
        kill(server.processIdentifier, SIGCONT)
        kill(server.processIdentifier, SIGKILL)
        server.waitUntilExit()
    }

    /// The error of a PING that must fail (a test failure when it is answered).
    func failedPing(_ c: RedisConnection) async -> String {
        do {
            _ = try await c.command([Array("PING".utf8)], timeout: .seconds(1))
            XCTFail("PING was answered")
            return ""
        } catch {
            return error.message
        }
    }

    /// Connects while the server starts (bounded: 200 tries, 10 ms apart).
    func connect(_ c: RedisConnection) async throws -> Bool {
        for _ in 0..<200 {
            do {
                try await c.connect(timeout: .seconds(1))
                return true
            } catch {
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        return false
    }

    func testCommandsPipelineAndFailuresAreClear() async throws {
        let (server, port) = try startRedis()
        defer { stop(server) }
        let loop = try EventLoop()
        defer { loop.shutdown() }
        let endpoint = RedisEndpoint(host: "127.0.0.1", port: port)
        let c = RedisConnection(endpoint: endpoint, loop: loop)
        let connected = try await connect(c)
        XCTAssertTrue(connected)
        let key = Array("k\u{0}binary".utf8)
        let replies = try await c.pipeline([[Array("SET".utf8), key, [0, 1, 2, 255]], [Array("GET".utf8), key], [Array("INCR".utf8), key]], timeout: .seconds(1))
        XCTAssertEqual(replies[0], .status("OK"))
        XCTAssertEqual(replies[1], .bulk([0, 1, 2, 255]))
        XCTAssertTrue(replies[2].isError, "a Redis error is a reply, not a thrown error")

        // Large commands sent at once on one connection: each goes whole and in order, also
        // when the socket cannot take them at once (the connection queues its writes).
        let values = (0..<6).map { i in [UInt8](repeating: UInt8(ascii: "a") + UInt8(i), count: 8 << 20) }
        let stored = try await withThrowingTaskGroup(of: RESPValue.self) { group in
            for (i, value) in values.enumerated() {
                group.addTask { try await c.command([Array("SET".utf8), Array("big\(i)".utf8), value], timeout: .seconds(20)) }
            }
            return try await group.reduce(into: [RESPValue]()) { $0.append($1) }
        }
        XCTAssertEqual(stored, Array(repeating: .status("OK"), count: 6))
        for (i, value) in values.enumerated() {
            let got = try await c.command([Array("GET".utf8), Array("big\(i)".utf8)], timeout: .seconds(20))
            XCTAssertTrue(got == .bulk(value), "value \(i) came back changed")
        }

        // Pub/sub: a subscriber connection gets the messages.
        try await checkPubSub(publisher: c, endpoint: endpoint, loop: loop, message: "hello")

        // The server goes away: commands fail with a clear error, never hang.
        kill(server.processIdentifier, SIGKILL)
        server.waitUntilExit()
        let dead = await failedPing(c)
        XCTAssertTrue(dead.contains("127.0.0.1:\(port)"), dead)
        let nobody = RedisConnection(endpoint: endpoint, loop: loop)
        do {
            try await nobody.connect(timeout: .seconds(1))
            XCTFail("connected to nothing")
        } catch {
            XCTAssertEqual(error.kind, .connect)
        }
    }
}

extension RedisConnectionTests {
    /// A command that times out closes the connection; connected again (the same object), the
    /// old socket must be gone for good: when the stalled Redis answers the old command, that
    /// reply must not reach the new connection's command (it once could, through the read
    /// left in flight on the old socket).
    func testAfterATimeoutAReconnectedConnectionGetsOnlyItsOwnReplies() async throws {
        let (server, port) = try startRedis()
        defer { stop(server) }
        for backend in EventLoop.Backend.allCases {
            let loop: EventLoop
            do { loop = try EventLoop(backend: backend) } catch { continue }   // io_uring may be unavailable
            defer { loop.shutdown() }
            let c = RedisConnection(endpoint: RedisEndpoint(host: "127.0.0.1", port: port), loop: loop)
            let connected = try await connect(c)
            XCTAssertTrue(connected)
            _ = try await c.pipeline([[Array("SET".utf8), Array("old".utf8), Array("stale".utf8)],
                                      [Array("SET".utf8), Array("new".utf8), Array("fresh".utf8)]], timeout: .seconds(2))
            kill(server.processIdentifier, SIGSTOP)
            do {
                _ = try await c.command([Array("GET".utf8), Array("old".utf8)], timeout: .milliseconds(100))
                XCTFail("a frozen Redis answered")
            } catch {
                XCTAssertEqual(error.kind, .timeout, error.message)
            }
            // The kernel accepts the new connection while Redis is stopped; it answers in order
            // once it runs again.
            try await c.connect(timeout: .seconds(2))
            async let fresh = c.command([Array("GET".utf8), Array("new".utf8)], timeout: .seconds(5))
            try await Task.sleep(for: .milliseconds(50))
            kill(server.processIdentifier, SIGCONT)
            let reply = try await fresh
            XCTAssertEqual(reply, .bulk(Array("fresh".utf8)), "\(backend): a reply meant for the closed connection")
            let again = try await c.command([Array("GET".utf8), Array("new".utf8)], timeout: .seconds(2))
            XCTAssertEqual(again, .bulk(Array("fresh".utf8)), "\(backend)")
            c.close()
        }
    }
}

final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T { lock.lock(); defer { lock.unlock() }; return stored }
    func mutate(_ body: (inout T) -> Void) { lock.lock(); body(&stored); lock.unlock() }
}

/// rediss://: a real redis-server with TLS on (Debian's is built with it), a CA made for the
/// test (Tests/interop/make_test_certs.sh). Commands, a large value, pub/sub and AUTH go
/// through the TLS session; a certificate the client cannot trust fails the connect, clearly.
extension RedisConnectionTests {
    /// TLS only, on both loopback addresses 127.0.0.1 and 127.0.0.2, with a password;
    /// `clientCertificates`: clients must present one the test CA signed.
    private func startTLSRedis(clientCertificates: Bool = false) throws -> (server: Process, port: Int, certificates: String) {
        let certificates = try TestCertificates.make(for: self)
        let (server, port) = try startRedis { port in
            ["--port", "0", "--tls-port", String(port), "--bind", "127.0.0.1", "127.0.0.2",
             "--tls-cert-file", "\(certificates)/server.pem", "--tls-key-file", "\(certificates)/server.key",
             "--tls-ca-cert-file", "\(certificates)/ca.pem", "--tls-auth-clients", clientCertificates ? "yes" : "no", "--requirepass", "s3cret"]
        }
        return (server, port, certificates)
    }

    func testTLSCommandsPubSubAndRefusals() async throws {
        let (server, port, certificates) = try startTLSRedis()
        defer { stop(server) }
        let loop = try EventLoop()
        defer { loop.shutdown() }
        var endpoint = try XCTUnwrap(RedisEndpoint.parse("rediss://:s3cret@localhost:\(port)/2"))
        XCTAssertNotNil(endpoint.tls)
        endpoint.tls?.caFile = "\(certificates)/ca.pem"
        let c = RedisConnection(endpoint: endpoint, loop: loop)
        let connected = try await connect(c)
        XCTAssertTrue(connected, "AUTH and SELECT went through the TLS session")
        let replies = try await c.pipeline([[Array("SET".utf8), Array("k".utf8), [0, 1, 255]], [Array("GET".utf8), Array("k".utf8)]], timeout: .seconds(2))
        XCTAssertEqual(replies, [.status("OK"), .bulk([0, 1, 255])])
        // A value larger than a TLS record (16 KiB) and than a socket buffer, both ways.
        let big = [UInt8](repeating: UInt8(ascii: "z"), count: 3 << 20)
        let set = try await c.command([Array("SET".utf8), Array("big".utf8), big], timeout: .seconds(20))
        XCTAssertEqual(set, .status("OK"))
        let got = try await c.command([Array("GET".utf8), Array("big".utf8)], timeout: .seconds(20))
        XCTAssertTrue(got == .bulk(big), "the large value came back changed")

        try await checkPubSub(publisher: c, endpoint: endpoint, loop: loop, message: "over tls")

        // The system's CAs do not know the test CA; 127.0.0.2 is not a name the certificate has.
        for (host, caFile, expected) in [("localhost", nil, "certificate"), ("127.0.0.2", "\(certificates)/ca.pem", "mismatch")] {
            var refused = endpoint
            refused.host = host
            refused.tls = TLSOptions(caFile: caFile)
            do {
                try await RedisConnection(endpoint: refused, loop: loop).connect(timeout: .seconds(2))
                XCTFail("\(host) with \(caFile ?? "the system's CAs") was accepted")
            } catch {
                XCTAssertTrue(error.message.contains("certificate was not accepted") && error.message.contains(expected), error.message)
            }
        }
    }
}

extension RedisConnectionTests {
    /// A Redis that wants client certificates (tls-auth-clients yes): connected and answering
    /// with one the CA signed; without one, the connect fails and says so.
    func testTLSWithClientCertificates() async throws {
        let (server, port, certificates) = try startTLSRedis(clientCertificates: true)
        defer { stop(server) }
        let loop = try EventLoop()
        defer { loop.shutdown() }
        var endpoint = try XCTUnwrap(RedisEndpoint.parse("rediss://:s3cret@localhost:\(port)/0"))
        endpoint.tls = TLSOptions(caFile: "\(certificates)/ca.pem", clientCertificate: "\(certificates)/client.pem", clientKey: "\(certificates)/client.key")
        let c = RedisConnection(endpoint: endpoint, loop: loop)
        let connected = try await connect(c)
        XCTAssertTrue(connected)
        let pong = try await c.command([Array("PING".utf8)], timeout: .seconds(2))
        XCTAssertEqual(pong, .status("PONG"))
        XCTAssertFalse(c.resumedLastHandshake, "the first connect has no session to resume")
        // Connected again, the connection offers the session Redis gave: the handshake resumes.
        c.close()
        let again = try await connect(c)
        XCTAssertTrue(again)
        XCTAssertTrue(c.resumedLastHandshake, "a reconnect resumes its session")
        let pongAgain = try await c.command([Array("PING".utf8)], timeout: .seconds(2))
        XCTAssertEqual(pongAgain, .status("PONG"))
        // A connection that has been answered and is closed later is not blamed on its certificate.
        c.close()
        let closed = await failedPing(c)
        XCTAssertTrue(closed.hasSuffix("is closed: closed"), closed)

        var anonymous = endpoint
        anonymous.tls = TLSOptions(caFile: "\(certificates)/ca.pem")
        do {
            try await RedisConnection(endpoint: anonymous, loop: loop).connect(timeout: .seconds(2))
            XCTFail("connected without a client certificate")
        } catch {
            XCTAssertTrue(error.message.contains("Redis asked for a client certificate; none is configured"), error.message)
        }
    }
}
