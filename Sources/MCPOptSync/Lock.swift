import CMCPOptConcurrency

/// A mutex: a futex word taken with one compare-and-swap when free (see `mco_mutex` in
/// CMCPOptConcurrency). Not Synchronization.Mutex: on Linux that is a futex lock compiled into
/// the standard library, whose atomics ThreadSanitizer does not see, so it reports races; this
/// one's atomics are compiled into the caller and seen.
public final class Lock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<mco_mutex>

    public init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: mco_mutex(state: 0))
    }

    deinit { mutex.deallocate() }

    @inline(__always)
    public func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        mco_mutex_lock(mutex)
        defer { mco_mutex_unlock(mutex) }
        return try body()
    }
}
