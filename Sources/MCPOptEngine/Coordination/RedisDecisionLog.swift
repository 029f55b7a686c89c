import MCPOptCoordination
import MCPOptIO
import MCPOptRedis
import MCPOptSync

/// The two-phase-commit decision log in Redis, for engine instances that share one: a hash per
/// coordinator (`<prefix>tx:<coordinatorId>`: transaction id -> `<seq>|<state>|<participants>`),
/// so any host that takes over a coordinator's id (its restart, or a replacement) recovers its
/// transactions, and two live coordinators never recover each other's.
///
/// Durable means what Redis's persistence makes it: a decision survives a Redis crash only
/// with `appendonly yes` and `appendfsync always`. The log checks that when it first connects
/// and refuses to run otherwise (unless Redis does not allow CONFIG, which is then trusted).
final class RedisDecisionLog: DecisionLog, @unchecked Sendable {
    let endpoint: RedisEndpoint
    private let loop: EventLoop
    private let hashKey: [UInt8]
    private let seqKey: [UInt8]
    private let timeout: Duration = .seconds(2)
    private let lock = Lock()
    private var connection: RedisConnection?     // guarded by lock

    init(endpoint: RedisEndpoint, keyPrefix: String, coordinatorId: String, loop: EventLoop) {
        self.endpoint = endpoint
        self.loop = loop
        hashKey = Array("\(keyPrefix)tx:\(coordinatorId)".utf8)
        seqKey = Array("\(keyPrefix)tx:\(coordinatorId):seq".utf8)
    }

    func close() { lock.withLock { connection }?.close() }

    private func connected() async throws -> RedisConnection {
        if let c = lock.withLock({ connection }) { return c }
        let c = RedisConnection(endpoint: endpoint, loop: loop)
        try await c.connect(timeout: timeout, onClose: { [weak self, weak c] _ in
            guard let self else { return }
            self.lock.withLock { if self.connection === c { self.connection = nil } }
        })
        // A decision log that Redis may lose is no decision log.
        let replies = try await c.pipeline([[word("CONFIG"), word("GET"), word("appendonly")], [word("CONFIG"), word("GET"), word("appendfsync")]], timeout: timeout)
        if case .array(let a) = replies[0], a.count == 2, case .array(let f) = replies[1], f.count == 2 {
            guard a[1].string == "yes", f[1].string == "always" else {
                c.close()
                throw DecisionLogError(description: "Redis at \(endpoint.description) does not persist every write (appendonly \(a[1].string ?? "?"), appendfsync \(f[1].string ?? "?")): a decision log there needs appendonly yes and appendfsync always")
            }
        }
        lock.withLock { connection = c }
        return c
    }

    func record(_ t: TransactionRecord, durable: Bool) async throws {
        let c = try await connected()
        // The sequence orders unfinished transactions oldest first; it is taken once, when the
        // transaction is first recorded, and kept by later states.
        let existing = try await c.command([word("HGET"), hashKey, Array(t.id.utf8)], timeout: timeout)
        let seq: Int64
        if let old = existing.string.flatMap(Self.decode) {
            seq = old.seq
        } else {
            guard case .integer(let n) = try await c.command([word("INCR"), seqKey], timeout: timeout) else {
                throw DecisionLogError(description: "Redis did not count the transaction")
            }
            seq = n
        }
        let value = "\(seq)|\(t.state.rawValue)|\(t.participants.joined(separator: "\u{1F}"))"
        let reply = try await c.command([word("HSET"), hashKey, Array(t.id.utf8), Array(value.utf8)], timeout: timeout)
        if case .error(let message) = reply { throw DecisionLogError(description: "decision log write failed: \(message)") }
    }

    func unfinished() async throws -> [TransactionRecord] {
        let c = try await connected()
        guard case .array(let items) = try await c.command([word("HGETALL"), hashKey], timeout: timeout) else { return [] }
        var found: [(Int64, TransactionRecord)] = []
        var i = 0
        while i + 1 < items.count {
            if let id = items[i].string, let entry = items[i + 1].string.flatMap(Self.decode),
               [.preparing, .committing, .aborting].contains(entry.state) {
                found.append((entry.seq, TransactionRecord(id: id, participants: entry.participants, state: entry.state)))
            }
            i += 2
        }
        return found.sorted { $0.0 < $1.0 }.map(\.1)
    }

    func find(_ id: String) async throws -> TransactionRecord? {
        let c = try await connected()
        let reply = try await c.command([word("HGET"), hashKey, Array(id.utf8)], timeout: timeout)
        return reply.string.flatMap(Self.decode).map { TransactionRecord(id: id, participants: $0.participants, state: $0.state) }
    }

    static func decode(_ text: String) -> (seq: Int64, state: TransactionState, participants: [String])? {
        let parts = text.split(separator: "|", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, let seq = Int64(parts[0]), let state = TransactionState(rawValue: String(parts[1])) else { return nil }
        return (seq, state, parts[2].split(separator: "\u{1F}").map(String.init))
    }
}

private func word(_ s: String) -> [UInt8] { Array(s.utf8) }
