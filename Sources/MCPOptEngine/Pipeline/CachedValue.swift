import Glibc
import MCPOptConfig

/// What the engine stores for a cached result: a 21-byte header, then the result's JSON.
/// The header says what the origin call cost (so a hit knows the latency it saved), when the
/// entry expires and its TTL (so a hit near the end can refresh it ahead: warming), and whether
/// a refresh wrote it (for the warming figures). The same bytes go to L2.
enum CachedValue {
    static let headerSize = 21

    struct Header {
        var originNanos: UInt64
        /// Wall-clock milliseconds (shared with other instances through L2); 0: no expiry.
        var expiresAtMs: UInt64
        var ttlMs: UInt32
        var refreshed: Bool
    }

    static func encode(result: UnsafeRawBufferPointer, originNanos: UInt64, ttl: Duration?, refreshed: Bool) -> [UInt8] {
        // Sized once: header and result in one allocation.
        var out: [UInt8] = []
        out.reserveCapacity(headerSize + result.count)
        out.append(contentsOf: repeatElement(0, count: headerSize))
        let ttlMs = ttl.map { d -> UInt64 in
            let (s, atto) = d.components
            return UInt64(max(0, s)) * 1000 + UInt64(max(0, atto)) / 1_000_000_000_000_000
        } ?? 0
        put(&out, 0, originNanos, 8)
        put(&out, 8, ttlMs == 0 ? 0 : nowMs() + ttlMs, 8)
        put(&out, 16, min(ttlMs, UInt64(UInt32.max)), 4)
        out[20] = refreshed ? 1 : 0
        out.append(contentsOf: result)
        return out
    }

    static func header(_ value: [UInt8]) -> Header? { value.withUnsafeBytes { header($0) } }

    static func header(_ value: UnsafeRawBufferPointer) -> Header? {
        guard value.count >= headerSize else { return nil }
        return Header(originNanos: UInt64(littleEndian: value.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                      expiresAtMs: UInt64(littleEndian: value.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
                      ttlMs: UInt32(littleEndian: value.loadUnaligned(fromByteOffset: 16, as: UInt32.self)), refreshed: value[20] & 1 != 0)
    }

    static func result(_ value: [UInt8]) -> ArraySlice<UInt8> { value[headerSize...] }

    /// Whether a hit on an entry with this header should refresh it ahead of its expiry:
    /// `adaptive` in the last fifth of its TTL, `aggressive` in the last half, `conservative`
    /// never; and only entries that live at least a second (shorter ones are not worth a call).
    static func refreshDue(_ h: Header, strategy: WarmingStrategy, nowMs: UInt64) -> Bool {
        guard h.expiresAtMs != 0, h.ttlMs >= 1000, nowMs < h.expiresAtMs else { return false }
        let remaining = h.expiresAtMs - nowMs
        switch strategy {
        case .conservative: return false
        case .adaptive: return remaining * 5 <= UInt64(h.ttlMs)
        case .aggressive: return remaining * 2 <= UInt64(h.ttlMs)
        }
    }

    static func nowMs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }

    private static func put(_ out: inout [UInt8], _ at: Int, _ v: UInt64, _ n: Int) {
        for i in 0..<n { out[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
    }

}
