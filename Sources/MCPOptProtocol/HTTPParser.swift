import Glibc
import CMCPOptHTTP

/// Parses HTTP/1.1 messages from a byte stream (Debian's http-parser underneath), one message
/// at a time: feed bytes, read the head once it is done, take body bytes as they arrive (so an
/// SSE body streams), and call `next()` to start the following message on the connection.
public final class HTTPParser {
    public enum Kind { case response, request }

    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    private let parser: OpaquePointer

    /// `fastPath`: plain heads are read without http-parser (see http_shim.c); false gives
    /// http-parser every byte (what the fast path is compared against).
    public init(_ kind: Kind, maxHeadBytes: Int = 64 << 10, maxHeaders: Int = 100, fastPath: Bool = true) {
        guard let p = mco_http_new(kind == .request ? Int32(MCO_HTTP_REQUEST) : Int32(MCO_HTTP_RESPONSE), maxHeadBytes, maxHeaders) else {
            fatalError("out of memory creating an HTTP parser")
        }
        parser = p
        if !fastPath { mco_http_set_fast(p, 0) }
    }

    deinit { mco_http_free(parser) }

    /// Consumes bytes up to the end of the current message; returns how many were used.
    @discardableResult
    public func feed(_ bytes: UnsafeRawBufferPointer) throws(Failure) -> Int {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return 0 }
        let n = mco_http_feed(parser, base.assumingMemoryBound(to: CChar.self), bytes.count)
        if n < 0 { throw Failure(description: String(cString: mco_http_error(parser))) }
        return Int(n)
    }

    /// The connection ended: completes a body delimited by the close, or fails.
    public func finish() throws(Failure) {
        if mco_http_finish(parser) != 0 { throw Failure(description: String(cString: mco_http_error(parser))) }
    }

    /// Parse the next message (after `isComplete`).
    public func next() { mco_http_next(parser) }

    /// A response to HEAD has no body whatever its headers say.
    public func expectHeadResponse(_ isHead: Bool) { mco_http_expect_head_response(parser, isHead ? 1 : 0) }

    /// The fast path read this message's head (http-parser did not).
    public var readByFastPath: Bool { mco_http_read_fast(parser) != 0 }
    public var isHeadComplete: Bool { mco_http_head_done(parser) != 0 }
    public var isComplete: Bool { mco_http_message_done(parser) != 0 }
    public var status: Int { Int(mco_http_status(parser)) }
    public var method: String { String(cString: mco_http_method(parser)) }
    /// Whether the request's method is `name` (compared on the C string: no String is made).
    public func methodIs(_ name: StaticString) -> Bool {
        name.withUTF8Buffer { wanted in
            guard let have = mco_http_method(parser) else { return false }
            return strlen(have) == wanted.count && memcmp(have, wanted.baseAddress!, wanted.count) == 0
        }
    }
    public var target: String {
        var length = 0
        let p = mco_http_target(parser, &length)
        return String(decoding: UnsafeRawBufferPointer(start: p, count: length), as: UTF8.self)
    }
    /// Whether the target's path (before any `?`) is `path`, compared on the bytes.
    public func pathIs(_ path: String) -> Bool {
        var length = 0
        let p = mco_http_target(parser, &length)
        let target = UnsafeRawBufferPointer(start: p, count: length)
        let end = target.firstIndex(of: UInt8(ascii: "?")) ?? length
        var path = path
        return path.withUTF8 { wanted in end == wanted.count && (end == 0 || memcmp(p!, wanted.baseAddress!, end) == 0) }
    }
    public var keepAlive: Bool { mco_http_keep_alive(parser) != 0 }
    public var isChunked: Bool { mco_http_chunked(parser) != 0 }
    public var contentLength: Int? {
        let n = mco_http_content_length(parser)
        return n >= 0 ? Int(n) : nil
    }

    public var headerCount: Int { mco_http_header_count(parser) }

    /// All headers as sent, names in their original case.
    public var headers: [(name: String, value: String)] {
        (0..<headerCount).map { i in
            var name: UnsafePointer<CChar>?, value: UnsafePointer<CChar>?
            var nameLength = 0, valueLength = 0
            mco_http_header(parser, i, &name, &nameLength, &value, &valueLength)
            return (String(decoding: UnsafeRawBufferPointer(start: name, count: nameLength), as: UTF8.self),
                    String(decoding: UnsafeRawBufferPointer(start: value, count: valueLength), as: UTF8.self))
        }
    }

    /// The first header with this name (case-insensitive), or nil. Compares the raw bytes:
    /// only the value found becomes a String (called several times per request).
    public func header(_ name: String) -> String? {
        var result: String?
        forEachHeader(named: name) { value in
            result = String(decoding: value, as: UTF8.self)
            return false
        }
        return result
    }

    /// Calls `body` with the raw value of the first header with this name (ASCII
    /// case-insensitive), or nil: no String is made (the request path reads several headers).
    public func withHeader<R>(_ name: StaticString, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        var found: UnsafeRawBufferPointer?
        forEachHeader(named: UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)) { value in
            found = value
            return false
        }
        return body(found)
    }

    /// Whether a header with this name was sent.
    public func hasHeader(_ name: StaticString) -> Bool { withHeader(name) { $0 != nil } }

    /// How many headers have this name (case-insensitive): duplicated routing headers are errors.
    public func headerOccurrences(_ name: String) -> Int {
        var count = 0
        forEachHeader(named: name) { _ in
            count += 1
            return true
        }
        return count
    }

    /// Calls `body` with the value of each header named `name` (ASCII case-insensitive) until
    /// it returns false.
    private func forEachHeader(named name: String, _ body: (UnsafeRawBufferPointer) -> Bool) {
        var wanted = name
        wanted.withUTF8 { forEachHeader(named: UnsafeRawBufferPointer($0), body) }
    }

    private func forEachHeader(named target: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Bool) {
        guard let wanted = target.baseAddress?.assumingMemoryBound(to: CChar.self) else { return }
        var from = 0
        while true {
            let i = mco_http_find(parser, wanted, target.count, from)
            guard i >= 0 else { return }
            var n: UnsafePointer<CChar>?, v: UnsafePointer<CChar>?
            var nLength = 0, vLength = 0
            mco_http_header(parser, Int(i), &n, &nLength, &v, &vLength)
            if !body(UnsafeRawBufferPointer(start: v, count: vLength)) { return }
            from = Int(i) + 1
        }
    }

    /// Body bytes received and not yet taken, passed to `body` and then dropped.
    public func takeBody<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        var length = 0
        let p = mco_http_body(parser, &length)
        defer { mco_http_body_take(parser) }
        return try body(UnsafeRawBufferPointer(start: p, count: length))
    }

    public func takeBody() -> [UInt8] { takeBody { Array($0) } }

    /// What a byte stream parses to, a line per message (and how it ends), fed `chunk` bytes at a
    /// time: for comparing the fast path with http-parser, and chunkings with each other.
    public static func transcript(_ bytes: UnsafeRawBufferPointer, kind: Kind, chunk: Int, fastPath: Bool = true,
                                  maxHeadBytes: Int = 64 << 10, maxHeaders: Int = 100) -> [String] {
        let parser = HTTPParser(kind, maxHeadBytes: maxHeadBytes, maxHeaders: maxHeaders, fastPath: fastPath)
        func head() -> String {
            let framing = "keepAlive=\(parser.keepAlive) chunked=\(parser.isChunked) length=\(parser.contentLength.map(String.init) ?? "-")"
            let start = kind == .response ? "\(parser.status)" : "\(parser.method) \(parser.target)"
            return "\(start) \(framing) \(parser.headers.map { "\($0.name)=\($0.value)" })"
        }
        var out: [String] = []
        var offset = 0
        var body: [UInt8] = []
        while offset < bytes.count {
            let end = min(offset + max(1, chunk), bytes.count)
            let used: Int
            do {
                used = try parser.feed(UnsafeRawBufferPointer(rebasing: bytes[offset..<end]))
            } catch {
                out.append("error")
                return out
            }
            body += parser.takeBody()
            offset += used
            if parser.isComplete {
                out.append(head() + " body=\(body)")
                body = []
                parser.next()
            } else if used == 0 {
                out.append("stuck")
                return out
            }
        }
        let open = parser.isHeadComplete ? "open: " + head() : "open"
        do {
            try parser.finish()
            body += parser.takeBody()
            out.append(parser.isComplete ? "closed: " + head() + " body=\(body)" : open)
        } catch {
            out.append(open + " then error")
        }
        return out
    }
}
