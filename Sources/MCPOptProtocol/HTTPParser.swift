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

    public init(_ kind: Kind, maxHeadBytes: Int = 64 << 10, maxHeaders: Int = 100) {
        guard let p = mco_http_new(kind == .request ? Int32(MCO_HTTP_REQUEST) : Int32(MCO_HTTP_RESPONSE), maxHeadBytes, maxHeaders) else {
            fatalError("out of memory creating an HTTP parser")
        }
        parser = p
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

    public var isHeadComplete: Bool { mco_http_head_done(parser) != 0 }
    public var isComplete: Bool { mco_http_message_done(parser) != 0 }
    public var status: Int { Int(mco_http_status(parser)) }
    public var method: String { String(cString: mco_http_method(parser)) }
    public var target: String {
        var length = 0
        let p = mco_http_target(parser, &length)
        return String(decoding: UnsafeRawBufferPointer(start: p, count: length), as: UTF8.self)
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

    /// The first header with this name (case-insensitive), or nil.
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.name.lowercased() == wanted }?.value
    }

    /// How many headers have this name (case-insensitive): duplicated routing headers are errors.
    public func headerOccurrences(_ name: String) -> Int {
        let wanted = name.lowercased()
        return headers.filter { $0.name.lowercased() == wanted }.count
    }

    /// Body bytes received and not yet taken, passed to `body` and then dropped.
    public func takeBody<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        var length = 0
        let p = mco_http_body(parser, &length)
        defer { mco_http_body_take(parser) }
        return try body(UnsafeRawBufferPointer(start: p, count: length))
    }

    public func takeBody() -> [UInt8] { takeBody { Array($0) } }
}
