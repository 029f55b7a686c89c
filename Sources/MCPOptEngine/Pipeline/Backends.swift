import MCPOptConfig
import MCPOptIO
import MCPOptJSON
import MCPOptProtocol
import MCPOptSync
import MCPOptUpstream

/// One configured server's warm connection: a supervised stdio process or a keep-alive HTTP
/// pool, each with one long-lived backend session (no handshake per call), and a bound on how
/// many requests it is given at once (more wait in a bounded queue, then get "overloaded").
final class Backend: @unchecked Sendable {
    let server: ServerConfig
    let upstream: any MCPUpstream
    private let limiter: ConcurrencyLimiter
    /// Bumped for each request refused because the queue was full.
    private let overloads: AtomicCounter

    /// What a backend session can do for its server when requests are relayed to clients.
    static let relayedCapabilities: JSONValue = ["sampling": [:], "elicitation": [:], "roots": ["listChanged": false]]

    /// How low-priority requests are batched, and the counters of what was sent.
    struct Batching {
        var maxSize: Int
        var window: Duration
        var batches: AtomicCounter
        var requests: AtomicCounter
    }

    /// Low-priority requests go in batches (nil: batching is off).
    let batcher: RequestBatcher?

    init(server: ServerConfig, loop: EventLoop, overloads: AtomicCounter, relayServerRequests: Bool = false,
         batching: Batching? = nil) {
        self.server = server
        self.overloads = overloads
        let identity = ClientSession.Identity(capabilities: relayServerRequests ? Self.relayedCapabilities : [:])
        let mode: ClientSession.Mode = switch server.protocolEra {
        case .auto: .auto
        case .handshake: .handshake
        case .modern: .modern
        }
        switch server.transport {
        case .stdio(let command, let args, let env, let cwd):
            var environment: [String: String] = [:]
            for variable in env { environment[variable.name] = variable.value }
            upstream = StdioUpstream(command: StdioCommand(command: command, arguments: args, environment: environment, workingDirectory: cwd), loop: loop,
                                     mode: mode, identity: identity)
        case .http(let url, let headers):
            upstream = HTTPUpstream(endpoint: .init(host: url.host, port: url.port, path: url.path),
                                    headers: headers.map { ($0.name, $0.value) }, loop: loop,
                                    mode: mode, maxConnections: min(server.maxConcurrency, 32), identity: identity,
                                    tls: url.tls ? TLSOptions(caFile: server.caFile, clientCertificate: server.clientCert, clientKey: server.clientKey) : nil)
        }
        limiter = ConcurrencyLimiter(limit: server.maxConcurrency, queueLimit: server.maxConcurrency * 64)
        let made = upstream
        batcher = batching.map { RequestBatcher(upstream: made, maxSize: $0.maxSize, window: $0.window, batches: $0.batches, requests: $0.requests) }
    }

    var name: String { server.name }
    var version: ProtocolVersion? { upstream.version }

    func start(onNotification: @escaping @Sendable (String, [UInt8]) -> Void, onServerRequest: ServerRequestHandler? = nil) {
        upstream.onNotification(onNotification)
        upstream.onServerRequest(onServerRequest)
        upstream.start()
    }

    /// The whole JSON-RPC response, or why there is none.
    /// Waits its turn when the server is busy: by priority, then fairly between tenants.
    func request(_ request: UpstreamRequest, timeout: Duration, tenant: String = "", priority: Priority = .normal,
                 cancellable: Bool = false) async throws(UpstreamError) -> [UInt8] {
        guard await limiter.acquire(tenant: tenant, priority: priority) else {
            overloads.add()
            throw UpstreamError(.closed, "server \"\(name)\" is overloaded: \(server.maxConcurrency) requests in flight and the queue is full")
        }
        defer { limiter.release() }
        if priority == .low, let batcher { return try await batcher.submit(request, timeout: timeout).get() }
        return try await upstream.request(request, timeout: timeout, cancellable: cancellable)
    }

    func shutdown() async { await upstream.shutdown(grace: .seconds(1)) }
}

/// At most `limit` holders; up to `queueLimit` more wait; past that, `acquire` answers false
/// at once (a clear overload error instead of an unbounded queue). Waiters are served by
/// priority (critical first), and within a priority round-robin between tenants, in arrival
/// order for each: one tenant's flood cannot make another wait behind all of it.
final class ConcurrencyLimiter: @unchecked Sendable {
    /// Waiters of one priority: a FIFO per tenant, and the tenants' turn order.
    private struct Level {
        var waiting: [String: [CheckedContinuation<Bool, Never>]] = [:]
        var turns: [String] = []
        var next = 0
        var count = 0

        mutating func push(_ tenant: String, _ c: CheckedContinuation<Bool, Never>) {
            if waiting[tenant, default: []].isEmpty { turns.append(tenant) }
            waiting[tenant, default: []].append(c)
            count += 1
        }

        mutating func pop() -> CheckedContinuation<Bool, Never>? {
            guard count > 0, !turns.isEmpty else { return nil }
            if next >= turns.count { next = 0 }
            let tenant = turns[next]
            var fifo = waiting[tenant] ?? []
            let c = fifo.removeFirst()
            count -= 1
            if fifo.isEmpty {
                waiting[tenant] = nil
                turns.remove(at: next)   // the turn passes to whoever came after it
            } else {
                waiting[tenant] = fifo
                next += 1
            }
            return c
        }
    }

    private let lock = Lock()
    private let limit: Int
    private let queueLimit: Int
    @exclusivity(unchecked) private var active = 0                                            // guarded by lock
    @exclusivity(unchecked) private var levels = [Level](repeating: Level(), count: 4)        // guarded by lock: critical...low
    @exclusivity(unchecked) private var queued = 0                                            // guarded by lock

    init(limit: Int, queueLimit: Int) {
        self.limit = max(1, limit)
        self.queueLimit = max(0, queueLimit)
    }

    /// Requests waiting now.
    var waiting: Int { lock.withLock { queued } }

    static func level(_ p: Priority) -> Int {
        switch p {
        case .critical: 0
        case .high: 1
        case .normal: 2
        case .low: 3
        }
    }

    func acquire(tenant: String = "", priority: Priority = .normal) async -> Bool {
        enum Fast { case granted, refused, wait }
        let fast: Fast = lock.withLock {
            if active < limit { active += 1; return .granted }
            return queued >= queueLimit ? .refused : .wait
        }
        switch fast {
        case .granted: return true
        case .refused: return false
        case .wait:
            return await withCheckedContinuation { continuation in
                let now: Bool? = lock.withLock {
                    if active < limit { active += 1; return true }
                    if queued >= queueLimit { return false }
                    levels[Self.level(priority)].push(tenant, continuation)
                    queued += 1
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        }
    }

    func release() {
        let next: CheckedContinuation<Bool, Never>? = lock.withLock {
            // Nobody waiting (the usual case): no need to look through the levels.
            if queued == 0 {
                active -= 1
                return nil
            }
            for i in levels.indices where levels[i].count > 0 {
                if let c = levels[i].pop() {
                    queued -= 1
                    return c   // the slot passes to the waiter: `active` stays
                }
            }
            active -= 1
            return nil
        }
        next?.resume(returning: true)
    }
}
