import MCPOptJSON
import MCPOptProtocol
import MCPOptSync

/// The gateway's Streamable HTTP front, without I/O: given a parsed request (head and body), it
/// answers what the protocol answers by itself (errors, initialize, discovery, notifications,
/// session ends) and hands everything else to the engine as a `Dispatch`, in either era.
///
/// Handshake era: `initialize` creates a session (a random `Mcp-Session-Id`); later requests
/// must carry it (missing: 400, unknown or ended: 404) and a supported `MCP-Protocol-Version`
/// (absent: 2025-03-26, as the specification says); batches only in 2025-03-26; DELETE ends the
/// session. Modern era: the FrontDoor checks, then dispatch; `server/discover` is answered here.
public final class GatewayFront: @unchecked Sendable {
    public struct Identity: Sendable {
        public var name: String
        public var version: String
        public var instructions: String?
        /// The capabilities the gateway declares (tools, resources, prompts, logging...).
        public var capabilities: JSONValue
        public init(name: String = "mcpopt", version: String = "0.1.0", instructions: String? = nil, capabilities: JSONValue = ["tools": ["listChanged": true]]) {
            self.name = name
            self.version = version
            self.instructions = instructions
            self.capabilities = capabilities
        }
    }

    /// A request for the engine.
    public struct Dispatch: Sendable {
        public var era: ProtocolEra
        public var version: ProtocolVersion
        /// Nil in the modern era.
        public var sessionID: String?
        /// The client's capabilities (from initialize, or the request's `_meta`).
        public var clientCapabilities: JSONValue
        /// The JSON-RPC request, as the client sent it.
        public var message: [UInt8]
        /// Where the request's id token lies in `message`, as the decoder read it.
        public var requestIDRange: Range<Int>? = nil
        /// The request's id as sent (what a handshake-era cancellation names it by).
        public var requestID: [UInt8]? { requestIDRange.map { Array(message[$0]) } }
    }

    public enum Action: Sendable {
        case respond(status: Int, headers: [FrontDoor.Header], body: [UInt8])
        case dispatch(Dispatch)
        /// A GET for the session's stream of server messages (handshake era): the front keeps
        /// the response open as an SSE stream.
        case openStream(sessionID: String)
    }

    struct Session {
        var version: ProtocolVersion
        var clientCapabilities: JSONValue
        var clientInfo: JSONValue
    }

    public let identity: Identity
    /// Set before serving, read by every request (so not checked for exclusivity at run time).
    @exclusivity(unchecked) public var policy = FrontDoor.Policy()
    /// Called with the id of each session a client ended (DELETE); set before serving.
    public var onSessionEnded: (@Sendable (String) -> Void)?
    private let knownMethods: Set<String>
    private let lock = Lock()
    @exclusivity(unchecked) private var sessions: [String: Session] = [:]      // guarded by lock
    @exclusivity(unchecked) private var ended: Set<String> = []                 // guarded by lock
    private let maxSessions: Int
    private var random = SystemRandomNumberGenerator()

    public init(identity: Identity, knownMethods: Set<String>, maxSessions: Int = 10_000) {
        self.identity = identity
        self.knownMethods = knownMethods.union(["server/discover"])
        self.maxSessions = maxSessions
    }

    public var sessionCount: Int { lock.withLock { sessions.count } }

    /// Changes whenever a session ends: an answer given to a session's request is only
    /// repeated (see `RepeatMemo`) while the epoch it was given in lasts.
    public var answersEpoch: UInt64 { endedCount.load() }
    private let endedCount = AtomicCounter()

    /// Decides what to do with one complete HTTP request. `hostAndOriginChecked`: the caller
    /// ran `FrontDoor.checkHostAndOrigin` already.
    public func handle(_ request: HTTPParser, body: [UInt8], decoder: MessageDecoder, hostAndOriginChecked: Bool = false) -> Action {
        if !hostAndOriginChecked, let verdict = FrontDoor.checkHostAndOrigin(request, policy: policy) { return Self.action(verdict) }
        if request.methodIs("DELETE") { return endSession(request) }
        if request.methodIs("GET") { return openStream(request) }
        guard request.methodIs("POST") else { return .respond(status: 405, headers: [FrontDoor.Header("Allow", "GET, POST, DELETE")], body: []) }
        let verdict = body.withUnsafeBytes { FrontDoor.check(request, body: $0, decoder: decoder, policy: policy, knownMethods: knownMethods, hostAndOriginChecked: true) }
        switch verdict {
        case .answer:
            return Self.action(verdict)
        case .modern(let version):
            return modern(body, version: version, decoder: decoder)
        case .handshake(let version):
            return handshake(request, body: body, headerVersion: version, decoder: decoder)
        }
    }

    // MARK: modern era

    private func modern(_ body: [UInt8], version: ProtocolVersion, decoder: MessageDecoder) -> Action {
        body.withUnsafeBytes { bytes in
            guard let view = try? decoder.decode(bytes) else { return Self.json(400, MessageEncoder.error(idJSON: nil, code: RPCErrorCode.invalidRequest, message: "Invalid Request")) }
            let meta = view.meta.isPresent ? (try? JSONParser.parse(view.meta.buffer)) : nil
            if view.method.equals("server/discover") {
                let result: JSONValue = [
                    "supportedVersions": .array(ProtocolVersion.supported.filter { $0.era == .modern }.map { .string($0.rawValue) }),
                    "capabilities": identity.capabilities,
                    "resultType": "complete",
                    "_meta": [MetaKey.serverInfo: ["name": .string(identity.name), "version": .string(identity.version)]],
                ]
                let text = Array(result.jsonString.utf8)
                return Self.json(200, text.withUnsafeBytes { MessageEncoder.result(idJSON: view.idRaw.buffer, result: $0) })
            }
            return .dispatch(Dispatch(era: .modern, version: version, sessionID: nil, clientCapabilities: meta?[MetaKey.clientCapabilities] ?? [:], message: body,
                                      requestIDRange: Self.idRange(view)))
        }
    }

    // MARK: handshake era

    private func handshake(_ request: HTTPParser, body: [UInt8], headerVersion: ProtocolVersion?, decoder: MessageDecoder) -> Action {
        let acceptable = request.withHeader("accept") { accept in accept.map { ByteSearch.mediaRanges($0).allowsJSONAndEventStream } ?? false }
        guard acceptable else {
            return .respond(status: 406, headers: [], body: Array("Not Acceptable: Accept must list application/json and text/event-stream".utf8))
        }
        return body.withUnsafeBytes { bytes in
            let view: MessageView
            do {
                view = try decoder.decode(bytes)
            } catch let error as DecodeError {
                let message = error.kind == .batch ? "batches are not supported" : error.kind == .notJSON ? "Parse error: \(error.detail)" : "Invalid Request: \(error.detail)"
                return Self.json(400, MessageEncoder.error(idJSON: nil, code: error.rpcCode, message: message))
            } catch {
                return Self.json(400, MessageEncoder.error(idJSON: nil, code: RPCErrorCode.invalidRequest, message: "Invalid Request"))
            }
            if view.method.equals("initialize") { return initialize(view) }
            guard let sid = request.header("mcp-session-id") else {
                return Self.json(400, MessageEncoder.error(idJSON: view.idRaw.isPresent ? Array(view.idRaw.buffer) : nil, code: RPCErrorCode.invalidRequest,
                                                           message: "Bad Request: Mcp-Session-Id header is required"))
            }
            guard let session = lock.withLock({ sessions[sid] }) else {
                return Self.json(404, MessageEncoder.error(idJSON: view.idRaw.isPresent ? Array(view.idRaw.buffer) : nil, code: RPCErrorCode.invalidRequest,
                                                           message: "Session not found: initialize a new session"))
            }
            let version = headerVersion ?? .httpDefault
            guard version.isSupported, version.era == .handshake else {
                return Self.json(400, MessageEncoder.error(idJSON: nil, code: RPCErrorCode.invalidRequest, message: "Bad Request: unsupported MCP-Protocol-Version \(version.rawValue)"))
            }
            if view.kind != .request { return .respond(status: 202, headers: [], body: []) }
            if view.method.equals("ping") {
                let empty = Array("{}".utf8)
                return Self.json(200, empty.withUnsafeBytes { MessageEncoder.result(idJSON: view.idRaw.buffer, result: $0) })
            }
            return .dispatch(Dispatch(era: .handshake, version: session.version, sessionID: sid, clientCapabilities: session.clientCapabilities, message: body,
                                      requestIDRange: Self.idRange(view)))
        }
    }

    private static func idRange(_ view: MessageView) -> Range<Int>? {
        view.offset(of: view.idRaw).map { $0..<($0 + view.idRaw.count) }
    }

    private func initialize(_ view: MessageView) -> Action {
        let params = view.params.isPresent ? (try? JSONParser.parse(view.params.buffer)) : nil
        let requested = ProtocolVersion(rawValue: params?["protocolVersion"]?.stringValue ?? "")
        let version = ProtocolVersion.negotiateHandshake(requested: requested)
        let sid = newSessionID()
        let admitted = lock.withLock { () -> Bool in
            guard sessions.count < maxSessions else { return false }
            sessions[sid] = Session(version: version, clientCapabilities: params?["capabilities"] ?? [:], clientInfo: params?["clientInfo"] ?? [:])
            return true
        }
        guard admitted else {
            return Self.json(503, MessageEncoder.error(idJSON: Array(view.idRaw.buffer), code: RPCErrorCode.internalError, message: "too many sessions: try again later"))
        }
        var result: JSONObject = [
            "protocolVersion": .string(version.rawValue),
            "capabilities": identity.capabilities,
            "serverInfo": ["name": .string(identity.name), "version": .string(identity.version)],
        ]
        if let instructions = identity.instructions { result["instructions"] = .string(instructions) }
        let text = Array(JSONValue.object(result).jsonString.utf8)
        let body = text.withUnsafeBytes { MessageEncoder.result(idJSON: view.idRaw.buffer, result: $0) }
        return .respond(status: 200, headers: [FrontDoor.Header("Content-Type", "application/json"), FrontDoor.Header("Mcp-Session-Id", sid)], body: body)
    }

    /// GET: a session's stream of server messages (log messages); it needs the session and an
    /// Accept that takes text/event-stream.
    private func openStream(_ request: HTTPParser) -> Action {
        guard (request.header("accept") ?? "").contains("text/event-stream") else {
            return .respond(status: 406, headers: [], body: Array("Not Acceptable: the stream is text/event-stream".utf8))
        }
        guard let sid = request.header("mcp-session-id") else {
            return .respond(status: 400, headers: [], body: Array("Bad Request: Mcp-Session-Id header is required".utf8))
        }
        guard lock.withLock({ sessions[sid] != nil }) else { return .respond(status: 404, headers: [], body: Array("Session not found".utf8)) }
        return .openStream(sessionID: sid)
    }

    private func endSession(_ request: HTTPParser) -> Action {
        guard let sid = request.header("mcp-session-id") else { return .respond(status: 400, headers: [], body: Array("Mcp-Session-Id header is required".utf8)) }
        let existed = lock.withLock { () -> Bool in
            guard sessions.removeValue(forKey: sid) != nil else { return false }
            ended.insert(sid)
            endedCount.add()
            return true
        }
        if existed { onSessionEnded?(sid) }
        return .respond(status: existed ? 200 : 404, headers: [], body: [])
    }

    /// 128 random bits as 32 hex characters (visible ASCII, as the specification requires).
    private func newSessionID() -> String {
        let a = UInt64.random(in: .min ... .max, using: &random), b = UInt64.random(in: .min ... .max, using: &random)
        func hex(_ v: UInt64) -> String {
            let s = String(v, radix: 16)
            return String(repeating: "0", count: 16 - s.count) + s
        }
        return hex(a) + hex(b)
    }

    static func json(_ status: Int, _ body: [UInt8]) -> Action {
        .respond(status: status, headers: [FrontDoor.Header("Content-Type", "application/json")], body: body)
    }

    static func action(_ verdict: FrontDoor.Verdict) -> Action {
        if case .answer(let status, let headers, let body) = verdict { return .respond(status: status, headers: headers, body: body) }
        return .respond(status: 500, headers: [], body: [])
    }
}
