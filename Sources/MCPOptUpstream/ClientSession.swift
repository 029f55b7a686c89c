import MCPOptJSON
import MCPOptProtocol

/// The client side of one MCP session, without I/O ("sans-IO", like hiredis' reader): bytes
/// in, bytes and events out. It negotiates the era (discovery or the initialize handshake),
/// numbers requests with its own ids so many callers share one session, encodes each request
/// for the negotiated era, and matches responses to callers' tokens.
///
/// Not thread-safe: its owner (a transport's connection) serializes calls.
public final class ClientSession {
    // Not thread-safe by design (its owner serializes calls) and it calls out to no one while
    // it changes its state, so Swift's dynamic exclusivity checks (about 95 instructions an
    // access) could never fire: its stored state is unchecked.
    public enum Mode: Sendable, Equatable {
        /// Like the official SDKs: try `server/discover`, fall back to `initialize`.
        case auto
        case handshake
        case modern
    }

    public enum Phase: Sendable, Equatable {
        case new, discovering, initializing, ready, closed
    }

    /// What the session reports to its owner, in order.
    public enum Event: Sendable, Equatable {
        /// Bytes to write to the server (one message).
        case send([UInt8])
        /// Negotiation is done; queued requests have been sent.
        case ready
        /// The server's response to the request registered with `token` (the server's id is
        /// in the bytes: restore the caller's own with MessageEncoder.replacingID).
        case response(token: UInt64, message: [UInt8])
        case failed(token: UInt64, error: UpstreamError)
        /// A notification from the server (progress, log message, list changed...).
        case notification(method: String, message: [UInt8])
        /// A request from the server to the client (sampling, elicitation, roots): relay it.
        case serverRequest(method: String, message: [UInt8])
        /// Something the server sent that breaks the protocol; the session carries on.
        case violation(String)
        /// Modern era: the session's `subscriptions/listen` stream ended (the server closed it or
        /// refused it). `retry`: listen again later (false: the server does not offer listening).
        case listenEnded(retry: Bool)
        /// Modern era: a listen stream replaced by a newer one is no longer wanted: over stdio,
        /// send `cancel`; over HTTP, close the stream that carries request `id`.
        case stopListen(id: Int64, cancel: [UInt8])
    }

    public struct Identity: Sendable {
        public var name: String
        public var version: String
        /// Capabilities the client declares (sampling, elicitation, roots only when the front
        /// client declared them).
        public var capabilities: JSONValue
        public init(name: String = "mcpopt", version: String = "0.1.0", capabilities: JSONValue = [:]) {
            self.name = name
            self.version = version
            self.capabilities = capabilities
        }
        var info: JSONValue { ["name": .string(name), "version": .string(version)] }
    }

    public let mode: Mode
    public let identity: Identity
    @exclusivity(unchecked) public private(set) var phase: Phase = .new
    @exclusivity(unchecked) public private(set) var version: ProtocolVersion?
    public var era: ProtocolEra? { version?.era }
    @exclusivity(unchecked) public private(set) var serverInfo: JSONValue?
    @exclusivity(unchecked) public private(set) var serverCapabilities: JSONValue?
    @exclusivity(unchecked) public private(set) var instructions: String?

    private let scratch = MessageDecoder()
    @exclusivity(unchecked) private var nextID: Int64 = 1
    /// Our id -> the caller's token; negotiation requests use no token.
    @exclusivity(unchecked) private var pending: [Int64: UInt64] = [:]
    /// The caller's request encoded last (its token, and the id it went out under).
    @exclusivity(unchecked) private var lastEncoded: (token: UInt64, id: Int64)?
    @exclusivity(unchecked) private var negotiationID: Int64?
    @exclusivity(unchecked) private var queued: [(token: UInt64, request: UpstreamRequest)] = []

    // Modern era: what a handshake-era server sends on its own (list changes, updates of
    // subscribed resources) comes on a `subscriptions/listen` stream the session keeps open.
    // Its filter names the subscribed URIs, so a change of subscriptions opens a new stream;
    // the old one is stopped once the new one is acknowledged (no gap in between).
    /// The listen stream in use (its request id), and the one it replaces.
    @exclusivity(unchecked) public private(set) var listenID: Int64?
    @exclusivity(unchecked) private var retiringListen: Int64?
    /// The owner wants the stream (it asked with `startListening`).
    @exclusivity(unchecked) private var listenWanted = false
    /// The server refused `subscriptions/listen` (method not found).
    @exclusivity(unchecked) private var listenRefused = false
    /// URIs subscribed with `resources/subscribe` (answered here in the modern era).
    @exclusivity(unchecked) public private(set) var subscribedURIs: Set<String> = []

    public init(mode: Mode = .auto, identity: Identity = Identity()) {
        self.mode = mode
        self.identity = identity
    }

    public var pendingCount: Int { pending.count + queued.count }

    /// Starts negotiation: the first message(s) to send.
    public func open() -> [Event] {
        precondition(phase == .new, "a session is opened once")
        switch mode {
        case .auto, .modern: return discover(version: .latestModern)
        case .handshake: return initialize()
        }
    }

    /// Sends (or, before negotiation completes, queues) a request for `token`.
    public func send(_ request: UpstreamRequest, token: UInt64) -> [Event] {
        switch phase {
        case .closed: return [.failed(token: token, error: UpstreamError(.closed, "the session is closed"))]
        case .ready: return encode(request, token: token)
        default:
            queued.append((token, request))
            return []
        }
    }

    /// The id the request of `token` went out under, when it was the last one encoded (an
    /// owner that needs it need not decode the bytes it was given to send).
    func sentID(token: UInt64) -> Int64? { lastEncoded?.token == token ? lastEncoded?.id : nil }

    /// The caller's token of the request this session sent with `id`, while it is awaited.
    func token(forRequestID id: Int64) -> UInt64? { pending[id] }

    /// Gives up on a request: its answer will be dropped and the server is told with
    /// `notifications/cancelled` (over modern-era HTTP the owner closes the stream instead).
    public func cancel(token: UInt64, reason: String) -> [Event] {
        if let index = queued.firstIndex(where: { $0.token == token }) {
            queued.remove(at: index)
            return [.failed(token: token, error: UpstreamError(.cancelled, reason))]
        }
        guard let id = pending.first(where: { $0.value == token })?.key else { return [] }
        pending[id] = nil
        var params = JSONObject()
        params["requestId"] = .int(id)
        params["reason"] = .string(reason)
        let bytes = Array(JSONValue.object(params).jsonString.utf8)
        return [.send(bytes.withUnsafeBytes { MessageEncoder.notification(method: "notifications/cancelled", params: $0) }),
                .failed(token: token, error: UpstreamError(.cancelled, reason))]
    }

    /// The request this session sent with `id` will get no answer (its HTTP exchange failed):
    /// its caller is told. Negotiation requests end the session.
    public func abandon(id: Int64, error: UpstreamError) -> [Event] {
        if id == negotiationID { return fail(error.message) }
        guard let token = pending.removeValue(forKey: id) else { return [] }
        return [.failed(token: token, error: error)]
    }

    /// The session ended: every waiting request fails.
    public func close(reason: String) -> [Event] {
        phase = .closed
        listenID = nil
        retiringListen = nil
        let waiting = pending.values.sorted() + queued.map(\.token)
        pending.removeAll()
        queued.removeAll()
        return waiting.map { .failed(token: $0, error: UpstreamError(.closed, reason)) }
    }

    /// The request a health check sends: `ping` in the handshake era, `server/discover` in the
    /// modern one (which has no ping).
    public var healthProbe: UpstreamRequest {
        era == .modern ? UpstreamRequest(method: "server/discover") : UpstreamRequest(method: "ping")
    }

    // MARK: receiving

    /// Handles one message from the server.
    public func receive(_ bytes: UnsafeRawBufferPointer) -> [Event] { receive(bytes, owned: nil) }

    /// `receive` for a message already in an array: events carry that array, not a copy.
    public func receive(_ message: [UInt8]) -> [Event] { message.withUnsafeBytes { receive($0, owned: message) } }

    private func receive(_ bytes: UnsafeRawBufferPointer, owned: [UInt8]?) -> [Event] {
        // A pooled decoder: the engine decodes the same answer again to fill the cache, and a
        // decoder that still holds these bytes answers that from what it kept (a memcmp, not
        // a second parse: ~2.7k instructions a cache miss).
        MessageDecoder.withPooled { decoder in receive(bytes, owned: owned, decoder: decoder) }
    }

    private func receive(_ bytes: UnsafeRawBufferPointer, owned: [UInt8]?, decoder: MessageDecoder) -> [Event] {
        let view: MessageView
        do {
            view = try decoder.decode(bytes)
        } catch {
            return [.violation("unreadable message from the server: \(error)")]
        }
        switch view.kind {
        case .result, .error:
            guard case .int(let id)? = view.id else { return [.violation("a response with an id this client never sent: \(view.idRaw.string ?? "none")")] }
            if id == negotiationID { return negotiated(view) }
            if id == listenID { return listenEnded(view) }
            guard let token = pending.removeValue(forKey: id) else {
                return []  // cancelled or timed out earlier: a late answer is dropped
            }
            return [.response(token: token, message: owned ?? Array(bytes))]
        case .notification:
            if view.method.equals("notifications/subscriptions/acknowledged") { return listenAcknowledged(view) }
            return [.notification(method: view.method.string ?? "", message: owned ?? Array(bytes))]
        case .request:
            if view.method.equals("ping") {
                // Servers may ping clients; answer here rather than bother the owner.
                let empty: StaticString = "{}"
                return [.send(MessageEncoder.result(idJSON: view.idRaw.buffer, result: UnsafeRawBufferPointer(start: empty.utf8Start, count: 2)))]
            }
            return [.serverRequest(method: view.method.string ?? "", message: owned ?? Array(bytes))]
        }
    }

    // MARK: negotiation

    private func discover(version: ProtocolVersion) -> [Event] {
        phase = .discovering
        let id = takeID()
        negotiationID = id
        let params = modernEnvelope(params: nil, version: version)
        return [.send(params.withUnsafeBytes { MessageEncoder.request(id: .int(id), method: "server/discover", params: $0) })]
    }

    private func initialize() -> [Event] {
        phase = .initializing
        let id = takeID()
        negotiationID = id
        let params: JSONValue = [
            "protocolVersion": .string(ProtocolVersion.latestHandshake.rawValue),
            "capabilities": identity.capabilities,
            "clientInfo": identity.info,
        ]
        let bytes = Array(params.jsonString.utf8)
        return [.send(bytes.withUnsafeBytes { MessageEncoder.request(id: .int(id), method: "initialize", params: $0) })]
    }

    private func negotiated(_ view: MessageView) -> [Event] {
        negotiationID = nil
        let result = view.result.isPresent ? (try? JSONParser.parse(view.result.buffer)) : nil
        switch phase {
        case .discovering:
            if view.kind == .result, let result {
                let supported = result["supportedVersions"]?.arrayValue?.compactMap(\.stringValue) ?? []
                if let chosen = ProtocolVersion.negotiateModern(serverSupports: supported) {
                    return ready(version: chosen, serverInfo: result["_meta"]?[MetaKey.serverInfo], capabilities: result["capabilities"], instructions: result["instructions"]?.stringValue)
                }
                return mode == .modern ? fail("the server supports no modern protocol version this client speaks (it offers \(supported))") : initialize()
            }
            // -32022 lists what the server supports: retry discovery at a common modern version.
            if view.kind == .error, view.errorCode == RPCErrorCode.unsupportedProtocolVersion || view.errorCode == RPCErrorCode.legacyUnsupportedProtocolVersion,
                let data = view.errorData.isPresent ? try? JSONParser.parse(view.errorData.buffer) : nil,
                let supported = data["supported"]?.arrayValue?.compactMap(\.stringValue),
                let chosen = ProtocolVersion.negotiateModern(serverSupports: supported), chosen != .latestModern
            {
                return discover(version: chosen)
            }
            return mode == .modern ? fail("server/discover failed: \(view.errorMessage.string ?? "no result")") : initialize()
        case .initializing:
            guard view.kind == .result, let result else {
                return fail("initialize failed: \(view.errorMessage.string ?? "no result") (\(view.errorCode))")
            }
            let offered = ProtocolVersion(rawValue: result["protocolVersion"]?.stringValue ?? "")
            guard offered.isSupported, offered.era == .handshake else {
                return fail("the server answered initialize with protocol version \"\(offered.rawValue)\", which this client does not speak")
            }
            var events = ready(version: offered, serverInfo: result["serverInfo"], capabilities: result["capabilities"], instructions: result["instructions"]?.stringValue)
            events.insert(.send(MessageEncoder.notification(method: "notifications/initialized", params: nil)), at: 0)
            return events
        default:
            return [.violation("a negotiation answer outside negotiation")]
        }
    }

    private func ready(version: ProtocolVersion, serverInfo: JSONValue?, capabilities: JSONValue?, instructions: String?) -> [Event] {
        self.version = version
        self.serverInfo = serverInfo
        self.serverCapabilities = capabilities
        self.instructions = instructions
        phase = .ready
        var events: [Event] = [.ready]
        if version.era == .handshake {
            // Subscriptions restored from an earlier session; their answers are not awaited.
            for uri in subscribedURIs.sorted() {
                let params = Array(JSONValue.object(["uri": .string(uri)]).jsonString.utf8)
                events.append(.send(params.withUnsafeBytes { MessageEncoder.request(id: .int(takeID()), method: "resources/subscribe", params: $0) }))
            }
        }
        let waiting = queued
        queued.removeAll()
        for (token, request) in waiting { events += encode(request, token: token) }
        return events
    }

    private func fail(_ message: String) -> [Event] {
        phase = .closed
        let waiting = queued.map(\.token)
        queued.removeAll()
        return [.violation(message)] + waiting.map { .failed(token: $0, error: UpstreamError(.negotiation, message)) }
    }

    // MARK: encoding

    private func takeID() -> Int64 {
        defer { nextID += 1 }
        return nextID
    }

    private func encode(_ request: UpstreamRequest, token: UInt64) -> [Event] {
        if request.method == "resources/subscribe" || request.method == "resources/unsubscribe" {
            if era == .modern { return bridgeSubscription(request, token: token) }
            // Remembered, to subscribe again in a new session (a restarted server).
            if let uri = request.params.flatMap({ try? JSONParser.parse($0) })?["uri"]?.stringValue {
                if request.method == "resources/subscribe" { subscribedURIs.insert(uri) } else { subscribedURIs.remove(uri) }
            }
        }
        return [encodeOne(request, token: token)]
    }

    /// A new session for a server whose last one ended (a restart) keeps its subscriptions:
    /// once ready it subscribes again (handshake era) or listens for them (modern).
    public func restoreSubscriptions(_ uris: Set<String>) {
        subscribedURIs = uris
    }

    private func encodeOne(_ request: UpstreamRequest, token: UInt64) -> Event {
        let id = takeID()
        pending[id] = token
        lastEncoded = (token, id)
        if era == .modern, let version {
            let params = modernEnvelope(params: request.params, version: version)
            return .send(params.withUnsafeBytes { MessageEncoder.request(id: .int(id), method: request.method, params: $0) })
        }
        guard let params = request.params.map(MessageEncoder.handshakeParams) else { return .send(MessageEncoder.request(id: .int(id), method: request.method, params: nil)) }
        return .send(params.withUnsafeBytes { MessageEncoder.request(id: .int(id), method: request.method, params: $0) })
    }

    // MARK: listening (modern era)

    /// Opens the session's listen stream if there is anything to listen for (the server
    /// announces list changes, or resources are subscribed); nothing in the handshake era, when
    /// one is open, or when the server refused. Call again after `listenEnded(retry: true)`.
    public func startListening() -> [Event] {
        listenWanted = true
        guard phase == .ready, era == .modern, listenID == nil, !listenRefused, let filter = listenFilter() else { return [] }
        return [sendListen(filter)]
    }

    /// The filter of the stream to open; nil when there is nothing to hear.
    private func listenFilter() -> JSONValue? {
        var filter = JSONObject()
        for (capability, key) in [("tools", "toolsListChanged"), ("prompts", "promptsListChanged"), ("resources", "resourcesListChanged")]
        where serverCapabilities?[capability]?["listChanged"]?.boolValue == true {
            filter[key] = true
        }
        if !subscribedURIs.isEmpty { filter["resourceSubscriptions"] = .array(subscribedURIs.sorted().map { .string($0) }) }
        return filter.isEmpty ? nil : .object(filter)
    }

    private func sendListen(_ filter: JSONValue) -> Event {
        let id = takeID()
        listenID = id
        let params = modernEnvelope(params: Array(JSONValue.object(["notifications": filter]).jsonString.utf8), version: version ?? .latestModern)
        return .send(params.withUnsafeBytes { MessageEncoder.request(id: .int(id), method: "subscriptions/listen", params: $0) })
    }

    /// `resources/subscribe` and `unsubscribe` do not exist in the modern era: the URI joins (or
    /// leaves) the listen stream's filter, and a new stream replaces the one open. Answered
    /// here at once; refused when the server does not listen.
    private func bridgeSubscription(_ request: UpstreamRequest, token: UInt64) -> [Event] {
        let id = takeID()
        let uri = request.params.flatMap { try? JSONParser.parse($0) }?["uri"]?.stringValue
        guard let uri else {
            return [.response(token: token, message: MessageEncoder.error(idJSON: Array(String(id).utf8), code: RPCErrorCode.invalidParams, message: "\(request.method) needs params.uri"))]
        }
        if listenRefused {
            return [.response(token: token, message: MessageEncoder.error(idJSON: Array(String(id).utf8), code: RPCErrorCode.methodNotFound,
                                                                          message: "the server offers no resource subscriptions (it refused subscriptions/listen)"))]
        }
        let changed = request.method == "resources/subscribe" ? subscribedURIs.insert(uri).inserted : subscribedURIs.remove(uri) != nil
        let empty: StaticString = "{}"
        var events: [Event] = [.response(token: token, message: MessageEncoder.result(idJSON: Array(String(id).utf8), result: UnsafeRawBufferPointer(start: empty.utf8Start, count: 2)))]
        guard changed, listenWanted else { return events }
        if let open = listenID {
            // The stream open now is stopped when its successor is acknowledged; one waiting
            // to be stopped already (a successor never acknowledged) is stopped now.
            if let older = retiringListen { events.append(stopListen(older)) }
            retiringListen = open
            listenID = nil
        }
        if let filter = listenFilter() {
            events.append(sendListen(filter))
        } else if let open = retiringListen {
            retiringListen = nil
            events.append(stopListen(open))
        }
        return events
    }

    private func stopListen(_ id: Int64) -> Event {
        let params = Array(JSONValue.object(["requestId": .int(id), "reason": "replaced by a new subscription"]).jsonString.utf8)
        return .stopListen(id: id, cancel: params.withUnsafeBytes { MessageEncoder.notification(method: "notifications/cancelled", params: $0) })
    }

    /// The answer to the open listen request: the stream is over.
    private func listenEnded(_ view: MessageView) -> [Event] {
        listenID = nil
        if view.kind == .error, view.errorCode == RPCErrorCode.methodNotFound {
            listenRefused = true
            return [.violation("the server refused subscriptions/listen: \(view.errorMessage.string ?? "")"), .listenEnded(retry: false)]
        }
        return [.listenEnded(retry: true)]
    }

    /// The stream carrying listen request `id` broke off before its answer (HTTP: the
    /// connection ended): the owner listens again later.
    public func listenLost(id: Int64) -> [Event] {
        if id == retiringListen { retiringListen = nil }
        guard id == listenID else { return [] }
        listenID = nil
        return [.listenEnded(retry: true)]
    }

    /// A stream's acknowledgment: the one it replaces can stop.
    private func listenAcknowledged(_ view: MessageView) -> [Event] {
        guard let retiring = retiringListen, let listenID,
              let meta = view.meta.isPresent ? try? JSONParser.parse(view.meta.buffer) : nil,
              meta[MetaKey.subscriptionID] == .int(listenID) else { return [] }
        retiringListen = nil
        return [stopListen(retiring)]
    }

    /// Params with the modern `_meta` envelope of this session.
    private func modernEnvelope(params: [UInt8]?, version: ProtocolVersion) -> [UInt8] {
        let probe = (params ?? Array("{}".utf8)).withUnsafeBytes { MessageEncoder.request(id: .int(0), method: "x", params: $0) }
        return probe.withUnsafeBytes { bytes in
            guard let view = try? scratch.decode(bytes) else { return params ?? [] }
            return MessageEncoder.modernParams(of: view, version: version, clientCapabilities: identity.capabilities, clientInfo: identity.info)
        }
    }
}
