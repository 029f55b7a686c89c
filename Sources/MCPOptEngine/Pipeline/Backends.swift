import MCPOptConfig
import MCPOptIO
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

    init(server: ServerConfig, loop: EventLoop, overloads: AtomicCounter) {
        self.server = server
        self.overloads = overloads
        switch server.transport {
        case .stdio(let command, let args, let env, let cwd):
            var environment: [String: String] = [:]
            for variable in env { environment[variable.name] = variable.value }
            upstream = StdioUpstream(command: StdioCommand(command: command, arguments: args, environment: environment, workingDirectory: cwd), loop: loop)
        case .http(let url, let headers):
            upstream = HTTPUpstream(endpoint: .init(host: url.host, port: url.port, path: url.path),
                                    headers: headers.map { ($0.name, $0.value) }, loop: loop,
                                    maxConnections: min(server.maxConcurrency, 32))
        }
        limiter = ConcurrencyLimiter(limit: server.maxConcurrency, queueLimit: server.maxConcurrency * 64)
    }

    var name: String { server.name }
    var version: ProtocolVersion? { upstream.version }

    func start(onNotification: @escaping @Sendable (String, [UInt8]) -> Void) {
        upstream.onNotification(onNotification)
        upstream.start()
    }

    /// The whole JSON-RPC response, or why there is none.
    func request(_ request: UpstreamRequest, timeout: Duration) async throws(UpstreamError) -> [UInt8] {
        guard await limiter.acquire() else {
            overloads.add()
            throw UpstreamError(.closed, "server \"\(name)\" is overloaded: \(server.maxConcurrency) requests in flight and the queue is full")
        }
        defer { limiter.release() }
        return try await upstream.request(request, timeout: timeout)
    }

    func shutdown() async { await upstream.shutdown(grace: .seconds(1)) }
}

/// At most `limit` holders; up to `queueLimit` more wait in arrival order; past that,
/// `acquire` answers false at once (a clear overload error instead of an unbounded queue).
final class ConcurrencyLimiter: @unchecked Sendable {
    private let lock = Lock()
    private let limit: Int
    private let queueLimit: Int
    private var active = 0                                         // guarded by lock
    private var queue: [CheckedContinuation<Bool, Never>] = []     // guarded by lock
    private var head = 0                                           // guarded by lock

    init(limit: Int, queueLimit: Int) {
        self.limit = max(1, limit)
        self.queueLimit = max(0, queueLimit)
    }

    func acquire() async -> Bool {
        enum Fast { case granted, refused, wait }
        let fast: Fast = lock.withLock {
            if active < limit { active += 1; return .granted }
            return queue.count - head >= queueLimit ? .refused : .wait
        }
        switch fast {
        case .granted: return true
        case .refused: return false
        case .wait:
            return await withCheckedContinuation { continuation in
                let now: Bool? = lock.withLock {
                    if active < limit { active += 1; return true }
                    if queue.count - head >= queueLimit { return false }
                    queue.append(continuation)
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        }
    }

    func release() {
        let next: CheckedContinuation<Bool, Never>? = lock.withLock {
            guard head < queue.count else {
                active -= 1
                return nil
            }
            let c = queue[head]
            head += 1
            if head > 64, head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            return c  // the slot passes to the waiter: `active` stays
        }
        next?.resume(returning: true)
    }
}
