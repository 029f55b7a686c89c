import Foundation
import XCTest
import MCPOptCoordination
import MCPOptIO
import MCPOptRedis
import MCPOptSync
@testable import MCPOptEngine

/// The decision log in a real Redis (started here with every write fsynced): a coordinator that
/// dies after its decision is finished by its successor under the same coordinator id, another
/// coordinator leaves it alone, and a Redis that does not persist every write is refused.
final class RedisDecisionLogTests: XCTestCase, @unchecked Sendable {
    typealias Redis = SharedCacheTests.Redis

    /// Stages on prepare, applies on commit.
    final class Participant: TransactionParticipant, @unchecked Sendable {
        let id: String
        private let lock = Lock()
        private var staged: [String: [UInt8]] = [:]
        private(set) var committed: [String: [UInt8]] = [:]
        init(_ id: String) { self.id = id }
        func prepare(transaction: String, payload: [UInt8]?) async throws -> Vote {
            lock.withLock { staged[transaction] = payload ?? [] }
            return .yes
        }
        func commit(transaction: String) async throws {
            lock.withLock { if let v = staged.removeValue(forKey: transaction) { committed[transaction] = v } }
        }
        func abort(transaction: String) async throws { _ = lock.withLock { staged.removeValue(forKey: transaction) } }
        var done: [String: [UInt8]] { lock.withLock { committed } }
    }

    struct SimulatedCrash: Error {}

    func testCrashAfterDecisionIsRecoveredByTheSameCoordinatorIdOnly() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mcpopt-redis-log-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let redis = try Redis(["--appendonly", "yes", "--appendfsync", "always", "--dir", dir.path])
        let loop = try EventLoop()
        addTeardownBlock {
            redis.kill()
            loop.shutdown()
            try? FileManager.default.removeItem(at: dir)
        }
        let url = "redis://127.0.0.1:\(redis.port)"
        let ps = (0..<3).map { Participant("p\($0)") }
        func coordinator(_ id: String, crash: Bool = false) -> TransactionCoordinator {
            TransactionCoordinator(log: RedisDecisionLog(endpoint: RedisEndpoint.parse(url)!, keyPrefix: "test:", coordinatorId: id, loop: loop), timeout: .seconds(5),
                                   participants: { name in ps.first { $0.id == name } },
                                   afterDecision: crash ? { @Sendable _ in throw SimulatedCrash() } : nil)
        }
        do {
            _ = try await coordinator("a", crash: true).run(id: "t1", participants: ps, payloads: ["p0": [1], "p1": [2], "p2": [3]])
            XCTFail("the simulated crash should stop the run")
        } catch is SimulatedCrash {}
        XCTAssertEqual(ps.map { $0.done.count }, [0, 0, 0], "nobody heard the decision before the crash")

        // Another coordinator sharing the Redis has nothing to recover: t1 is a's.
        let other = try await coordinator("b").recover()
        XCTAssertEqual(other.count, 0)
        XCTAssertEqual(ps.map { $0.done.count }, [0, 0, 0])

        // a's successor finishes it as the log says.
        let successor = coordinator("a")
        let unfinished = try await successor.log.unfinished()
        XCTAssertEqual(unfinished.map(\.state), [.committing])
        XCTAssertEqual(unfinished.first?.participants, ["p0", "p1", "p2"])
        let outcomes = try await successor.recover()
        XCTAssertEqual(outcomes.map(\.committed), [true])
        XCTAssertEqual(ps.map { $0.done["t1"] ?? [] }, [[1], [2], [3]])
        let final = try await successor.log.find("t1")
        XCTAssertEqual(final?.state, .committed)

        // A normal run through the Redis log.
        let outcome = try await coordinator("a").run(id: "t2", participants: ps)
        XCTAssertTrue(outcome.committed)
        let left = try await coordinator("a").log.unfinished()
        XCTAssertEqual(left, [])
    }

    func testRefusesARedisThatDoesNotPersistEveryWrite() async throws {
        let redis = try Redis()
        let loop = try EventLoop()
        addTeardownBlock {
            redis.kill()
            loop.shutdown()
        }
        let log = RedisDecisionLog(endpoint: RedisEndpoint.parse("redis://127.0.0.1:\(redis.port)")!, keyPrefix: "test:", coordinatorId: "a", loop: loop)
        do {
            try await log.record(TransactionRecord(id: "t", participants: ["p"], state: .preparing))
            XCTFail("a Redis without appendfsync always is no place for decisions")
        } catch {
            XCTAssertTrue("\(error)".contains("appendfsync always"), "\(error)")
        }
    }
}
