import MCPOptSync

/// Merges identical requests in flight: the first caller for a key leads (it does the work),
/// later callers wait for its result. A waiter may leave (cancel); the work itself is
/// abandoned only when every waiter has left. Callbacks run on the thread that completes.
public final class Coalescer<Key: Hashable & Sendable, Value: Sendable>: @unchecked Sendable {
    public typealias Waiter = @Sendable (Result<Value, any Error>) -> Void
    public typealias WaiterID = UInt64

    public enum Joined: Sendable, Equatable {
        /// This caller must do the work and call `complete`.
        case leader(WaiterID)
        /// Another caller is doing it; the waiter is called with its result.
        case follower(WaiterID)
    }

    private let lock = Lock()
    @exclusivity(unchecked) private var inFlight: [Key: [(id: WaiterID, waiter: Waiter)]] = [:]  // guarded by lock
    @exclusivity(unchecked) private var nextID: WaiterID = 1                                     // guarded by lock
    @exclusivity(unchecked) private var merged: UInt64 = 0                                       // guarded by lock

    public init() {}

    public func join(_ key: Key, waiter: @escaping Waiter) -> Joined {
        lock.withLock {
            let id = nextID
            nextID += 1
            if inFlight[key] != nil {
                inFlight[key]!.append((id, waiter))
                merged += 1
                return .follower(id)
            }
            inFlight[key] = [(id, waiter)]
            return .leader(id)
        }
    }

    /// As `join`, but the waiter is made only for a follower (under the lock): a leader gets the
    /// result from its own work, so nothing is allocated for it.
    public func join(_ key: Key, follower makeWaiter: () -> Waiter) -> Joined {
        lock.withLock {
            let id = nextID
            nextID += 1
            // One lookup: a key in flight always has a waiter (its leader at least).
            let leads = Self.enter(&inFlight[key, default: []], id, makeWaiter)
            if !leads { merged += 1 }
            return leads ? .leader(id) : .follower(id)
        }
    }

    private static func enter(_ waiters: inout [(id: WaiterID, waiter: Waiter)], _ id: WaiterID, _ makeWaiter: () -> Waiter) -> Bool {
        let leads = waiters.isEmpty
        waiters.append((id, leads ? { @Sendable _ in } : makeWaiter()))
        return leads
    }

    /// Delivers the result to every waiter still there and forgets the key.
    public func complete(_ key: Key, _ result: Result<Value, any Error>) {
        let waiters = lock.withLock { inFlight.removeValue(forKey: key) ?? [] }
        for (_, waiter) in waiters { waiter(result) }
    }

    /// A waiter leaves. Returns true when it was the last one: the caller should cancel the
    /// work (and then `complete` the key, which then reaches nobody).
    public func leave(_ key: Key, _ id: WaiterID) -> Bool {
        lock.withLock {
            guard var waiters = inFlight[key] else { return false }
            waiters.removeAll { $0.id == id }
            inFlight[key] = waiters.isEmpty ? nil : waiters
            return waiters.isEmpty
        }
    }

    /// Keys in flight, and how many requests were merged into another so far.
    public var stats: (inFlight: Int, merged: UInt64) { lock.withLock { (inFlight.count, merged) } }
}
