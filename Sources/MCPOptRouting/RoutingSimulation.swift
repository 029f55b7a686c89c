import Glibc

/// A routing simulation with servers of known latency distributions, used by the tests (with
/// generous bounds) and by `mcpopt bench route` (for the figures). Five replicas of one tool:
///
/// - "steady-10", "steady-20", "steady-40": lognormal latency with those medians (ms), sigma 0.3;
/// - "steady-5": the second best, 5 ms;
/// - "volatile": the best, 4 ms, but it fails every request from 20% to 40% of the run, is
///   healthy again until 60%, and from 60% on it is degraded to 50 ms.
///
/// Reported: the mean latency of the chosen servers against the best possible choice at each
/// moment (regret), how many requests went to "volatile" while it failed, how many requests it
/// took to come back to it after it recovered, and to leave it once it degraded.
public struct RoutingSimulation: Sendable {
    public struct Result: Sendable, CustomStringConvertible {
        public var requests = 0
        public var meanLatencyMs = 0.0
        public var bestMeanLatencyMs = 0.0
        public var regretMs: Double { meanLatencyMs - bestMeanLatencyMs }
        public var failures = 0
        /// Requests routed to the failing server during its failure.
        public var requestsToLeaveFailing = 0
        /// Requests from its recovery until it serves most of a 20-request window again.
        public var requestsToReturn = 0
        /// Requests from its degradation until it serves less than half of a 20-request window.
        public var requestsToLeaveDegraded = 0
        public var description: String {
            "mean \(meanLatencyMs) ms (best \(bestMeanLatencyMs)), failures \(failures), to leave failing \(requestsToLeaveFailing), to return \(requestsToReturn), to leave degraded \(requestsToLeaveDegraded)"
        }
    }

    public let settings: RouterSettings
    public let seed: UInt64
    public let strategy: RoutingStrategy

    public init(settings: RouterSettings, seed: UInt64, strategy: RoutingStrategy = .adaptive) {
        self.settings = settings
        self.seed = seed
        self.strategy = strategy
    }

    /// Runs `requests` requests; pauses `pauseMillis` every `pauseEvery` requests so that
    /// wall-clock rules (a circuit's open duration) play out within each phase.
    public func run(requests: Int, sleepEvery pauseEvery: Int = 250, pauseMillis: Int = 5) -> Result {
        let names = ["steady-10", "steady-20", "steady-40", "steady-5", "volatile"]
        let router = Router(settings: settings, servers: names.map { ServerInfo(id: $0, group: "replicas", tools: [ToolInfo(name: "t")]) })
        let index = Dictionary(uniqueKeysWithValues: router.registeredServers.enumerated().map { ($1.id, Int32($0)) })
        let volatile = index["volatile"]!
        var random = seed | 1
        func unit() -> Double {
            random ^= random >> 12; random ^= random << 25; random ^= random >> 27
            return Double((random &* 0x2545_F491_4F6C_DD1D) >> 11) / Double(1 << 53)
        }
        func lognormal(median: Double) -> Double {
            let normal = (-2 * log(max(unit(), 1e-12))).squareRoot() * cos(2 * .pi * unit())
            return median * exp(0.3 * normal)
        }
        let meanFactor = exp(0.3 * 0.3 / 2)
        let failStart = requests / 5, recover = 2 * requests / 5, degrade = 3 * requests / 5
        func volatileMedian(_ step: Int) -> Double? {
            if step >= failStart && step < recover { return nil }   // failing
            return step >= degrade ? 50 : 4
        }
        let medians: [String: Double] = ["steady-10": 10, "steady-20": 20, "steady-40": 40, "steady-5": 5]
        var result = Result()
        result.requests = requests
        var total = 0.0, best = 0.0
        var recent: [Bool] = []
        var returned = false, left = false
        let tool = Array("t".utf8)
        var requirements = FastRequirements()
        requirements.strategy = strategy
        for step in 0..<requests {
            if pauseEvery > 0, step > 0, step % pauseEvery == 0 { usleep(UInt32(pauseMillis * 1000)) }
            let choice = tool.withUnsafeBytes { router.route(tool: $0, requirements) }
            guard choice.hasServer else { continue }
            router.begin(choice)
            let name = names[Int(choice.server)]
            let toVolatile = choice.server == volatile
            var latency: Double
            var success = true
            if toVolatile {
                if let median = volatileMedian(step) { latency = lognormal(median: median) } else { latency = 1; success = false }
            } else {
                latency = lognormal(median: medians[name]!)
            }
            // A failed request costs a retry on the best steady server: what the caller waits.
            let waited = success ? latency : latency + 5 * meanFactor
            total += waited
            best += min(5, volatileMedian(step) ?? 5) * meanFactor
            if !success { result.failures += 1 }
            router.complete(choice, latency: .nanoseconds(Int64(latency * 1e6)), success: success)
            recent.append(toVolatile)
            if recent.count > 20 { recent.removeFirst() }
            let share = Double(recent.filter { $0 }.count) / Double(recent.count)
            if step >= failStart && step < recover && toVolatile { result.requestsToLeaveFailing += 1 }
            if step >= recover && step < degrade && !returned {
                result.requestsToReturn += 1
                if recent.count == 20 && share > 0.5 { returned = true }
            }
            if step >= degrade && !left {
                result.requestsToLeaveDegraded += 1
                if share < 0.5 { left = true }
            }
        }
        result.meanLatencyMs = (total / Double(requests) * 100).rounded() / 100
        result.bestMeanLatencyMs = (best / Double(requests) * 100).rounded() / 100
        return result
    }
}
