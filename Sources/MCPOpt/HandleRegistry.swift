import MCPOptSync

/// Tracks the live handles of one kind so that a stale or foreign pointer is refused with a
/// status instead of being dereferenced.
///
/// Lookups take no lock and touch no shared counter: the live handles are an immutable table
/// published through `Published` (epochs, see CMCPOptConcurrency). Destroying a handle publishes
/// a table without it; the old table, which still holds the object, is released once no call
/// that could have found the handle is still running, so calls in flight on other threads
/// finish first. Mutations (create, destroy) take a lock.
final class HandleRegistry<Object: AnyObject & Sendable>: @unchecked Sendable {
    private let lock = Lock()
    private var live: [UInt: Object] = [:]      // guarded by lock
    private let table = Published(HandleTable<Object>([:]))

    /// Registers `object` and returns its handle.
    func insert(_ object: Object) -> OpaquePointer {
        let address = UInt(bitPattern: ObjectIdentifier(object))
        lock.withLock {
            live[address] = object
            table.publish(HandleTable(live), reclaiming: false)
        }
        table.reclaim()
        return OpaquePointer(bitPattern: address)!
    }

    /// Unregisters a handle; returns false when it was not live.
    func remove(_ handle: OpaquePointer) -> Bool {
        // Tables are published under the lock (in order); the old one, and with it perhaps the
        // object, is released after it: an object's deinit must not run under our lock.
        let removed = lock.withLock { () -> Bool in
            guard live.removeValue(forKey: UInt(bitPattern: handle)) != nil else { return false }
            table.publish(HandleTable(live), reclaiming: false)
            return true
        }
        table.reclaim()
        return removed
    }

    /// Runs `body` with the object behind a live handle, borrowed (no reference counting), or
    /// returns nil for a handle that is not live.
    @inline(__always)
    func withObject<R>(_ handle: OpaquePointer, _ body: (Object) -> R) -> R? {
        table.read { table in
            guard let object = table.find(UInt(bitPattern: handle)) else { return nil }
            return object._withUnsafeGuaranteedRef { body($0) }
        }
    }

    /// The object behind a live handle (a strong reference), or nil.
    func lookup(_ handle: OpaquePointer) -> Object? { withObject(handle) { $0 } }

    var count: Int { lock.withLock { live.count } }
}

/// One published set of live handles: a flat open-addressing table readers probe, and the
/// strong references that keep its objects alive for as long as the table itself lives.
final class HandleTable<Object: AnyObject>: @unchecked Sendable {
    private let objects: [Object]
    private let slots: UnsafeMutablePointer<UInt>   // (address, object) pairs; address 0: empty
    private let mask: Int

    init(_ live: [UInt: Object]) {
        objects = Array(live.values)
        var capacity = 8
        while capacity < live.count * 2 { capacity *= 2 }
        mask = capacity - 1
        slots = .allocate(capacity: capacity * 2)
        slots.initialize(repeating: 0, count: capacity * 2)
        for (address, object) in live {
            var slot = Self.home(address, mask)
            while slots[2 * slot] != 0 { slot = (slot + 1) & mask }
            slots[2 * slot] = address
            slots[2 * slot + 1] = UInt(bitPattern: Unmanaged.passUnretained(object).toOpaque())
        }
    }

    deinit { slots.deallocate() }

    @inline(__always)
    private static func home(_ address: UInt, _ mask: Int) -> Int {
        Int(truncatingIfNeeded: (UInt64(address) &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    @inline(__always)
    func find(_ address: UInt) -> Unmanaged<Object>? {
        guard address != 0 else { return nil }
        var slot = Self.home(address, mask)
        for _ in 0...mask {
            let key = slots[2 * slot]
            if key == 0 { return nil }
            if key == address { return Unmanaged.fromOpaque(UnsafeRawPointer(bitPattern: slots[2 * slot + 1])!) }
            slot = (slot + 1) & mask
        }
        return nil
    }
}
