import CMCPOptSupport
import MCPOptCache
import MCPOptConfig
import MCPOptCoordination
import MCPOptRouting
import MCPOptJSON

/// The optimization engine: owns the configuration and the components built from it.
/// Later stages (cache, routing, upstream sessions) hang off this object.
public final class Engine: Sendable {
    public let config: EngineConfig
    /// Which allocator the process uses; the library never brings its own (see DESIGN.md).
    public let allocator: String
    /// Shared state (versioned keys on hybrid logical clocks). Local to this engine for now:
    /// replication between instances arrives with the Redis tier.
    public let state: StateStore
    /// The in-process cache level (L1), sized by `caching.memoryCacheSize`.
    public let cache: MemoryCache
    /// Which server serves each request: the configured servers, and the tools they offer
    /// once registered (`router.setTools`, or the gateway after `tools/list`).
    public let router: Router
    /// The request path's moving parts (backends, catalogs, metrics, events).
    let runtime: EngineRuntime
    /// Periodic and state events (metricsUpdate, targetMet, routingOptimized, stateUpdated).
    let monitor = EngineMonitor()
    /// Fan-out operations and two-phase commits across servers.
    let coordination: EngineCoordination

    public init(config: EngineConfig) {
        self.config = config
        self.allocator = mco_process_has_jemalloc() != 0 ? "jemalloc" : "system"
        let node = "engine-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        self.state = StateStore(clock: HybridLogicalClock(node: node))
        self.cache = Self.makeCache(config.caching)
        self.router = Self.makeRouter(config)
        self.runtime = EngineRuntime(config: config)
        self.coordination = EngineCoordination(config.coordination)
    }

    private static func makeCache(_ caching: CachingOptions) -> MemoryCache {
        var settings = MemoryCacheConfiguration(memoryBudget: caching.memoryCacheSize)
        // A zero coherence timeout means "no bound" (validation keeps it within 0...24 h).
        settings.coherenceTimeout = caching.coherenceTimeout > .zero ? caching.coherenceTimeout : nil
        do {
            let cache = try MemoryCache(settings)
            // Expired items give their memory back within a second, read or not.
            cache.startExpirySweeper(every: .seconds(1))
            return cache
        } catch {
            // Unreachable: configuration validation keeps the budget at 64 KiB or more, the
            // cache's only requirement; the smallest cache is the safe answer regardless.
            return try! MemoryCache(MemoryCacheConfiguration(memoryBudget: MemoryCacheConfiguration.minimumBudget))
        }
    }

    public convenience init(json: String) throws(ConfigError) {
        self.init(config: try EngineConfig.parse(json))
    }

    /// What this engine is running with: version, allocator, servers by transport and group,
    /// and the effective configuration (secrets redacted).
    public func describe() -> JSONValue {
        let active = config.activeServers
        var groups: [String: [String]] = [:]
        for s in active { groups[s.group, default: []].append(s.name) }
        let groupObject = JSONObject(groups.keys.sorted().map { (key: $0, value: JSONValue.array(groups[$0]!.map { .string($0) })) })
        return .object([
            "version": .string(MCPOptVersion.string),
            "allocator": .string(allocator),
            "servers": [
                "configured": .int(Int64(config.servers.count)),
                "active": .int(Int64(active.count)),
                "stdio": .int(Int64(active.filter { $0.transport.name == "stdio" }.count)),
                "http": .int(Int64(active.filter { $0.transport.name == "http" }.count)),
                "groups": .object(groupObject),
            ],
            "config": config.effectiveJSON(),
        ])
    }
}

/// The library's version, shared by the C ABI and the program.
public enum MCPOptVersion {
    public static let major = 0
    public static let minor = 1
    public static let patch = 0
    public static let string = "\(major).\(minor).\(patch)"
    /// Bumped on any incompatible change to include/mcpopt.h.
    public static let abi = 1
}
