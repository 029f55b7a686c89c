import Glibc

/// Substring tests for the request path. The standard library's generic `contains(_:)` and
/// `firstRange(of:)` (in _StringProcessing) cost microseconds a call (generic metadata, a
/// searcher per call); a profile of the gateway's miss path had them at 14% of its CPU.
public enum ByteSearch {
    /// A needle searched for often: its rarest byte is found once (the request path searches
    /// every answer for a few fixed words).
    public struct Needle: Sendable {
        public let bytes: [UInt8]
        let anchor: Int
        public init(_ text: String) {
            bytes = Array(text.utf8)
            anchor = bytes.withUnsafeBytes { ByteSearch.rarest($0) }
        }
    }

    /// Whether `haystack` contains `needle` (memchr for the first byte, then memcmp).
    public static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        haystack.withUnsafeBytes { contains($0, needle) }
    }

    public static func contains(_ haystack: [UInt8], _ needle: Needle) -> Bool {
        haystack.withUnsafeBytes { contains($0, needle) }
    }

    /// Whether the bytes at `h` contain `needle`: memchr for the needle's rarest byte (JSON
    /// is mostly quotes, punctuation and lowercase letters, and each false hit costs a memcmp),
    /// then memcmp around it.
    public static func contains(_ h: UnsafeRawBufferPointer, _ needle: [UInt8]) -> Bool {
        needle.withUnsafeBytes { contains(h, $0, anchor: rarest($0)) }
    }

    public static func contains(_ h: UnsafeRawBufferPointer, _ needle: Needle) -> Bool {
        needle.bytes.withUnsafeBytes { contains(h, $0, anchor: needle.anchor) }
    }

    private static func contains(_ h: UnsafeRawBufferPointer, _ n: UnsafeRawBufferPointer, anchor: Int) -> Bool {
        guard !n.isEmpty else { return true }
        guard h.count >= n.count, let hb = h.baseAddress, let nb = n.baseAddress else { return false }
        let byte = Int32(n[anchor])
        // Where the anchor byte of a match would lie: from `anchor` to `last`.
        var offset = anchor
        let last = h.count - n.count + anchor
        while offset <= last {
            guard let hit = memchr(hb + offset, byte, last - offset + 1) else { return false }
            let at = hb.distance(to: UnsafeRawPointer(hit))
            if memcmp(hb + (at - anchor), nb, n.count) == 0 { return true }
            offset = at + 1
        }
        return false
    }

    /// The position of the needle's least common byte in JSON text (roughly ranked).
    static func rarest(_ n: UnsafeRawBufferPointer) -> Int {
        ranks.withUnsafeBufferPointer { rank in
            var best = 0, bestRank = UInt8.max
            for i in 0..<n.count where rank[Int(n[i])] < bestRank {
                (best, bestRank) = (i, rank[Int(n[i])])
            }
            return best
        }
    }

    /// How common each byte is in JSON text, roughly (higher: more common).
    private static let ranks: [UInt8] = (0...255).map { b -> UInt8 in
        switch b {
        case 0x20, 0x22, 0x2C, 0x3A, 0x61, 0x65, 0x69, 0x6E, 0x6F, 0x72, 0x73, 0x74: 5   // space " , : a e i n o r s t
        case 0x61...0x7A, 0x30...0x39, 0x7B, 0x7D, 0x5B, 0x5D, 0x2E: 4                  // other lowercase, digits, { } [ ] .
        case 0x41...0x5A, 0x2F, 0x2D: 2                                                  // uppercase / -
        default: 1
        }
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

    /// The media ranges of an Accept header that MCP's Streamable HTTP cares about.
    public struct MediaRanges: OptionSet, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let any = MediaRanges(rawValue: 1)               // */*
        public static let anyApplication = MediaRanges(rawValue: 2)    // application/*
        public static let json = MediaRanges(rawValue: 4)              // application/json
        public static let eventStream = MediaRanges(rawValue: 8)       // text/event-stream

        /// What a POST's Accept must allow in the handshake era: JSON and SSE, or anything.
        public var allowsJSONAndEventStream: Bool { contains(.any) || contains([.json, .eventStream]) }
    }

    /// Which of those ranges an Accept header lists, in one pass: comma-separated ranges, each
    /// compared without its parameters (`;q=0.9`) or surrounding blanks, ignoring ASCII case.
    /// (It was three substring searches a request, which also took `application/json-seq` for
    /// `application/json`.)
    public static func mediaRanges(_ accept: UnsafeRawBufferPointer) -> MediaRanges {
        // What the SDKs send, byte for byte: no need to take it apart.
        if equals(accept, "application/json, text/event-stream") { return [.json, .eventStream] }
        var found: MediaRanges = []
        var start = 0
        while start <= accept.count {
            var end = start
            while end < accept.count && accept[end] != 0x2C { end += 1 }   // ','
            var last = end
            var first = start
            while first < last && (accept[first] == 0x20 || accept[first] == 0x09) { first += 1 }
            if let semicolon = (first..<last).first(where: { accept[$0] == 0x3B }) { last = semicolon }   // ';'
            while last > first && (accept[last - 1] == 0x20 || accept[last - 1] == 0x09) { last -= 1 }
            let range = UnsafeRawBufferPointer(rebasing: accept[first..<last])
            if equals(range, "*/*") { found.insert(.any) }
            else if equalsIgnoringCase(range, "application/*") { found.insert(.anyApplication) }
            else if equalsIgnoringCase(range, "application/json") { found.insert(.json) }
            else if equalsIgnoringCase(range, "text/event-stream") { found.insert(.eventStream) }
            start = end + 1
        }
        return found
    }
}
