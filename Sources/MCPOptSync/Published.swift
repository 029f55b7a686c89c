import CMCPOptConcurrency

/// An immutable object published for lock-free readers: `read` hands the current object to its
/// body borrowed (no lock, no reference count: readers on several cores write nothing shared),
/// `publish` swaps in a new one. A replaced object is released only once no reader that could
/// have seen it is still reading (epochs, see CMCPOptConcurrency).
public final class Published<Object: AnyObject>: @unchecked Sendable {
    private let cell: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    private let lock = Lock()
    private var retired: [(epoch: UInt64, object: Unmanaged<Object>)] = []   // guarded by lock
    /// Non-zero while `retired` holds something (read by readers, rarely written).
    private let pending: UnsafeMutablePointer<UInt64>

    public init(_ initial: Object) {
        cell = .allocate(capacity: 1)
        cell.initialize(to: Unmanaged.passRetained(initial).toOpaque())
        pending = .allocate(capacity: 1)
        pending.initialize(to: 0)
    }

    deinit {
        if let raw = cell.pointee { Unmanaged<Object>.fromOpaque(raw).release() }
        for entry in retired { entry.object.release() }
        cell.deallocate()
        pending.deallocate()
    }

    /// Runs `body` with the current object, borrowed for the duration of the call.
    @inline(__always)
    public func read<R>(_ body: (Object) throws -> R) rethrows -> R {
        let reader = mco_reader_self()!
        mco_read_enter(reader)
        defer {
            mco_read_exit(reader)
            if mco_load64(pending) != 0 { reclaim() }
        }
        let object = Unmanaged<Object>.fromOpaque(mco_load_pointer(cell)!)
        return try object._withUnsafeGuaranteedRef { try body($0) }
    }

    /// The current object, as a strong reference.
    public var current: Object { read { $0 } }

    /// Makes `object` current; the previous one is released once readers are done with it.
    /// `reclaiming: false` leaves the release for a later `reclaim` (for callers holding a
    /// lock that a released object's deinit might need).
    public func publish(_ object: Object, reclaiming: Bool = true) {
        let new = Unmanaged.passRetained(object).toOpaque()
        lock.withLock {
            let old = Unmanaged<Object>.fromOpaque(mco_load_pointer(cell)!)
            mco_store_pointer(cell, new)
            retired.append((mco_epoch_advance(), old))
            mco_store64(pending, 1)
        }
        if reclaiming { reclaim() }
    }

    /// Releases replaced objects no reader can still hold (outside the lock: a deinit may call
    /// back in).
    public func reclaim() {
        let released = lock.withLock { () -> [Unmanaged<Object>] in
            var objects: [Unmanaged<Object>] = []
            retired.removeAll { entry in
                guard mco_epoch_quiescent(entry.epoch) != 0 else { return false }
                objects.append(entry.object)
                return true
            }
            mco_store64(pending, retired.isEmpty ? 0 : 1)
            return objects
        }
        for object in released { object.release() }
    }
}
