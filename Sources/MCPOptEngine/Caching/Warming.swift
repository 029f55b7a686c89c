import MCPOptSync

/// Refresh-ahead bookkeeping (caching.warmingStrategy): one refresh per key at a time, and
/// whether refreshed entries were then used. Both sets are bounded.
final class WarmingTracker: @unchecked Sendable {
    let started = AtomicCounter(), stored = AtomicCounter(), failed = AtomicCounter(), useful = AtomicCounter()
    private let lock = Lock()
    private var inFlight: Set<[UInt8]> = []        // guarded by lock
    private var awaitingHit: Set<[UInt8]> = []     // guarded by lock
    private let limit = 10_000
    private var hotSetClaimed = false              // guarded by lock

    /// True once: the saved hot set is restored by the first start only.
    func claimHotSetRestore() -> Bool {
        lock.withLock {
            defer { hotSetClaimed = true }
            return !hotSetClaimed
        }
    }

    /// Claims the refresh of `key`; false when one is already running (or too many are).
    func begin(_ key: [UInt8]) -> Bool {
        lock.withLock { inFlight.count < limit && inFlight.insert(key).inserted }
    }

    func end(_ key: [UInt8], succeeded: Bool) {
        if !succeeded { failed.add() }
        lock.withLock { _ = inFlight.remove(key) }
    }

    /// A refresh's result went into the cache.
    func refreshStored(_ key: [UInt8]) {
        stored.add()
        lock.withLock { if awaitingHit.count < limit { awaitingHit.insert(key) } }
    }

    /// A hit read a refreshed entry: the first such hit makes that refresh a useful one.
    func hitAfterRefresh(_ key: [UInt8]) {
        let first = lock.withLock { awaitingHit.remove(key) != nil }
        if first { useful.add() }
    }

    /// Share of stored refreshes that served at least one hit (nil before any).
    var efficiency: Double? {
        let s = stored.load()
        return s == 0 ? nil : Double(useful.load()) / Double(s)
    }
}
