/// Engine options, in the groups of the original brief. Every default is documented in
/// docs/CONFIG.md; `EngineConfig.effectiveJSON` shows the values in force.

public struct RoutingOptions: Sendable, Equatable {
    /// Predict each server's latency from its recent history and prefer the fastest.
    public var enablePredictiveRouting = true
    /// Keep exploring so a recovered or newly fast server is noticed.
    public var enableAdaptiveRouting = true
    /// Budget for one routing decision; past it the router returns its best answer so far.
    public var maxDecisionTime: Duration = .milliseconds(100)
    /// How far back statistics count for prediction.
    public var predictionWindow: Duration = .seconds(300)
    /// Below this confidence (0...1) a prediction is not trusted and a safe default is used.
    public var minConfidence = 0.7
    public init() {}
}

public enum WarmingStrategy: String, Sendable, CaseIterable {
    case conservative, adaptive, aggressive
}

/// Where the shared (L2) cache lives.
public struct DistributedCacheOptions: Sendable, Equatable {
    public var url: String
    public var username: String?
    public var password: String?
    public var keyPrefix = "mcpopt:"
    public var connectTimeout: Duration = .milliseconds(500)
    public var commandTimeout: Duration = .milliseconds(100)
    public var poolSize = 4
    /// rediss://: a PEM bundle of the CAs to trust instead of the system's (a private CA).
    public var caFile: String?
    /// rediss://: the certificate and key presented to a Redis that asks for one
    /// (`tls-auth-clients`); both or neither.
    public var clientCert: String?
    public var clientKey: String?
    public init(url: String) { self.url = url }
}

public struct CachingOptions: Sendable, Equatable {
    /// L1 in process, plus L2 in Redis when `distributed` is set.
    public var enableMultiLevel = true
    /// Memory budget of the in-process cache, in bytes.
    public var memoryCacheSize = 100 << 20
    /// How stale an item of a coherence group may be before it must be revalidated.
    public var coherenceTimeout: Duration = .seconds(5)
    /// Time to live of cached results when nothing more specific applies.
    public var defaultTTL: Duration = .seconds(300)
    public var warmingStrategy: WarmingStrategy = .adaptive
    /// Where the hot set (the most used cached requests, not their results) is saved when the
    /// engine stops and read back when it starts, to fetch those again: warm after a restart.
    /// Nil: not kept.
    public var hotSetFile: String?
    /// How many requests the hot set keeps.
    public var hotSetSize = 1000
    /// Writes invalidate the reads they affect (coherence groups, rules).
    public var enableIntelligentInvalidation = true
    public var distributed: DistributedCacheOptions?
    /// Per-tool caching rules, by "<group>/<tool>" or "<tool>": a TTL, or nil for never.
    public var tools: [ToolCacheRule] = []
    /// Writes that invalidate reads beyond their own group's (e.g. write_file(path) ->
    /// read_file(path)).
    public var invalidationRules: [InvalidationRule] = []
    /// How long past its TTL a cached result may still be served when every server for it
    /// fails (zero: never serve stale).
    public var staleIfError: Duration = .zero
    public init() {}
}

public struct ToolCacheRule: Sendable, Equatable {
    public enum Policy: Sendable, Equatable {
        case defaultTTL
        case ttl(Duration)
        case never
    }
    /// "<group>/<tool>" or "<tool>" (any group).
    public var tool: String
    public var policy: Policy
    public init(tool: String, policy: Policy) {
        self.tool = tool
        self.policy = policy
    }
}

/// A successful call of `tool` drops the cached results of `invalidates`; when `arguments` is
/// set, only those called with the same values of those arguments.
public struct InvalidationRule: Sendable, Equatable {
    public var tool: String
    public var invalidates: [String]
    public var arguments: [String]
    public init(tool: String, invalidates: [String], arguments: [String] = []) {
        self.tool = tool
        self.invalidates = invalidates
        self.arguments = arguments
    }
}

public struct OptimizationOptions: Sendable, Equatable {
    /// Low-priority requests to one server are sent together.
    public var enableBatching = true
    public var maxBatchSize = 10
    /// How long a batch may wait to fill up.
    public var batchTimeout: Duration = .milliseconds(10)
    /// Backend sessions are pooled and kept warm.
    public var enableConnectionPooling = true
    /// Timeouts follow observed latency percentiles instead of one fixed value.
    public var enableAdaptiveTimeouts = true
    /// Servers' requests to the client (sampling, elicitation, roots) go to the client whose
    /// request is running on that server; backend sessions then declare those capabilities.
    public var relayServerRequests = true
    /// Upper bound for one upstream request.
    public var requestTimeout: Duration = .seconds(30)
    /// How long the engine's I/O loop looks for servers' answers before it sleeps (0: it
    /// sleeps at once; at most 10 ms). `mcpopt serve` uses it for its front too.
    public var busyPoll: Duration = .zero
    public init() {}
}

public enum ConsistencyModel: String, Sendable, CaseIterable {
    case eventual, strong
}

public struct CoordinationOptions: Sendable, Equatable {
    public var enableStateSynchronization = false
    public var enableDistributedTransactions = false
    public var consistencyModel: ConsistencyModel = .eventual
    public var syncInterval: Duration = .seconds(1)
    public var transactionTimeout: Duration = .seconds(30)
    /// Where the two-phase-commit decision log lives: a SQLite file (WAL, fsynced decisions),
    /// or "redis" to keep it in the shared Redis (`caching.distributed`) when instances share it.
    public var transactionLog = "mcpopt-transactions.db"
    /// Whose transactions these are in a shared (Redis) decision log: a coordinator recovers
    /// only its own. Nil: the host's name.
    public var coordinatorId: String?
    /// Calls of one fan-out operation in flight at once.
    public var fanOutConcurrency = 32
    /// Redis for shared state when the cache has none (`caching.distributed.url` otherwise).
    public var redisUrl: String?
    public init() {}
}

/// The goals the engine reports against (metrics show pass/fail); not hard limits, except
/// `maxServerCount`, which bounds the configuration.
public struct Targets: Sendable, Equatable {
    /// Fraction (0...1) by which latency should drop against unoptimized calls.
    public var latencyReduction = 0.4
    public var maxResponseTime: Duration = .seconds(2)
    /// Fraction (0...1) of requests that should succeed.
    public var minSuccessRate = 0.999
    public var maxServerCount = 1000
    public init() {}
}

/// What a request (or an agent by default) needs from the server that serves it.
public struct Requirements: Sendable, Equatable {
    public var maxResponseTime: Duration?
    public var minSuccessRate: Double?
    public init(maxResponseTime: Duration? = nil, minSuccessRate: Double? = nil) {
        self.maxResponseTime = maxResponseTime
        self.minSuccessRate = minSuccessRate
    }
}

public enum Priority: String, Sendable, CaseIterable, Comparable {
    case low, normal, high, critical

    private var rank: Int {
        switch self {
        case .low: 0
        case .normal: 1
        case .high: 2
        case .critical: 3
        }
    }
    public static func < (a: Priority, b: Priority) -> Bool { a.rank < b.rank }
}

/// What one agent (a caller identity) may use and needs by default.
public struct AgentProfile: Sendable, Equatable {
    public var id: String
    /// Server names or replica groups; nil means all.
    public var allowedServers: [String]?
    /// Tool names or glob patterns ("read_*"); nil means all.
    public var allowedTools: [String]?
    public var requirements = Requirements()
    public var priority: Priority = .normal
    public init(id: String) { self.id = id }
}
