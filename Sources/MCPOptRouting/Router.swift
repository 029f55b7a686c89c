import CMCPOptConcurrency
import Glibc
import MCPOptSync

/// The router: a registry of servers and their tools, published as an immutable table, and the
/// strategies that choose a server for each request.
///
/// Changes (servers and tools added, removed or changed, health) take a lock, rebuild the table
/// and publish it; routing takes no lock, never waits for a writer, and allocates nothing on
/// its fast path (`route(tool:_:fallbacks:)`). Outcomes are recorded into per-(server, tool)
/// atomic cells from any thread.
public final class Router: @unchecked Sendable {
    public let settings: RouterSettings
    let stats: StatsStore
    private let lock = Lock()
    private var records: [ServerRecord] = []         // guarded by lock; registration order
    private var generation: UInt64 = 0
    private let table: Published<RoutingTable>
    private let startMillis = mco_coarse_millis()

    public init(settings: RouterSettings = .init(), servers: [ServerInfo] = []) {
        self.settings = settings
        var unique: [ServerInfo] = []
        for server in servers {
            if let index = unique.firstIndex(where: { $0.id == server.id }) { unique[index] = server } else { unique.append(server) }
        }
        let store = StatsStore()
        stats = store
        let records = unique.map { ServerRecord($0, stats: store) }
        self.records = records
        table = Published(RoutingTable(generation: 0, records: records))
    }

    // MARK: Registry

    /// Adds a server, or replaces the one with the same id (its statistics are kept).
    public func upsert(_ server: ServerInfo) {
        mutate { servers in
            if let index = servers.firstIndex(where: { $0.id == server.id }) { servers[index] = server } else { servers.append(server) }
        }
    }

    /// Removes a server; false when it was not registered. Requests already routed to it carry
    /// on; new ones go elsewhere.
    @discardableResult
    public func remove(server id: String) -> Bool {
        var removed = false
        mutate { servers in
            let before = servers.count
            servers.removeAll { $0.id == id }
            removed = servers.count != before
        }
        return removed
    }

    /// Replaces a server's tools (after a `tools/list`, or a `list_changed` notification).
    @discardableResult
    public func setTools(server id: String, _ tools: [ToolInfo]) -> Bool {
        var found = false
        mutate { servers in
            guard let index = servers.firstIndex(where: { $0.id == id }) else { return }
            servers[index].tools = tools
            found = true
        }
        return found
    }

    @discardableResult
    public func setHealth(server id: String, _ health: ServerHealth) -> Bool {
        var found = false
        mutate { servers in
            guard let index = servers.firstIndex(where: { $0.id == id }) else { return }
            servers[index].health = health
            found = true
        }
        return found
    }

    /// Applies several changes with one rebuild.
    public func update(_ change: (inout [ServerInfo]) -> Void) { mutate(change) }

    /// Applies a change and publishes a new table. Servers whose description did not change
    /// keep their record (hashes and cells), so a build only flattens what is known.
    private func mutate(_ change: (inout [ServerInfo]) -> Void) {
        lock.withLock {
            var servers = records.map(\.info)
            change(&servers)
            var previous: [String: ServerRecord] = [:]
            for record in records { previous[record.info.id] = record }
            var seen = Set<String>()
            var next: [ServerRecord] = []
            for server in servers where seen.insert(server.id).inserted {
                if let old = previous[server.id], old.info.tools == server.tools, old.info.id == server.id {
                    next.append(old.info == server ? old : ServerRecord(reusing: old, info: server))
                } else {
                    next.append(ServerRecord(server, stats: stats))
                }
            }
            records = next
            generation += 1
            table.publish(RoutingTable(generation: generation, records: next))
        }
    }

    /// The servers as registered.
    public var registeredServers: [ServerInfo] { table.read { $0.servers } }

    /// The servers offering a tool, with that tool's annotations.
    public func servers(offering tool: String) -> [(server: String, annotations: ToolAnnotations)] {
        table.read { table in
            guard let run = Array(tool.utf8).withUnsafeBytes({ table.lookup($0) }) else { return [] }
            return (0..<run.count).map { offset in
                let server = table.servers[Int(table.candidates[run.start + offset])]
                return (server.id, server.tools.first { $0.name == tool }?.annotations ?? .init())
            }
        }
    }

    /// Table generation (bumped by every change) and size, for stats and benchmarks.
    public var tableInfo: (generation: UInt64, servers: Int, tools: Int, candidates: Int, flatBytes: Int, statsCells: Int, statsBytes: Int) {
        table.read { ($0.generation, $0.serverCount, $0.toolTotal, $0.candidateTotal, $0.flatBytes, stats.count, stats.bytes) }
    }

    @inline(__always)
    var nowMillis: UInt64 { mco_coarse_millis() &- startMillis &+ 1 }

    // MARK: Routing, fast path

    /// Routes a request for `tool` (UTF-8 bytes): the chosen server, and up to
    /// `fallbacks.count` others in order of preference. No lock, no allocation.
    @inline(__always)
    public func route(tool: UnsafeRawBufferPointer, _ requirements: FastRequirements = .init(),
                      fallbacks: UnsafeMutableBufferPointer<Int32> = .init(start: nil, count: 0)) -> RouteChoice {
        table.read { table in
            choose(table, tool: tool, requirements, allowed: nil, fallbacks: fallbacks)
        }
    }

    /// Marks a routed request as started (counts it in flight until `complete`).
    @inline(__always)
    public func begin(_ choice: RouteChoice) {
        guard let server = choice.serverCell, let pair = choice.pairCell else { return }
        StatsCell(words: server).begin()
        StatsCell(words: pair).begin()
    }

    /// Records the outcome of a routed request (begun or not).
    public func complete(_ choice: RouteChoice, latency: Duration, success: Bool, started: Bool = true) {
        guard let server = choice.serverCell, let pair = choice.pairCell else { return }
        record(server: StatsCell(words: server), pair: StatsCell(words: pair), latencyNanos: latency.nanosecondsDouble,
               success: success, started: started)
    }

    /// Records an outcome by name (for hosts that route elsewhere or report after the fact).
    /// Returns false for a server never registered.
    @discardableResult
    public func record(server: String, tool: String, latency: Duration, success: Bool, error: String? = nil) -> Bool {
        guard let cells = outcomeCells(server: server, tool: tool) else { return false }
        record(cells, server: server, latency: latency, success: success, error: error)
        return true
    }

    private let lastErrors = LockedValue<[String: (String, UInt64)]>([:])

    /// Where the outcomes of one (server, tool) pair are recorded, looked up once for a call
    /// that reads the server's circuit before and after and records its outcome (each by name
    /// was a locked String-keyed lookup). nil for a server never registered.
    public struct OutcomeCells: @unchecked Sendable {   // cells of atomics, as the table's
        fileprivate let server: StatsCell
        fileprivate let pair: StatsCell
    }

    public func outcomeCells(server: String, tool: String) -> OutcomeCells? {
        guard let serverCell = stats.existingCell(server: server, tool: nil) else { return nil }
        return OutcomeCells(server: serverCell, pair: stats.cell(server: server, tool: tool))
    }

    public func circuitState(_ cells: OutcomeCells) -> CircuitState { CircuitBreaker.state(cells.server) }

    /// `record(server:tool:...)` on cells looked up before.
    public func record(_ cells: OutcomeCells, server: String, latency: Duration, success: Bool, error: String? = nil) {
        record(server: cells.server, pair: cells.pair, latencyNanos: latency.nanosecondsDouble, success: success, started: false)
        if let error, !success { lastErrors.withLock { $0[server] = (error, nowMillis) } }
    }

    private func record(server: StatsCell, pair: StatsCell, latencyNanos: Double, success: Bool, started: Bool) {
        let now = nowMillis
        pair.record(latencyNanos: latencyNanos, success: success, alpha: settings.ewmaAlpha, nowMillis: now, started: started)
        server.record(latencyNanos: latencyNanos, success: success, alpha: settings.ewmaAlpha, nowMillis: now, started: started)
        CircuitBreaker.afterOutcome(server, success: success, nowMillis: now, settings: settings.breaker)
    }

    /// Forces a server's circuit (operators, tests). False for an unknown server.
    @discardableResult
    public func forceCircuit(server: String, _ state: CircuitState) -> Bool {
        guard let cell = stats.existingCell(server: server, tool: nil) else { return false }
        CircuitBreaker.force(cell, state, nowMillis: nowMillis)
        return true
    }

    public func circuitState(server: String) -> CircuitState? {
        stats.existingCell(server: server, tool: nil).map { CircuitBreaker.state($0) }
    }

    // MARK: Choosing

    /// Per-candidate facts gathered once per request.
    private struct Candidate {
        var server: Int32 = -1
        var pairCell: UnsafeMutablePointer<UInt64>?
        var serverCell: UnsafeMutablePointer<UInt64>?
        /// 0 usable, 1 last resort only (circuit open, unhealthy), 2 fails the requirements.
        var tier: UInt8 = 0
        var probe = false
        var known = false
        var predicted = 0.0
        var confidence = 0.0
        var cost = 0.0
    }

    private func choose(_ table: RoutingTable, tool: UnsafeRawBufferPointer, _ requirements: FastRequirements,
                        allowed: UnsafePointer<Bool>?, fallbacks: UnsafeMutableBufferPointer<Int32>) -> RouteChoice {
        guard let run = table.lookup(tool) else { return RouteChoice(outcome: .unknownTool, generation: table.generation) }
        let strategy = requirements.strategy ?? settings.defaultStrategy
        let now = nowMillis
        let window = UInt64(max(1, settings.predictionWindow.milliseconds))
        return withUnsafeTemporaryAllocation(of: Candidate.self, capacity: max(1, run.count)) { scratch in
            var usable = 0, lastResort = 0, unmet = 0, unknown = 0
            var totalInFlight: Int64 = 0
            for offset in 0..<run.count {
                let server = table.candidates[run.start + offset]
                var candidate = Candidate()
                candidate.server = server
                candidate.pairCell = table.candidateCells[run.start + offset]
                candidate.serverCell = table.serverCells[Int(server)]
                if let allowed, !allowed[Int(server)] {
                    candidate.tier = 2
                    scratch.initializeElement(at: offset, to: candidate)
                    unmet += 1
                    continue
                }
                let pair = StatsCell(words: candidate.pairCell!)
                let serverStats = StatsCell(words: candidate.serverCell!)
                switch CircuitBreaker.admission(serverStats, nowMillis: now, settings: settings.breaker) {
                case .allowed: break
                case .probe: candidate.probe = true
                case .excluded: candidate.tier = 1
                }
                if table.serverUnhealthy[Int(server)] { candidate.tier = 1 }
                let samples = pair.samples
                let inFlight = max(0, pair.inFlight)
                totalInFlight += inFlight
                let fresh = samples > 0 && now &- pair.lastUpdateMillis <= window
                let mean = pair.latencyEWMA
                let successRate = pair.successRate
                if fresh {
                    candidate.known = true
                    candidate.predicted = mean / max(pair.recentSuccess, 0.05)
                    let cv = mean > 0 ? pair.latencyVariance.squareRoot() / mean : 1
                    candidate.confidence = Double(samples) / Double(samples + 5) / (1 + cv)
                }
                // Requirements: judged on evidence only (an unexplored server may meet them). A
                // server that fails them is not even a last resort.
                if fresh, samples >= 3, mean > requirements.maxResponseNanos { candidate.tier = 2 }
                if pair.windowCount >= 5, successRate < requirements.minSuccessRate { candidate.tier = 2 }
                switch strategy {
                case .predictive, .adaptive:
                    candidate.cost = candidate.known ? candidate.predicted : .infinity
                case .peakEWMA:
                    // Unmeasured servers count as very fast (tried first) but load still counts.
                    candidate.cost = (candidate.known ? max(mean, 1) : 1) * Double(inFlight + 1)
                case .leastOutstanding:
                    candidate.cost = Double(inFlight) / table.serverWeights[Int(server)]
                case .consistentHash:
                    // Weighted rendezvous: highest -weight/ln(u) wins; stored negated so that
                    // lower is better, like every other cost.
                    let mixed = Self.mix(requirements.affinityHash ^ table.serverSeeds[Int(server)])
                    let unit = (Double(mixed >> 11) + 0.5) / Double(1 << 53)
                    candidate.cost = table.serverWeights[Int(server)] / log(unit)
                }
                switch candidate.tier {
                case 0: usable += 1; if !candidate.known { unknown += 1 }
                case 1: lastResort += 1
                default: unmet += 1
                }
                scratch.initializeElement(at: offset, to: candidate)
            }
            defer { _ = scratch.prefix(run.count).deinitialize() }
            let candidates = UnsafeMutableBufferPointer(rebasing: scratch.prefix(run.count))

            var choice = RouteChoice(outcome: .chosen, generation: table.generation)
            choice.strategy = strategy
            var chosen = -1
            // A circuit whose open time is over gets one probe request, whatever the strategy
            // (else a server that was once slow or failing would never be tried again). If
            // another request took the probe slot first, the server sits this one out.
            for index in candidates.indices where candidates[index].tier == 0 && candidates[index].probe {
                if CircuitBreaker.acquireProbe(StatsCell(words: candidates[index].serverCell!), nowMillis: now, settings: settings.breaker) {
                    chosen = index
                    choice.probe = true
                    break
                }
                candidates[index].tier = 1
                usable -= 1
                lastResort += 1
                if !candidates[index].known { unknown -= 1 }
            }
            if chosen >= 0 {
                // The probe.
            } else if usable == 0 {
                guard lastResort > 0 else {
                    choice.outcome = unmet > 0 ? .noServerMeetsRequirements : .noCandidates
                    return choice
                }
                // Every usable server is out (circuits open, unhealthy): the least bad one.
                chosen = Self.best(candidates, tier: 1)
                choice.outcome = .lastResort
            } else {
                switch strategy {
                case .predictive:
                    chosen = Self.best(candidates, tier: 0)
                    if !candidates[chosen].known || candidates[chosen].confidence < settings.minConfidence {
                        chosen = Self.leastOutstanding(candidates, table: table)
                        choice.fellBack = true
                    }
                case .adaptive:
                    if unknown > 0 {
                        chosen = Self.random(candidates, tier: 0, unknownOnly: true)
                        choice.explored = true
                    } else if Double(mco_thread_random() >> 11) / Double(1 << 53) < settings.explorationRate {
                        chosen = Self.random(candidates, tier: 0, unknownOnly: false)
                        choice.explored = true
                    } else {
                        chosen = Self.best(candidates, tier: 0)
                    }
                case .peakEWMA, .leastOutstanding:
                    let first = Self.random(candidates, tier: 0, unknownOnly: false)
                    var second = Self.random(candidates, tier: 0, unknownOnly: false)
                    if usable > 1 { while second == first { second = Self.random(candidates, tier: 0, unknownOnly: false) } }
                    chosen = candidates[second].cost < candidates[first].cost ? second : first
                case .consistentHash:
                    // Bounded loads: skip a server holding more than 1.25x the average (+1).
                    let bound = 1.25 * (Double(totalInFlight) / Double(usable) + 1)
                    chosen = Self.best(candidates, tier: 0) { StatsCell(words: $0.pairCell!).inFlight <= Int64(bound) }
                    if chosen < 0 { chosen = Self.best(candidates, tier: 0) }
                }
            }
            let picked = candidates[chosen]
            choice.server = picked.server
            choice.serverCell = picked.serverCell
            choice.pairCell = picked.pairCell
            choice.confidence = picked.confidence
            choice.predictedNanos = picked.known ? picked.predicted : .nan
            // Fallbacks: the rest, usable ones by cost, then last-resort ones.
            candidates[chosen].tier = 3
            var written = 0
            for tier: UInt8 in [0, 1] where written < fallbacks.count {
                while written < fallbacks.count {
                    let next = Self.best(candidates, tier: tier)
                    if next < 0 { break }
                    fallbacks[written] = candidates[next].server
                    candidates[next].tier = 3
                    written += 1
                }
            }
            choice.fallbackCount = written
            return choice
        }
    }

    /// Lowest cost in a tier (unknown costs last), optionally among those passing `accept`.
    @inline(__always)
    private static func best(_ candidates: UnsafeMutableBufferPointer<Candidate>, tier: UInt8,
                             where accept: (Candidate) -> Bool = { _ in true }) -> Int {
        var chosen = -1
        for index in candidates.indices where candidates[index].tier == tier && accept(candidates[index]) {
            if chosen < 0 || candidates[index].cost < candidates[chosen].cost { chosen = index }
        }
        return chosen
    }

    /// A uniformly random candidate of a tier.
    @inline(__always)
    private static func random(_ candidates: UnsafeMutableBufferPointer<Candidate>, tier: UInt8, unknownOnly: Bool) -> Int {
        var count = 0
        for candidate in candidates where candidate.tier == tier && (!unknownOnly || !candidate.known) { count += 1 }
        guard count > 0 else { return -1 }
        var pick = Int(mco_thread_random() % UInt64(count))
        for index in candidates.indices where candidates[index].tier == tier && (!unknownOnly || !candidates[index].known) {
            if pick == 0 { return index }
            pick -= 1
        }
        return -1
    }

    /// The safe default when predictions are not trusted: two random usable candidates, the one
    /// with fewer requests in flight per unit of weight.
    private static func leastOutstanding(_ candidates: UnsafeMutableBufferPointer<Candidate>, table: RoutingTable) -> Int {
        let first = random(candidates, tier: 0, unknownOnly: false)
        let second = random(candidates, tier: 0, unknownOnly: false)
        func load(_ index: Int) -> Double {
            Double(max(0, StatsCell(words: candidates[index].pairCell!).inFlight)) / table.serverWeights[Int(candidates[index].server)]
        }
        return load(second) < load(first) ? second : first
    }

    @inline(__always)
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    // MARK: Full decisions

    /// Routes a request and explains the choice: server ids, fallbacks, confidence, a short
    /// reasoning and the decision time. Allocates (strings); the fast path is `route(tool:)`.
    public func decide(tool: String, _ requirements: Requirements = .init(), maxFallbacks: Int = 3) -> RoutingDecision {
        let start = DispatchTimeNanos.now()
        var fast = FastRequirements(requirements)
        return table.read { table in
            fast.strategy = requirements.strategy
            // The mask and the fallback indexes live on the stack: two arrays a request were a
            // fifth of a cache hit's routing cost (callgrind).
            let servers = table.servers
            return withUnsafeTemporaryAllocation(of: Bool.self, capacity: max(1, servers.count)) { mask in
                var allowed: UnsafePointer<Bool>? = nil
                if let names = requirements.allowedServers {
                    for index in servers.indices { mask.initializeElement(at: index, to: names.contains(servers[index].id)) }
                    allowed = UnsafePointer(mask.baseAddress)
                }
                return withUnsafeTemporaryAllocation(of: Int32.self, capacity: max(1, maxFallbacks)) { storage in
                    let out = UnsafeMutableBufferPointer(rebasing: storage[0..<max(0, maxFallbacks)])
                    out.initialize(repeating: -1)
                    var name = tool
                    let choice = name.withUTF8 { choose(table, tool: UnsafeRawBufferPointer($0), fast, allowed: allowed, fallbacks: out) }
                    let elapsed = DispatchTimeNanos.now() - start
                    let fallbacks = choice.fallbackCount == 0 ? [] : out.prefix(choice.fallbackCount).map { servers[Int($0)].id }
                    return RoutingDecision(choice: choice, table: table, tool: tool, requirements: requirements,
                                           fallbacks: fallbacks, decisionNanos: elapsed, settings: settings)
                }
            }
        }
    }

    /// Statistics of every registered server, and of each of its tools that saw traffic.
    public func serverStats() -> [ServerStatsSnapshot] {
        let errors = lastErrors.withLock { $0 }
        return table.read { table in
            table.servers.map { server in
                let cell = stats.cell(server: server.id, tool: nil)
                var snapshot = ServerStatsSnapshot(cell: cell, id: server.id, group: server.group, health: server.health)
                snapshot.lastError = errors[server.id]?.0
                snapshot.tools = server.tools.compactMap { tool in
                    guard let pair = stats.existingCell(server: server.id, tool: tool.name), pair.samples > 0 || pair.windowCount > 0 else { return nil }
                    return ToolStatsSnapshot(cell: pair, tool: tool.name)
                }
                return snapshot
            }
        }
    }
}

/// Requirements as the fast path takes them: plain numbers.
public struct FastRequirements: Sendable, Equatable {
    public var maxResponseNanos: Double = .infinity
    public var minSuccessRate: Double = 0
    public var strategy: RoutingStrategy?
    public var affinityHash: UInt64 = 0

    public init(maxResponseNanos: Double = .infinity, minSuccessRate: Double = 0, strategy: RoutingStrategy? = nil, affinityHash: UInt64 = 0) {
        self.maxResponseNanos = maxResponseNanos
        self.minSuccessRate = minSuccessRate
        self.strategy = strategy
        self.affinityHash = affinityHash
    }

    public init(_ requirements: Requirements) {
        maxResponseNanos = requirements.maxResponseTime?.nanosecondsDouble ?? .infinity
        minSuccessRate = requirements.minSuccessRate ?? 0
        strategy = requirements.strategy
        affinityHash = requirements.affinityKey.map { Array($0.utf8).withUnsafeBytes { RoutingTable.hash($0) } } ?? 0
    }
}

/// The fast path's answer.
public struct RouteChoice: Sendable {
    public enum Outcome: String, Sendable {
        case chosen
        /// Every candidate is out (circuit open, unhealthy): this is the least bad.
        case lastResort = "last-resort"
        case unknownTool = "unknown-tool"
        /// Candidates exist but none meets the requirements (or the allowed servers).
        case noServerMeetsRequirements = "no-server-meets-requirements"
        case noCandidates = "no-candidates"
    }

    public var outcome: Outcome
    /// Index of the chosen server in the table of `generation` (-1: none).
    public var server: Int32 = -1
    public var strategy: RoutingStrategy = .adaptive
    public var confidence = 0.0
    /// Predicted latency of the choice (NaN: no fresh history).
    public var predictedNanos = Double.nan
    /// Predictions were not trusted: least outstanding chose instead.
    public var fellBack = false
    /// The adaptive strategy explored instead of exploiting.
    public var explored = false
    /// The request is a half-open circuit's probe.
    public var probe = false
    public var fallbackCount = 0
    public let generation: UInt64
    nonisolated(unsafe) var serverCell: UnsafeMutablePointer<UInt64>?
    nonisolated(unsafe) var pairCell: UnsafeMutablePointer<UInt64>?

    init(outcome: Outcome, generation: UInt64) {
        self.outcome = outcome
        self.generation = generation
    }

    public var hasServer: Bool { server >= 0 }
}

/// A small value behind a lock (for cold paths).
final class LockedValue<Value>: @unchecked Sendable {
    private let lock = Lock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) -> R) -> R { lock.withLock { body(&value) } }
}

enum DispatchTimeNanos {
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
