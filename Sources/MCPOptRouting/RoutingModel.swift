/// What the router knows about servers and tools, and what callers ask of it.

/// MCP tool annotations (hints a server declares; absent hints are nil).
public struct ToolAnnotations: Sendable, Equatable {
    public var readOnly: Bool?
    public var idempotent: Bool?
    public var destructive: Bool?
    public var openWorld: Bool?
    public init(readOnly: Bool? = nil, idempotent: Bool? = nil, destructive: Bool? = nil, openWorld: Bool? = nil) {
        self.readOnly = readOnly
        self.idempotent = idempotent
        self.destructive = destructive
        self.openWorld = openWorld
    }
}

public struct ToolInfo: Sendable, Equatable {
    public var name: String
    public var annotations: ToolAnnotations
    public init(name: String, annotations: ToolAnnotations = .init()) {
        self.name = name
        self.annotations = annotations
    }
}

/// Health as probes report it. Unhealthy servers are used only as a last resort.
public enum ServerHealth: String, Sendable, Equatable, CaseIterable {
    case unknown, healthy, degraded, unhealthy
}

/// A server the router may send requests to.
public struct ServerInfo: Sendable, Equatable {
    public var id: String
    /// "stdio" or "http" (informational: the router does no I/O).
    public var transport: String
    /// Replica group: servers of a group serve the same tools interchangeably.
    public var group: String
    public var weight: Double
    public var tags: [String]
    public var tools: [ToolInfo]
    public var resources: [String]
    public var prompts: [String]
    public var health: ServerHealth

    public init(id: String, transport: String = "stdio", group: String? = nil, weight: Double = 1, tags: [String] = [],
                tools: [ToolInfo] = [], resources: [String] = [], prompts: [String] = [], health: ServerHealth = .unknown) {
        self.id = id
        self.transport = transport
        self.group = group ?? id
        self.weight = weight
        self.tags = tags
        self.tools = tools
        self.resources = resources
        self.prompts = prompts
        self.health = health
    }
}

/// How to choose among the servers that offer a tool.
public enum RoutingStrategy: String, Sendable, Equatable, CaseIterable {
    /// Lowest predicted latency (EWMA over the prediction window, divided by the success rate);
    /// below the minimum confidence, least outstanding requests instead.
    case predictive
    /// Predictive, but it keeps exploring: unexplored or stale servers are tried, and a small
    /// share of requests goes to a random candidate (epsilon-greedy), so a server that recovers
    /// or becomes fast is noticed.
    case adaptive
    /// Power of two choices: two random candidates, the one with the lower peak-EWMA cost
    /// (latency times outstanding requests plus one).
    case peakEWMA
    /// Power of two choices on outstanding requests per unit of weight.
    case leastOutstanding
    /// Rendezvous hashing of the request's affinity key with bounded loads: the same key goes to
    /// the same server (its cache is warm) unless that server holds more than 1.25 times the
    /// average load.
    case consistentHash
}

/// What a request needs from the server that serves it.
public struct Requirements: Sendable, Equatable {
    /// Servers predicted slower than this are not chosen.
    public var maxResponseTime: Duration?
    /// Servers whose recent success rate is below this (0...1) are not chosen.
    public var minSuccessRate: Double?
    /// Overrides the router's default strategy.
    public var strategy: RoutingStrategy?
    /// For consistent hashing: requests with the same key prefer the same server.
    public var affinityKey: String?
    /// When set, only these servers may serve (an agent profile's allowed servers).
    public var allowedServers: Set<String>?

    public init(maxResponseTime: Duration? = nil, minSuccessRate: Double? = nil, strategy: RoutingStrategy? = nil,
                affinityKey: String? = nil, allowedServers: Set<String>? = nil) {
        self.maxResponseTime = maxResponseTime
        self.minSuccessRate = minSuccessRate
        self.strategy = strategy
        self.affinityKey = affinityKey
        self.allowedServers = allowedServers
    }
}

/// The router's settings (from the engine's `routing` and `targets` configuration).
public struct RouterSettings: Sendable, Equatable {
    public var defaultStrategy: RoutingStrategy = .adaptive
    /// History older than this is not used to predict (the server is treated as unexplored).
    public var predictionWindow: Duration = .seconds(300)
    /// Below this confidence a prediction is not trusted (0...1).
    public var minConfidence = 0.5
    /// Share of requests the adaptive strategy sends to a random candidate.
    public var explorationRate = 0.05
    /// Weight of the newest latency in the moving average.
    public var ewmaAlpha = 0.2
    public var breaker = CircuitBreakerSettings()

    public init() {}
}

/// When a server's circuit opens and how it recovers.
public struct CircuitBreakerSettings: Sendable, Equatable {
    /// Open when at least this share of the recent window failed...
    public var failureRateThreshold = 0.5
    /// ...and the window holds at least this many outcomes (the window is the last 64).
    public var minimumRequests = 10
    /// ...or when this many outcomes in a row failed (a server that just died is left at once,
    /// before it weighs on the failure rate of a long window).
    public var consecutiveFailures = 5
    /// How long an open circuit stays open before half-open probes are allowed.
    public var openDuration: Duration = .seconds(5)

    public init() {}
}
