import MCPOptJSON
import MCPOptProtocol

/// Who is calling: cached results are partitioned by it.
public struct ServiceCaller: Sendable {
    public var partition: String
    public var agent: String?
    /// The client's session (stateful servers get a backend session per client session).
    public var session: String?
    /// Sends a notification to this client while its request runs (progress); nil where the
    /// transport has no way to (plain JSON answers over HTTP).
    public var notify: (@Sendable ([UInt8]) -> Void)?
    /// Sends a server's request (sampling, elicitation, roots) to this client while its request
    /// runs and returns the client's response; nil where the transport cannot.
    public var ask: (@Sendable ([UInt8]) async -> [UInt8]?)?
    public init(partition: String = "", agent: String? = nil, session: String? = nil, notify: (@Sendable ([UInt8]) -> Void)? = nil,
                ask: (@Sendable ([UInt8]) async -> [UInt8]?)? = nil) {
        self.partition = partition
        self.agent = agent
        self.session = session
        self.notify = notify
        self.ask = ask
    }
}

/// What a service answers at once: the answer (nil: nothing to answer), or work that waits on
/// something (a server, a simulated delay), finished with `complete`.
public enum ServiceAnswer<Pending: Sendable>: Sendable {
    case answered([UInt8]?)
    case pending(Pending)
}

/// An MCP server independent of its transport, as the HTTP and stdio fronts serve it: the
/// gateway in front of the engine, or the mock server. Messages in, messages out; the fronts
/// own the transport rules (sessions, Origin, sizes).
public protocol MCPService: AnyObject, Sendable {
    associatedtype Pending: Sendable
    var identity: GatewayFront.Identity { get }
    /// Answers on the caller's thread what needs no waiting.
    func handleImmediately(_ message: [UInt8], caller: ServiceCaller) -> ServiceAnswer<Pending>
    /// `handleImmediately`; when the answer is one a byte-identical repeat of `message` from
    /// the same caller (only the id differing) may get without being handled again, also sets
    /// `repeatable` to what answers such repeats (see `RepeatMemo`).
    func handleImmediately(_ message: [UInt8], caller: ServiceCaller, repeatable: inout (any RepeatableAnswer)?) -> ServiceAnswer<Pending>
    /// Finishes what `handleImmediately` could not answer.
    func complete(_ pending: Pending) async -> [UInt8]
    /// A client ended its session (HTTP DELETE).
    func sessionEnded(_ session: String)
    /// Whether the service sends messages outside of requests (a GET stream is worth opening).
    var sendsSessionMessages: Bool { get }
    /// Where messages for `session` that belong to no request go (its GET stream); nil: the
    /// stream ended.
    func setSessionStream(_ session: String, _ send: (@Sendable ([UInt8]) -> Void)?)
    /// Ends requests that stay open until the client leaves (`subscriptions/listen`), with
    /// their graceful answer: the front is closing.
    func closeStreams()
}

/// Answers a repeat of a request, given the repeat's id (its raw JSON token).
public protocol RepeatableAnswer: AnyObject, Sendable {
    /// Appends to `out` what `head` appends given the JSON-RPC response's length (the
    /// transport's framing), then the response; false, with nothing appended, when the service
    /// must handle the repeat itself.
    func answer(id: UnsafeRawBufferPointer, into out: inout [UInt8], head: (Int, inout [UInt8]) -> Void) -> Bool
    /// Bytes it holds.
    var footprint: Int { get }
}

extension MCPService {
    public func handleImmediately(_ message: [UInt8], caller: ServiceCaller, repeatable: inout (any RepeatableAnswer)?) -> ServiceAnswer<Pending> {
        handleImmediately(message, caller: caller)
    }
    public var sendsSessionMessages: Bool { false }
    public func setSessionStream(_ session: String, _ send: (@Sendable ([UInt8]) -> Void)?) {}
    public func closeStreams() {}

    /// Handles one message; nil for notifications and responses.
    public func handle(_ message: [UInt8], caller: ServiceCaller = .init()) async -> [UInt8]? {
        switch handleImmediately(message, caller: caller) {
        case .answered(let answer): return answer
        case .pending(let pending): return await complete(pending)
        }
    }
}

/// The answers every MCP server gives the same way, whatever it serves: `initialize`,
/// `server/discover`, `ping` and `logging/setLevel` (handshake era only), and the shape of a
/// result in each era (a modern result carries `resultType`, server info and cache hints).
public struct ProtocolAnswers: Sendable {
    public let identity: GatewayFront.Identity
    /// The cache hints a modern result of this method carries, if any.
    public let cacheHints: @Sendable (String) -> (ttlMs: Int64, scope: String)?

    public init(identity: GatewayFront.Identity, cacheHints: @escaping @Sendable (String) -> (ttlMs: Int64, scope: String)?) {
        self.identity = identity
        self.cacheHints = cacheHints
    }

    /// A modern request names its version in params._meta (initialize names one in params).
    public static func isModern(_ view: MessageView, method: String) -> Bool {
        method != "initialize" && view.protocolVersion.string.map { ProtocolVersion(rawValue: $0).era == .modern } == true
    }

    public func result(_ value: JSONValue, id: [UInt8], method: String, modern: Bool) -> [UInt8] {
        var value = value
        if modern, case .object(var o) = value {
            o["resultType"] = "complete"
            o["_meta"] = [MetaKey.serverInfo: ["name": .string(identity.name), "version": .string(identity.version)]]
            if let hints = cacheHints(method) {
                o["ttlMs"] = .int(hints.ttlMs)
                o["cacheScope"] = .string(hints.scope)
            }
            value = .object(o)
        }
        let text = Array(value.jsonString.utf8)
        return text.withUnsafeBytes { MessageEncoder.result(idJSON: id, result: $0) }
    }

    public func error(id: [UInt8]?, code: Int64, _ message: String) -> [UInt8] {
        MessageEncoder.error(idJSON: id, code: code, message: message)
    }

    /// The answer to a message that did not decode.
    public func decodeError(_ error: DecodeError) -> [UInt8] {
        let text = error.kind == .batch ? "batches are not supported" : error.kind == .notJSON ? "Parse error: \(error.detail)" : "Invalid Request: \(error.detail)"
        return MessageEncoder.error(idJSON: nil, code: error.rpcCode, message: text)
    }

    /// The answer to one of the methods every server answers alike; nil for any other method.
    public func answer(_ view: MessageView, method: String, id: [UInt8], modern: Bool) -> [UInt8]? {
        switch method {
        case "initialize":
            let params = view.params.isPresent ? (try? JSONParser.parse(view.params.buffer)) : nil
            let requested = ProtocolVersion(rawValue: params?["protocolVersion"]?.stringValue ?? "")
            var o: JSONObject = [
                "protocolVersion": .string(ProtocolVersion.negotiateHandshake(requested: requested).rawValue),
                "capabilities": identity.capabilities,
                "serverInfo": ["name": .string(identity.name), "version": .string(identity.version)],
            ]
            if let instructions = identity.instructions { o["instructions"] = .string(instructions) }
            return result(.object(o), id: id, method: method, modern: modern)
        case "server/discover":
            return result(["supportedVersions": .array(ProtocolVersion.supported.filter { $0.era == .modern }.map { .string($0.rawValue) }),
                           "capabilities": identity.capabilities], id: id, method: method, modern: modern)
        case "ping", "logging/setLevel":
            return modern ? error(id: id, code: RPCErrorCode.methodNotFound, "Method not found: \(method)") : result([:], id: id, method: method, modern: modern)
        default:
            return nil
        }
    }
}
