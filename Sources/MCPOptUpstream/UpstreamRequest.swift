import MCPOptProtocol

/// A request as the engine holds it, independent of any protocol era: the session to a backend
/// encodes it for that backend's era (adding the modern `_meta` envelope, a backend id).
public struct UpstreamRequest: Sendable, Equatable {
    public var method: String
    /// The params object as JSON text, or nil for none. A client's own `_meta` keys (progress
    /// tokens, log level) are kept; the protocol version and capabilities are the session's.
    public var params: [UInt8]?
    /// Hears each notification the server sends on this request's own response stream
    /// (Streamable HTTP: the SSE stream answering its POST), in place of the upstream's
    /// server-wide handler. Without it, such notifications go to the server-wide handler,
    /// except log messages: those belong to this request, and its caller asked for none, so
    /// they are dropped (never passed to a handler that serves everyone). Stdio carries no
    /// per-request streams: there every notification is server-wide. (A class: requests are
    /// copied on their way, and an optional closure costs more to copy than a reference.)
    public var listener: RequestListener?

    public init(method: String, params: [UInt8]? = nil) {
        self.method = method
        self.params = params
    }

    /// The request's content (method and params); who hears its notifications is not part of it.
    public static func == (a: UpstreamRequest, b: UpstreamRequest) -> Bool { a.method == b.method && a.params == b.params }

    public init(method: String, paramsJSON: String) {
        self.init(method: method, params: Array(paramsJSON.utf8))
    }
}

/// What hears the notifications on one request's own stream (see `UpstreamRequest.listener`):
/// called on the I/O thread, so briefly.
public final class RequestListener: Sendable {
    public let onNotification: @Sendable (_ method: String, _ message: [UInt8]) -> Void
    public init(_ onNotification: @escaping @Sendable (_ method: String, _ message: [UInt8]) -> Void) { self.onNotification = onNotification }
}

/// Why an upstream request did not get a response.
public struct UpstreamError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The session ended (process exited, connection closed) before the answer came.
        case closed
        /// No answer within the request's time limit.
        case timeout
        /// The caller cancelled.
        case cancelled
        /// The session could not agree on a protocol version with the server.
        case negotiation
        /// The server broke the protocol.
        case protocolViolation
    }
    public let kind: Kind
    public let message: String
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { message }
}
