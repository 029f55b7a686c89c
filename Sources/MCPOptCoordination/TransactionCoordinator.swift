/// A participant's answer to prepare.
public enum Vote: Sendable, Equatable {
    case yes
    case no(String)
}

/// One party to a two-phase commit. MCP has no transaction primitive, so participants are MCP
/// servers following a small convention (docs/COORDINATION.md: tools `tx_prepare`, `tx_commit`,
/// `tx_abort` taking a transaction id); the engine adapts them to this protocol. Commit and abort
/// must be idempotent: after a crash the coordinator may send them again.
public protocol TransactionParticipant: Sendable {
    var id: String { get }
    func prepare(transaction: String, payload: [UInt8]?) async throws -> Vote
    func commit(transaction: String) async throws
    func abort(transaction: String) async throws
}

public struct TransactionOutcome: Sendable, Equatable {
    public var id: String
    public var committed: Bool
    /// Why it aborted (the first no-vote, error or timeout), nil when committed.
    public var reason: String?
    /// Participants that have not acknowledged the decision yet (recovery will retry them).
    public var unacknowledged: [String]
}

/// Two-phase commit with presumed abort: prepare every participant, make the decision durable
/// in the log, then tell everyone. After a crash, `recover()` finishes what the log says:
/// undecided transactions abort, decided ones are re-sent their decision until acknowledged.
public final class TransactionCoordinator: Sendable {
    public let log: any DecisionLog
    public let timeout: Duration
    /// Attempts to deliver a decision before leaving it to recovery.
    public let deliveryAttempts: Int
    private let resolve: @Sendable (String) -> (any TransactionParticipant)?
    /// Test hook: runs after the decision is durable and before anyone hears it (a crash there
    /// is the case recovery exists for).
    private let afterDecision: (@Sendable (String) throws -> Void)?

    public init(log: any DecisionLog, timeout: Duration, deliveryAttempts: Int = 3,
                participants resolve: @escaping @Sendable (String) -> (any TransactionParticipant)?,
                afterDecision: (@Sendable (String) throws -> Void)? = nil)
    {
        self.log = log
        self.timeout = timeout
        self.deliveryAttempts = max(1, deliveryAttempts)
        self.resolve = resolve
        self.afterDecision = afterDecision
    }

    /// Runs one transaction across `participants`, each with its own payload.
    /// `timeout` bounds the prepare phase (default: the coordinator's).
    public func run(id: String, participants: [any TransactionParticipant], payloads: [String: [UInt8]] = [:],
                    timeout: Duration? = nil) async throws -> TransactionOutcome {
        let ids = participants.map(\.id)
        try await log.record(TransactionRecord(id: id, participants: ids, state: .preparing))
        let failure = await prepareAll(id, participants, payloads, timeout: timeout ?? self.timeout)
        let commit = failure == nil
        try await log.record(TransactionRecord(id: id, participants: ids, state: commit ? .committing : .aborting))
        try afterDecision?(id)
        let pending = await deliver(id, commit: commit, to: participants)
        if pending.isEmpty {
            try await log.record(TransactionRecord(id: id, participants: ids, state: commit ? .committed : .aborted), durable: false)
        }
        return TransactionOutcome(id: id, committed: commit, reason: failure, unacknowledged: pending)
    }

    /// Finishes every transaction the log left unfinished (call at start).
    public func recover() async throws -> [TransactionOutcome] {
        var outcomes: [TransactionOutcome] = []
        for record in try await log.unfinished() {
            let commit = record.state == .committing
            if record.state == .preparing {
                // No decision was made: presumed abort, made durable before anyone hears it.
                try await log.record(TransactionRecord(id: record.id, participants: record.participants, state: .aborting))
            }
            var missing: [String] = []
            var found: [any TransactionParticipant] = []
            for id in record.participants {
                if let p = resolve(id) { found.append(p) } else { missing.append(id) }
            }
            let pending = await deliver(record.id, commit: commit, to: found) + missing
            if pending.isEmpty {
                try await log.record(TransactionRecord(id: record.id, participants: record.participants, state: commit ? .committed : .aborted))
            }
            outcomes.append(TransactionOutcome(id: record.id, committed: commit, reason: commit ? nil : "recovered after a crash: aborted", unacknowledged: pending))
        }
        return outcomes
    }

    /// Nil when everyone voted yes in time; otherwise why not.
    private func prepareAll(_ id: String, _ participants: [any TransactionParticipant], _ payloads: [String: [UInt8]], timeout: Duration) async -> String? {
        return await withTaskGroup(of: String?.self) { group in
            for p in participants {
                group.addTask {
                    do {
                        switch try await p.prepare(transaction: id, payload: payloads[p.id]) {
                        case .yes: return nil
                        case .no(let reason): return "\(p.id) voted no: \(reason)"
                        }
                    } catch {
                        return "\(p.id) failed to prepare: \(error)"
                    }
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return Task.isCancelled ? nil : "prepare timed out after \(timeout)"
            }
            var answered = 0
            for await result in group {
                if let result {
                    group.cancelAll()
                    return result
                }
                answered += 1
                if answered == participants.count {
                    group.cancelAll()
                    return nil
                }
            }
            return nil
        }
    }

    /// Sends the decision; returns the participants that never acknowledged it.
    private func deliver(_ id: String, commit: Bool, to participants: [any TransactionParticipant]) async -> [String] {
        let attempts = deliveryAttempts
        return await withTaskGroup(of: String?.self) { group in
            for p in participants {
                group.addTask {
                    for attempt in 0..<attempts {
                        do {
                            if commit { try await p.commit(transaction: id) } else { try await p.abort(transaction: id) }
                            return nil
                        } catch {
                            try? await Task.sleep(for: .milliseconds(10 << min(attempt, 6)))
                        }
                    }
                    return p.id
                }
            }
            var pending: [String] = []
            for await result in group { if let result { pending.append(result) } }
            return pending.sorted()
        }
    }
}
