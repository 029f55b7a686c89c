import MCPOptSync
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
    /// Sends requests together (a batch of low-priority work): each gets its own response or
    /// error, in order. Not cancellable one by one.
    func requestBatch(_ requests: [UpstreamRequest], timeout: Duration) async -> [Result<[UInt8], UpstreamError>]
}

extension MCPUpstream {
    /// Side by side: over HTTP each request is an exchange of its own on the pool (JSON-RPC
    /// batches exist only in 2025-03-26, so they are not used).
    public func requestBatch(_ requests: [UpstreamRequest], timeout: Duration) async -> [Result<[UInt8], UpstreamError>] {
        await withTaskGroup(of: (Int, Result<[UInt8], UpstreamError>).self) { group in
            for (index, request) in requests.enumerated() {
                group.addTask {
                    do throws(UpstreamError) {
                        return (index, .success(try await self.request(request, timeout: timeout, cancellable: false)))
                    } catch {
                        return (index, .failure(error))
                    }
                }
            }
            var results = [Result<[UInt8], UpstreamError>](repeating: .failure(UpstreamError(.closed, "not sent")), count: requests.count)
            for await (index, result) in group { results[index] = result }
            return results
        }
    }
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

/// Continuations of a batch's requests, gathered until the last one is in.
final class ContinuationGathering<T>: @unchecked Sendable {
    private let lock = Lock()
    private var items: [(Int, UnsafeContinuation<T, Never>)] = []   // guarded by lock
    private let count: Int

    init(count: Int) { self.count = count }

    /// Adds one; all of them (by index) when this was the last.
    func add(_ index: Int, _ continuation: UnsafeContinuation<T, Never>) -> [(Int, UnsafeContinuation<T, Never>)]? {
        lock.withLock {
            items.append((index, continuation))
            return items.count == count ? items.sorted { $0.0 < $1.0 } : nil
        }
    }
}
