import Glibc
import MCPOptConfig
import MCPOptCoordination
import MCPOptJSON
import MCPOptSync

/// One call of a multi-server operation: which tool on which server, with what arguments.
public struct ServerCall: Sendable, Equatable {
    public var server: String
    public var tool: String
    public var arguments: JSONValue
    public init(server: String, tool: String, arguments: JSONValue = .object(JSONObject())) {
        self.server = server
        self.tool = tool
        self.arguments = arguments
    }
}

/// How to run a coordinated operation.
public struct CoordinationCallOptions: Sendable {
    public enum Mode: String, Sendable, CaseIterable {
        /// Call every server (bounded concurrency), decide by `policy`.
        case fanOut = "fanout"
        /// Two-phase commit: every server is a participant (docs/COORDINATION.md).
        case transaction
    }
    public var mode: Mode = .fanOut
    public var policy: FanOutPolicy = .all
    /// Calls in flight at once (default `coordination.fanOutConcurrency`).
    public var concurrency: Int?
    /// Per-server timeout (fan-out), or the prepare timeout (transactions; default
    /// `coordination.transactionTimeout`).
    public var timeout: Duration?
    /// A transaction's id (default: the operation's name and a random suffix).
    public var transactionId: String?
    public var agent: String?
    public init() {}
}

public struct CoordinationError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable { case invalidArgument, disabled, log }
    public let kind: Kind
    public let description: String
}

/// The outcome of a coordinated operation, as the C ABI and bindings report it.
public struct CoordinationReport: Sendable {
    public var operation: String
    public var mode: CoordinationCallOptions.Mode
    public var success: Bool
    public var fanOut: FanOutResult?
    public var transaction: TransactionOutcome?
    public var duration: Duration

    public var json: JSONValue {
        var o: JSONObject = ["operation": .string(operation), "mode": .string(mode.rawValue), "success": .bool(success),
                             "durationMs": .double(duration.milliseconds)]
        if let f = fanOut {
            o["policy"] = .string(f.policy.description)
            o["size"] = .int(Int64(f.size))
            o["succeeded"] = .int(Int64(f.succeeded))
            o["failed"] = .int(Int64(f.failed))
            o["results"] = .object(JSONObject(f.entries.map { e in
                var r: JSONObject = ["status": .string(e.status.rawValue), "success": .bool(e.status == .success),
                                     "latencyMs": .double(e.latency.milliseconds)]
                if let bytes = e.result { r["result"] = (try? JSONParser.parse(bytes)) ?? .null }
                if let error = e.error { r["error"] = .string(error) }
                return (key: e.target, value: .object(r))
            }))
        }
        if let t = transaction {
            o["transactionId"] = .string(t.id)
            o["committed"] = .bool(t.committed)
            o["reason"] = t.reason.map { .string($0) } ?? .null
            o["unacknowledged"] = .array(t.unacknowledged.map { .string($0) })
        }
        return .object(o)
    }
}

/// The engine's coordination state: the transaction coordinator (made on first use, so an
/// engine that never runs a transaction opens no log) and the figures for the metrics.
final class EngineCoordination: @unchecked Sendable {
    let options: CoordinationOptions
    private let lock = Lock()
    private var coordinator: TransactionCoordinator?     // guarded by lock
    private var stateReplicator: StateReplicator?        // guarded by lock
    var replicator: StateReplicator? { lock.withLock { stateReplicator } }
    func setReplicator(_ r: StateReplicator?) { lock.withLock { stateReplicator = r } }
    let fanOuts = AtomicCounter()
    let fanOutCalls = AtomicCounter()
    let transactionsStarted = AtomicCounter()
    let transactionsCommitted = AtomicCounter()
    let transactionsAborted = AtomicCounter()
    let transactionsInDoubt = AtomicCounter()
    let recovered = AtomicCounter()
    /// Test hook (MCPOPT_TEST_CRASH_AFTER_DECISION=1): the process exits right after a decision
    /// is durable and before any participant hears it: the crash recovery exists for.
    private let crashAfterDecision = getenv("MCPOPT_TEST_CRASH_AFTER_DECISION").map { String(cString: $0) == "1" } ?? false

    init(_ options: CoordinationOptions) { self.options = options }

    private var startRecovery: Task<Void, Never>?       // guarded by lock

    private var startOutcomes: [TransactionOutcome] = [] // guarded by lock: not yet reported

    /// Recovery when the engine starts: once; later callers wait for the same run. What it
    /// finished is kept for the next `recoverTransactions` to report.
    func recoverAtStart(_ engine: Engine) async {
        let task = lock.withLock { () -> Task<Void, Never> in
            if let startRecovery { return startRecovery }
            let made = Task { [self] in
                let outcomes = (try? await engine.recoverUnfinished()) ?? []
                lock.withLock { startOutcomes += outcomes }
            }
            startRecovery = made
            return made
        }
        await task.value
    }

    /// What the start's recovery finished, once.
    func takeStartOutcomes() -> [TransactionOutcome] {
        lock.withLock {
            defer { startOutcomes = [] }
            return startOutcomes
        }
    }

    func coordinator(_ engine: Engine) throws(CoordinationError) -> TransactionCoordinator {
        try lock.withLock { () throws(CoordinationError) -> TransactionCoordinator in
            if let coordinator { return coordinator }
            guard options.enableDistributedTransactions else {
                throw CoordinationError(kind: .disabled, description: "distributed transactions are off: set coordination.enableDistributedTransactions to true")
            }
            let made = TransactionCoordinator(
                log: try makeLog(engine), timeout: options.transactionTimeout,
                participants: { [weak engine] id in
                    guard let engine, engine.config.activeServers.contains(where: { $0.name == id }) else { return nil }
                    return ServerParticipant(engine: engine, server: id)
                },
                afterDecision: crashAfterDecision ? { @Sendable _ in _exit(70) } : nil)
            coordinator = made
            return made
        }
    }

    /// SQLite at `transactionLog`, or the shared Redis when it says "redis".
    private func makeLog(_ engine: Engine) throws(CoordinationError) -> any DecisionLog {
        guard options.transactionLog == "redis" else {
            do {
                return try SQLiteDecisionLog(path: options.transactionLog)
            } catch {
                throw CoordinationError(kind: .log, description: "\(error)")
            }
        }
        guard let endpoint = engine.stateRedis else {
            throw CoordinationError(kind: .log, description: "coordination.transactionLog is \"redis\" but no Redis is configured (coordination.redisUrl or caching.distributed)")
        }
        guard let loop = engine.runtime.eventLoop else {
            throw CoordinationError(kind: .log, description: "the engine's I/O loop is not running (start the engine first)")
        }
        let id = options.coordinatorId ?? Self.hostName()
        return RedisDecisionLog(endpoint: endpoint, keyPrefix: engine.config.caching.distributed?.keyPrefix ?? "mcpopt:", coordinatorId: id, loop: loop)
    }

    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension Engine {
    /// Runs `operation` (a tool name) on every one of `servers` with the same arguments (`data`):
    /// a fan-out decided by `options.policy`, or, with `mode: .transaction`, a two-phase commit
    /// in which `data` is each participant's prepare payload. The seed's
    /// `coordinator.coordinateOperation('sync-operation', ['server-1', 'server-2'], data)`.
    public func coordinateOperation(_ operation: String, servers: [String], data: JSONValue = .object(JSONObject()),
                                    options: CoordinationCallOptions = .init()) async throws(CoordinationError) -> CoordinationReport {
        try await coordinateMultiServerOperation(operation, calls: servers.map { ServerCall(server: $0, tool: operation, arguments: data) }, options: options)
    }

    /// A multi-server operation whose calls differ per server (tool and arguments). In
    /// transaction mode the tools are ignored: each call's arguments are its prepare payload.
    public func coordinateMultiServerOperation(_ operation: String, calls: [ServerCall],
                                               options: CoordinationCallOptions = .init()) async throws(CoordinationError) -> CoordinationReport {
        guard !operation.isEmpty else { throw CoordinationError(kind: .invalidArgument, description: "the operation has no name") }
        guard !calls.isEmpty else { throw CoordinationError(kind: .invalidArgument, description: "no servers to run \"\(operation)\" on") }
        var seen = Set<String>()
        for call in calls {
            guard config.activeServers.contains(where: { $0.name == call.server }) else {
                throw CoordinationError(kind: .invalidArgument, description: "unknown server \"\(call.server)\" (configured: \(config.activeServers.map(\.name).joined(separator: ", ")))")
            }
            guard seen.insert(call.server).inserted else {
                throw CoordinationError(kind: .invalidArgument, description: "server \"\(call.server)\" is named twice")
            }
        }
        if case .quorum(let n) = options.policy, n < 1 || n > calls.count {
            throw CoordinationError(kind: .invalidArgument, description: "a quorum of \(n) is not between 1 and the \(calls.count) servers")
        }
        if !runtime.isReady { await start() }
        let started = ContinuousClock.now
        switch options.mode {
        case .fanOut:
            let result = await fanOut(calls, options)
            return CoordinationReport(operation: operation, mode: .fanOut, success: result.success, fanOut: result, duration: ContinuousClock.now - started)
        case .transaction:
            let outcome = try await transaction(operation, calls, options)
            return CoordinationReport(operation: operation, mode: .transaction, success: outcome.committed, transaction: outcome, duration: ContinuousClock.now - started)
        }
    }

    /// Finishes the transactions the decision log left unfinished (after a crash): undecided
    /// ones abort, decided ones are told again. `start` runs it when transactions are enabled;
    /// what that run finished is included in the first answer after it.
    @discardableResult
    public func recoverTransactions() async throws(CoordinationError) -> [TransactionOutcome] {
        guard config.coordination.enableDistributedTransactions else { _ = try coordination.coordinator(self); return [] }
        await start()   // which recovers once
        return coordination.takeStartOutcomes() + (try await recoverUnfinished())
    }

    fileprivate func recoverUnfinished() async throws(CoordinationError) -> [TransactionOutcome] {
        let coordinator = try coordination.coordinator(self)
        let outcomes: [TransactionOutcome]
        do {
            outcomes = try await coordinator.recover()
        } catch {
            throw CoordinationError(kind: .log, description: "recovery: \(error)")
        }
        coordination.recovered.add(UInt64(outcomes.count))
        return outcomes
    }

    private func fanOut(_ calls: [ServerCall], _ options: CoordinationCallOptions) async -> FanOutResult {
        coordination.fanOuts.add()
        coordination.fanOutCalls.add(UInt64(calls.count))
        let byServer = Dictionary(uniqueKeysWithValues: calls.map { ($0.server, $0) })
        let timeout = options.timeout ?? config.optimization.requestTimeout
        let agent = options.agent
        return await FanOut.run(targets: calls.map(\.server), policy: options.policy,
                                concurrency: options.concurrency ?? config.coordination.fanOutConcurrency, timeout: timeout) { [self] server in
            let call = byServer[server]!
            return await callTool(call.tool, arguments: call.arguments, on: server, timeout: timeout, agent: agent)
        }
    }

    private func transaction(_ operation: String, _ calls: [ServerCall], _ options: CoordinationCallOptions) async throws(CoordinationError) -> TransactionOutcome {
        let coordinator = try coordination.coordinator(self)
        let id = options.transactionId ?? "\(operation)-\(String(UInt64.random(in: 0...UInt64.max), radix: 16))"
        let timeout = options.timeout ?? config.coordination.transactionTimeout
        let participants: [any TransactionParticipant] = calls.map { ServerParticipant(engine: self, server: $0.server, timeout: timeout) }
        var payloads: [String: [UInt8]] = [:]
        for call in calls { payloads[call.server] = Array(call.arguments.jsonString.utf8) }
        coordination.transactionsStarted.add()
        let outcome: TransactionOutcome
        do {
            outcome = try await coordinator.run(id: id, participants: participants, payloads: payloads, timeout: timeout)
        } catch {
            throw CoordinationError(kind: .log, description: "transaction \(id): \(error)")
        }
        (outcome.committed ? coordination.transactionsCommitted : coordination.transactionsAborted).add()
        if !outcome.unacknowledged.isEmpty { coordination.transactionsInDoubt.add() }
        return outcome
    }

    /// One `tools/call` pinned to `server`, its answer reduced to success, result and error.
    func callTool(_ tool: String, arguments: JSONValue, on server: String, timeout: Duration, agent: String? = nil) async -> FanOutAnswer {
        let request: JSONValue = ["jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                  "params": ["name": .string(tool), "arguments": arguments]]
        var options = OptimizeOptions(agent: agent, servers: [server], timeout: timeout)
        options.bypassCache = false
        let response = await optimizeRequest(Array(request.jsonString.utf8), options)
        guard let message = try? JSONParser.parse(response.message) else {
            return FanOutAnswer(success: false, error: response.error ?? "unreadable response")
        }
        if let error = message["error"] {
            return FanOutAnswer(success: false, error: error["message"]?.stringValue ?? response.error ?? "error")
        }
        guard let result = message["result"] else { return FanOutAnswer(success: false, error: "no result") }
        let bytes = Array(result.jsonString.utf8)
        if result["isError"]?.boolValue == true {
            let text = result["content"]?.arrayValue?.first?["text"]?.stringValue ?? "the tool reported an error"
            return FanOutAnswer(success: false, result: bytes, error: text)
        }
        return FanOutAnswer(success: true, result: bytes)
    }
}

/// A server that follows the participant convention (tools tx_prepare, tx_commit, tx_abort),
/// reached through the engine's request path pinned to it.
struct ServerParticipant: TransactionParticipant {
    let engine: Engine
    let server: String
    /// The transaction's prepare timeout. The coordinator's deadline enforces it; the call
    /// itself is bounded a second later, so the two equal timers never race and a slow
    /// participant is always reported as the prepare timing out (the coordinator cancels the
    /// call when its deadline passes).
    var timeout: Duration = .seconds(30)
    private var callTimeout: Duration { timeout + .seconds(1) }
    var id: String { server }
    /// Bounds a commit or abort: the request timeout, not the prepare's (a participant still
    /// busy with a late prepare must still hear the abort).
    private var decisionTimeout: Duration { engine.config.optimization.requestTimeout }

    struct Refused: Error, CustomStringConvertible {
        let description: String
    }

    /// A tool result's structured answer: `structuredContent`, else the first text content as JSON.
    private static func answer(_ a: FanOutAnswer) -> JSONValue? {
        guard let bytes = a.result, let result = try? JSONParser.parse(bytes) else { return nil }
        if let structured = result["structuredContent"], case .object = structured { return structured }
        if let text = result["content"]?.arrayValue?.first?["text"]?.stringValue { return try? JSONParser.parse(text) }
        return nil
    }

    func prepare(transaction: String, payload: [UInt8]?) async throws -> Vote {
        let payloadValue = payload.flatMap { try? JSONParser.parse($0) } ?? .null
        let a = await engine.callTool("tx_prepare", arguments: ["transaction_id": .string(transaction), "payload": payloadValue], on: server, timeout: callTimeout)
        guard a.success else { throw Refused(description: a.error ?? "tx_prepare failed") }
        let answer = Self.answer(a)
        guard let vote = answer?["vote"]?.stringValue else { throw Refused(description: "tx_prepare answered without a vote") }
        return vote == "yes" ? .yes : .no(answer?["reason"]?.stringValue ?? "no reason given")
    }

    func commit(transaction: String) async throws { try await decide("tx_commit", transaction, expect: "committed") }
    func abort(transaction: String) async throws { try await decide("tx_abort", transaction, expect: "aborted") }

    private func decide(_ tool: String, _ transaction: String, expect: String) async throws {
        let a = await engine.callTool(tool, arguments: ["transaction_id": .string(transaction)], on: server, timeout: decisionTimeout)
        guard a.success else { throw Refused(description: a.error ?? "\(tool) failed") }
        guard Self.answer(a)?["state"]?.stringValue == expect else { throw Refused(description: "\(tool) did not answer \(expect)") }
    }
}
