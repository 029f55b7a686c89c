import MCPOptEngine
import MCPOptJSON
import MCPOptProtocol
import MCPOptSync

/// The gateway as an MCP server, independent of its transport: it aggregates the tools,
/// prompts and resources of every configured server (names namespaced by `ToolNamespace` where
/// they collide) and serves each request through the engine. Both eras on the front: a
/// handshake-era client initializes; a modern one sends `server/discover` or `_meta` with each
/// request. Backends of either era behind it (the engine's sessions bridge them).
public final class Gateway: MCPService, @unchecked Sendable {
    public let engine: Engine
    public let identity: GatewayFront.Identity
    private let answers: ProtocolAnswers

    private let lock = Lock()
    @exclusivity(unchecked) private var tools = ToolNamespace(offers: [])       // guarded by lock
    @exclusivity(unchecked) private var prompts = ToolNamespace(offers: [])     // guarded by lock
    @exclusivity(unchecked) private var builtFrom = -1                          // guarded by lock (catalog generation)
    /// Groups with a server in a handshake-era session: the ones that may ask a client during a
    /// call (a modern-era server asks with input_required instead).
    @exclusivity(unchecked) private var handshakeGroups: Set<String> = []       // guarded by lock

    /// List changes are announced (to modern clients' listen streams, and to handshake-era
    /// sessions with a stream of their own: stdio, an HTTP session's GET stream).
    public static let capabilities: JSONValue = ["tools": ["listChanged": true], "prompts": ["listChanged": true],
                                                 "resources": ["subscribe": true, "listChanged": true], "logging": [:]]

    public init(engine: Engine, identity: GatewayFront.Identity = .init(capabilities: Gateway.capabilities)) {
        self.engine = engine
        self.identity = identity
        answers = ProtocolAnswers(identity: identity, cacheHints: Gateway.cacheHints)
        engine.onResourceUpdated { [weak self] uri, message in self?.resourceUpdated(uri, message) }
        engine.onListChanged { [weak self] method in self?.listChanged(method) }
    }

    // MARK: listening

    /// A modern client's `subscriptions/listen` stream: the request stays open, its frames are
    /// notifications stamped with its id; it ends when the client cancels it (closing the
    /// connection, or `notifications/cancelled`) or the gateway closes it (`closeStreams`).
    final class ListenStream: @unchecked Sendable {
        let id: [UInt8]
        /// The id as a value: every frame's `_meta` carries it.
        let subscriptionID: JSONValue
        /// Its subscriptions' key among client sessions ("listen:<n>").
        let key: String
        let filter: ListenFilter
        let send: @Sendable ([UInt8]) -> Void
        private let lock = Lock()
        @exclusivity(unchecked) private var ended = false                                  // guarded by lock
        @exclusivity(unchecked) private var waiter: CheckedContinuation<Void, Never>?     // guarded by lock

        init(id: [UInt8], key: String, filter: ListenFilter, send: @escaping @Sendable ([UInt8]) -> Void) {
            self.id = id
            subscriptionID = (try? JSONParser.parse(id)) ?? .null
            self.key = key
            self.filter = filter
            self.send = send
        }

        /// The frame for `method` with this stream's id in `_meta` (and `params` kept).
        func stamped(_ method: String, params: JSONObject = [:]) -> [UInt8] {
            var params = params
            var meta = params["_meta"]?.objectValue ?? [:]
            meta[MetaKey.subscriptionID] = subscriptionID
            params["_meta"] = .object(meta)
            return Array(JSONValue.object(["jsonrpc": "2.0", "method": .string(method), "params": .object(params)]).jsonString.utf8)
        }

        func end() {
            let w = lock.withLock { () -> CheckedContinuation<Void, Never>? in
                ended = true
                defer { waiter = nil }
                return waiter
            }
            w?.resume()
        }

        func wait() async {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = lock.withLock { () -> Bool in
                    if ended { return true }
                    waiter = c
                    return false
                }
                if now { c.resume() }
            }
        }
    }

    /// What a listen stream asked for (`params.notifications`): every kind asked for is
    /// honored (a URI nobody offers simply never fires, as in the SDK).
    struct ListenFilter: Sendable {
        var tools = false, prompts = false, resources = false
        var uris: [String] = []

        init(_ value: JSONValue?) throws(ListenFilterError) {
            guard case .object(let o)? = value else { throw ListenFilterError("subscriptions/listen needs params.notifications, an object") }
            func flag(_ key: String) throws(ListenFilterError) -> Bool {
                switch o[key] {
                case nil, .null?: return false
                case .bool(let b)?: return b
                default: throw ListenFilterError("params.notifications.\(key) must be a boolean")
                }
            }
            tools = try flag("toolsListChanged")
            prompts = try flag("promptsListChanged")
            resources = try flag("resourcesListChanged")
            switch o["resourceSubscriptions"] {
            case nil, .null?: break
            case .array(let items)?:
                for item in items {
                    guard let uri = item.stringValue, !uri.isEmpty else { throw ListenFilterError("params.notifications.resourceSubscriptions must list URIs (strings)") }
                    if !uris.contains(uri) { uris.append(uri) }
                }
            default: throw ListenFilterError("params.notifications.resourceSubscriptions must be an array of URIs")
            }
        }

        /// The acknowledged subset, without false flags or an empty list (as the SDK sends it).
        var honored: JSONValue {
            var o = JSONObject()
            if tools { o["toolsListChanged"] = true }
            if prompts { o["promptsListChanged"] = true }
            if resources { o["resourcesListChanged"] = true }
            if !uris.isEmpty { o["resourceSubscriptions"] = .array(uris.map { .string($0) }) }
            return .object(o)
        }

        func wants(_ method: String) -> Bool {
            switch method {
            case "notifications/tools/list_changed": tools
            case "notifications/prompts/list_changed": prompts
            case "notifications/resources/list_changed": resources
            default: false
            }
        }
    }

    struct ListenFilterError: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    @exclusivity(unchecked) private var listens: [String: ListenStream] = [:]   // guarded by lock
    @exclusivity(unchecked) private var nextListen = 0                          // guarded by lock
    /// Open listen streams at most (each holds a connection); more are refused.
    public var maxListenStreams = 1024

    /// A server's list changed (and the engine has listed it again): listen streams that asked
    /// hear it, as does every handshake-era session with a stream (they read the gateway's
    /// `listChanged` capability).
    private func listChanged(_ method: String) {
        let (streams, sessions) = lock.withLock { () -> ([ListenStream], [@Sendable ([UInt8]) -> Void]) in
            (listens.values.filter { $0.filter.wants(method) },
             sessionStreams.filter { !$0.key.hasPrefix(listenKeyPrefix) }.map(\.value))
        }
        for stream in streams { stream.send(stream.stamped(method)) }
        guard !sessions.isEmpty else { return }
        let plain = MessageEncoder.notification(method: method, params: nil)
        for send in sessions { send(plain) }
    }

    /// Opens a listen stream: acknowledged at once (the ack is its first frame), its URIs
    /// subscribed at their servers like a handshake-era session's.
    private func openListen(id: [UInt8], params: JSONValue?, notify: (@Sendable ([UInt8]) -> Void)?) -> ServiceAnswer<Pending> {
        guard let notify else {
            return .answered(answers.error(id: id, code: RPCErrorCode.invalidRequest, "subscriptions/listen needs a transport that streams"))
        }
        let filter: ListenFilter
        do {
            filter = try ListenFilter(params?["notifications"])
        } catch {
            return .answered(answers.error(id: id, code: RPCErrorCode.invalidParams, error.message))
        }
        let stream = lock.withLock { () -> ListenStream? in
            guard listens.count < maxListenStreams else { return nil }
            nextListen += 1
            let stream = ListenStream(id: id, key: listenKeyPrefix + String(nextListen), filter: filter, send: notify)
            listens[stream.key] = stream
            // Resource updates reach it through the subscriptions' session streams, stamped.
            sessionStreams[stream.key] = { [weak stream] message in
                guard let stream, case .object(let o)? = try? JSONParser.parse(message) else { return }
                stream.send(stream.stamped("notifications/resources/updated", params: o["params"]?.objectValue ?? [:]))
            }
            return stream
        }
        guard let stream else {
            return .answered(answers.error(id: id, code: RPCErrorCode.internalError, "Subscription limit reached: \(maxListenStreams) listen streams are open"))
        }
        notify(stream.stamped("notifications/subscriptions/acknowledged", params: ["notifications": filter.honored]))
        for uri in filter.uris where subscription(uri, session: stream.key, subscribe: true) {
            tellServer("resources/subscribe", uri: uri, undoFor: stream.key)
        }
        return .pending(Pending(work: .listen(stream), method: "subscriptions/listen", modern: true))
    }

    /// Asks the server owning `uri` to (un)subscribe, in the background; a refused subscribe is
    /// forgotten for `undoFor`.
    private func tellServer(_ method: String, uri: String, undoFor session: String? = nil) {
        let request: JSONValue = ["jsonrpc": "2.0", "id": .string("mcpopt-" + method), "method": .string(method), "params": ["uri": .string(uri)]]
        let engine = engine
        Task { [weak self] in
            let response = await engine.optimizeRequest(Array(request.jsonString.utf8))
            if let session, !response.success || Self.isError(response.message) { _ = self?.subscription(uri, session: session, subscribe: false) }
        }
    }

    /// Waits for the stream's end, then undoes its subscriptions; the answer is the graceful
    /// close (a result with the stream's id in `_meta`).
    private func runListen(_ stream: ListenStream) async -> [UInt8] {
        await withTaskCancellationHandler { await stream.wait() } onCancel: { stream.end() }
        dropSession(stream.key)
        let result: JSONValue = ["_meta": [MetaKey.subscriptionID: stream.subscriptionID], "resultType": "complete"]
        let text = Array(result.jsonString.utf8)
        return text.withUnsafeBytes { MessageEncoder.result(idJSON: stream.id, result: $0) }
    }

    /// Ends every listen stream gracefully (the gateway stops, or stdin ended).
    public func closeStreams() {
        for stream in lock.withLock({ Array(listens.values) }) { stream.end() }
    }

    public var listenStreamCount: Int { lock.withLock { listens.count } }

    /// Resource subscriptions of client sessions ("" for stdio's one client), by URI. The
    /// backend session is shared: the server is asked to subscribe when the first client
    /// session subscribes and to unsubscribe when the last one leaves.
    @exclusivity(unchecked) private var subscribers: [String: Set<String>] = [:]   // guarded by lock

    /// A server said a resource changed: every client session subscribed to it hears it.
    private func resourceUpdated(_ uri: String, _ message: [UInt8]) {
        let targets = lock.withLock { (subscribers[uri] ?? []).compactMap { sessionStreams[$0] } }
        for send in targets { send(message) }
    }

    /// Records (un)subscribing `session` to `uri`; true when the server must be told (the first
    /// subscriber, or the last one leaving).
    private func subscription(_ uri: String, session: String, subscribe: Bool) -> Bool {
        lock.withLock {
            var set = subscribers[uri] ?? []
            let wasEmpty = set.isEmpty
            if subscribe { set.insert(session) } else { set.remove(session) }
            subscribers[uri] = set.isEmpty ? nil : set
            return subscribe ? wasEmpty : (!wasEmpty && set.isEmpty)
        }
    }

    private let listenKeyPrefix = "listen:"
    private let inputRequiredWord = ByteSearch.Needle(#""input_required""#)
    private let inputStatePrefix = ByteSearch.Needle(GatewayInputBridges.statePrefix)
    /// Modern callers' calls waiting for input from them.
    let inputBridges = GatewayInputBridges()

    /// Per client session ("" for the one client of stdio): the log level it chose and where
    /// messages outside of requests go (stdio's output, an HTTP session's GET stream).
    @exclusivity(unchecked) private var logLevels: [String: LogLevel] = [:]                         // guarded by lock
    /// How many sessions chose a level (stored under lock, read without): most gateways have
    /// none, and their requests skip the locked String-keyed lookup.
    private let logLevelCount = AtomicCounter()
    @exclusivity(unchecked) private var sessionStreams: [String: @Sendable ([UInt8]) -> Void] = [:]  // guarded by lock
    @exclusivity(unchecked) private var relayingLogs = false                                         // guarded by lock

    /// Relays servers' log messages that belong to no request (see `relayLog`) to a front that
    /// can send notifications at any time (stdio), once its client chose a level
    /// (`logging/setLevel`): messages at that level or above, the logger named after the server
    /// ("kv" or "kv/<logger>"). Messages about a request go with its answer instead.
    public func relayServerLogs(_ notify: @escaping @Sendable ([UInt8]) -> Void) {
        setSessionStream("", notify)
    }

    public var sendsSessionMessages: Bool { true }

    /// An HTTP session's GET stream (or stdio's output, as session ""): servers' log messages
    /// that belong to no request, at the level the session chose, go there (see `relayLog`).
    public func setSessionStream(_ session: String, _ send: (@Sendable ([UInt8]) -> Void)?) {
        let start = lock.withLock { () -> Bool in
            sessionStreams[session] = send
            defer { if send != nil { relayingLogs = true } }
            return send != nil && !relayingLogs
        }
        if start { engine.onServerLog { [weak self] server, message in self?.relayLog(server: server, message: message) } }
    }

    static func withLogLevel(_ message: [UInt8], _ level: String) -> [UInt8] {
        guard case .object(var o)? = try? JSONParser.parse(message) else { return message }
        var params = o["params"]?.objectValue ?? [:]
        var meta = params["_meta"]?.objectValue ?? [:]
        meta[MetaKey.logLevel] = .string(level)
        params["_meta"] = .object(meta)
        o["params"] = .object(params)
        return Array(JSONValue.object(o).jsonString.utf8)
    }

    /// A log message that belongs to no request (a stdio server's, an HTTP server's on its GET
    /// stream): a backend session is shared, so it cannot be told apart by client; it goes to
    /// every client session that chose a level (`logging/setLevel`) at or below its own.
    private func relayLog(server: String, message: [UInt8]) {
        let targets = lock.withLock { sessionStreams.compactMap { session, send in logLevels[session].map { (level: $0, send: send) } } }
        guard !targets.isEmpty, let (level, relayed) = Engine.relayedLog(message, server: server) else { return }
        for target in targets where level >= target.level { target.send(relayed) }
    }

    /// Starts every backend and lists them; returns a warning per server left out.
    public func start() async -> [String] {
        await engine.start()
        refreshNamespaces()
        return engine.catalogs.compactMap { c in c.error.map { "server \"\(c.server)\" is left out: \($0)" } }
    }

    /// The namespaces follow the catalogs (rebuilt when a server's list changed).
    private func refreshNamespaces() {
        let generation = engine.catalogGeneration
        lock.withLock {
            guard generation != builtFrom else { return }
            let healthy = engine.catalogs.filter { $0.error == nil }
            var toolOffers: [String: Set<String>] = [:], promptOffers: [String: Set<String>] = [:]
            for c in healthy {
                toolOffers[c.group, default: []].formUnion(c.toolNames)
                promptOffers[c.group, default: []].formUnion(c.promptNames)
            }
            tools = ToolNamespace(offers: toolOffers.map { (group: $0.key, names: Array($0.value)) })
            prompts = ToolNamespace(offers: promptOffers.map { (group: $0.key, names: Array($0.value)) })
            handshakeGroups = Set(healthy.filter { ProtocolVersion(rawValue: $0.version ?? "").era != .modern }.map(\.group))
            builtFrom = generation
        }
    }

    public typealias Caller = ServiceCaller

    enum Route {
        case answer([UInt8])
        case none
        /// `logLevel`: the level a modern-era request opts into (`_meta`), if any.
        case engine([UInt8], id: [UInt8], method: String, servers: [String]?, modern: Bool, logLevel: LogLevel?)
        case listen(id: [UInt8], params: JSONValue?)
        /// A modern retry naming a call the gateway keeps waiting for input.
        case resume(id: [UInt8], method: String, state: String, responses: JSONObject)
    }

    /// A request routed and planned, waiting for its server. A class: the front keeps it
    /// across an await, and each copy of its dozen fields was as many retains. Filled in by
    /// `handleImmediately`, read-only afterwards, hence @unchecked Sendable.
    public final class Pending: @unchecked Sendable {
        fileprivate enum Work: Sendable {
            case prepared(Engine.PendingRequest)
            /// The engine was still starting: it plans the request itself once started.
            case request([UInt8], OptimizeOptions)
            /// A modern client's listen stream, open until it ends.
            case listen(ListenStream)
            /// A modern client's retry answering a handshake-era server's requests.
            case resume(InputBridge, responses: JSONObject)
        }
        fileprivate let work: Work
        fileprivate let method: String
        fileprivate let modern: Bool
        /// A subscription the server was asked for: undone if it refuses.
        fileprivate var subscription: (uri: String, session: String)?
        /// A handshake-era caller who can be asked (sampling, elicitation, roots), and its
        /// request as sent to the engine: a modern server's `input_required` is fulfilled by
        /// asking the caller, then the request is retried (see `fulfilInput`).
        fileprivate var asker: InputAsker?
        /// A modern-era caller's call whose server may ask for input (see `InputBridge`), and
        /// the caller's request id.
        fileprivate var bridge: InputBridge?
        fileprivate var requestID: [UInt8] = []

        fileprivate init(work: Work, method: String, modern: Bool) {
            self.work = work
            self.method = method
            self.modern = modern
        }
    }

    /// Answers at once what needs no I/O (protocol messages, lists, cache hits), on the
    /// caller's thread; otherwise the routed, planned request to finish with `complete`.
    public func handleImmediately(_ message: [UInt8], caller: Caller = .init()) -> ServiceAnswer<Pending> {
        handle(message, caller: caller, repeatable: nil)
    }

    /// Offers a repeat answer for the calls the engine answers from the cache before routing
    /// (`HitReplay`). What the gateway adds before the engine (the exposed name's group) comes
    /// from the catalogs, which the replay's epoch covers; after it, a modern result's
    /// completion.
    public func handleImmediately(_ message: [UInt8], caller: Caller, repeatable: inout (any RepeatableAnswer)?) -> ServiceAnswer<Pending> {
        withUnsafeMutablePointer(to: &repeatable) { handle(message, caller: caller, repeatable: $0) }
    }

    private func handle(_ message: [UInt8], caller: Caller, repeatable: UnsafeMutablePointer<(any RepeatableAnswer)?>?) -> ServiceAnswer<Pending> {
        switch route(message, session: caller.session ?? "") {
        case .none: return .answered(nil)
        case .answer(let bytes): return .answered(bytes)
        case .listen(let id, let params): return openListen(id: id, params: params, notify: caller.notify)
        case .resume(let id, let method, let state, let responses):
            guard let bridge = inputBridges.take(state) else {
                return .answered(answers.error(id: id, code: RPCErrorCode.invalidParams,
                                               "unknown or expired requestState: a call waits for input \(inputBridges.expiry) at most, and each state is good for one retry"))
            }
            let pending = Pending(work: .resume(bridge, responses: responses), method: method, modern: true)
            pending.requestID = id
            return .pending(pending)
        case .engine(var request, let id, let method, let servers, let modern, let requested):
            // The caller's log level: a modern-era request's own (its `_meta` goes on to the
            // server as it is), a handshake-era session's choice, which each of its requests
            // carries since modern-era servers log only for requests that opt in (a
            // handshake-era server's session is shared: it is never told a client's level).
            var level = requested
            if !modern, logLevelCount.load() > 0, let chosen = lock.withLock({ logLevels[caller.session ?? ""] }) {
                level = chosen
                request = Self.withLogLevel(request, chosen.name)
            }
            var options = OptimizeOptions(agent: caller.agent, partition: caller.partition, servers: servers, session: caller.session)
            // Progress, and the log messages about this request at the caller's level, go to
            // this caller only, on its request's stream.
            options.onNotification = caller.notify
            options.logLevel = level
            options.onServerRequest = caller.ask
            // A modern client cannot be sent requests: a server's are asked as input_required.
            // Only where a handshake-era server may be asked (no task of its own otherwise).
            let mayAsk = modern && Self.asksForInput.contains(method)
                && (servers.map { groups in lock.withLock { groups.contains { handshakeGroups.contains($0) } } } ?? true)
            let bridge = mayAsk ? InputBridge() : nil
            if let bridge { options.onServerRequest = { await bridge.ask($0) } }
            var replay: HitReplay?
            let prepared = repeatable != nil && Self.replayable.contains(method) ? engine.prepareRequest(request, options, replay: &replay) : engine.prepareRequest(request, options)
            if case .answered(let response)? = prepared {
                if method == "resources/subscribe" { undoRefusedSubscription(response.message, request: request, session: caller.session ?? "") }
                if let replay, let repeatable { repeatable.pointee = modern ? ModernReplay(replay) : replay }
                return .answered(modern ? Self.completingModernResult(response.message, method: method) : response.message)
            }
            let pending: Pending
            if case .pending(let planned)? = prepared {
                pending = Pending(work: .prepared(planned), method: method, modern: modern)
            } else {
                pending = Pending(work: .request(request, options), method: method, modern: modern)
            }
            if method == "resources/subscribe" { pending.subscription = Self.uri(request).map { ($0, caller.session ?? "") } }
            if !modern, let ask = caller.ask, Self.asksForInput.contains(method) { pending.asker = InputAsker(ask: ask, request: request, options: options) }
            if let bridge {
                pending.bridge = bridge
                pending.requestID = id
            }
            return .pending(pending)
        }
    }

    /// Finishes a request `handleImmediately` could not answer.
    public func complete(_ pending: Pending) async -> [UInt8] {
        if let bridge = pending.bridge {
            let engine = engine
            switch pending.work {
            case .prepared(let prepared): bridge.start { await engine.completeRequest(prepared).message }
            case .request(let request, let options): bridge.start { await engine.optimizeRequest(request, options).message }
            default: break
            }
            return await nextRound(bridge, id: pending.requestID, method: pending.method)
        }
        let response: OptimizedResponse
        switch pending.work {
        case .prepared(let prepared): response = await engine.completeRequest(prepared)
        case .request(let request, let options): response = await engine.optimizeRequest(request, options)
        case .listen(let stream): return await runListen(stream)
        case .resume(let bridge, let responses):
            bridge.answer(responses)
            return await nextRound(bridge, id: pending.requestID, method: pending.method)
        }
        if let (uri, session) = pending.subscription, !response.success || Self.isError(response.message) {
            _ = subscription(uri, session: session, subscribe: false)
        }
        if let asker = pending.asker, ByteSearch.contains(response.message, inputRequiredWord) {
            return await fulfilInput(response.message, asker: asker)
        }
        return pending.modern ? Self.completingModernResult(response.message, method: pending.method) : response.message
    }

    /// Waits for the bridged call's result (with the caller's id of this round) or for the
    /// server's requests, which go to the client as `input_required` (the call stays open).
    private func nextRound(_ bridge: InputBridge, id: [UInt8], method: String) async -> [UInt8] {
        let outcome = await withTaskCancellationHandler { await bridge.next() } onCancel: { bridge.abandon() }
        switch outcome {
        case .finished(let message):
            let answered = message.withUnsafeBytes { bytes in
                MessageDecoder.withPooled { decoder in (try? decoder.decode(bytes)).map { MessageEncoder.replacingID(in: $0, with: id) } }
            } ?? message
            return Self.completingModernResult(answered, method: method)
        case .needsInput(let requests):
            if Task.isCancelled {
                bridge.abandon()
                return MessageEncoder.error(idJSON: id, code: RPCErrorCode.internalError, message: "cancelled")
            }
            let state = inputBridges.park(bridge)
            var inputs = JSONObject()
            for (key, request) in requests { inputs[key] = request }
            let result: JSONValue = [
                "resultType": "input_required", "inputRequests": .object(inputs), "requestState": .string(state),
                "_meta": [MetaKey.serverInfo: ["name": .string(identity.name), "version": .string(identity.version)]],
            ]
            let text = Array(result.jsonString.utf8)
            return text.withUnsafeBytes { MessageEncoder.result(idJSON: id, result: $0) }
        }
    }

    /// Methods whose cache hits the engine may replay (`HitReplay`).
    static let replayable: Set<String> = ["tools/call", "resources/read", "prompts/get"]

    /// A modern-era call's repeat answer: the engine's, completed as a modern result.
    final class ModernReplay: RepeatableAnswer {
        let replay: HitReplay
        init(_ replay: HitReplay) { self.replay = replay }
        func answer(id: UnsafeRawBufferPointer, into out: inout [UInt8], head: (Int, inout [UInt8]) -> Void) -> Bool {
            guard let answer = replay.answer(id: id).map({ Gateway.completingModernResult($0, method: replay.method) }) else { return false }
            head(answer.count, &out)
            out.append(contentsOf: answer)
            return true
        }
        var footprint: Int { replay.footprint + 16 }
    }

    /// A handshake-era caller who can be asked, and its request as sent to the engine.
    /// A class: kept on most handshake-era requests, and an optional struct holding options
    /// is destroyed through the runtime's generic witnesses (~1k instructions a request).
    final class InputAsker: Sendable {
        let ask: @Sendable ([UInt8]) async -> [UInt8]?
        let request: [UInt8]
        let options: OptimizeOptions
        init(ask: @escaping @Sendable ([UInt8]) async -> [UInt8]?, request: [UInt8], options: OptimizeOptions) {
            self.ask = ask
            self.request = request
            self.options = options
        }
    }

    /// The methods whose results may be `input_required` (modern era).
    static let asksForInput: Set<String> = ["tools/call", "prompts/get", "resources/read"]
    /// Rounds of input one request may take before the gateway gives up.
    static let maxInputRounds = 8

    /// Bridges a modern-era server's multi-round-trip request for a handshake-era client: each
    /// of the server's `inputRequests` goes to the client as the request it is (sampling,
    /// elicitation, roots), and the request is retried with the answers (`inputResponses`) and
    /// the server's `requestState` (the engine sends that retry to the server that sealed it),
    /// until the result is complete. The client sees one call.
    private func fulfilInput(_ first: [UInt8], asker: InputAsker) async -> [UInt8] {
        var answer = first
        guard case .object(var original)? = try? JSONParser.parse(asker.request) else { return answer }
        let id = original["id"] ?? .null
        func failure(_ text: String) -> [UInt8] {
            MessageEncoder.error(idJSON: Array(id.jsonString.utf8), code: RPCErrorCode.internalError, message: text)
        }
        for _ in 0..<Self.maxInputRounds {
            guard case .object(let o)? = try? JSONParser.parse(answer), case .object(let result)? = o["result"],
                  result["resultType"]?.stringValue == "input_required" else { return answer }
            var responses = JSONObject()
            for (key, request) in (result["inputRequests"]?.objectValue ?? [:]).members {
                guard let method = request["method"]?.stringValue else { return failure("the server asked for input without a method (inputRequests.\(key))") }
                var ask: JSONObject = ["jsonrpc": "2.0", "id": 0, "method": .string(method)]
                if let params = request["params"] { ask["params"] = params }
                guard let reply = await asker.ask(Array(JSONValue.object(ask).jsonString.utf8)), case .object(let r)? = try? JSONParser.parse(reply) else {
                    return failure("the server needs input (\(method)) and the client did not answer")
                }
                guard let value = r["result"] else {
                    return failure("the server needs input (\(method)) and the client refused: \(r["error"]?["message"]?.stringValue ?? "an error")")
                }
                responses[key] = value
            }
            var params = original["params"]?.objectValue ?? [:]
            params["inputResponses"] = .object(responses)
            params["requestState"] = result["requestState"]
            original["params"] = .object(params)
            answer = await engine.optimizeRequest(Array(JSONValue.object(original).jsonString.utf8), asker.options).message
        }
        return ByteSearch.contains(answer, inputRequiredWord) ? failure("the server still needs input after \(Self.maxInputRounds) rounds") : answer
    }

    private func undoRefusedSubscription(_ answer: [UInt8], request: [UInt8], session: String) {
        guard Self.isError(answer), let uri = Self.uri(request) else { return }
        _ = subscription(uri, session: session, subscribe: false)
    }

    static func uri(_ request: [UInt8]) -> String? { (try? JSONParser.parse(request))?["params"]?["uri"]?.stringValue }
    static func isError(_ message: [UInt8]) -> Bool { (try? JSONParser.parse(message))?["error"] != nil }

    public func sessionEnded(_ session: String) {
        dropSession(session)
        let engine = engine
        Task { await engine.endSession(session) }
    }

    /// Forgets a client session's (or listen stream's) level, stream and subscriptions; the
    /// servers are told of subscriptions nobody else holds.
    private func dropSession(_ session: String) {
        let abandoned = lock.withLock { () -> [String] in
            logLevels.removeValue(forKey: session)
            logLevelCount.store(UInt64(logLevels.count))
            sessionStreams.removeValue(forKey: session)
            listens.removeValue(forKey: session)
            return Array(subscribers.keys.filter { subscribers[$0]?.contains(session) == true })
        }
        for uri in abandoned where subscription(uri, session: session, subscribe: false) {
            tellServer("resources/unsubscribe", uri: uri)
        }
    }

    private func route(_ message: [UInt8], session: String) -> Route {
        message.withUnsafeBytes { bytes in MessageDecoder.withPooled { decoder in route(bytes, decoder, session: session) } }
    }

    private func route(_ bytes: UnsafeRawBufferPointer, _ decoder: MessageDecoder, session: String) -> Route {
        let view: MessageView
        do {
            view = try decoder.decode(bytes)
        } catch {
            return .answer(answers.decodeError(error))
        }
        guard view.kind == .request, let method = view.method.string else { return .none }
        let id = Array(view.idRaw.buffer)
        let modern = ProtocolAnswers.isModern(view, method: method)
        // A modern-era request opts into the log messages about it; a handshake-era session
        // chooses a level for all its requests (logging/setLevel).
        let logLevel = modern && view.logLevel.isPresent ? view.logLevel.string.flatMap { LogLevel($0) } : nil
        func result(_ value: JSONValue) -> Route { .answer(answers.result(value, id: id, method: method, modern: modern)) }
        func error(_ code: Int64, _ text: String) -> Route { .answer(answers.error(id: id, code: code, text)) }
        // Calls, the most of what comes, skip the checks for methods answered here (each a
        // String comparison against a literal longer than a small string: ~80 instructions).
        let call = method == "tools/call"
        if !call, method == "logging/setLevel", !modern {
            let level = (view.params.isPresent ? (try? JSONParser.parse(view.params.buffer)) : nil)?["level"]?.stringValue
            guard let level, let chosen = LogLevel(level) else {
                return error(RPCErrorCode.invalidParams, "logging/setLevel needs params.level, one of \(LogLevel.allCases.map(\.name).joined(separator: ", "))")
            }
            lock.withLock {
                logLevels[session] = chosen
                logLevelCount.store(UInt64(logLevels.count))
            }
        }
        if !call, let answer = answers.answer(view, method: method, id: id, modern: modern) { return .answer(answer) }

        // A retry answering requests of a call the gateway keeps open (see InputBridge).
        if modern, Self.asksForInput.contains(method), ByteSearch.contains(bytes, inputStatePrefix),
           case .object(let params)? = try? JSONParser.parse(view.params.buffer),
           let state = params["requestState"]?.stringValue, state.hasPrefix(GatewayInputBridges.statePrefix) {
            return .resume(id: id, method: method, state: state, responses: params["inputResponses"]?.objectValue ?? [:])
        }
        switch method {
        case "tools/call", "prompts/get":
            guard let exposed = view.name.string else { return error(RPCErrorCode.invalidParams, "\(method) needs params.name") }
            refreshNamespaces()
            let entry = lock.withLock { method == "tools/call" ? tools.resolve(exposed) : prompts.resolve(exposed) }
            guard let entry else {
                return error(RPCErrorCode.invalidParams, method == "tools/call" ? "Unknown tool: \(exposed)" : "Unknown prompt: \(exposed)")
            }
            guard entry.original != exposed else { return .engine(Array(bytes), id: id, method: method, servers: [entry.group], modern: modern, logLevel: logLevel) }
            guard case .object(var params)? = try? JSONParser.parse(view.params.buffer) else {
                return error(RPCErrorCode.invalidParams, "params must be an object")
            }
            params["name"] = .string(entry.original)
            let rewritten = Array(#"{"jsonrpc":"2.0","id":"#.utf8) + id + Array(#","method":"\#(method)","params":\#(JSONValue.object(params).jsonString)}"#.utf8)
            return .engine(rewritten, id: id, method: method, servers: [entry.group], modern: modern, logLevel: logLevel)
        case "tools/list":
            refreshNamespaces()
            return result(["tools": .array(exposedTools())])
        case "prompts/list":
            refreshNamespaces()
            return result(["prompts": .array(exposedPrompts())])
        case "resources/list", "resources/templates/list":
            return .engine(Array(bytes), id: id, method: method, servers: nil, modern: modern, logLevel: logLevel)
        case "resources/read", "completion/complete":
            return .engine(Array(bytes), id: id, method: method, servers: nil, modern: modern, logLevel: logLevel)
        case "subscriptions/listen":
            // Modern era only (handshake-era clients subscribe, and hear on their stream).
            if !modern { return error(RPCErrorCode.methodNotFound, "Method not found: \(method)") }
            return .listen(id: id, params: view.params.isPresent ? try? JSONParser.parse(view.params.buffer) : nil)
        case "resources/subscribe", "resources/unsubscribe":
            // Handshake era only (modern clients listen with subscriptions/listen).
            if modern { return error(RPCErrorCode.methodNotFound, "Method not found: \(method)") }
            guard let uri = view.uri.string else { return error(RPCErrorCode.invalidParams, "\(method) needs params.uri") }
            let tell = subscription(uri, session: session, subscribe: method == "resources/subscribe")
            return tell ? .engine(Array(bytes), id: id, method: method, servers: nil, modern: modern, logLevel: logLevel) : result([:])
        default:
            return error(RPCErrorCode.methodNotFound, "Method not found: \(method)")
        }
    }

    /// Modern results carry cache hints on lists, reads and discovery (required there). The
    /// gateway's own lists may differ per caller (agent profiles), so they are private; a
    /// short TTL, since the gateway does not announce list changes.
    static func cacheHints(_ method: String) -> (ttlMs: Int64, scope: String)? {
        switch method {
        case "tools/list", "prompts/list", "resources/list", "resources/templates/list": (30_000, "private")
        case "server/discover": (60_000, "public")
        case "resources/read": (0, "private")
        default: nil
        }
    }

    /// A modern-era client expects `resultType` (and cache hints where required); a
    /// handshake-era backend's result lacks them.
    static func completingModernResult(_ message: [UInt8], method: String) -> [UInt8] {
        guard case .object(var o)? = try? JSONParser.parse(message), case .object(var result)? = o["result"] else { return message }
        let hints = cacheHints(method)
        guard result["resultType"] == nil || (hints != nil && result["ttlMs"] == nil) else { return message }
        if result["resultType"] == nil { result["resultType"] = "complete" }
        if let hints, result["ttlMs"] == nil {
            result["ttlMs"] = .int(hints.ttlMs)
            result["cacheScope"] = .string(hints.scope)
        }
        o["result"] = .object(result)
        return Array(JSONValue.object(o).jsonString.utf8)
    }

    private func exposedTools() -> [JSONValue] {
        let catalogs = engine.catalogs.filter { $0.error == nil }
        return lock.withLock { tools.entries }.compactMap { entry in
            guard let definition = catalogs.lazy.filter({ $0.group == entry.group }).compactMap({ $0.tools.first(where: { $0["name"]?.stringValue == entry.original }) }).first,
                  case .object(var o) = definition else { return nil }
            o["name"] = .string(entry.exposed)
            return .object(o)
        }
    }

    private func exposedPrompts() -> [JSONValue] {
        let catalogs = engine.catalogs.filter { $0.error == nil }
        return lock.withLock { prompts.entries }.compactMap { entry in
            guard let definition = catalogs.lazy.filter({ $0.group == entry.group }).compactMap({ $0.prompts.first(where: { $0["name"]?.stringValue == entry.original }) }).first,
                  case .object(var o) = definition else { return nil }
            o["name"] = .string(entry.exposed)
            return .object(o)
        }
    }
}

extension HitReplay: RepeatableAnswer {}
