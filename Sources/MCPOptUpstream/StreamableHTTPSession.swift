import MCPOptJSON
import MCPOptProtocol

/// The client side of a Streamable HTTP MCP session, without I/O: a ClientSession whose
/// messages travel as HTTP POSTs ("exchanges"). The owner sends each exchange's request bytes
/// on a pooled keep-alive connection and reports the response back (head, body bytes as they
/// arrive, end); the body is one JSON message or an SSE stream of them.
///
/// It carries the session id of the handshake era, the MCP-Protocol-Version header after
/// negotiation, and the modern routing headers (regenerated for this hop). A 404 on a
/// handshake-era session means the session expired: waiting requests fail with `.closed`
/// (the engine replays what is safe) and the session negotiates again.
///
/// Not thread-safe: the owner serializes calls.
public final class StreamableHTTPSession {
    // Serialized by its owner and calling out to no one (as `ClientSession`): no dynamic
    // exclusivity checks on its stored state.
    public typealias ExchangeID = UInt64

    /// Where the server's MCP endpoint is (http only; the engine maps its configuration here).
    public struct Endpoint: Sendable, Equatable {
        public var host: String
        public var port: Int
        public var path: String
        public init(host: String, port: Int, path: String) {
            self.host = host
            self.port = port
            self.path = path
        }
        /// The Host header's value.
        public var authority: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    public enum Event: Sendable, Equatable {
        /// Send these request bytes as exchange `id` (one HTTP request on a keep-alive connection).
        case request(id: ExchangeID, bytes: [UInt8])
        case ready
        case response(token: UInt64, message: [UInt8])
        case failed(token: UInt64, error: UpstreamError)
        /// A notification that belongs to no request (the GET stream, a listen stream).
        case notification(method: String, message: [UInt8])
        /// A notification that came on the response stream of the request sent with `token`
        /// (progress, log messages about that request); nil when that request is no longer
        /// awaited (cancelled, timed out) or is the session's own (negotiation).
        case requestNotification(token: UInt64?, method: String, message: [UInt8])
        case serverRequest(method: String, message: [UInt8])
        case violation(String)
        /// The session's stream of server messages (the GET stream, or in the modern era the
        /// `subscriptions/listen` stream) ended; `retry`: open it again later (false: the
        /// server does not offer one).
        case streamEnded(retry: Bool)
        /// Close the connection carrying this exchange (a listen stream no longer wanted).
        case closeExchange(ExchangeID)
    }

    public let endpoint: Endpoint
    public let extraHeaders: [(String, String)]
    /// The part of every POST that never changes (request line, Host, Accept, Content-Type,
    /// the extra headers), and the Host value: written once, not per request.
    private let postHead: [UInt8]
    private let authority: String
    private let mode: ClientSession.Mode
    private let identity: ClientSession.Identity
    @exclusivity(unchecked) private var session: ClientSession
    private let decoder = MessageDecoder()
    @exclusivity(unchecked) public private(set) var sessionID: String?
    @exclusivity(unchecked) private var nextExchange: ExchangeID = 1
    @exclusivity(unchecked) private var exchanges: [ExchangeID: Exchange] = [:]
    /// The GET stream: open now, or refused by the server for this session (405).
    @exclusivity(unchecked) private var streamOpen = false
    @exclusivity(unchecked) private var streamRefused = false
    /// Tool name -> arguments mirrored into Mcp-Param-* headers, learned from tools/list.
    @exclusivity(unchecked) private var parameterHeaders: [String: [(argument: String, header: String)]] = [:]

    private struct Exchange {
        /// The JSON-RPC id of the request it carries (nil for notifications and responses).
        var requestID: Int64?
        var isInitialize = false
        var isNotification = false
        /// It carries tools/list: its answer teaches the parameter headers.
        var listsTools = false
        /// The GET stream of server messages outside of requests.
        var isStream = false
        /// A modern `subscriptions/listen` stream (the id of its request).
        var listenID: Int64?
        var status = 0
        var sse: SSEParser?
        var body: [UInt8] = []
    }

    public init(endpoint: Endpoint, headers: [(String, String)] = [], mode: ClientSession.Mode = .auto, identity: ClientSession.Identity = .init()) {
        self.endpoint = endpoint
        self.extraHeaders = headers
        authority = endpoint.authority
        postHead = HTTPRequestWriter.postHead(path: endpoint.path, host: authority, headers: headers)
        self.mode = mode
        self.identity = identity
        self.session = ClientSession(mode: mode, identity: identity)
    }

    public var phase: ClientSession.Phase { session.phase }
    public var version: ProtocolVersion? { session.version }
    public var serverInfo: JSONValue? { session.serverInfo }
    public var openExchanges: Int { exchanges.count }

    public func open() -> [Event] { translate(session.open()) }

    public func send(_ request: UpstreamRequest, token: UInt64) -> [Event] {
        let events = session.send(request, token: token)
        // The usual case: the request went out at once, as one message. Before the modern era
        // its headers need nothing from the body, and its id and method are known here: the
        // bytes just encoded need not be decoded again.
        if events.count == 1, case .send(let bytes) = events[0], let version = session.version, version.era != .modern,
           let requestID = session.sentID(token: token) {
            var exchange = Exchange()
            exchange.requestID = requestID
            exchange.isInitialize = request.method == "initialize"
            exchange.listsTools = request.method == "tools/list"
            if request.method == "subscriptions/listen" { exchange.listenID = requestID }
            return [post(bytes, exchange, headers: [("MCP-Protocol-Version", version.rawValue)])]
        }
        return translate(events)
    }

    public func cancel(token: UInt64, reason: String) -> [Event] { translate(session.cancel(token: token, reason: reason)) }

    /// Opens the session's GET stream, where a handshake-era server sends what belongs to no
    /// request (resource updates, list changes, log messages, requests to the client), or in
    /// the modern era its `subscriptions/listen` stream (list changes, resource updates).
    /// Nothing when it is open, refused, or there is nothing to open.
    public func openStream() -> [Event] {
        if session.era == .modern { return translate(session.startListening()) }
        guard !streamOpen, !streamRefused, session.era == .handshake, let sessionID else { return [] }
        let id = nextExchange
        nextExchange += 1
        var exchange = Exchange()
        exchange.isStream = true
        exchanges[id] = exchange
        streamOpen = true
        var headers = extraHeaders + [("Accept", "text/event-stream"), ("Mcp-Session-Id", sessionID)]
        if let version = session.version { headers.append(("MCP-Protocol-Version", version.rawValue)) }
        return [.request(id: id, bytes: HTTPRequestWriter.request(method: "GET", path: endpoint.path, host: authority, headers: headers))]
    }

    /// Sends the client's response to a server request (POST; the server answers 202).
    public func reply(_ response: [UInt8]) -> [Event] { [post(response)] }

    public func close(reason: String) -> [Event] {
        exchanges.removeAll()
        streamOpen = false
        return translate(session.close(reason: reason))
    }

    /// Learns which tool arguments travel as headers (from a tools/list result).
    public func learnTools(fromListResult result: JSONValue) {
        for tool in result["tools"]?.arrayValue ?? [] {
            guard let name = tool["name"]?.stringValue, let schema = tool["inputSchema"] else { continue }
            let mapping = RoutingHeaders.parameterHeaders(inputSchema: schema)
            parameterHeaders[name] = mapping.isEmpty ? nil : mapping
        }
    }

    // MARK: responses

    public func responseHead(_ id: ExchangeID, status: Int, headers: [(name: String, value: String)]) -> [Event] {
        responseHead(id, status: status) { name in headers.first { $0.name.lowercased() == name }?.value }
    }

    /// `header` finds a header's value by its lowercase name (the owner's parser already has
    /// them: no list of every header is built).
    public func responseHead(_ id: ExchangeID, status: Int, header: (String) -> String?) -> [Event] {
        // Read and updated in place: a copy of the exchange costs more than the work here.
        guard let index = exchanges.index(forKey: id) else { return [] }
        let exchange = exchanges.values[index]
        if exchange.isInitialize, let sid = header("mcp-session-id") {
            guard !sid.isEmpty, sid.utf8.allSatisfy({ $0 >= 0x21 && $0 <= 0x7E }) else {
                exchanges[id] = nil
                return [.violation("the server sent an invalid Mcp-Session-Id")]
            }
            sessionID = sid
        }
        if exchange.isStream, status != 200 {
            // No stream here (405: the server offers none; others: try again later).
            exchanges[id] = nil
            streamOpen = false
            if status == 405 { streamRefused = true }
            return status == 404 && sessionID != nil && session.era == .handshake ? expire() : [.streamEnded(retry: status >= 500)]
        }
        if status == 404, sessionID != nil, session.era == .handshake {
            exchanges[id] = nil
            return expire()
        }
        exchanges.values[index].status = status
        if let type = header("content-type"), Self.hasPrefixIgnoringCase(type, eventStream) { exchanges.values[index].sse = SSEParser() }
        return []
    }

    private static func hasPrefixIgnoringCase(_ text: String, _ lowercasePrefix: [UInt8]) -> Bool {
        var count = 0
        for (a, b) in zip(text.utf8, lowercasePrefix) {
            guard (a >= 0x41 && a <= 0x5A ? a | 0x20 : a) == b else { return false }
            count += 1
        }
        return count == lowercasePrefix.count
    }

    public func responseBody(_ id: ExchangeID, _ bytes: UnsafeRawBufferPointer) -> [Event] {
        guard let index = exchanges.index(forKey: id) else { return [] }
        guard var sse = exchanges.values[index].sse else {
            // A plain body: appended in place (a copy of the exchange would copy the body).
            exchanges.values[index].body += bytes
            return []
        }
        var exchange = exchanges.values[index]
        var events: [Event] = []
        do {
            // What arrives on a request's own stream belongs to that request (a listen
            // stream's frames belong to no request).
            let scope = exchange.listenID == nil ? exchange.requestID : nil
            try sse.feed(bytes) { event in
                guard !event.data.isEmpty else { return }
                let received = receive(event.data, learn: exchange.listsTools)
                guard let scope else {
                    events += received
                    return
                }
                for event in received {
                    if case .notification(let method, let message) = event {
                        events.append(.requestNotification(token: session.token(forRequestID: scope), method: method, message: message))
                    } else {
                        events.append(event)
                    }
                }
            }
        } catch {
            events.append(.violation("bad event stream: \(error)"))
        }
        exchange.sse = sse
        exchanges[id] = exchange
        return events
    }

    public func responseEnd(_ id: ExchangeID) -> [Event] {
        guard let exchange = exchanges.removeValue(forKey: id) else { return [] }
        if exchange.isStream {
            streamOpen = false
            return [.streamEnded(retry: true)]
        }
        if let listen = exchange.listenID {
            // Its answer (the graceful end) came in the body, or the stream broke off.
            let events = exchange.sse == nil && !exchange.body.isEmpty ? receive(exchange.body) : []
            return events + translate(session.listenLost(id: listen))
        }
        if exchange.sse != nil || exchange.isNotification { return [] }
        if exchange.body.isEmpty {
            // 202 Accepted answers notifications and responses; anything else without a body is
            // an HTTP-level failure of the request it carried.
            if exchange.status == 202 { return [] }
            return abandon(exchange, UpstreamError(.protocolViolation, "HTTP \(exchange.status) without a JSON-RPC body"))
        }
        return receive(exchange.body, learn: exchange.listsTools)
    }

    /// The connection carrying the exchange failed before a complete response.
    public func exchangeFailed(_ id: ExchangeID, reason: String) -> [Event] {
        guard let exchange = exchanges.removeValue(forKey: id) else { return [] }
        if exchange.isStream {
            streamOpen = false
            return [.streamEnded(retry: true)]
        }
        if let listen = exchange.listenID { return translate(session.listenLost(id: listen)) }
        return abandon(exchange, UpstreamError(.closed, "the connection failed: \(reason)"))
    }

    private func abandon(_ exchange: Exchange, _ error: UpstreamError) -> [Event] {
        guard let id = exchange.requestID else { return [.violation(error.message)] }
        return translate(session.abandon(id: id, error: error))
    }

    private func receive(_ message: [UInt8], learn: Bool = false) -> [Event] {
        translate(session.receive(message), learn: learn)
    }

    private func expire() -> [Event] {
        var events = translate(session.close(reason: "the server ended the session (HTTP 404): negotiating a new one"))
        sessionID = nil
        exchanges.removeAll()
        streamOpen = false
        streamRefused = false
        session = ClientSession(mode: mode, identity: identity)
        events += translate(session.open())
        return events
    }

    // MARK: requests

    /// `learn`: the events answer a tools/list (its result teaches the parameter headers).
    private func translate(_ events: [ClientSession.Event], learn: Bool = false) -> [Event] {
        events.compactMap { event in
            switch event {
            case .send(let bytes): return post(bytes)
            case .ready: return .ready
            case .response(let token, let message):
                if learn { learnFromResponse(message) }
                return .response(token: token, message: message)
            case .failed(let token, let error): return .failed(token: token, error: error)
            case .notification(let method, let message): return .notification(method: method, message: message)
            case .serverRequest(let method, let message): return .serverRequest(method: method, message: message)
            case .violation(let text): return .violation(text)
            case .listenEnded(let retry): return .streamEnded(retry: retry)
            case .stopListen(let listen, _):
                // Over HTTP a stream ends when its connection closes.
                guard let exchange = exchanges.first(where: { $0.value.listenID == listen })?.key else { return nil }
                exchanges[exchange] = nil
                return .closeExchange(exchange)
            }
        }
    }

    /// tools/list results teach which arguments become headers.
    private func learnFromResponse(_ message: [UInt8]) {
        guard ByteSearch.contains(message, inputSchemaKey) else { return }
        if let result = try? decoder.decodeOwned(message).result, let value = try? JSONParser.parse(result) { learnTools(fromListResult: value) }
    }

    private func post(_ message: [UInt8]) -> Event {
        var exchange = Exchange()
        var headers: [(String, String)] = []
        message.withUnsafeBytes { bytes in
            guard let view = try? decoder.decode(bytes) else { return }
            exchange.isInitialize = view.method.equals("initialize")
            exchange.listsTools = view.method.equals("tools/list")
            if view.kind == .request, case .int(let requestID)? = view.id {
                exchange.requestID = requestID
                if view.method.equals("subscriptions/listen") { exchange.listenID = requestID }
            }
            exchange.isNotification = view.kind == .notification || view.kind == .result || view.kind == .error
            if let version = session.version {
                // Only modern-era requests carry Mcp-Param-* headers.
                let mapping = version.era == .modern && !parameterHeaders.isEmpty ? view.name.string.flatMap { parameterHeaders[$0] } ?? [] : []
                headers += RoutingHeaders.headers(for: view, version: version, parameterHeaders: mapping)
            } else if let requested = view.protocolVersion.string, view.method.equals("server/discover") {
                headers += RoutingHeaders.headers(for: view, version: ProtocolVersion(rawValue: requested))
            }
        }
        return post(message, exchange, headers: headers)
    }

    /// POSTs `message` as a new exchange, with these headers and the session's id.
    private func post(_ message: [UInt8], _ exchange: Exchange, headers: [(String, String)]) -> Event {
        let id = nextExchange
        nextExchange += 1
        var headers = headers
        if let sessionID { headers.append(("Mcp-Session-Id", sessionID)) }
        exchanges[id] = exchange
        return .request(id: id, bytes: HTTPRequestWriter.post(head: postHead, headers: headers, body: message))
    }

    /// DELETE ends a handshake-era session (servers may answer 405).
    public func terminationRequest() -> [UInt8]? {
        guard let sessionID else { return nil }
        var headers = extraHeaders + [("Mcp-Session-Id", sessionID)]
        if let version = session.version { headers.append(("MCP-Protocol-Version", version.rawValue)) }
        return HTTPRequestWriter.request(method: "DELETE", path: endpoint.path, host: authority, headers: headers)
    }
}

private let inputSchemaKey = ByteSearch.Needle(#""inputSchema""#)
private let eventStream = Array("text/event-stream".utf8)
