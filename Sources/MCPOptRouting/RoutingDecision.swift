/// A routing decision in full: what was chosen, what to try next, how sure, and why.
public struct RoutingDecision: Sendable {
    public var outcome: RouteChoice.Outcome
    /// The chosen server's id (nil when none could be chosen).
    public var server: String?
    public var fallbacks: [String]
    public var confidence: Double
    public var predictedLatency: Duration?
    public var strategy: RoutingStrategy
    public var probe: Bool
    public var decisionNanos: UInt64
    /// What `reasoning` is written from: it is composed only when read (formatting it on every
    /// request cost more than choosing the server).
    private let choice: RouteChoice
    private let tool: String
    private let requirements: Requirements
    private let minConfidence: Double

    init(choice: RouteChoice, table: RoutingTable, tool: String, requirements: Requirements, fallbacks: [String],
         decisionNanos: UInt64, settings: RouterSettings) {
        outcome = choice.outcome
        server = choice.hasServer ? table.servers[Int(choice.server)].id : nil
        self.fallbacks = fallbacks
        confidence = (choice.confidence * 1000).rounded() / 1000
        predictedLatency = choice.predictedNanos.isNaN ? nil : .nanoseconds(Int64(choice.predictedNanos))
        strategy = choice.strategy
        probe = choice.probe
        self.decisionNanos = decisionNanos
        self.choice = choice
        self.tool = tool
        self.requirements = requirements
        minConfidence = settings.minConfidence
    }

    /// A short human-readable account of the choice.
    public var reasoning: String {
        func ms(_ nanos: Double) -> String {
            let value = nanos / 1e6
            return value < 10 ? String(Int((value * 100).rounded())).withDecimals(2) + " ms" : "\(Int(value.rounded())) ms"
        }
        switch choice.outcome {
        case .unknownTool:
            return "no registered server offers tool \"\(tool)\""
        case .noCandidates:
            return "no server can take \"\(tool)\""
        case .noServerMeetsRequirements:
            var wanted: [String] = []
            if let max = requirements.maxResponseTime { wanted.append("predicted latency at most \(ms(max.nanosecondsDouble))") }
            if let min = requirements.minSuccessRate { wanted.append("success rate at least \(Int((min * 100).rounded()))%") }
            if requirements.allowedServers != nil { wanted.append("one of the allowed servers") }
            return "none of the servers offering \"\(tool)\" meets the requirements (\(wanted.joined(separator: ", ")))"
        case .lastResort:
            return "every server offering \"\(tool)\" is out (circuit open or unhealthy); \(server ?? "?") is the last resort"
        case .chosen:
            let name = server ?? "?"
            if choice.probe { return "\(name): half-open circuit, this request probes whether it recovered" }
            if choice.fellBack { return "\(name): predictions below the \(minConfidence) confidence threshold, fewest requests in flight" }
            if choice.explored {
                return choice.predictedNanos.isNaN
                    ? "\(name): not yet measured (or history outside the prediction window), exploring"
                    : "\(name): exploring (adaptive routing tries other servers now and then)"
            }
            switch choice.strategy {
            case .predictive, .adaptive: return "\(name): lowest predicted latency, \(ms(choice.predictedNanos)), confidence \(confidence)"
            case .peakEWMA: return "\(name): lower latency times load of two random replicas"
            case .leastOutstanding: return "\(name): fewer requests in flight of two random replicas"
            case .consistentHash: return "\(name): affinity key's preferred server (load within bounds)"
            }
        }
    }
}

private extension String {
    /// "123" with 2 decimals -> "1.23".
    func withDecimals(_ digits: Int) -> String {
        let padded = String(repeating: "0", count: max(0, digits + 1 - count)) + self
        return padded.dropLast(digits) + "." + padded.suffix(digits)
    }
}

/// A server's statistics at one moment.
public struct ServerStatsSnapshot: Sendable {
    public var id: String
    public var group: String
    public var health: ServerHealth
    public var circuit: CircuitState
    public var latencyEWMA: Duration
    public var latencyStdDev: Duration
    public var successRate: Double
    public var inFlight: Int
    public var samples: Int
    public var lastError: String?
    public var tools: [ToolStatsSnapshot] = []

    init(cell: StatsCell, id: String, group: String, health: ServerHealth) {
        self.id = id
        self.group = group
        self.health = health
        circuit = CircuitBreaker.state(cell)
        latencyEWMA = .nanoseconds(Int64(cell.latencyEWMA))
        latencyStdDev = .nanoseconds(Int64(cell.latencyVariance.squareRoot()))
        successRate = cell.successRate
        inFlight = Int(max(0, cell.inFlight))
        samples = Int(cell.samples)
    }
}

public struct ToolStatsSnapshot: Sendable {
    public var tool: String
    public var latencyEWMA: Duration
    public var successRate: Double
    public var inFlight: Int
    public var samples: Int

    init(cell: StatsCell, tool: String) {
        self.tool = tool
        latencyEWMA = .nanoseconds(Int64(cell.latencyEWMA))
        successRate = cell.successRate
        inFlight = Int(max(0, cell.inFlight))
        samples = Int(cell.samples)
    }
}
