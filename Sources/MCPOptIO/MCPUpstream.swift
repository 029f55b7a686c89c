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
    /// The protocol version agreed with the server.
    var version: ProtocolVersion? { get }
}

extension StdioUpstream: MCPUpstream {}
extension HTTPUpstream: MCPUpstream {}
