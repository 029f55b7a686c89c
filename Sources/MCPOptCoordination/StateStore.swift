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
    /// A host-supplied merge of a key's (older, newer) versions into the value to keep; its
    /// stamp is the later one. Every instance merges in the same order, so all agree.
    case merge(@Sendable (_ key: String, _ older: VersionedValue, _ newer: VersionedValue) -> [UInt8])
}

/// The in-process, single-instance state store: versioned keys, HLC stamps, conflict resolution,
/// watchers. Replication between instances (eventual through Redis, strong by compare-and-set)
/// feeds remote versions in through `apply`.
public final class StateStore: @unchecked Sendable {
    public typealias Watcher = @Sendable (String, VersionedValue) -> Void

    public let clock: HybridLogicalClock
    /// How concurrent versions from other instances are resolved; may be changed at any time.
    public var resolution: ConflictResolution {
        get { lock.withLock { resolutionStorage } }
        set { lock.withLock { resolutionStorage = newValue } }
    }
    private var resolutionStorage: ConflictResolution               // guarded by lock
    private let lock = Lock()
    private var entries: [String: VersionedValue] = [:]          // guarded by lock
    private var watchers: [(prefix: String, id: UInt64, fn: Watcher)] = []  // guarded by lock
    private var nextWatcher: UInt64 = 1                            // guarded by lock
    private var localWriteHook: Watcher?                           // guarded by lock

    public init(clock: HybridLogicalClock, resolution: ConflictResolution = .lastWriterWins) {
        self.clock = clock
        self.resolutionStorage = resolution
    }

    /// Writes locally; returns the stored version.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8]) -> VersionedValue {
        let version = VersionedValue(value: value, stamp: clock.tick())
        return wrote(key, store(key, version))
    }

    @discardableResult
    public func delete(_ key: String) -> VersionedValue {
        wrote(key, store(key, VersionedValue(value: [], stamp: clock.tick(), deleted: true)))
    }

    /// Writes `value` only if the key is at `expected` (nil: absent or deleted); otherwise
    /// returns nil and writes nothing. Local to this store (see the engine for the shared one).
    public func compareAndPut(_ key: String, expected: HLCTimestamp?, _ value: [UInt8]) -> VersionedValue? {
        let version = VersionedValue(value: value, stamp: clock.tick())
        let stored = replace(key, with: version) { current in
            guard let current, !current.deleted else { return expected == nil }
            return current.stamp == expected
        }
        return stored.map { wrote(key, $0) }
    }

    /// Called after every local write (put, delete), not for versions applied from elsewhere:
    /// how replication learns what to send. One hook; nil removes it.
    public func onLocalWrite(_ hook: Watcher?) {
        lock.withLock { localWriteHook = hook }
    }

    private func wrote(_ key: String, _ version: VersionedValue) -> VersionedValue {
        if let hook = lock.withLock({ localWriteHook }) { hook(key, version) }
        return version
    }

    /// Takes `version` if it is later than what the key holds, without merging: the
    /// linearizable path, where the shared store already decided the order.
    @discardableResult
    public func adopt(_ key: String, _ version: VersionedValue) -> VersionedValue {
        clock.observe(version.stamp)
        while true {
            if let stored = replace(key, with: version, when: { $0 == nil || $0!.stamp < version.stamp }) { return stored }
            if let current = lock.withLock({ entries[key] }) { return current }
        }
    }

    public func get(_ key: String) -> VersionedValue? {
        lock.withLock { entries[key].flatMap { $0.deleted ? nil : $0 } }
    }

    /// Merges a version from another instance; returns what the key holds afterwards.
    @discardableResult
    public func apply(_ key: String, _ remote: VersionedValue) -> VersionedValue {
        clock.observe(remote.stamp)
        // The merge callback runs outside the lock (it is the host's code): its result is
        // stored only if the key did not change meanwhile, else it merges again.
        while true {
            guard let current = lock.withLock({ entries[key] }) else {
                if let stored = replace(key, with: remote, when: { $0 == nil }) { return stored }
                continue
            }
            if current.stamp == remote.stamp { return current }
            var winner: VersionedValue
            var merged = false
            switch resolution {
            case .lastWriterWins:
                winner = remote.stamp > current.stamp ? remote : current
            case .merge(let merge):
                // Merge in a fixed order (older, newer) so every instance computes the same value.
                let (older, newer) = current.stamp < remote.stamp ? (current, remote) : (remote, current)
                winner = newer
                if !current.deleted && !remote.deleted {
                    let value = merge(key, older, newer)
                    // Something neither side had: a new write of this instance (a later stamp,
                    // sent on like any write), so the others take it in and everyone converges.
                    // A merge that is a join (commutative, associative, idempotent) settles at
                    // once: merging the merged value again changes nothing.
                    if value != newer.value {
                        winner = VersionedValue(value: value, stamp: clock.tick())
                        merged = true
                    }
                }
            }
            if winner == current { return current }
            if let stored = replace(key, with: winner, when: { $0 == current }) { return merged ? wrote(key, stored) : stored }
        }
    }

    /// Stores `version` if `condition` holds for what the key holds now (atomically), and
    /// tells the watchers; nil when it did not hold.
    private func replace(_ key: String, with version: VersionedValue, when condition: (VersionedValue?) -> Bool) -> VersionedValue? {
        let interested = lock.withLock { () -> [Watcher]? in
            guard condition(entries[key]) else { return nil }
            entries[key] = version
            return watchers.filter { key.hasPrefix($0.prefix) }.map(\.fn)
        }
        guard let interested else { return nil }
        for watcher in interested { watcher(key, version) }
        return version
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
        replace(key, with: version) { _ in true }!
    }
}
