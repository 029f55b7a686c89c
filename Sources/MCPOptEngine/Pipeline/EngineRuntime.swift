import Glibc
import MCPOptCache
import MCPOptConfig
import MCPOptIO
import MCPOptJSON
import MCPOptMetrics
import MCPOptProtocol
import MCPOptRouting
import MCPOptSync
import MCPOptUpstream

/// Counters and histograms of the request path. Counters are relaxed atomics (bumped by every
/// request thread); histograms take a short lock.
public final class EngineMetrics: @unchecked Sendable {
    public let requests = AtomicCounter()
    public let succeeded = AtomicCounter()
    public let failed = AtomicCounter()
    public let cacheHits = AtomicCounter()
    public let cacheMisses = AtomicCounter()
    public let coalesced = AtomicCounter()
    public let upstreamCalls = AtomicCounter()
    public let retries = AtomicCounter()
    public let failovers = AtomicCounter()
    public let invalidations = AtomicCounter()
    public let routingErrors = AtomicCounter()
    public let overloads = AtomicCounter()
    /// Batches of low-priority requests sent, and the requests in them.
    public let batches = AtomicCounter()
    public let batchedRequests = AtomicCounter()
    /// Hedged attempts started, and how many of them answered first.
    public let hedges = AtomicCounter()
    public let hedgeWins = AtomicCounter()
    /// Expired results served because every server failed (staleIfError).
    public let staleServed = AtomicCounter()
    /// Server requests (sampling, elicitation, roots) sent on to a client.
    public let serverRequestsRelayed = AtomicCounter()
    /// Requests of the saved hot set fetched again at start (caching.hotSetFile).
    public let hotSetRestored = AtomicCounter()
    /// Estimated nanoseconds each request would have cost without the engine, and what it cost.
    public let baselineNanos = AtomicCounter()
    public let actualNanos = AtomicCounter()
    /// End-to-end latency of optimizeRequest, of upstream calls, of routing decisions.
    public let latency = LatencyHistogram()
    public let upstreamLatency = LatencyHistogram()
    public let decisionLatency = LatencyHistogram()
    /// When the engine started, for throughput.
    public let startedNanos = monotonicNanos()
    public init() {}
}

/// The engine's moving parts for the request path: the I/O loop, a warm backend per
/// configured server, what each server offers, the cache policy, in-flight merging.
final class EngineRuntime: @unchecked Sendable {
    let policy: CachePolicy
    let directory: ServerDirectory
    let coalescer = Coalescer<HashedKey, UpstreamOutcome>()
    let metrics = EngineMetrics()
    let events = EventBus()
    let warming = WarmingTracker()
    /// Who can answer a server's requests, per backend (optimization.relayServerRequests).
    let serverRequestRoutes = ServerRequestRoutes()
    let relayServerRequests: Bool
    /// optimization.busyPoll, for the loop the engine makes (a loop given with `use` has its own).
    let busyPoll: Duration
    /// Low-priority requests are batched per backend (optimization.enableBatching, maxBatchSize, batchTimeout).
    let batching: Backend.Batching?
    let pins = ContinuationPins()
    let progress = ProgressRelay()
    /// Listeners of log messages of mergeable requests in flight (see RequestLogRegistry), and
    /// whether any caller has asked for log messages yet (until then nothing is gathered).
    let requestLogs = RequestLogRegistry()
    let logsWanted = AtomicCounter()
    /// Who hears servers' log messages (`notifications/message`), with the server's name.
    @exclusivity(unchecked) private var logListener: (@Sendable (_ server: String, _ message: [UInt8]) -> Void)?   // guarded by lock
    func setLogListener(_ l: (@Sendable (String, [UInt8]) -> Void)?) { lock.withLock { logListener = l } }
    var currentLogListener: (@Sendable (String, [UInt8]) -> Void)? { lock.withLock { logListener } }
    @exclusivity(unchecked) private var resourceListener: (@Sendable (_ uri: String, _ message: [UInt8]) -> Void)?   // guarded by lock
    func setResourceListener(_ l: (@Sendable (String, [UInt8]) -> Void)?) { lock.withLock { resourceListener = l } }
    var currentResourceListener: (@Sendable (String, [UInt8]) -> Void)? { lock.withLock { resourceListener } }
    @exclusivity(unchecked) private var listChangeListener: (@Sendable (_ method: String) -> Void)?   // guarded by lock
    func setListChangeListener(_ l: (@Sendable (String) -> Void)?) { lock.withLock { listChangeListener = l } }
    var currentListChangeListener: (@Sendable (String) -> Void)? { lock.withLock { listChangeListener } }

    private let lock = Lock()
    @exclusivity(unchecked) private var loop: EventLoop?                          // guarded by lock
    /// The shared (L2) cache, when configured (set once at start).
    @exclusivity(unchecked) private var sharedCache: SharedCache?                 // guarded by lock
    var shared: SharedCache? { lock.withLock { sharedCache } }
    func setShared(_ s: SharedCache) { lock.withLock { sharedCache = s } }
    var eventLoop: EventLoop? { lock.withLock { loop } }

    /// A loop given by the host (the gateway's), used instead of one of our own.
    @exclusivity(unchecked) private var givenLoop: EventLoop?                     // guarded by lock
    @exclusivity(unchecked) private var backendsByName: [String: Backend] = [:]   // guarded by lock
    @exclusivity(unchecked) private var catalogsByServer: [String: ServerCatalog] = [:]   // guarded by lock
    @exclusivity(unchecked) private var startTask: Task<Void, Never>?             // guarded by lock
    @exclusivity(unchecked) private var stopped = false                           // guarded by lock
    /// Servers seen up / down, for serverUp/serverDown events on changes only.
    @exclusivity(unchecked) private var upState: [String: Bool] = [:]             // guarded by lock

    init(config: EngineConfig) {
        directory = ServerDirectory(config)
        relayServerRequests = config.optimization.relayServerRequests
        busyPoll = config.optimization.busyPoll
        let o = config.optimization
        batching = o.enableBatching && o.maxBatchSize > 1
            ? Backend.Batching(maxSize: o.maxBatchSize, window: o.batchTimeout, batches: metrics.batches, requests: metrics.batchedRequests) : nil
        var policy = CachePolicy(defaultTTL: config.caching.defaultTTL)
        for rule in config.caching.tools {
            switch rule.policy {
            case .defaultTTL: policy.toolRules[rule.tool] = .cache(config.caching.defaultTTL)
            case .ttl(let d): policy.toolRules[rule.tool] = .cache(d)
            case .never: policy.toolRules[rule.tool] = .never
            }
        }
        policy.trustedGroups = Set(config.activeServers.filter(\.trustAnnotations).map(\.group))
        self.policy = policy
    }

    func backend(_ name: String) -> Backend? { lock.withLock { backendsByName[name] } }

    /// Backends of stateful servers, one per client session ("<server>\0<session>").
    @exclusivity(unchecked) private var sessionBackends: [String: Backend] = [:]   // guarded by lock
    static let maxSessionBackends = 1024

    /// The backend that serves `server` for `session`: the shared one, or for a stateful server
    /// one of the session's own, started on first use. nil when there is none (or too many).
    func backend(_ name: String, session: String?, start: (Backend) -> Void) -> Backend? {
        let (found, created): (Backend?, Bool) = lock.withLock {
            guard let shared = backendsByName[name] else { return (nil, false) }
            guard shared.server.stateful, let session, let loop else { return (shared, false) }
            let key = name + "\u{0}" + session
            if let mine = sessionBackends[key] { return (mine, false) }
            guard sessionBackends.count < Self.maxSessionBackends, !stopped else { return (nil, false) }
            let made = Backend(server: shared.server, loop: loop, overloads: metrics.overloads, relayServerRequests: relayServerRequests, batching: batching)
            sessionBackends[key] = made
            return (made, true)
        }
        if let found, created { start(found) }
        return found
    }

    /// Stops the backends of one client session.
    func endSession(_ session: String) async {
        let ended: [Backend] = lock.withLock {
            let keys = sessionBackends.keys.filter { $0.hasSuffix("\u{0}" + session) }
            return keys.compactMap { sessionBackends.removeValue(forKey: $0) }
        }
        await withTaskGroup(of: Void.self) { group in
            for b in ended { group.addTask { await b.shutdown() } }
        }
    }

    var sessionBackendCount: Int { lock.withLock { sessionBackends.count } }
    var backends: [Backend] { lock.withLock { Array(backendsByName.values) } }
    /// Every backend: the shared ones and those of client sessions (stateful servers).
    var allBackends: [Backend] { lock.withLock { Array(backendsByName.values) + Array(sessionBackends.values) } }
    var catalogs: [ServerCatalog] { lock.withLock { Array(catalogsByServer.values) } }
    func catalog(_ server: String) -> ServerCatalog? { lock.withLock { catalogsByServer[server] } }
    /// What `server` declares about `tool`, without copying its whole catalog (a dozen
    /// retains) on every request.
    func annotations(server: String, tool: String) -> MCPOptRouting.ToolAnnotations? {
        lock.withLock { catalogsByServer[server]?.annotationsByTool[tool] }
    }
    var isStarted: Bool { lock.withLock { loop != nil } }

    func setCatalog(_ catalog: ServerCatalog) {
        lock.withLock {
            catalogsByServer[catalog.server] = catalog
            catalogGeneration += 1
            toolOwnersByName = nil
            catalogEpoch.store(UInt64(catalogGeneration))
        }
    }

    /// A server whose (healthy) catalog lists a tool: its group, whether it is stateful, and
    /// what it declares about the tool.
    struct ToolOwner: Sendable {
        let server: String
        let group: String
        let stateful: Bool
        let annotations: MCPOptRouting.ToolAnnotations
    }

    /// The owners of `tool`, sorted by server name; indexed once per change of the catalogs, so
    /// the cache lookup that precedes routing takes one lock and one hash here.
    func toolOwners(_ tool: String) -> [ToolOwner]? {
        lock.withLock {
            if toolOwnersByName == nil {
                var owners: [String: [ToolOwner]] = [:]
                for catalog in catalogsByServer.values.sorted(by: { $0.server < $1.server }) where catalog.error == nil {
                    let server = directory.server(catalog.server)
                    for info in catalog.toolInfos {
                        owners[info.name, default: []].append(ToolOwner(server: catalog.server, group: server?.group ?? catalog.server,
                                                                       stateful: server?.stateful ?? false, annotations: info.annotations))
                    }
                }
                toolOwnersByName = owners
            }
            return toolOwnersByName?[tool]
        }
    }
    @exclusivity(unchecked) private var toolOwnersByName: [String: [ToolOwner]]?   // guarded by lock
    /// Bumped whenever a server's catalog is replaced.
    private(set) var catalogGeneration = 0               // guarded by lock
    var currentCatalogGeneration: Int { lock.withLock { catalogGeneration } }
    /// `catalogGeneration`, read without the lock (a replayed cache hit checks it each time).
    let catalogEpoch = AtomicCounter()
    /// Results stored under the key every caller shares (marked public by their server). Until
    /// there is one, a miss under the caller's own key is not looked up there too.
    let publicResults = AtomicCounter()

    /// Records whether a server is up; true when that changed (the caller emits the event).
    func markUp(_ server: String, _ up: Bool) -> Bool {
        lock.withLock {
            let changed = upState[server] != up
            upState[server] = up
            return changed
        }
    }

    /// Starts once; later callers wait for the first start to finish.
    func start(_ body: @escaping @Sendable () async -> Void) async {
        let task: Task<Void, Never> = lock.withLock {
            if let t = startTask { return t }
            let t = Task {
                await body()
                self.lock.withLock { self.ready = true }
            }
            startTask = t
            return t
        }
        await task.value
    }

    /// Set once the first start has finished (every server listed or failed).
    @exclusivity(unchecked) private var ready = false                             // guarded by lock
    var isReady: Bool { lock.withLock { ready } }
    var isStopped: Bool { lock.withLock { stopped } }

    /// Creates the loop and the backends (not yet started). Throws when the loop cannot start.
    func makeBackends(_ servers: [ServerConfig]) throws(IOError) -> [Backend] {
        if lock.withLock({ stopped }) { throw IOError(message: "the engine was stopped: create a new one") }
        let loop: EventLoop
        if let given = lock.withLock({ givenLoop }) { loop = given } else { loop = try EventLoop(name: "mcpopt-engine", busyPoll: busyPoll) }
        let made = servers.map { Backend(server: $0, loop: loop, overloads: metrics.overloads, relayServerRequests: relayServerRequests, batching: batching) }
        lock.withLock {
            self.loop = loop
            for b in made { backendsByName[b.name] = b }
        }
        return made
    }

    /// Uses `loop` for every backend instead of a loop of the engine's own (before start).
    func use(_ loop: EventLoop) { lock.withLock { givenLoop = loop } }

    func stop() async {
        let (all, loop): ([Backend], EventLoop?) = lock.withLock {
            guard !stopped else { return ([], nil) }
            stopped = true
            let all = Array(backendsByName.values) + Array(sessionBackends.values)
            sessionBackends.removeAll()
            return (all, self.loop === givenLoop ? nil : self.loop)
        }
        await withTaskGroup(of: Void.self) { group in
            for b in all { group.addTask { await b.shutdown() } }
        }
        shared?.stop()
        loop?.shutdown()
    }

    /// The loop the backends use (nil before start).
    var ioLoop: EventLoop? { lock.withLock { loop } }
    var ioBackend: String? { lock.withLock { loop?.backend.rawValue } }
    /// The kernel facilities the loop uses (multishot accept and receive, buffer rings, ...).
    var ioFeatures: [String]? { lock.withLock { loop?.features } }

    /// Latency distribution of one tool (or method) on one replica group, for hedging and
    /// adaptive timeouts. Bounded: past 10,000 keys new ones share one histogram.
    @exclusivity(unchecked) private var latencyByKey: [String: LatencyHistogram] = [:]   // guarded by lock
    private let overflowLatencies = LatencyHistogram()
    func latencies(_ key: String) -> LatencyHistogram {
        lock.withLock {
            if let h = latencyByKey[key] { return h }
            guard latencyByKey.count < 10_000 else { return overflowLatencies }
            let h = LatencyHistogram()
            latencyByKey[key] = h
            return h
        }
    }
}

/// Bytes hashed once: a key used for several dictionary operations (joining and completing a
/// merged request) pays for hashing its bytes one time.
struct HashedKey: Hashable, Sendable {
    let bytes: [UInt8]
    private let hash: Int

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        // In one piece: an array's own hashing feeds the hasher a byte at a time.
        var hasher = Hasher()
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
        hash = hasher.finalize()
    }

    func hash(into hasher: inout Hasher) { hasher.combine(hash) }
    static func == (a: HashedKey, b: HashedKey) -> Bool { a.hash == b.hash && a.bytes == b.bytes }
}

/// What one upstream call produced, shared by every request merged into it.
struct UpstreamOutcome: Sendable {
    /// The backend's JSON-RPC response (its id is the backend's: callers put theirs back).
    var message: [UInt8]?
    var error: String?
    var errorCode: Int64 = RPCErrorCode.internalError
    var server: String?
    var attempts: Int
    /// What the successful attempt cost (what a merged request would have cost alone).
    var originNanos: UInt64 = 0
}

/// CLOCK_MONOTONIC in nanoseconds.
@inline(__always) func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Which server issued each modern `input_required` result (by its sealed `requestState`):
/// the retry that carries the state must reach that same server, whatever routing would pick.
/// Bounded: the oldest pins go first.
final class ContinuationPins: @unchecked Sendable {
    private let lock = Lock()
    @exclusivity(unchecked) private var servers: [UInt64: String] = [:]   // guarded by lock
    @exclusivity(unchecked) private var order: [UInt64] = []               // guarded by lock
    @exclusivity(unchecked) private var head = 0                           // guarded by lock
    private let limit = 10_000

    func pin(state: UnsafeRawBufferPointer, server: String) {
        let key = hash64(state)
        lock.withLock {
            if servers.updateValue(server, forKey: key) == nil { order.append(key) }
            while order.count - head > limit {
                servers[order[head]] = nil
                head += 1
            }
            if head > 4_096 {
                order.removeFirst(head)
                head = 0
            }
        }
    }

    func server(for state: UnsafeRawBufferPointer) -> String? {
        let key = hash64(state)
        return lock.withLock { servers[key] }
    }
}

/// Progress notifications back to the callers whose request they are about. Each relayed
/// request goes upstream with a token of the engine's own (callers' tokens may collide); a
/// backend's `notifications/progress` with that token is passed on with the caller's token.
/// Callers merged into a request (identical, in flight) that asked for progress too hear that
/// request's progress, each with its own token, from when they joined until it ends. Progress
/// that does not increase is dropped: the protocol requires it to increase, and a hedged
/// request's two attempts each report their own.
final class ProgressRelay: @unchecked Sendable {
    /// A caller that hears a request's progress. What it was sent last is its own: a caller
    /// merged late is first sent the progress reached so far, and a relay racing that catch-up
    /// must not send it an older value after a newer one.
    private final class Listener: @unchecked Sendable {
        let token: String          // the engine token the listener's own request was given
        let original: JSONValue?   // its caller's token (nil: not JSON, nothing is sent)
        let relay: @Sendable ([UInt8]) -> Void
        private let sending = Lock()
        @exclusivity(unchecked) private var sent: Double?   // guarded by sending
        init(token: String, original: [UInt8], relay: @escaping @Sendable ([UInt8]) -> Void) {
            self.token = token
            self.original = try? JSONParser.parse(original)
            self.relay = relay
        }

        /// Sends `notification` (a progress notification, any token) with this caller's token,
        /// unless it already had this much progress. Held across the send, so the check and the
        /// order of sends agree (the relay only queues the message for its client).
        func deliver(_ notification: JSONObject, progress: Double?) {
            guard case .object(var params)? = notification["params"], let original else { return }
            sending.withLock {
                if let progress {
                    if let last = sent, progress <= last { return }
                    sent = progress
                }
                params["progressToken"] = original
                var message = notification
                message["params"] = .object(params)
                relay(Array(JSONValue.object(message).jsonString.utf8))
            }
        }
    }
    /// One request's progress: who hears it (its caller, then merged callers), the
    /// notification that took it furthest and how far, the key it leads merged requests under,
    /// and the request it rides on when merged.
    private final class Route {
        var listeners: [Listener]
        var reached: (notification: JSONObject, progress: Double)?
        var leading: HashedKey?
        var riding: Route?
        init(_ listener: Listener) { listeners = [listener] }
    }
    private let lock = Lock()
    /// By engine token sent upstream.
    @exclusivity(unchecked) private var routes: [String: Route] = [:]   // guarded by lock
    /// Mergeable requests in flight that carry a token, by cache key.
    @exclusivity(unchecked) private var flights: [HashedKey: Route] = [:]   // guarded by lock
    @exclusivity(unchecked) private var next: UInt64 = 0   // guarded by lock

    func begin(original: [UInt8], relay: @escaping @Sendable ([UInt8]) -> Void) -> String {
        lock.withLock {
            next += 1
            let token = "mcpopt-progress-\(next)"
            routes[token] = Route(Listener(token: token, original: original, relay: relay))
            return token
        }
    }

    /// The request with `token` leads the mergeable requests under `key`: callers merged into
    /// it from now on hear its progress.
    func lead(_ key: HashedKey, token: String) {
        lock.withLock {
            guard let route = routes[token] else { return }
            route.leading = key
            flights[key] = route
        }
    }

    /// The request with `token` was merged into the one leading `key`: its caller hears that
    /// request's progress (nothing when that request carries no token), starting with the
    /// progress it reached before this caller joined.
    func follow(_ key: HashedKey, token: String) {
        let catchUp = lock.withLock { () -> (Listener, JSONObject, Double)? in
            guard let leader = flights[key], let own = routes[token], let listener = own.listeners.first else { return nil }
            leader.listeners.append(listener)
            own.riding = leader
            return leader.reached.map { (listener, $0.notification, $0.progress) }
        }
        if let (listener, notification, progress) = catchUp { listener.deliver(notification, progress: progress) }
    }

    /// The request with `token` is answered: neither it nor its merged callers hear more.
    func end(_ token: String) {
        lock.withLock {
            guard let route = routes.removeValue(forKey: token) else { return }
            if let key = route.leading, flights[key] === route { flights[key] = nil }
            route.riding?.listeners.removeAll { $0.token == token }
        }
    }

    /// Passes a backend's progress notification to its callers (unknown tokens are dropped).
    func relay(_ message: [UInt8]) {
        guard case .object(let o)? = try? JSONParser.parse(message), case .object(let params)? = o["params"],
              let token = params["progressToken"]?.stringValue else { return }
        let progress = params["progress"]?.doubleValue
        guard let listeners = lock.withLock({ () -> [Listener]? in
            guard let route = routes[token] else { return nil }
            if let progress {
                if let last = route.reached, progress <= last.progress { return nil }
                route.reached = (o, progress)
            }
            return route.listeners
        }) else { return }
        for listener in listeners { listener.deliver(o, progress: progress) }
    }

    /// Requests with a route and flights now (for tests: nothing is left behind).
    var count: Int { lock.withLock { routes.count + flights.count } }
}

/// Where the log messages of one upstream request go: its caller and the callers merged into
/// it, each at its own level (read once per message, renamed once for all of them).
final class RequestLogs: @unchecked Sendable {
    typealias Listener = (level: LogLevel, relay: @Sendable ([UInt8]) -> Void)
    private let lock = Lock()
    private var listeners: [Listener]   // guarded by lock

    init() { listeners = [] }
    init(level: LogLevel, relay: @escaping @Sendable ([UInt8]) -> Void) { listeners = [(level, relay)] }

    /// Takes `other`'s listeners too.
    func absorb(_ other: RequestLogs) {
        let theirs = other.lock.withLock { other.listeners }
        lock.withLock { listeners += theirs }
    }

    func deliver(server: String, _ message: [UInt8]) {
        let now = lock.withLock { listeners }
        guard !now.isEmpty, let (level, relayed) = Engine.relayedLog(message, server: server) else { return }
        for listener in now where level >= listener.level { listener.relay(relayed) }
    }
}

/// The listeners of mergeable requests in flight, by cache key: the leader and each follower
/// that wants logs join the key's list (whoever comes first makes it) and leave when done; the
/// last one out forgets it. A follower that joins late hears what comes after it joined.
final class RequestLogRegistry: @unchecked Sendable {
    private let lock = Lock()
    private var flights: [HashedKey: (logs: RequestLogs, holders: Int)] = [:]   // guarded by lock

    func join(_ key: HashedKey) -> RequestLogs {
        lock.withLock {
            if let entry = flights[key] {
                flights[key]!.holders = entry.holders + 1
                return entry.logs
            }
            let logs = RequestLogs()
            flights[key] = (logs, 1)
            return logs
        }
    }

    func leave(_ key: HashedKey) {
        lock.withLock {
            guard let entry = flights[key] else { return }
            if entry.holders <= 1 { flights[key] = nil } else { flights[key]!.holders = entry.holders - 1 }
        }
    }

    /// Keys with listeners now (for tests: nothing is left behind).
    var count: Int { lock.withLock { flights.count } }
}
