import Glibc

/// Substring tests for the request path. The standard library's generic `contains(_:)` and
/// `firstRange(of:)` (in _StringProcessing) cost microseconds a call (generic metadata, a
/// searcher per call); a profile of the gateway's miss path had them at 14% of its CPU.
public enum ByteSearch {
    /// Whether `haystack` contains `needle` (memchr for the first byte, then memcmp).
    public static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        haystack.withUnsafeBytes { contains($0, needle) }
    }

    /// Whether the bytes at `h` contain `needle`.
    public static func contains(_ h: UnsafeRawBufferPointer, _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty else { return true }
        return needle.withUnsafeBytes { n in
            guard h.count >= n.count, let hb = h.baseAddress, let nb = n.baseAddress else { return false }
            let first = Int32(n[0])
            var offset = 0
            let last = h.count - n.count
            while offset <= last {
                guard let hit = memchr(hb + offset, first, last - offset + 1) else { return false }
                let at = hb.distance(to: UnsafeRawPointer(hit))
                if memcmp(hb + at, nb, n.count) == 0 { return true }
                offset = at + 1
            }
            return false
        }
    }

    /// Whether `text` contains `token` (lowercase ASCII), ignoring ASCII case: for header
    /// values such as Accept.
    public static func containsIgnoringCase(_ text: String, _ token: StaticString) -> Bool {
        var text = text
        return text.withUTF8 { containsIgnoringCase(UnsafeRawBufferPointer($0), token) }
    }

    /// Whether the bytes contain `token` (lowercase ASCII), ignoring ASCII case.
    public static func containsIgnoringCase(_ hay: UnsafeRawBufferPointer, _ token: StaticString) -> Bool {
        let needle = UnsafeRawBufferPointer(start: token.utf8Start, count: token.utf8CodeUnitCount)
        guard needle.count > 0 else { return true }
        guard hay.count >= needle.count else { return false }
        let first = needle[0]
        var i = 0
        while i <= hay.count - needle.count {
            if lower(hay[i]) == first {
                var j = 1
                while j < needle.count, lower(hay[i + j]) == needle[j] { j += 1 }
                if j == needle.count { return true }
            }
            i += 1
        }
        return false
    }

    /// Whether the bytes are `token` (lowercase ASCII), ignoring ASCII case.
    public static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ token: StaticString) -> Bool {
        guard bytes.count == token.utf8CodeUnitCount else { return false }
        let t = token.utf8Start
        for i in 0..<bytes.count where lower(bytes[i]) != t[i] { return false }
        return true
    }

    /// Whether the bytes are exactly `token`.
    public static func equals(_ bytes: UnsafeRawBufferPointer, _ token: StaticString) -> Bool {
        bytes.count == token.utf8CodeUnitCount && (bytes.count == 0 || memcmp(bytes.baseAddress!, token.utf8Start, bytes.count) == 0)
    }

    @inline(__always) static func lower(_ b: UInt8) -> UInt8 { b >= 65 && b <= 90 ? b | 0x20 : b }
}
