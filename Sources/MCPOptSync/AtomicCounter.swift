import CMCPOptConcurrency
import Glibc

/// A 64-bit counter on its own cache line, updated with relaxed atomics: for statistics that
/// many threads bump and that are read now and then (no ordering with other memory).
public final class AtomicCounter: @unchecked Sendable {
    private let cell: UnsafeMutablePointer<UInt64>

    public init(_ value: UInt64 = 0) {
        guard let memory = mco_cache_line_alloc(64) else { fatalError("out of memory allocating a counter") }
        cell = memory.assumingMemoryBound(to: UInt64.self)
        cell.initialize(to: value)
    }

    deinit { free(cell) }

    @inline(__always) public func load() -> UInt64 { mco_load64(cell) }
    @inline(__always) public func store(_ value: UInt64) { mco_store64(cell, value) }
    @inline(__always) @discardableResult public func add(_ n: UInt64 = 1) -> UInt64 { mco_add64(cell, n) }
    @inline(__always) @discardableResult public func subtract(_ n: UInt64 = 1) -> UInt64 { mco_sub64(cell, n) }
}
