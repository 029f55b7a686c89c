import MCPOptSync

/// Tracks the live handles of one kind so that a stale or foreign pointer is refused with a
/// status instead of being dereferenced. A handle is the address of an object the registry
/// holds strongly; lookups hand out a strong reference, so destroying a handle while another
/// thread uses it only drops the registry's reference: the object lives until that call returns.
final class HandleRegistry<Object: AnyObject & Sendable>: @unchecked Sendable {
    private let lock = ReadWriteLock()
    private var live: [UInt: Object] = [:]  // guarded by lock

    /// Registers `object` and returns its handle.
    func insert(_ object: Object) -> OpaquePointer {
        let address = UInt(bitPattern: ObjectIdentifier(object))
        lock.withWriteLock { live[address] = object }
        return OpaquePointer(bitPattern: address)!
    }

    /// The object behind a live handle, or nil.
    func lookup(_ handle: OpaquePointer) -> Object? {
        let address = UInt(bitPattern: handle)
        return lock.withReadLock { live[address] }
    }

    /// Unregisters a handle; returns false when it was not live.
    func remove(_ handle: OpaquePointer) -> Bool {
        let address = UInt(bitPattern: handle)
        return lock.withWriteLock { live.removeValue(forKey: address) } != nil
    }

    var count: Int { lock.withReadLock { live.count } }
}
