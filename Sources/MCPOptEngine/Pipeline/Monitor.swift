import MCPOptCoordination
import MCPOptJSON
import MCPOptRouting
import MCPOptSync

/// The events that come from watching the engine rather than from one request: every
/// `interval`, `metricsUpdate` (the figures), `targetMet` (when the configured targets become
/// met), `routingOptimized` (a tool's preferred server changed); and `stateUpdated` for every
/// change of the shared state. Ticks only build events someone listens to.
final class EngineMonitor: @unchecked Sendable {
    static let interval: Duration = .seconds(5)

    private let lock = Lock()
    private var preferred: [String: String] = [:]   // guarded by lock: tool -> server
    private var targetsMet = false                   // guarded by lock
    private var task: Task<Void, Never>?             // guarded by lock
    private var watch: UInt64?                       // guarded by lock
    /// Set by `stop`, for good (an engine does not start again): a start still in progress
    /// when the engine stops (its servers being listed) must not begin ticking afterwards,
    /// unstopped, with weak references a host exiting right after would leak.
    private var ended = false                        // guarded by lock

    func start(_ engine: Engine) {
        lock.withLock {
            guard task == nil, !ended else { return }
            watch = engine.state.watch(prefix: "") { [weak engine] key, version in
                engine?.events.emit(.stateUpdated, ["key": .string(key), "deleted": .bool(version.deleted), "version": .string(version.stamp.description)])
            }
            task = Task.detached { [weak engine, weak self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: EngineMonitor.interval)
                    guard let engine, let self, !Task.isCancelled else { return }
                    self.tick(engine)
                }
            }
        }
    }

    /// Stops the ticks; returns the task, which a caller can await so that nothing of it
    /// (its weak references to the engine) outlives the stop.
    @discardableResult
    func stop(_ engine: Engine) -> Task<Void, Never>? {
        let (t, w) = lock.withLock { () -> (Task<Void, Never>?, UInt64?) in
            defer {
                task = nil
                watch = nil
                ended = true
            }
            return (task, watch)
        }
        t?.cancel()
        if let w { _ = engine.state.unwatch(w) }
        return t
    }

    /// One look at the engine (tests call it directly rather than wait for the interval).
    func tick(_ engine: Engine) {
        guard engine.events.hasSubscribers else { return }
        let metrics = engine.getOptimizationMetrics()
        engine.events.emit(.metricsUpdate, metrics)

        let t = engine.config.targets
        let system = metrics["system"]
        let reduction = system?["latencyReduction"]?.doubleValue
        let success = system?["successRate"]?.doubleValue
        let p99Ms = system?["latencyMs"]?["p99"]?.doubleValue
        let met: Bool
        if let reduction, let success, let p99Ms {
            met = reduction >= t.latencyReduction && success >= t.minSuccessRate && p99Ms <= Double(t.maxResponseTime.components.seconds) * 1000
                + Double(t.maxResponseTime.components.attoseconds) / 1e15
        } else {
            met = false
        }
        let newlyMet = lock.withLock { () -> Bool in
            defer { targetsMet = met }
            return met && !targetsMet
        }
        if newlyMet {
            engine.events.emit(.targetMet, ["latencyReduction": .double(reduction ?? 0), "successRate": .double(success ?? 0), "p99Ms": .double(p99Ms ?? 0),
                                            "targets": ["latencyReduction": .double(t.latencyReduction), "minSuccessRate": .double(t.minSuccessRate)]])
        }

        // Each tool's preferred server now (exploration probes aside), against the last tick.
        var tools = Set<String>()
        for catalog in engine.catalogs where catalog.error == nil { tools.formUnion(catalog.toolNames) }
        var changes: [(tool: String, from: String?, to: String, reasoning: String)] = []
        for tool in tools.sorted() {
            let decision = engine.router.decide(tool: tool, maxFallbacks: 0)
            guard !decision.probe, let server = decision.server else { continue }
            let before = lock.withLock { () -> String? in
                defer { preferred[tool] = server }
                return preferred[tool]
            }
            if let before, before != server { changes.append((tool, before, server, decision.reasoning)) }
        }
        for c in changes {
            engine.events.emit(.routingOptimized, ["tool": .string(c.tool), "from": c.from.map { .string($0) } ?? .null, "to": .string(c.to),
                                                   "reasoning": .string(c.reasoning)])
        }
    }
}
