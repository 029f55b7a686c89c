import Glibc

/// Remembers requests by their bytes with the JSON-RPC id left out, so that a repeat of a
/// request (the same bytes, another id) is recognised without being parsed, and answered by
/// what the first one left here (a front's cache-hit lane).
///
/// A request is kept as the bytes before its id token and the bytes after it, as a JSON
/// decoder found the token. A later request matches when it is exactly those bytes around a
/// new id token that is plain (an integer of at most 15 digits, or a string of at most 64
/// printable ASCII characters with no escape). Replacing one scalar token of a JSON document by
/// another leaves every other member where it was, so the repeat decodes as the first request
/// did but for its id: the match is exact, whatever the surrounding bytes hold (headers,
/// duplicate members, escapes). Finding the new token takes a scan for the top-level `"id"`
/// member (`topLevelID`); where the scan finds another token than the decoder would, the bytes
/// around it differ from the kept ones and nothing matches.
///
/// Each entry carries an epoch: the owner bumps its epoch when something the answers depend on
/// changes, and entries of an older epoch no longer match. Bounded in entries and bytes; when
/// full it starts afresh (a repeat costs the full path once more). Not thread-safe: one owner
/// thread (a front's event loop).
public final class RepeatMemo {
    public struct Limits: Sendable {
        public var maxEntries = 4096
        /// Bytes of kept requests and values together.
        public var maxBytes = 4 << 20
        /// Longer requests are not kept.
        public var maxRequestBytes = 16 << 10
        public init() {}
    }

    /// A kept request and its value.
    public final class Entry {
        let prefix: [UInt8]
        let suffix: [UInt8]
        /// The kept request's id token's length.
        let idLength: Int
        public let value: AnyObject
        let epoch: UInt64
        let bytes: Int
        init(prefix: [UInt8], suffix: [UInt8], idLength: Int, value: AnyObject, epoch: UInt64, bytes: Int) {
            self.prefix = prefix
            self.suffix = suffix
            self.idLength = idLength
            self.value = value
            self.epoch = epoch
            self.bytes = bytes
        }

        /// The length of the kept request, and of its repeats that `repeatAt` finds.
        public var requestLength: Int { prefix.count + idLength + suffix.count }
    }

    public let limits: Limits
    private var table: [UInt64: Entry] = [:]
    /// Bytes the entries hold.
    public private(set) var bytes = 0
    /// Times the memo was full and started afresh.
    public private(set) var resets = 0
    public var count: Int { table.count }

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// The value kept for `request`'s bytes (whose JSON body starts at `bodyStart`) under
    /// `epoch`, and the request's own id token (a slice of `request`); nil when none is.
    public func find(_ request: UnsafeRawBufferPointer, bodyStart: Int, epoch: UInt64) -> (entry: Entry, id: UnsafeRawBufferPointer)? {
        guard !table.isEmpty, bodyStart >= 0, bodyStart <= request.count, request.count <= limits.maxRequestBytes,
              let id = Self.topLevelID(UnsafeRawBufferPointer(rebasing: request[bodyStart...])) else { return nil }
        let start = bodyStart + id.lowerBound, end = bodyStart + id.upperBound
        let prefix = UnsafeRawBufferPointer(rebasing: request[..<start]), suffix = UnsafeRawBufferPointer(rebasing: request[end...])
        guard let entry = table[Self.key(prefix, suffix)], entry.epoch == epoch,
              Self.same(entry.prefix, prefix), Self.same(entry.suffix, suffix) else { return nil }
        return (entry, UnsafeRawBufferPointer(rebasing: request[start..<end]))
    }

    /// Whether `bytes` begin with a repeat of `entry`'s request (under `epoch`) whose id token
    /// has the kept token's length: its id token, then. A check without parsing, hashing or a
    /// table, for the next request on a connection whose last one was `entry`'s: where the id
    /// token's length is the kept one's, so is the whole request's (an HTTP request's head, in
    /// the prefix, gives the body's length), and `bytes` may hold more after it.
    public static func repeatAt(_ entry: Entry, in bytes: UnsafeRawBufferPointer, epoch: UInt64) -> UnsafeRawBufferPointer? {
        let start = entry.prefix.count, end = start + entry.idLength
        guard entry.epoch == epoch, bytes.count >= end + entry.suffix.count,
              same(entry.prefix, UnsafeRawBufferPointer(rebasing: bytes[..<start])),
              same(entry.suffix, UnsafeRawBufferPointer(rebasing: bytes[end..<(end + entry.suffix.count)])) else { return nil }
        // The token must be plain and end where the kept one did.
        var scan = IDScan(UnsafeRawBufferPointer(rebasing: bytes[..<(end + entry.suffix.count)]))
        scan.i = start
        guard let token = scan.plainToken(), token == start..<end else { return nil }
        return UnsafeRawBufferPointer(rebasing: bytes[start..<end])
    }

    /// Keeps `value` for requests like `request` but for the id token at `id` (where a JSON
    /// decoder found it). Not kept when the request is too long, or when the scan would not
    /// find that token (no repeat could match it). `footprint`: the bytes `value` holds.
    /// Returns the entry kept, if it was.
    @discardableResult
    public func remember(_ request: UnsafeRawBufferPointer, bodyStart: Int, id: Range<Int>, value: AnyObject, footprint: Int, epoch: UInt64) -> Entry? {
        guard request.count <= limits.maxRequestBytes, bodyStart >= 0, id.lowerBound >= bodyStart, id.upperBound <= request.count,
              let scanned = Self.topLevelID(UnsafeRawBufferPointer(rebasing: request[bodyStart...])),
              scanned.lowerBound + bodyStart == id.lowerBound, scanned.upperBound + bodyStart == id.upperBound else { return nil }
        let prefix = UnsafeRawBufferPointer(rebasing: request[..<id.lowerBound]), suffix = UnsafeRawBufferPointer(rebasing: request[id.upperBound...])
        let size = prefix.count + suffix.count + footprint + 96
        guard size <= limits.maxBytes else { return nil }
        let key = Self.key(prefix, suffix)
        if let old = table.removeValue(forKey: key) { bytes -= old.bytes }
        if table.count >= limits.maxEntries || bytes + size > limits.maxBytes {
            removeAll()
            resets += 1
        }
        let entry = Entry(prefix: Array(prefix), suffix: Array(suffix), idLength: id.count, value: value, epoch: epoch, bytes: size)
        table[key] = entry
        bytes += size
        return entry
    }

    public func removeAll() {
        table.removeAll()
        bytes = 0
    }

    private static func key(_ prefix: UnsafeRawBufferPointer, _ suffix: UnsafeRawBufferPointer) -> UInt64 {
        hash64(prefix) ^ hash64(suffix, seed: UInt64(truncatingIfNeeded: prefix.count) &* 0x9E37_79B9_7F4A_7C15)
    }

    private static func same(_ kept: [UInt8], _ bytes: UnsafeRawBufferPointer) -> Bool {
        kept.count == bytes.count && kept.withUnsafeBytes { k in k.count == 0 || memcmp(k.baseAddress!, bytes.baseAddress!, k.count) == 0 }
    }

    /// Where the value of the top-level `"id"` member of a JSON object is, when it is plain
    /// (see the type's comment); nil when there is none, it is not plain, or the scan meets
    /// something that is not JSON. The first such member counts. A scan, not a validation:
    /// what it skips is not checked beyond finding where each value ends.
    public static func topLevelID(_ json: UnsafeRawBufferPointer) -> Range<Int>? {
        var scan = IDScan(json)
        return scan.run()
    }
}

/// The scan behind `RepeatMemo.topLevelID`: bytes through a plain pointer (a few instructions a
/// byte: it runs on every request while the memo holds anything).
struct IDScan {
    let p: UnsafePointer<UInt8>
    let n: Int
    var i = 0
    init(_ bytes: UnsafeRawBufferPointer) {
        // An empty buffer may have no base address: any pointer does, nothing is read.
        p = bytes.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) } ?? UnsafePointer(bitPattern: 1)!
        n = bytes.count
    }

    static let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")

    mutating func run() -> Range<Int>? {
        skipSpace()
        guard take(UInt8(ascii: "{")) else { return nil }
        while true {
            skipSpace()
            let keyStart = i + 1
            guard i < n, p[i] == Self.quote, let keyEnd = skipString() else { return nil }
            let isID = keyEnd - keyStart == 2 && p[keyStart] == UInt8(ascii: "i") && p[keyStart + 1] == UInt8(ascii: "d")
            skipSpace()
            guard take(UInt8(ascii: ":")) else { return nil }
            skipSpace()
            if isID { return plainToken() }
            guard skipValue() else { return nil }
            skipSpace()
            guard take(UInt8(ascii: ",")) else { return nil }   // `}` (no id) or not JSON
        }
    }

    @inline(__always) mutating func take(_ byte: UInt8) -> Bool {
        guard i < n, p[i] == byte else { return false }
        i += 1
        return true
    }

    @inline(__always) static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }

    @inline(__always) mutating func skipSpace() {
        while i < n, Self.isSpace(p[i]) { i += 1 }
    }

    /// At a quote: moves past the string; returns the index of its closing quote.
    mutating func skipString() -> Int? {
        i += 1
        while i < n {
            let b = p[i]
            if b == Self.quote {
                i += 1
                return i - 1
            }
            i += b == Self.backslash ? 2 : 1
        }
        return nil
    }

    /// Moves past one value: a string, an object or array (strings inside skipped, brackets
    /// counted), or a scalar up to the next delimiter.
    mutating func skipValue() -> Bool {
        guard i < n else { return false }
        let first = p[i]
        if first == Self.quote { return skipString() != nil }
        if first == UInt8(ascii: "{") || first == UInt8(ascii: "[") {
            var depth = 0
            while i < n {
                switch p[i] {
                case Self.quote:
                    guard skipString() != nil else { return false }
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 {
                        i += 1
                        return true
                    }
                default: break
                }
                i += 1
            }
            return false
        }
        let start = i
        while i < n {
            let b = p[i]
            if b == UInt8(ascii: ",") || b == UInt8(ascii: "}") || b == UInt8(ascii: "]") || Self.isSpace(b) { break }
            i += 1
        }
        return i > start
    }

    /// The plain id token here, followed by a delimiter; nil otherwise.
    mutating func plainToken() -> Range<Int>? {
        let start = i
        guard i < n else { return nil }
        if p[i] == Self.quote {
            i += 1
            while i < n, p[i] != Self.quote {
                let b = p[i]
                guard b >= 0x20, b < 0x7F, b != Self.backslash, i - start <= 64 else { return nil }
                i += 1
            }
            guard take(Self.quote) else { return nil }
        } else {
            _ = take(UInt8(ascii: "-"))
            let digits = i
            while i < n, p[i] >= 0x30, p[i] <= 0x39 { i += 1 }
            let count = i - digits
            guard count >= 1, count <= 15, count == 1 || p[digits] != 0x30 else { return nil }
        }
        let end = i
        skipSpace()
        guard i < n, p[i] == UInt8(ascii: ",") || p[i] == UInt8(ascii: "}") else { return nil }
        return start..<end
    }
}
