import MCPOptJSON
import MCPOptProtocol
import MCPOptSync

/// Requests a server sends its client (sampling, elicitation, roots) belong to the client whose
/// request the server is working on. Backend sessions are shared, so the engine keeps, per
/// backend, who has a request running there and can be asked; a server request goes to that
/// caller when there is exactly one (several requests of one client session count as one).
final class ServerRequestRoutes: @unchecked Sendable {
    /// Forwards the server's request to the client; the client's response, or nil.
    typealias Ask = @Sendable (_ request: [UInt8]) async -> [UInt8]?

    private struct Route {
        let backend: ObjectIdentifier
        let caller: String
        let ask: Ask
    }

    private let lock = Lock()
    /// By registration token, which grows: registering and unregistering (every upstream
    /// attempt) are one insertion and one removal; finding a backend's routes (only when its
    /// server asks something) looks at all of them.
    @exclusivity(unchecked) private var routes: [UInt64: Route] = [:]   // guarded by lock
    @exclusivity(unchecked) private var next: UInt64 = 0                 // guarded by lock

    /// `caller` has a request running on `backend` and can be asked through `ask`.
    func register(_ backend: AnyObject, caller: String, ask: @escaping Ask) -> UInt64 {
        lock.withLock {
            next += 1
            routes[next] = Route(backend: ObjectIdentifier(backend), caller: caller, ask: ask)
            return next
        }
    }

    /// (`backend` is the one registered with: the token alone finds the route.)
    func unregister(_ backend: AnyObject, _ token: UInt64) {
        lock.withLock { _ = routes.removeValue(forKey: token) }
    }

    /// Whom to ask for a request from `backend`'s server, or why nobody can be.
    func route(_ backend: AnyObject) -> Result<Ask, RouteError> {
        let key = ObjectIdentifier(backend)
        let running = lock.withLock { routes.filter { $0.value.backend == key } }
        guard let latest = running.max(by: { $0.key < $1.key })?.value else {
            return .failure(RouteError(reason: "no client request is running on this server to answer it"))
        }
        guard running.allSatisfy({ $0.value.caller == latest.caller }) else {
            return .failure(RouteError(reason: "requests of several clients are running on this server: which one should answer is unknown"))
        }
        return .success(latest.ask)
    }

    struct RouteError: Error {
        let reason: String
    }
}

extension Engine {
    /// A backend's server asked its client something: the caller whose request runs there
    /// answers (through its front), under the server's own request id.
    func serverRequest(backend: Backend, method: String, message: [UInt8], reply: @escaping @Sendable ([UInt8]) -> Void) {
        guard let id = (try? JSONParser.parse(message))?["id"] else { return }
        switch runtime.serverRequestRoutes.route(backend) {
        case .failure(let error):
            reply(Self.errorResponse(id: id, code: RPCErrorCode.methodNotFound, "\(method) cannot be relayed: \(error.reason)"))
        case .success(let ask):
            runtime.metrics.serverRequestsRelayed.add()
            Task {
                guard let answer = await ask(message), case .object(var o)? = try? JSONParser.parse(answer),
                      o["result"] != nil || o["error"] != nil else {
                    reply(Self.errorResponse(id: id, code: RPCErrorCode.internalError, "the client gave no answer to \(method)"))
                    return
                }
                o["id"] = id
                o["jsonrpc"] = "2.0"
                reply(Array(JSONValue.object(o).jsonString.utf8))
            }
        }
    }

    static func errorResponse(id: JSONValue, code: Int64, _ message: String) -> [UInt8] {
        MessageEncoder.error(idJSON: Array(id.jsonString.utf8), code: code, message: message)
    }
}
