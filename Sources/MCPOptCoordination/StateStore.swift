import MCPOptSync

/// A versioned value of the shared state.
public struct VersionedValue: Sendable, Equatable {
    public var value: [UInt8]
    public var stamp: HLCTimestamp
    /// Tombstone: the key was deleted at `stamp` (kept so a late older write cannot revive it).
    public var deleted: Bool

    public init(value: [UInt8], stamp: HLCTimestamp, deleted: Bool = false) {
        self.value = value
        self.stamp = stamp
        self.deleted = deleted
    }
}

/// How two concurrent versions of a key become one.
public enum ConflictResolution: Sendable {
    /// The later HLC stamp wins (ties cannot happen: stamps carry the node id).
    case lastWriterWins
    /// A host-supplied merge of (local, remote) into the value to keep; its stamp is the later one.
    case merge(@Sendable (VersionedValue, VersionedValue) -> [UInt8])
}

/// The in-process, single-instance state store: versioned keys, HLC stamps, conflict resolution,
/// watchers. Replication between instances (eventual through Redis, strong by compare-and-set)
/// feeds remote versions in through `apply`.
public final class StateStore: @unchecked Sendable {
    public typealias Watcher = @Sendable (String, VersionedValue) -> Void

    public let clock: HybridLogicalClock
    public let resolution: ConflictResolution
    private let lock = Lock()
    private var entries: [String: VersionedValue] = [:]          // guarded by lock
    private var watchers: [(prefix: String, id: UInt64, fn: Watcher)] = []  // guarded by lock
    private var nextWatcher: UInt64 = 1                            // guarded by lock

    public init(clock: HybridLogicalClock, resolution: ConflictResolution = .lastWriterWins) {
        self.clock = clock
        self.resolution = resolution
    }

    /// Writes locally; returns the stored version.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8]) -> VersionedValue {
        let version = VersionedValue(value: value, stamp: clock.tick())
        return store(key, version)
    }

    @discardableResult
    public func delete(_ key: String) -> VersionedValue {
        store(key, VersionedValue(value: [], stamp: clock.tick(), deleted: true))
    }

    public func get(_ key: String) -> VersionedValue? {
        lock.withLock { entries[key].flatMap { $0.deleted ? nil : $0 } }
    }

    /// Merges a version from another instance; returns what the key holds afterwards.
    @discardableResult
    public func apply(_ key: String, _ remote: VersionedValue) -> VersionedValue {
        clock.observe(remote.stamp)
        let current = lock.withLock { entries[key] }
        guard let current else { return store(key, remote) }
        if current.stamp == remote.stamp { return current }
        let winner: VersionedValue
        switch resolution {
        case .lastWriterWins:
            winner = remote.stamp > current.stamp ? remote : current
        case .merge(let merge):
            if current.deleted || remote.deleted {
                winner = remote.stamp > current.stamp ? remote : current
            } else {
                let later = max(current.stamp, remote.stamp)
                // Merge in a fixed order (older, newer) so every instance computes the same value.
                let (older, newer) = current.stamp < remote.stamp ? (current, remote) : (remote, current)
                winner = VersionedValue(value: merge(older, newer), stamp: later)
            }
        }
        if winner == current { return current }
        return store(key, winner)
    }

    /// Calls `watcher` for every change of a key starting with `prefix` (on the writer's thread).
    public func watch(prefix: String, _ watcher: @escaping Watcher) -> UInt64 {
        lock.withLock {
            let id = nextWatcher
            nextWatcher += 1
            watchers.append((prefix, id, watcher))
            return id
        }
    }

    /// Stops a watch; false when there was no such watch.
    @discardableResult
    public func unwatch(_ id: UInt64) -> Bool {
        lock.withLock { () -> Bool in
            let before = watchers.count
            watchers.removeAll { $0.id == id }
            return watchers.count != before
        }
    }

    /// Every key and version, tombstones included: what replication ships.
    public func snapshot() -> [String: VersionedValue] {
        lock.withLock { entries }
    }

    private func store(_ key: String, _ version: VersionedValue) -> VersionedValue {
        let interested = lock.withLock { () -> [Watcher] in
            entries[key] = version
            return watchers.filter { key.hasPrefix($0.prefix) }.map(\.fn)
        }
        for watcher in interested { watcher(key, version) }
        return version
    }
}
