import CMCPOptConcurrency
import MCPOptSync

/// Tracks the live handles of one kind so that a stale or foreign pointer is refused with a
/// status instead of being dereferenced.
///
/// Lookups take no lock and touch no shared counter: the live handles are an immutable table
/// published through an atomic pointer, and a caller announces itself with the same epochs the
/// cache uses (its own cache line, see CMCPOptCache). Destroying a handle unpublishes it; the
/// registry keeps the object until no call that could have found it is still running, so calls
/// in flight on other threads finish first. Mutations (create, destroy) take a lock.
final class HandleRegistry<Object: AnyObject & Sendable>: @unchecked Sendable {
    private let lock = Lock()
    private var live: [UInt: Unmanaged<Object>] = [:]      // guarded by lock
    /// Replaced tables and removed objects, freed once no reader can still see them.
    private var retired: [(epoch: UInt64, table: UnsafeMutablePointer<UInt64>?, object: Unmanaged<Object>?)] = []
    /// The published table: [mask, (handle, object)...]; handle 0 marks an empty slot.
    private let cell: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    /// Non-zero while something waits in `retired` (read by every caller; rarely written).
    private let pending: UnsafeMutablePointer<UInt64>

    init() {
        cell = .allocate(capacity: 1)
        cell.initialize(to: nil)
        pending = .allocate(capacity: 1)
        pending.initialize(to: 0)
    }

    deinit {
        // Registries are globals; this runs only in tests that make their own.
        if let table = cell.pointee { table.assumingMemoryBound(to: UInt64.self).deallocate() }
        for entry in retired { entry.table?.deallocate(); entry.object?.release() }
        for object in live.values { object.release() }
        cell.deallocate()
        pending.deallocate()
    }

    /// Registers `object` and returns its handle.
    func insert(_ object: Object) -> OpaquePointer {
        let address = UInt(bitPattern: ObjectIdentifier(object))
        lock.withLock {
            live[address] = Unmanaged.passRetained(object)
            publish(removing: nil)
        }
        return OpaquePointer(bitPattern: address)!
    }

    /// Unregisters a handle; returns false when it was not live.
    func remove(_ handle: OpaquePointer) -> Bool {
        let address = UInt(bitPattern: handle)
        let removed = lock.withLock { () -> Bool in
            guard let object = live.removeValue(forKey: address) else { return false }
            publish(removing: object)
            return true
        }
        reclaim()
        return removed
    }

    /// Runs `body` with the object behind a live handle, borrowed (no reference counting), or
    /// returns nil for a handle that is not live.
    @inline(__always)
    func withObject<R>(_ handle: OpaquePointer, _ body: (Object) -> R) -> R? {
        let reader = mco_reader_self()!
        mco_read_enter(reader)
        defer {
            mco_read_exit(reader)
            if mco_load64(pending) != 0 { reclaim() }
        }
        guard let object = find(UInt(bitPattern: handle)) else { return nil }
        return object._withUnsafeGuaranteedRef { body($0) }
    }

    /// The object behind a live handle (a strong reference), or nil.
    func lookup(_ handle: OpaquePointer) -> Object? {
        withObject(handle) { $0 }
    }

    var count: Int { lock.withLock { live.count } }

    @inline(__always)
    private func find(_ address: UInt) -> Unmanaged<Object>? {
        guard address != 0, let raw = mco_load_pointer(cell) else { return nil }
        let table = raw.assumingMemoryBound(to: UInt64.self)
        let mask = Int(table[0])
        var slot = Int(truncatingIfNeeded: (UInt64(address) &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
        for _ in 0...mask {
            let key = table[1 + 2 * slot]
            if key == 0 { return nil }
            if key == UInt64(address) {
                return Unmanaged.fromOpaque(UnsafeRawPointer(bitPattern: UInt(table[2 + 2 * slot]))!)
            }
            slot = (slot + 1) & mask
        }
        return nil
    }

    /// Builds and publishes a table of `live` (under the lock); the old table, and an object
    /// just removed, wait in `retired` until readers are done with them.
    private func publish(removing object: Unmanaged<Object>?) {
        var capacity = 8
        while capacity < live.count * 2 { capacity *= 2 }
        let table = UnsafeMutablePointer<UInt64>.allocate(capacity: 1 + 2 * capacity)
        table.initialize(repeating: 0, count: 1 + 2 * capacity)
        table[0] = UInt64(capacity - 1)
        for (address, value) in live {
            var slot = Int(truncatingIfNeeded: (UInt64(address) &* 0x9E37_79B9_7F4A_7C15) >> 32) & (capacity - 1)
            while table[1 + 2 * slot] != 0 { slot = (slot + 1) & (capacity - 1) }
            table[1 + 2 * slot] = UInt64(address)
            table[2 + 2 * slot] = UInt64(UInt(bitPattern: value.toOpaque()))
        }
        let old = mco_load_pointer(cell)?.assumingMemoryBound(to: UInt64.self)
        mco_store_pointer(cell, UnsafeMutableRawPointer(table))
        retired.append((mco_epoch_advance(), old, object))
        mco_store64(pending, 1)
    }

    /// Frees what no reader can still hold. Objects are released outside the lock: an
    /// object's deinit may call back into the library.
    private func reclaim() {
        let released = lock.withLock { () -> [Unmanaged<Object>] in
            var objects: [Unmanaged<Object>] = []
            retired.removeAll { entry in
                guard mco_epoch_quiescent(entry.epoch) != 0 else { return false }
                entry.table?.deallocate()
                if let object = entry.object { objects.append(object) }
                return true
            }
            mco_store64(pending, retired.isEmpty ? 0 : 1)
            return objects
        }
        for object in released { object.release() }
    }
}
