import Foundation
import XCTest
import MCPOptSync
@testable import MCPOptCoordination

/// A participant in memory: a value it stages in prepare and makes visible on commit.
final class MemoryParticipant: TransactionParticipant, @unchecked Sendable {
    let id: String
    private let lock = Lock()
    private var staged: [String: [UInt8]] = [:]
    private(set) var committed: [String: [UInt8]] = [:]
    private(set) var aborted: Set<String> = []
    var vote: Vote = .yes
    var prepareDelay: Duration = .zero
    var failCommits = 0
    private(set) var commitCalls = 0

    init(_ id: String) { self.id = id }

    func prepare(transaction: String, payload: [UInt8]?) async throws -> Vote {
        if prepareDelay > .zero { try await Task.sleep(for: prepareDelay) }
        lock.withLock { staged[transaction] = payload ?? [] }
        return vote
    }

    struct Unreachable: Error {}

    func commit(transaction: String) async throws {
        let reachable = lock.withLock { () -> Bool in
            commitCalls += 1
            if failCommits > 0 {
                failCommits -= 1
                return false
            }
            if let value = staged.removeValue(forKey: transaction) { committed[transaction] = value }
            return true
        }
        if !reachable { throw Unreachable() }
    }

    func abort(transaction: String) async throws {
        lock.withLock { () -> Void in
            staged[transaction] = nil
            aborted.insert(transaction)
        }
    }

    var state: (committed: Set<String>, aborted: Set<String>) { lock.withLock { (Set(committed.keys), aborted) } }
}

struct SimulatedCrash: Error {}

final class TwoPhaseCommitTests: XCTestCase {
    var directory: URL!

    override func setUp() {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("mcpopt-2pc-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: directory) }

    func coordinator(_ participants: [MemoryParticipant], timeout: Duration = .seconds(5), crash: Bool = false) throws -> TransactionCoordinator {
        let log = try SQLiteDecisionLog(path: directory.appendingPathComponent("decisions.db").path)
        let byID: [String: MemoryParticipant] = Dictionary(uniqueKeysWithValues: participants.map { ($0.id, $0) })
        let resolve: @Sendable (String) -> (any TransactionParticipant)? = { byID[$0] }
        var hook: (@Sendable (String) throws -> Void)?
        if crash { hook = { (_: String) throws -> Void in throw SimulatedCrash() } }
        return TransactionCoordinator(log: log, timeout: timeout, participants: resolve, afterDecision: hook)
    }

    func testCommitAcrossThreeAndTen() async throws {
        for count in [3, 10] {
            let ps = (0..<count).map { MemoryParticipant("p\($0)") }
            let outcome = try await coordinator(ps).run(id: "tx\(count)", participants: ps, payloads: Dictionary(uniqueKeysWithValues: ps.map { ($0.id, Array($0.id.utf8)) }))
            XCTAssertTrue(outcome.committed)
            XCTAssertEqual(outcome.unacknowledged, [])
            for p in ps { XCTAssertEqual(p.committed["tx\(count)"], Array(p.id.utf8)) }
            let found = try await coordinator(ps).log.find("tx\(count)")
            XCTAssertEqual(found?.state, .committed)
        }
    }

    func testOneNoVoteAbortsEveryone() async throws {
        let ps = (0..<4).map { MemoryParticipant("p\($0)") }
        ps[2].vote = .no("constraint violated")
        let outcome = try await coordinator(ps).run(id: "t", participants: ps)
        XCTAssertFalse(outcome.committed)
        XCTAssertEqual(outcome.reason, "p2 voted no: constraint violated")
        for p in ps {
            XCTAssertEqual(p.state.committed, [])
            XCTAssertEqual(p.state.aborted, ["t"])
        }
    }

    func testPrepareTimeoutAborts() async throws {
        let ps = [MemoryParticipant("fast"), MemoryParticipant("stuck")]
        ps[1].prepareDelay = .seconds(30)
        let outcome = try await coordinator(ps, timeout: .milliseconds(100)).run(id: "t", participants: ps)
        XCTAssertFalse(outcome.committed)
        XCTAssertTrue(outcome.reason?.contains("timed out") == true, outcome.reason ?? "")
        XCTAssertEqual(ps[0].state.aborted, ["t"])
    }

    /// The coordinator dies between the durable decision and telling anyone: after a restart
    /// every participant ends committed, as the log says.
    func testCrashAfterDecisionRecoversToCommitted() async throws {
        let ps = (0..<3).map { MemoryParticipant("p\($0)") }
        do {
            _ = try await coordinator(ps, crash: true).run(id: "t", participants: ps, payloads: ["p0": [1], "p1": [2], "p2": [3]])
            XCTFail("the simulated crash should stop the run")
        } catch is SimulatedCrash {}
        for p in ps { XCTAssertEqual(p.state.committed, [], "nobody heard the decision before the crash") }
        let restarted = try coordinator(ps)
        let unfinished = try await restarted.log.unfinished()
        XCTAssertEqual(unfinished.map(\.state), [.committing])
        let outcomes = try await restarted.recover()
        XCTAssertEqual(outcomes.map(\.committed), [true])
        XCTAssertEqual(ps.map { $0.committed["t"] ?? [] }, [[1], [2], [3]])
        let final = try await restarted.log.find("t")
        XCTAssertEqual(final?.state, .committed)
        let left = try await restarted.log.unfinished()
        XCTAssertEqual(left, [])
    }

    func testCrashBeforeDecisionRecoversToAborted() async throws {
        let ps = (0..<2).map { MemoryParticipant("p\($0)") }
        let log = try SQLiteDecisionLog(path: directory.appendingPathComponent("decisions.db").path)
        try await log.record(TransactionRecord(id: "t", participants: ["p0", "p1"], state: .preparing))
        let outcomes = try await coordinator(ps).recover()
        XCTAssertEqual(outcomes.map(\.committed), [false])
        for p in ps { XCTAssertEqual(p.state.aborted, ["t"]) }
        let found = try await log.find("t")
        XCTAssertEqual(found?.state, .aborted)
    }

    func testUnreachableParticipantStaysInDoubtUntilRecovery() async throws {
        let ps = (0..<2).map { MemoryParticipant("p\($0)") }
        ps[1].failCommits = 10
        let outcome = try await coordinator(ps).run(id: "t", participants: ps)
        XCTAssertTrue(outcome.committed)
        XCTAssertEqual(outcome.unacknowledged, ["p1"])
        let inDoubt = try await coordinator(ps).log.find("t")
        XCTAssertEqual(inDoubt?.state, .committing)
        ps[1].failCommits = 0
        let recovered = try await coordinator(ps).recover()
        XCTAssertEqual(recovered.first?.unacknowledged, [])
        XCTAssertEqual(ps[1].state.committed, ["t"])
        let done = try await coordinator(ps).log.find("t")
        XCTAssertEqual(done?.state, .committed)
    }

    func testLogRefusesAnUnwritablePath() {
        XCTAssertThrowsError(try SQLiteDecisionLog(path: "/proc/nope/decisions.db"))
    }
}
