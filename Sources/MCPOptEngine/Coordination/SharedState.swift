import MCPOptConfig
import MCPOptCoordination
import MCPOptJSON
import MCPOptRedis

/// The engine's shared state: versioned keys on hybrid logical clocks, local to the engine
/// (single-instance mode, no Redis) or shared with other instances through Redis when
/// `coordination.enableStateSynchronization` is on and a Redis is configured
/// (`coordination.redisUrl`, else `caching.distributed.url`). Under `eventual` these calls
/// are local and never wait; under `strong` each one is a Redis round trip.
extension Engine {
    /// The replication to other instances, once the engine has started (nil: local only).
    var stateReplicator: StateReplicator? { coordination.replicator }

    /// Whether state calls go to Redis (strong consistency, shared): the C ABI's state calls
    /// then wait; otherwise they are local and immediate.
    public var stateIsStrong: Bool {
        // Whether a Redis is configured, not its endpoint: every C ABI state call asks, and the
        // configuration's URLs were checked when it loaded.
        config.coordination.enableStateSynchronization && config.coordination.consistencyModel == .strong
            && (config.coordination.redisUrl != nil || config.caching.distributed != nil)
    }

    /// How versions from other instances that conflict with this one's are resolved: nil for
    /// last writer wins (the default), or a merge of a key's (older, newer) values, which must
    /// be deterministic (every instance computes it, and must agree).
    public func setStateMerge(_ merge: (@Sendable (_ key: String, _ older: VersionedValue, _ newer: VersionedValue) -> [UInt8])?) {
        state.resolution = merge.map { .merge($0) } ?? .lastWriterWins
    }

    /// Writes `value` under `key`; returns the stored version.
    @discardableResult
    public func putState(_ key: String, _ value: [UInt8]) async throws(StateSyncError) -> VersionedValue {
        try await write(key, value, deleted: false)
    }

    /// Deletes `key` (a tombstone, so an older write arriving late cannot bring it back);
    /// nil when there was nothing to delete.
    @discardableResult
    public func deleteState(_ key: String) async throws(StateSyncError) -> VersionedValue? {
        guard try await getState(key) != nil else { return nil }
        return try await write(key, [], deleted: true)
    }

    /// The value under `key` (nil when absent or deleted). Strong: read from Redis.
    public func getState(_ key: String) async throws(StateSyncError) -> VersionedValue? {
        guard let r = try await strongReplicator() else { return state.get(key) }
        guard let remote = try await r.read(key) else { return state.get(key) }
        let held = state.adopt(key, remote)
        return held.deleted ? nil : held
    }

    /// Writes `value` only if `key` is still at version `expected` (nil: absent); otherwise
    /// throws a `.conflict` carrying what the key holds. Linearizable under `strong` (Redis
    /// decides); under `eventual` or without Redis, atomic within this engine only.
    @discardableResult
    public func compareAndSetState(_ key: String, expected: HLCTimestamp?, _ value: [UInt8]) async throws(StateSyncError) -> VersionedValue {
        guard let r = try await strongReplicator() else {
            if let stored = state.compareAndPut(key, expected: expected, value) { return stored }
            throw StateSyncError(kind: .conflict, description: "state \"\(key)\" is not at version \(expected?.description ?? "(absent)")", current: state.get(key))
        }
        if let expected { state.clock.observe(expected) }
        let version = VersionedValue(value: value, stamp: state.clock.tick())
        let (written, current) = try await r.write(key, version, mode: .compareAndSet(expected: expected))
        if written { return state.adopt(key, version) }
        if let current { state.adopt(key, current) }
        throw StateSyncError(kind: .conflict, description: "state \"\(key)\" is not at version \(expected?.description ?? "(absent)")",
                             current: current.flatMap { $0.deleted ? nil : $0 })
    }

    private func write(_ key: String, _ value: [UInt8], deleted: Bool) async throws(StateSyncError) -> VersionedValue {
        guard let r = try await strongReplicator() else {
            return deleted ? state.delete(key) : state.put(key, value)
        }
        // Redis orders writes per key: a stamp that is not later than the stored one is
        // refused with the stored one, which the clock then observes before trying again.
        for _ in 0..<16 {
            let version = VersionedValue(value: value, stamp: state.clock.tick(), deleted: deleted)
            let (written, current) = try await r.write(key, version, mode: .ifNewer)
            if written { return state.adopt(key, version) }
            if let current { state.clock.observe(current.stamp) }
        }
        throw StateSyncError(kind: .unavailable, description: "state \"\(key)\": could not order the write after 16 attempts")
    }

    /// The replicator when the state is strong and shared (starting the engine if needed).
    private func strongReplicator() async throws(StateSyncError) -> StateReplicator? {
        guard stateIsStrong else { return nil }
        if !runtime.isReady { await start() }
        guard let r = stateReplicator else {
            throw StateSyncError(kind: .unavailable, description: "shared state: the Redis URL does not parse")
        }
        return r
    }

    /// Where shared state (and a Redis decision log) lives: `coordination.redisUrl`, else the
    /// shared cache's Redis with its credentials and TLS material.
    var stateRedis: RedisEndpoint? {
        if let url = config.coordination.redisUrl { return RedisEndpoint.parse(url) }
        return config.caching.distributed.flatMap { RedisEndpoint($0) }
    }

    /// Starts replication (from `start`) when state synchronization is on and Redis is known.
    func startStateReplication() async {
        guard config.coordination.enableStateSynchronization, let endpoint = stateRedis, let loop = runtime.eventLoop else { return }
        let r = StateReplicator(endpoint: endpoint, keyPrefix: config.caching.distributed?.keyPrefix ?? "mcpopt:",
                                strong: config.coordination.consistencyModel == .strong, interval: config.coordination.syncInterval,
                                store: state, loop: loop, events: events)
        coordination.setReplicator(r)
        await r.start()
    }
}
