import Synchronization

/// Tracks the live handles of one kind so that a stale or foreign pointer is refused with a
/// status instead of being dereferenced. A handle is the address of an object the registry
/// holds strongly; lookups hand out a strong reference, so destroying a handle while another
/// thread uses it only drops the registry's reference: the object lives until that call returns.
final class HandleRegistry<Object: AnyObject & Sendable>: Sendable {
    private let live = Mutex<[UInt: Object]>([:])

    /// Registers `object` and returns its handle.
    func insert(_ object: Object) -> OpaquePointer {
        let address = UInt(bitPattern: ObjectIdentifier(object))
        live.withLock { $0[address] = object }
        return OpaquePointer(bitPattern: address)!
    }

    /// The object behind a live handle, or nil.
    func lookup(_ handle: OpaquePointer) -> Object? {
        let address = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))
        return live.withLock { $0[address] }
    }

    /// Unregisters a handle; returns false when it was not live.
    func remove(_ handle: OpaquePointer) -> Bool {
        let address = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))
        return live.withLock { $0.removeValue(forKey: address) } != nil
    }

    var count: Int { live.withLock { $0.count } }
}
