import MCPOptProtocol
import MCPOptUpstream

/// A warm session to one MCP server, whatever carries it (a supervised stdio process, or a
/// keep-alive HTTP pool): what the engine needs from either.
public protocol MCPUpstream: AnyObject, Sendable {
    /// Starts the session (requests sent before it is ready wait for it).
    func start()
    /// Sends a request; the whole JSON-RPC response, or why there is none. With `cancellable`,
    /// cancelling the calling task cancels the request (the server is told).
    func request(_ request: UpstreamRequest, timeout: Duration, cancellable: Bool) async throws(UpstreamError) -> [UInt8]
    /// Ends the session (and stops a stdio server).
    func shutdown(grace: Duration) async
    /// Called with each notification the server sends.
    func onNotification(_ handler: (@Sendable (_ method: String, _ message: [UInt8]) -> Void)?)
    /// Called with each request the server sends (sampling, elicitation, roots): the handler
    /// must call `reply` once with the JSON-RPC response (the server's id). Without a handler
    /// the server gets "method not found".
    func onServerRequest(_ handler: ServerRequestHandler?)
    /// The protocol version agreed with the server.
    var version: ProtocolVersion? { get }
}

/// (method, the server's request, reply): see `MCPUpstream.onServerRequest`.
public typealias ServerRequestHandler = @Sendable (_ method: String, _ message: [UInt8], _ reply: @escaping @Sendable ([UInt8]) -> Void) -> Void

/// Hands a server's request to `handler`; without one, the server is told "method not found".
func dispatchServerRequest(_ handler: ServerRequestHandler?, method: String, message: [UInt8], reply: @escaping @Sendable ([UInt8]) -> Void) {
    if let handler { return handler(method, message, reply) }
    guard let id = (try? MessageDecoder().decodeOwned(message))?.id else { return }
    reply(MessageEncoder.error(idJSON: Array(id.json.utf8), code: RPCErrorCode.methodNotFound, message: "method not found: \(method)"))
}

extension StdioUpstream: MCPUpstream {}
extension HTTPUpstream: MCPUpstream {}
