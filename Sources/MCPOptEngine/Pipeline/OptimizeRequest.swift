import MCPOptCache
import MCPOptConfig
import MCPOptIO
import MCPOptJSON
import MCPOptMetrics
import MCPOptProtocol
import MCPOptRouting
import MCPOptSync
import MCPOptUpstream

/// How one request is to be served.
public struct OptimizeOptions: Sendable {
    /// The caller's agent profile (allowed tools and servers, default requirements).
    public var agent: String?
    /// Who the caller is for caching (a tenant, a hash of credentials); defaults to the agent.
    /// Cached results are never shared across partitions unless a server marks them public.
    public var partition: String?
    /// Restrict to these servers or replica groups (nil: any that offers what is asked).
    public var servers: [String]?
    /// Skip the cache lookup (the result still fills the cache).
    public var bypassCache = false
    /// Upper bound for one upstream attempt (default: `optimization.requestTimeout`).
    public var timeout: Duration?
    /// The client session the request belongs to: servers marked `stateful` get a backend
    /// session per client session (and their cached results stay within it).
    public var session: String?
    /// Where notifications about this request go while it runs (`notifications/progress` for
    /// its `_meta.progressToken`, with the caller's own token). Nil: they are dropped.
    public var onNotification: (@Sendable ([UInt8]) -> Void)?
    /// Asks the caller's client a server's request (sampling, elicitation, roots) while this
    /// request runs; returns the client's response, or nil. Nil: the caller cannot be asked.
    public var onServerRequest: (@Sendable ([UInt8]) async -> [UInt8]?)?
    /// The caller's log level. The log messages (`notifications/message`) a server sends about
    /// this request, on the request's own response stream (Streamable HTTP: a server logging
    /// while it serves the request), at this level or above go to `onNotification`, the logger
    /// named after the server ("kv" or "kv/<logger>"): to this caller only (and to the callers
    /// of identical requests merged into it, each at its own level), never to `onServerLog`.
    /// Nil: the caller wants none. What a server sends is the request's business: a modern-era
    /// server logs for a request whose `_meta["io.modelcontextprotocol/logLevel"]` asks (it
    /// goes on to the server as the caller wrote it); a handshake-era one whatever its shared
    /// session sends (it is never told a caller's level). Answers from the cache carry none;
    /// stdio servers' messages belong to no request (see `onServerLog`).
    public var logLevel: LogLevel?

    public init(agent: String? = nil, partition: String? = nil, servers: [String]? = nil, bypassCache: Bool = false, timeout: Duration? = nil,
                session: String? = nil) {
        self.agent = agent
        self.partition = partition
        self.servers = servers
        self.bypassCache = bypassCache
        self.timeout = timeout
        self.session = session
    }
}

/// The answer to one request: the MCP response (with the caller's id) and how it was served.
public struct OptimizedResponse: Sendable {
    public enum Source: String, Sendable {
        /// Answered from the in-process cache.
        case memory
        /// Fetched from a server.
        case origin
        /// Merged into an identical request already in flight.
        case coalesced
        /// Answered by the engine itself (ping, aggregated lists, errors).
        case engine
        /// Every server failed; an expired cached result was served (`caching.staleIfError`).
        case stale
        /// From the shared (L2) cache in Redis.
        case shared
    }
    /// A JSON-RPC response: a result, or an error.
    public var message: [UInt8]
    /// True when `message` is a result (an `isError` tool result included: the call ran).
    public var success: Bool
    public var server: String?
    public var source: Source
    /// Upstream attempts made (0 for memory and engine answers).
    public var attempts: Int
    public var executionTime: Duration
    public var error: String?

    /// Everything but the message, as JSON (what the C ABI and bindings report).
    public var summary: JSONValue {
        var o: JSONObject = [
            "success": .bool(success),
            "server": server.map { .string($0) } ?? .null,
            "cacheSource": .string(source.rawValue),
            "attempts": .int(Int64(attempts)),
            "executionTimeMs": .double(Double(executionTime.components.seconds) * 1e3 + Double(executionTime.components.attoseconds) / 1e15),
        ]
        if let error { o["error"] = .string(error) }
        return .object(o)
    }
}

extension Engine {
    // MARK: start and stop

    /// Starts a warm backend session per configured server and lists what each offers (in
    /// parallel: the slowest server's time, not the sum). A server that is down or broken is
    /// left out with its error in `catalogs` (and a serverDown event); the rest work.
    /// Called by the first `optimizeRequest` if not before; later calls return at once.
    public func start() async {
        await runtime.start { [self] in
            await bringUp()
            monitor.start(self)
        }
        // A crash may have left transactions in doubt: finish them before new work. After the
        // start proper, because recovery's own calls go through the (then ready) request path.
        if config.coordination.enableDistributedTransactions { await coordination.recoverAtStart(self) }
        // Warm the cache with what was hot before the last stop, without holding up the start.
        if config.caching.hotSetFile != nil, runtime.warming.claimHotSetRestore() {
            Task { [weak self] in await self?.restoreHotSet() }
        }
    }

    /// Runs the backends' I/O on `loop` (a host's, e.g. the gateway's HTTP loop) instead of a
    /// loop of the engine's own, so that a request and its upstream call share one thread. Call
    /// before `start`; the host keeps and stops the loop.
    public func useEventLoop(_ loop: EventLoop) { runtime.use(loop) }

    /// Calls `listener` with each log message a server sends outside of any request
    /// (`notifications/message`, as the server sent it) and the server's name; nil stops it. On
    /// an I/O thread: keep it short. Those are a stdio server's (stdio carries no per-request
    /// streams, so a shared backend session cannot tell which request a message is about) and
    /// an HTTP server's on its GET stream. Messages on a request's own stream go to that
    /// request's caller (`OptimizeOptions.logLevel`) and are not heard here.
    public func onServerLog(_ listener: (@Sendable (_ server: String, _ message: [UInt8]) -> Void)?) { runtime.setLogListener(listener) }

    /// Calls `listener` with each `notifications/resources/updated` a server sends (the URI and
    /// the message as sent); nil stops it. On an I/O thread: keep it short.
    public func onResourceUpdated(_ listener: (@Sendable (_ uri: String, _ message: [UInt8]) -> Void)?) { runtime.setResourceListener(listener) }

    /// Calls `listener` with the method of a server's list-change notification
    /// (`notifications/tools/list_changed`, prompts, resources) once the engine has listed that
    /// server again, so what the listener's clients fetch next is the new list; nil stops it.
    public func onListChanged(_ listener: (@Sendable (_ method: String) -> Void)?) { runtime.setListChangeListener(listener) }

    /// A server's log message as clients get it, the logger named after the server ("kv" or
    /// "kv/<logger>"), with its level; nil when it names no known level.
    public static func relayedLog(_ message: [UInt8], server: String) -> (level: LogLevel, message: [UInt8])? {
        guard case .object(var o)? = try? JSONParser.parse(message), case .object(var params)? = o["params"],
              let name = params["level"]?.stringValue, let level = LogLevel(name) else { return nil }
        params["logger"] = .string(params["logger"]?.stringValue.map { server + "/" + $0 } ?? server)
        o["params"] = .object(params)
        return (level, Array(JSONValue.object(o).jsonString.utf8))
    }

    /// Whether `start` has run (backends exist).
    public var isRunning: Bool { runtime.isStarted }

    /// Stops every backend (stdio servers are asked to exit; HTTP sessions are ended).
    public func stop() async {
        if runtime.isReady { saveHotSet() }
        // The ticking task has ended when stop returns (a host may exit right after).
        await monitor.stop(self)?.value
        coordination.replicator?.stop()
        coordination.setReplicator(nil)
        await runtime.stop()
    }

    /// A client session ended: the backend sessions stateful servers kept for it are stopped.
    public func endSession(_ session: String) async { await runtime.endSession(session) }

    /// Backend sessions held for client sessions of stateful servers.
    public var sessionBackendCount: Int { runtime.sessionBackendCount }

    /// The backend for `server` in `session` (a stateful server's own per session).
    func backend(_ server: String, session: String?) -> Backend? {
        runtime.backend(server, session: session) { [weak self] backend in self?.startBackend(backend) }
    }

    /// Starts a backend, the engine hearing its server's notifications and requests.
    private func startBackend(_ backend: Backend) {
        let name = backend.name
        backend.start(onNotification: { [weak self] method, message in self?.backendNotification(server: name, method: method, message: message) },
                      onServerRequest: { [weak self, weak backend] method, message, reply in
                          guard let self, let backend else { return }
                          self.serverRequest(backend: backend, method: method, message: message, reply: reply)
                      })
    }

    /// What each server offers (after `start`), in configuration order.
    public var catalogs: [ServerCatalog] {
        let all = runtime.catalogs
        return config.activeServers.compactMap { s in all.first { $0.server == s.name } }
    }

    /// Changes whenever a server's catalog is replaced (after list_changed, or a restart).
    public var catalogGeneration: Int { runtime.currentCatalogGeneration }

    public var events: EventBus { runtime.events }
    public var metrics: EngineMetrics { runtime.metrics }

    private func bringUp() async {
        let backends: [Backend]
        do {
            backends = try runtime.makeBackends(config.activeServers)
        } catch {
            runtime.events.emit(.optimizationError, ["reason": .string("cannot start the I/O loop: \(error.message)")])
            return
        }
        if config.caching.enableMultiLevel, let options = config.caching.distributed, let loop = runtime.eventLoop,
           let shared = SharedCache(options: options, loop: loop, l1: cache, events: runtime.events, coherenceTimeout: config.caching.coherenceTimeout) {
            runtime.setShared(shared)
            shared.start()
        }
        await startStateReplication()
        for backend in backends { startBackend(backend) }
        await withTaskGroup(of: Void.self) { group in
            for backend in backends { group.addTask { await self.refreshCatalog(backend) } }
        }
    }

    func refreshCatalog(_ backend: Backend, attempt: Int = 0) async {
        let catalog = await ServerCatalog.fetch(from: backend, timeout: min(config.optimization.requestTimeout, .seconds(20)))
        runtime.setCatalog(catalog)
        _ = router.setTools(server: backend.name, catalog.toolInfos)
        let up = catalog.error == nil
        _ = router.setHealth(server: backend.name, up ? .healthy : .unhealthy)
        if runtime.markUp(backend.name, up) {
            runtime.events.emit(up ? .serverUp : .serverDown, ["server": .string(backend.name), "reason": catalog.error.map { .string($0) } ?? .null])
        }
        // A server that could not be listed (slow to start, down, broken) is tried again with
        // backoff (1 s doubling to 30 s) until it answers or the engine stops: it joins when up.
        if !up {
            Task { [weak self] in
                try? await Task.sleep(for: .seconds(min(30, 1 << min(attempt, 5))))
                guard let self, !self.runtime.isStopped, let current = self.runtime.backend(backend.name), current === backend,
                      self.catalogs.first(where: { $0.server == backend.name })?.error != nil else { return }
                await self.refreshCatalog(backend, attempt: attempt + 1)
            }
        }
    }

    /// Notifications from backends (on the I/O thread: quick work only).
    func backendNotification(server: String, method: String, message: [UInt8]) {
        if method == "notifications/message" {
            runtime.currentLogListener?(server, message)
            return
        }
        let updatedURI = method == "notifications/resources/updated" ? (try? JSONParser.parse(message))?["params"]?["uri"]?.stringValue : nil
        if let uri = updatedURI { runtime.currentResourceListener?(uri, message) }
        guard config.caching.enableIntelligentInvalidation || method.hasSuffix("list_changed") || method == "notifications/progress" else { return }
        switch method {
        case "notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed":
            guard let backend = runtime.backend(server) else { return }
            _ = cache.invalidateTag("l:" + backend.server.group)
            Task {
                await self.refreshCatalog(backend)
                self.runtime.currentListChangeListener?(method)
            }
        case "notifications/progress":
            runtime.progress.relay(message)
        case "notifications/resources/updated":
            if let uri = updatedURI {
                let removed = cache.invalidateTag("r:" + uri)
                runtime.metrics.invalidations.add(UInt64(removed))
                runtime.shared?.invalidate(tags: ["r:" + uri])
            }
        default:
            break
        }
    }

    // MARK: the request path

    /// Serves one JSON-RPC request through the whole pipeline: decode, agent policy, cache,
    /// merging of identical requests in flight, routing, the server's warm session, failover
    /// for safe requests, cache fill, invalidation. Never throws: problems are JSON-RPC errors
    /// in the response, with `success` false and `error` saying why.
    public func optimizeRequest(_ message: [UInt8], _ options: OptimizeOptions = .init()) async -> OptimizedResponse {
        // Requests that come while the servers are being listed wait for the listing.
        if !runtime.isReady { await start() }
        switch prepare(message, options) {
        case .answered(let response): return response
        case .pending(let request): return await completeRequest(request)
        }
    }

    /// A request planned by `prepareRequest` that needs a server (a reference: fronts keep it
    /// across an await, and copies of its plan were a dozen retains each).
    public final class PendingRequest: Sendable {
        fileprivate let plan: Plan
        fileprivate let started: UInt64
        fileprivate init(plan: Plan, started: UInt64) {
            self.plan = plan
            self.started = started
        }
    }

    public enum Prepared: Sendable {
        /// Answered without I/O: a cache hit, ping, an aggregated list, an error.
        case answered(OptimizedResponse)
        /// Needs a server: finish it with `completeRequest`.
        case pending(PendingRequest)
    }

    /// The synchronous part of the request path, on the caller's thread: decode, policy,
    /// routing, cache lookup. A front answers `.answered` at once and awaits `completeRequest`
    /// only for `.pending`, so nothing is planned twice. nil until the engine has started.
    public func prepareRequest(_ message: [UInt8], _ options: OptimizeOptions = .init()) -> Prepared? {
        runtime.isReady ? prepare(message, options) : nil
    }

    /// `prepareRequest`, and when the answer is a cache hit that a byte-identical repeat of
    /// the request (another id aside) would get too, a `HitReplay` that answers such repeats
    /// without planning them again (see HitReplay).
    public func prepareRequest(_ message: [UInt8], _ options: OptimizeOptions, replay: inout HitReplay?) -> Prepared? {
        guard runtime.isReady else { return nil }
        return withUnsafeMutablePointer(to: &replay) { prepare(message, options, replay: $0) }
    }

    private func prepare(_ message: [UInt8], _ options: OptimizeOptions, replay: UnsafeMutablePointer<HitReplay?>? = nil) -> Prepared {
        let started = monotonicNanos()
        runtime.metrics.requests.add()
        let planned = message.withUnsafeBytes { bytes in MessageDecoder.withPooled { decoder in plan(bytes, options, decoder: decoder, replay: replay) } }
        switch planned {
        case .answer(let r): return .answered(finish(r, started: started))
        case .call(let plan): return .pending(PendingRequest(plan: plan, started: started))
        }
    }

    /// Sends a prepared request to its servers and answers it.
    public func completeRequest(_ request: PendingRequest) async -> OptimizedResponse {
        let plan = request.plan
        defer { if let token = plan.progressToken { runtime.progress.end(token) } }
        return finish(await execute(plan), started: request.started)
    }

    private func finish(_ answer: OptimizedResponse, started: UInt64) -> OptimizedResponse {
        var response = answer
        response.executionTime = .nanoseconds(Int64(recordOutcome(success: response.success, started: started)))
        return response
    }

    /// Counts a request's end; returns its time in nanoseconds.
    @discardableResult
    private func recordOutcome(success: Bool, started: UInt64) -> UInt64 {
        let metrics = runtime.metrics
        let elapsed = monotonicNanos() &- started
        metrics.latency.record(nanoseconds: elapsed)
        (success ? metrics.succeeded : metrics.failed).add()
        metrics.actualNanos.add(elapsed)
        return elapsed
    }

    /// Everything decided before any I/O. A class: a plan is passed through several async
    /// frames (execute, callUpstream, attempt, hedges), and copying its twenty fields cost a
    /// dozen retains each time; one reference costs one. Filled in by `plan` and read-only once
    /// it leaves it, hence @unchecked Sendable.
    final class Plan: @unchecked Sendable {
        var id: [UInt8]
        var method: String
        var params: [UInt8]?
        var tool: String?
        /// Servers to try, in order.
        var candidates: [String]
        var group: String
        var lookup: CachePolicy.Lookup?
        var ticket: FillTicket?
        /// Safe to send again (read-only or idempotent): retries and failover allowed.
        var safe: Bool
        /// Read-only: may also be sent twice at once (hedged). An idempotent write is retried
        /// after a failure but never raced against itself.
        var hedgeable: Bool
        /// Tags to invalidate once the call is done (a write).
        var invalidates: [String]
        /// Tags the cached result carries.
        var storeTags: [String]
        var timeout: Duration
        /// The caller set the timeout (adaptive timeouts leave it alone).
        var explicitTimeout: Bool
        var session: String?
        /// A refresh ahead of expiry (warming), not a caller's request.
        var refresh = false
        /// Who asks (partition, else agent): a busy server serves tenants in turn.
        var tenant = ""
        /// The agent profile's priority (refreshes go last).
        var priority: Priority = .normal
        /// The caller asked for a fresh answer: no cache level is read (results still fill).
        var bypassCache = false
        /// The engine's own progress token sent upstream in place of the caller's (unique
        /// across callers); its notifications go back to the caller with the caller's token.
        var progressToken: String?
        /// How to ask the caller's client (server requests), and who that client is.
        var askClient: ServerRequestRoutes.Ask?
        var caller = ""
        /// Where the log messages on the upstream request's own stream go (the caller, or
        /// every merged caller that wants them); nil: nobody wants them. (A class: a plan is
        /// copied on the request path, and copying an optional closure costs more.)
        var logs: RequestLogs?

        init(id: [UInt8], method: String, params: [UInt8]?, tool: String?, candidates: [String], group: String,
             lookup: CachePolicy.Lookup?, ticket: FillTicket?, safe: Bool, hedgeable: Bool, invalidates: [String],
             storeTags: [String], timeout: Duration, explicitTimeout: Bool, session: String?) {
            self.id = id
            self.method = method
            self.params = params
            self.tool = tool
            self.candidates = candidates
            self.group = group
            self.lookup = lookup
            self.ticket = ticket
            self.safe = safe
            self.hedgeable = hedgeable
            self.invalidates = invalidates
            self.storeTags = storeTags
            self.timeout = timeout
            self.explicitTimeout = explicitTimeout
            self.session = session
        }

        /// Latency statistics key: this tool (or method) on this group.
        var latencyKey: String { group + "/" + (tool ?? method) }

        /// From now on its log messages go to `shared` (the merged callers' listeners, its own
        /// caller's among them). Only before the plan is sent: nothing else reads it yet.
        func logTo(_ shared: RequestLogs) {
            if let own = logs { shared.absorb(own) }
            logs = shared
        }
    }

    // Indirect: its two large payloads share no spare bits, so copies never read a partly
    // initialised tag (valgrind flagged the outlined copy of the packed layout).
    indirect enum Planned: Sendable {
        case answer(OptimizedResponse)
        case call(Plan)
    }

    /// `replay`: where a replay of a cache hit answered before routing goes, when the caller
    /// wants one.
    private func plan(_ bytes: UnsafeRawBufferPointer, _ options: OptimizeOptions, decoder: MessageDecoder,
                      replay: UnsafeMutablePointer<HitReplay?>?) -> Planned {
        let view: MessageView
        do {
            view = try decoder.decode(bytes)
        } catch {
            return .answer(failure(id: nil, code: error.rpcCode, error.kind == .notJSON ? "Parse error: \(error.detail)" : "Invalid Request: \(error.detail)"))
        }
        guard view.kind == .request, let method = view.method.string else {
            return .answer(failure(id: view.idRaw.bytes, code: RPCErrorCode.invalidRequest, "optimizeRequest takes a JSON-RPC request (with an id and a method)"))
        }
        let id = Array(view.idRaw.buffer)
        // Read before any catalog is: a replay made from a catalog replaced meanwhile is
        // already stale.
        let epoch = replay == nil ? 0 : runtime.catalogEpoch.load()
        // The servers `options.servers` (names or groups) and the agent's profile allow; nil: all.
        let allowed = runtime.directory.allowed(servers: options.servers, agent: options.agent)

        var candidates: [String]
        var tool: String?
        var earlyLookup: EarlyLookup?
        if options.servers == nil, method != "tools/call", ["tools/list", "prompts/list", "resources/list", "resources/templates/list"].contains(method) {
            return .answer(answer(id: id, result: Array(aggregatedList(method, allowed: allowed).jsonString.utf8)))
        }
        switch method {
        case "ping":
            return .answer(answer(id: id, result: Array("{}".utf8)))
        case "tools/call":
            guard let name = view.name.string else {
                return .answer(failure(id: id, code: RPCErrorCode.invalidParams, "tools/call needs params.name"))
            }
            tool = name
            var requirements = MCPOptRouting.Requirements()
            requirements.allowedServers = allowed
            do {
                requirements = try agentRequirements(tool: name, requirements, agent: options.agent)
            } catch {
                runtime.metrics.routingErrors.add()
                runtime.events.emit(.routingError, ["tool": .string(name), "reason": .string("\(error)")])
                return .answer(failure(id: id, code: RPCErrorCode.invalidParams, "\(error)"))
            }
            if !options.bypassCache, !view.requestState.isPresent {
                switch cachedBeforeRouting(view, id: id, tool: name, allowed: requirements.allowedServers, options, replay: replay, epoch: epoch) {
                case .answered(let response): return .answer(response)
                case .missed(let early): earlyLookup = early
                case .notApplicable: break
                }
            }
            let decision = router.decide(tool: name, requirements)
            runtime.metrics.decisionLatency.record(nanoseconds: decision.decisionNanos)
            guard let server = decision.server else {
                runtime.metrics.routingErrors.add()
                runtime.events.emit(.routingError, ["tool": .string(name), "reason": .string(decision.reasoning)])
                let unknown = decision.outcome == .unknownTool
                return .answer(failure(id: id, code: unknown ? RPCErrorCode.invalidParams : RPCErrorCode.internalError,
                                       unknown ? "Unknown tool: \(name)" : "no server can take tool \"\(name)\" now: \(decision.reasoning)"))
            }
            candidates = [server] + decision.fallbacks
        case "resources/read", "resources/subscribe", "resources/unsubscribe":
            guard let uri = view.uri.string else { return .answer(failure(id: id, code: RPCErrorCode.invalidParams, "\(method) needs params.uri")) }
            candidates = owners(allowed: allowed) { $0.resourceURISet.contains(uri) }
            if candidates.isEmpty { candidates = owners(allowed: allowed) { $0.templateMatches(uri) } }
            if candidates.isEmpty { return .answer(failure(id: id, code: RPCErrorCode.resourceNotFound, "Resource not found: \(uri)")) }
        case "prompts/get":
            guard let name = view.name.string else { return .answer(failure(id: id, code: RPCErrorCode.invalidParams, "prompts/get needs params.name")) }
            candidates = owners(allowed: allowed) { $0.promptNameSet.contains(name) }
            if candidates.isEmpty { return .answer(failure(id: id, code: RPCErrorCode.invalidParams, "Unknown prompt: \(name)")) }
        default:
            guard let allowed else {
                return .answer(failure(id: id, code: RPCErrorCode.methodNotFound, "\(method): name the server to send it to (servers)"))
            }
            candidates = runtime.directory.active.map(\.name).filter { allowed.contains($0) }
        }
        // A multi-round-trip retry goes back to the server that asked for input: its sealed
        // requestState means nothing to any other (replicas included).
        var pinned = false
        if view.requestState.isPresent, let server = runtime.pins.server(for: view.requestState.buffer) {
            guard allowed?.contains(server) ?? true else {
                return .answer(failure(id: id, code: RPCErrorCode.invalidParams, "this requestState belongs to server \"\(server)\", which this caller may not use"))
            }
            candidates = [server]
            pinned = true
        }
        guard let first = candidates.first, let firstBackendConfig = runtime.directory.server(first) else {
            return .answer(failure(id: id, code: RPCErrorCode.internalError, "no server to send \(method) to"))
        }
        let group = firstBackendConfig.group

        // Caching: what the policy allows, under the caller's partition.
        var annotations: CachePolicy.ToolAnnotations?
        var trusted = false
        // A group's replicas are interchangeable (the cache key names the group, not the
        // server): what the lookup before routing read for this group stands.
        if tool != nil, let early = earlyLookup, early.group == group {
            annotations = early.annotations
            trusted = runtime.policy.trustedGroups.contains(group)
        } else if let tool, let declared = runtime.annotations(server: first, tool: tool) {
            annotations = CachePolicy.ToolAnnotations(declared: declared)
            trusted = runtime.policy.trustedGroups.contains(group)
        }
        let partition = cachePartition(options, stateful: firstBackendConfig.stateful)
        // The lookup made before routing is the same one when routing chose the same group.
        let early = earlyLookup.flatMap { $0.group == group && $0.partition == partition ? $0 : nil }
        let lookup = early.map(\.lookup) ?? runtime.policy.lookup(view, group: group, annotations: annotations, partition: partition)
        // A hit near its expiry is answered and also refreshed ahead, in the background.
        var refreshing: OptimizedResponse?
        if let lookup, !options.bypassCache {
            if early == nil, let hit = cachedResult(lookup) {
                let response = answerHit(hit, id: id, method: method, tool: tool, key: lookup.key)
                guard CachedValue.refreshDue(hit.header, strategy: config.caching.warmingStrategy, nowMs: CachedValue.nowMs()),
                      runtime.warming.begin(lookup.key) else {
                    if let replay, !pinned, method == "resources/read" || method == "prompts/get",
                       candidates.allSatisfy({ runtime.directory.server($0).map { $0.group == group && $0.stateful == firstBackendConfig.stateful } ?? false }) {
                        // Every server that offers it is in one group: the key does not depend
                        // on which one the circuits put first (as a tool's before routing).
                        replay.pointee = HitReplay(engine: self, lookup: lookup, sharedKey: runtime.policy.sharedKey(lookup), method: method, tool: nil, epoch: epoch)
                    }
                    return .answer(response)
                }
                refreshing = response
            } else {
                runtime.metrics.cacheMisses.add()
                runtime.events.emit(.cacheMiss, ["method": .string(method), "tool": tool.map { .string($0) } ?? .null])
            }
        }

        // Idempotent is not read-only: an idempotent write (set a value) may be retried, and it
        // still makes what it changed stale.
        let readOnlyCall = trusted && annotations?.readOnly == true
        let idempotentCall = trusted && annotations?.idempotent == true
        // (`lookup != nil` would compare two Lookup? values through the generic witnesses.)
        let cacheable = lookup.map { _ in true } ?? false
        let safe = !pinned && (method != "tools/call" || cacheable || readOnlyCall || idempotentCall)
        let hedgeable = !pinned && (method != "tools/call" || cacheable || (trusted && annotations?.readOnly == true))
        var invalidates: [String] = []
        var storeTags: [String] = []
        if let tool {
            let (inv, tags) = invalidationTags(tool: tool, group: group, arguments: view.arguments, isWrite: !cacheable && !readOnlyCall)
            invalidates = inv
            storeTags = tags
        } else if method == "resources/read", let uri = view.uri.string {
            storeTags = ["r:" + uri, "g:" + group]
        } else if method.hasSuffix("/list") {
            storeTags = ["l:" + group]
        }
        let plan = Plan(id: id, method: method, params: view.params.bytes, tool: tool, candidates: candidates, group: group, lookup: lookup,
                        ticket: lookup.map { cache.ticket(for: $0.key) }, safe: safe, hedgeable: hedgeable, invalidates: invalidates, storeTags: storeTags,
                        timeout: options.timeout ?? config.optimization.requestTimeout, explicitTimeout: options.timeout != nil,
                        session: options.session)
        plan.bypassCache = options.bypassCache
        if let relay = options.onNotification, view.progressToken.isPresent, refreshing == nil,
           case .object(var params)? = try? JSONParser.parse(view.params.buffer), case .object(var meta)? = params["_meta"] {
            let token = runtime.progress.begin(original: Array(view.progressToken.buffer), relay: relay)
            meta["progressToken"] = .string(token)
            params["_meta"] = .object(meta)
            plan.params = Array(JSONValue.object(params).jsonString.utf8)
            plan.progressToken = token
        }
        plan.tenant = options.partition ?? options.agent ?? ""
        if runtime.relayServerRequests, let ask = options.onServerRequest {
            plan.askClient = ask
            plan.caller = options.session ?? plan.tenant
        }
        plan.priority = options.agent.flatMap { a in config.agents.first(where: { $0.id == a })?.priority } ?? .normal
        if let refreshing, let lookup {
            plan.refresh = true
            plan.priority = .low
            refreshAhead(plan, key: lookup.key)
            return .answer(refreshing)
        }
        if let level = options.logLevel, let relay = options.onNotification {
            plan.logs = RequestLogs(level: level, relay: relay)
            // From now on leaders of mergeable requests gather their followers' listeners.
            if runtime.logsWanted.load() == 0 { runtime.logsWanted.add() }
        }
        return .call(plan)
    }

    /// A cache lookup made before routing, kept for the request's own lookup after it.
    /// A class: an optional struct of this size is copied and destroyed through the runtime's
    /// generic value witnesses (~160 instructions each, seven times a request); a reference is
    /// one release.
    private final class EarlyLookup {
        let group: String
        let partition: String
        let annotations: CachePolicy.ToolAnnotations
        /// nil: not cacheable.
        let lookup: CachePolicy.Lookup?
        init(group: String, partition: String, annotations: CachePolicy.ToolAnnotations, lookup: CachePolicy.Lookup?) {
            self.group = group
            self.partition = partition
            self.annotations = annotations
            self.lookup = lookup
        }
    }

    private enum BeforeRouting {
        case answered(OptimizedResponse)
        /// Looked up and missed, or not cacheable.
        case missed(EarlyLookup)
        case notApplicable
    }

    /// A cached result needs no routing when one group offers `tool` to this caller: the key
    /// depends on the group, not on the replica routing would pick. Routing cost a cache hit
    /// more than the lookup itself. Not applicable (route first) when several groups offer it
    /// (the routed group decides the key), when their servers differ on `stateful`, or when the
    /// hit is due for a refresh ahead (which needs the routed plan).
    /// `epoch`: the catalogs' epoch, read before any catalog was (what a replay is made with).
    private func cachedBeforeRouting(_ view: MessageView, id: [UInt8], tool: String, allowed: Set<String>?, _ options: OptimizeOptions,
                                     replay: UnsafeMutablePointer<HitReplay?>?, epoch: UInt64) -> BeforeRouting {
        guard let owners = runtime.toolOwners(tool) else { return .notApplicable }
        var pick: EngineRuntime.ToolOwner?
        for owner in owners where allowed?.contains(owner.server) ?? true {
            guard let first = pick else {
                pick = owner
                continue
            }
            if owner.group != first.group || owner.stateful != first.stateful { return .notApplicable }
        }
        guard let pick else { return .notApplicable }
        let group = pick.group
        let annotations = CachePolicy.ToolAnnotations(declared: pick.annotations)
        let partition = cachePartition(options, stateful: pick.stateful)
        guard let lookup = runtime.policy.lookup(call: view, tool: tool, group: group, annotations: annotations, partition: partition) else {
            return .missed(EarlyLookup(group: group, partition: partition, annotations: annotations, lookup: nil))
        }
        guard let hit = cachedResult(lookup) else {
            return .missed(EarlyLookup(group: group, partition: partition, annotations: annotations, lookup: lookup))
        }
        if CachedValue.refreshDue(hit.header, strategy: config.caching.warmingStrategy, nowMs: CachedValue.nowMs()) { return .notApplicable }
        // Everything that led here depends on the request's bytes, the caller's options (the
        // same for a repeat from the same caller), the configuration (fixed) and the catalogs
        // (the epoch): a repeat needs only the lookup again.
        if let replay {
            replay.pointee = HitReplay(engine: self, lookup: lookup, sharedKey: runtime.policy.sharedKey(lookup), method: "tools/call", tool: tool, epoch: epoch)
        }
        return .answered(answerHit(hit, id: id, method: "tools/call", tool: tool, key: lookup.key))
    }

    /// A repeat of the request `replay` was made for, with `id`: the cached result if it is
    /// still there and not due for a refresh, counted as the hit it is; nil otherwise (the
    /// request is then planned as any other).
    /// `out` gets `head(length)` and then the response, of that length; nothing when nil.
    func answer(_ replay: HitReplay, id: UnsafeRawBufferPointer, into out: inout [UInt8], head: (Int, inout [UInt8]) -> Void) -> Bool {
        guard runtime.catalogEpoch.load() == replay.epoch else { return false }
        let started = monotonicNanos()
        // Read into a buffer on the stack (most results are small), else into an array.
        let answered = withUnsafeTemporaryAllocation(byteCount: 2048, alignment: 8) { scratch -> Bool? in
            func respond(_ value: UnsafeRawBufferPointer) -> Bool {
                guard let header = CachedValue.header(value),
                      !CachedValue.refreshDue(header, strategy: config.caching.warmingStrategy, nowMs: CachedValue.nowMs()) else { return false }
                let result = UnsafeRawBufferPointer(rebasing: value[CachedValue.headerSize...])
                head(MessageEncoder.resultLength(idJSON: id.count, result: result.count), &out)
                MessageEncoder.appendResult(idJSON: id, result: result, to: &out)
                countHit(header, method: replay.method, tool: replay.tool, key: replay.lookup.key)
                return true
            }
            // The partition's entry, else the shared one (as `cachedResult`).
            func read(_ key: [UInt8]) -> Bool? {
                switch key.withUnsafeBytes({ cache.get($0, into: scratch) }) {
                case .hit(let length): return respond(UnsafeRawBufferPointer(rebasing: scratch[..<length]))
                case .bufferTooSmall: return cache.get(key).map { value in value.withUnsafeBytes(respond) }
                case .miss: return nil
                }
            }
            return read(replay.lookup.key) ?? (sharedEntriesExist ? read(replay.sharedKey) : nil)
        }
        guard answered == true else { return false }
        runtime.metrics.requests.add()
        recordOutcome(success: true, started: started)
        return true
    }

    /// The response `answer(_:id:into:head:)` gives, as bytes (nil: plan the request anew).
    func answer(_ replay: HitReplay, id: UnsafeRawBufferPointer) -> [UInt8]? {
        var out: [UInt8] = []
        return answer(replay, id: id, into: &out) { length, out in out.reserveCapacity(length) } ? out : nil
    }

    /// Whose cache entries a request reads and fills: its partition, else its agent; a
    /// stateful server's answers depend on the session, so they are cached within it only.
    private func cachePartition(_ options: OptimizeOptions, stateful: Bool) -> String {
        let partition = options.partition ?? options.agent ?? ""
        guard stateful, let session = options.session else { return partition }
        return partition + "\u{1}session:" + session
    }

    /// The answer to a cache hit, counted.
    private func answerHit(_ hit: (result: ArraySlice<UInt8>, header: CachedValue.Header), id: [UInt8], method: String, tool: String?,
                           key: [UInt8]) -> OptimizedResponse {
        countHit(hit.header, method: method, tool: tool, key: key)
        return OptimizedResponse(message: hit.result.withUnsafeBytes { MessageEncoder.result(idJSON: id, result: $0) }, success: true,
                                 server: nil, source: .memory, attempts: 0, executionTime: .zero, error: nil)
    }

    private func countHit(_ header: CachedValue.Header, method: String, tool: String?, key: [UInt8]) {
        runtime.metrics.cacheHits.add()
        runtime.metrics.baselineNanos.add(header.originNanos)
        runtime.events.emit(.cacheHit, ["method": .string(method), "tool": tool.map { .string($0) } ?? .null])
        if header.refreshed { runtime.warming.hitAfterRefresh(key) }
    }

    /// Servers whose catalog satisfies `offers`, those with a closed circuit first.
    private func owners(allowed: Set<String>?, _ offers: (ServerCatalog) -> Bool) -> [String] {
        let all = catalogs.filter { $0.error == nil && (allowed?.contains($0.server) ?? true) && offers($0) }.map(\.server)
        return all.filter { router.circuitState(server: $0) != .open } + all.filter { router.circuitState(server: $0) == .open }
    }

    /// Tags to drop after a write, and tags to put on a read's cached result. A write drops
    /// its own group's cached reads; configured rules reach across groups, by tool and,
    /// when they name arguments, by those arguments' values.
    private func invalidationTags(tool: String, group: String, arguments: ByteSpan, isWrite: Bool) -> (invalidate: [String], store: [String]) {
        guard config.caching.enableIntelligentInvalidation else { return ([], []) }
        let rules = config.caching.invalidationRules
        var parsedArguments: JSONValue?
        func key(_ rule: InvalidationRule, target: String) -> String {
            if parsedArguments == nil { parsedArguments = arguments.isPresent ? ((try? JSONParser.parse(arguments.buffer)) ?? .null) : .null }
            let values = rule.arguments.map { parsedArguments?[$0]?.canonicalJSONString ?? "null" }
            return rule.arguments.isEmpty ? "t:" + target : "a:" + target + "\u{1}" + values.joined(separator: "\u{1}")
        }
        func named(_ pattern: String) -> Bool { pattern == tool || pattern == group + "/" + tool }
        if isWrite {
            // The rules naming this tool say exactly what it makes stale; without one, a write
            // makes every read of its group stale.
            var tags: [String] = []
            for rule in rules where named(rule.tool) {
                for target in rule.invalidates { tags.append(key(rule, target: target.split(separator: "/").last.map(String.init) ?? target)) }
            }
            return (tags.isEmpty ? ["g:" + group] : tags, [])
        }
        var tags = ["g:" + group, "t:" + tool]
        for rule in rules where !rule.arguments.isEmpty && rule.invalidates.contains(where: named) {
            tags.append(key(rule, target: tool))
        }
        return ([], tags)
    }

    // MARK: cache values

    /// A cached result (CachedValue: a header, then the result's JSON).
    /// The partition's entry, else the one shared across partitions (a result a server marked
    /// public is stored under both).
    private func cachedResult(_ lookup: CachePolicy.Lookup) -> (result: ArraySlice<UInt8>, header: CachedValue.Header)? {
        guard let value = cache.get(lookup.key) ?? (sharedEntriesExist ? cache.get(runtime.policy.sharedKey(lookup)) : nil),
              let header = CachedValue.header(value) else { return nil }
        return (CachedValue.result(value), header)
    }

    /// Whether any result was stored under a shared key: until one is, a miss under the
    /// caller's own key looks no further.
    private var sharedEntriesExist: Bool { runtime.publicResults.load() > 0 }

    /// Stores a server's answer; returns its shape (read in the same decode, for the reply).
    @discardableResult
    private func fill(_ plan: Plan, lookup: CachePolicy.Lookup, response: [UInt8], originNanos: UInt64) -> AnswerShape? {
        response.withUnsafeBytes { bytes in MessageDecoder.withPooled { decoder in
            guard let view = try? decoder.decode(bytes) else { return nil }
            let shape = AnswerShape(view)
            guard let terms = runtime.policy.store(view, for: lookup) else { return shape }
            let value = CachedValue.encode(result: view.result.buffer, originNanos: originNanos, ttl: terms.ttl, refreshed: plan.refresh)
            let options = CacheItemOptions(ttl: terms.ttl, tags: plan.storeTags)
            let stored = try? cache.set(lookup.key, value, options, ticket: plan.ticket)
            if terms.shared {
                runtime.publicResults.add()   // before the entry is there: a lookup that finds it checks
                _ = try? cache.set(runtime.policy.sharedKey(lookup), value, options, ticket: nil)
            }
            // L2 gets what L1 kept (not a fill an invalidation raced), without waiting.
            if stored == .stored, let shared = runtime.shared { shared.store(lookup.key, value: value, ttl: terms.ttl, tags: plan.storeTags) }
            if stored == .stored, plan.refresh { runtime.warming.refreshStored(lookup.key) }
            // A copy that outlives the TTL, for when every server fails; it carries the same
            // tags, so whatever invalidates the result drops the copy too.
            // Only when the fill itself was not refused by a racing invalidation.
            if config.caching.staleIfError > .zero, stored == .stored {
                let stale = CacheItemOptions(ttl: terms.ttl + config.caching.staleIfError, tags: plan.storeTags)
                _ = try? cache.set(Self.staleKey(lookup), value, stale)
            }
            return shape
        } }
    }

    /// Fetches a hot entry again before it expires (its caller was already answered from the
    /// cache): the same routing, retries and fill as a miss, in the background.
    private func refreshAhead(_ plan: Plan, key: [UInt8]) {
        runtime.warming.started.add()
        Task { [self] in
            let outcome = await callUpstream(plan)
            if let response = outcome.message, let lookup = plan.lookup { fill(plan, lookup: lookup, response: response, originNanos: outcome.originNanos) }
            runtime.warming.end(key, succeeded: outcome.message != nil)
        }
    }

    /// An L2 hit becomes an L1 entry (with the time it has left; not if an invalidation
    /// raced it) and the request's answer.
    private func promote(_ hit: SharedCache.Hit, plan: Plan, lookup: CachePolicy.Lookup) -> UpstreamOutcome {
        _ = try? cache.set(lookup.key, hit.value, CacheItemOptions(ttl: hit.ttl, tags: hit.tags), ticket: plan.ticket)
        // Counted as an L1 miss when planned: it is a hit of the cache as a whole.
        runtime.metrics.cacheMisses.subtract()
        runtime.metrics.cacheHits.add()
        let originNanos = CachedValue.header(hit.value)?.originNanos ?? 0
        runtime.metrics.baselineNanos.add(originNanos)
        let result = CachedValue.header(hit.value) != nil ? Array(CachedValue.result(hit.value)) : Array("null".utf8)
        let message = result.withUnsafeBytes { MessageEncoder.result(idJSON: Array("0".utf8), result: $0) }
        return UpstreamOutcome(message: message, server: nil, attempts: 0, originNanos: originNanos)
    }

    static func staleKey(_ lookup: CachePolicy.Lookup) -> [UInt8] { Array("stale".utf8) + [0] + lookup.key }

    // MARK: upstream

    private func execute(_ plan: Plan) async -> OptimizedResponse {
        let outcome: UpstreamOutcome
        var source = OptimizedResponse.Source.origin
        var shape: AnswerShape?
        if let lookup = plan.lookup {
            // Only a follower waits: only it needs a box to wait in.
            var box: OutcomeBox?
            let key = HashedKey(lookup.key)
            let joined = runtime.coalescer.join(key, follower: {
                let b = OutcomeBox()
                box = b
                return { b.deliver($0) }
            })
            switch joined {
            case .leader:
                // Callers merged into this request hear its progress, each with its own token.
                if let token = plan.progressToken { runtime.progress.lead(key, token: token) }
                // Callers merged into this request hear its log messages too (each filters
                // them by its own level): a listener list shared under the key, once anyone
                // asked for logs.
                let logs = plan.logs != nil || runtime.logsWanted.load() != 0 ? runtime.requestLogs.join(key) : nil
                defer { if logs != nil { runtime.requestLogs.leave(key) } }
                if !plan.bypassCache, let shared = runtime.shared, let hit = await shared.get(lookup.key) {
                    outcome = promote(hit, plan: plan, lookup: lookup)
                    source = .shared
                } else {
                    if let logs { plan.logTo(logs) }
                    outcome = await callUpstream(plan)
                    // Filled before merged requests are released; the same decode shapes the reply.
                    if let response = outcome.message { shape = fill(plan, lookup: lookup, response: response, originNanos: outcome.originNanos) }
                }
                runtime.coalescer.complete(key, .success(outcome))
            case .follower:
                runtime.metrics.coalesced.add()
                source = .coalesced
                // The leader's request carries the leader's level: what it brings from now on
                // reaches this caller too.
                if let own = plan.logs { runtime.requestLogs.join(key).absorb(own) }
                defer { if plan.logs != nil { runtime.requestLogs.leave(key) } }
                if let token = plan.progressToken { runtime.progress.follow(key, token: token) }
                outcome = await box!.wait()   // made when it joined as a follower
                runtime.metrics.baselineNanos.add(outcome.originNanos)
            }
        } else {
            outcome = await callUpstream(plan)
        }
        if !plan.invalidates.isEmpty {
            var removed = 0
            for tag in plan.invalidates { removed += cache.invalidateTag(tag) }
            runtime.metrics.invalidations.add(UInt64(removed))
            runtime.shared?.invalidate(tags: plan.invalidates)
        }
        if outcome.message == nil, config.caching.staleIfError > .zero, let lookup = plan.lookup,
           let value = cache.get(Self.staleKey(lookup)), CachedValue.header(value) != nil {
            runtime.metrics.staleServed.add()
            runtime.events.emit(.optimizationError, ["method": .string(plan.method), "tool": plan.tool.map { .string($0) } ?? .null,
                                                     "reason": .string(outcome.error ?? ""), "servedStale": true])
            let message = CachedValue.result(value).withUnsafeBytes { MessageEncoder.result(idJSON: plan.id, result: $0) }
            return OptimizedResponse(message: message, success: true, server: nil, source: .stale, attempts: outcome.attempts,
                                     executionTime: .zero, error: nil)
        }
        guard let message = outcome.message else {
            runtime.events.emit(.optimizationError, ["method": .string(plan.method), "tool": plan.tool.map { .string($0) } ?? .null,
                                                     "reason": .string(outcome.error ?? "")])
            var r = failure(id: plan.id, code: outcome.errorCode, outcome.error ?? "the request failed")
            r.attempts = outcome.attempts
            r.server = outcome.server
            return r
        }
        guard let shape = shape ?? AnswerShape.read(message) else {
            return failure(id: plan.id, code: RPCErrorCode.internalError, "the server's answer is not a JSON-RPC message")
        }
        return OptimizedResponse(message: shape.replacingID(in: message, with: plan.id), success: shape.isResult, server: outcome.server, source: source,
                                 attempts: outcome.attempts, executionTime: .zero, error: shape.errorMessage)
    }

    /// Tries the plan's servers in order. Unsafe requests get one attempt; safe ones fail over
    /// to the routing decision's alternatives and retry (at most 3 attempts in all) with
    /// exponential backoff and jitter. A read-only request with an alternative is hedged: if the
    /// first server has not answered within this tool's p95 latency, the alternative is asked
    /// too and the first answer wins (at most 5% of requests are hedged).
    private func callUpstream(_ plan: Plan) async -> UpstreamOutcome {
        let maxAttempts = plan.safe ? 3 : 1
        let latencies = runtime.latencies(plan.latencyKey)
        let timeout = adaptiveTimeout(plan, latencies)
        var attempts = 0
        var errors: [String] = []
        var lastServer: String?
        var index = 0
        if plan.hedgeable, plan.candidates.count >= 2, let delay = hedgeDelay(latencies),
           backend(plan.candidates[0], session: plan.session) != nil, backend(plan.candidates[1], session: plan.session) != nil {
            let (result, server, started) = await hedged(plan, primary: plan.candidates[0], secondary: plan.candidates[1], delay: delay,
                                                         timeout: timeout, latencies: latencies)
            attempts = started
            index = 1
            lastServer = server
            switch result {
            case .success(let (response, elapsed)):
                return UpstreamOutcome(message: response, server: server, attempts: attempts, originNanos: elapsed)
            case .failure(let error):
                errors.append("\(server): \(error.message)")
                if error.kind == .cancelled || attempts >= maxAttempts { return failed(plan, errors, attempts, lastServer) }
            }
        }
        while attempts < maxAttempts {
            let server = plan.candidates[index % plan.candidates.count]
            index += 1
            guard let found = backend(server, session: plan.session) else {
                if index >= plan.candidates.count * maxAttempts { break }
                continue
            }
            if attempts > 0 {
                runtime.metrics.retries.add()
                if server != lastServer { runtime.metrics.failovers.add() }
                let base = 25.0 * Double(1 << (attempts - 1))
                let jittered = base * Double.random(in: 0.5..<1.5)
                try? await Task.sleep(for: .milliseconds(Int64(min(jittered, 1000))))
            }
            attempts += 1
            lastServer = server
            let (result, elapsed) = await attempt(plan, server: server, backend: found, timeout: timeout, latencies: latencies)
            runtime.metrics.baselineNanos.add(elapsed)
            switch result {
            case .success(let response):
                return UpstreamOutcome(message: response, server: server, attempts: attempts, originNanos: elapsed)
            case .failure(let error):
                errors.append("\(server): \(error.message)")
                if error.kind == .cancelled { break }
            }
        }
        return failed(plan, errors, attempts, lastServer)
    }

    private func failed(_ plan: Plan, _ errors: [String], _ attempts: Int, _ lastServer: String?) -> UpstreamOutcome {
        let summary = errors.isEmpty ? "no server could be reached" : errors.joined(separator: "; ")
        return UpstreamOutcome(message: nil, error: "\(plan.method) failed after \(attempts) attempt(s): \(summary)", server: lastServer, attempts: attempts)
    }

    /// One upstream attempt, with everything it teaches: the router's statistics, circuit
    /// events, this tool's latency distribution. (Whoever asked for it fills the cache.)
    /// (`backend`: the server's, when the caller has just looked it up.)
    private func attempt(_ plan: Plan, server: String, backend found: Backend? = nil, timeout: Duration,
                         latencies: LatencyHistogram) async -> (Result<[UInt8], UpstreamError>, UInt64) {
        guard let backend = found ?? backend(server, session: plan.session) else {
            return (.failure(UpstreamError(.closed, "no backend for server \"\(server)\"\(plan.session == nil ? "" : " in this session (too many sessions?)")")), 0)
        }
        // The server's and the pair's statistics, looked up once for the circuit before and
        // after and the outcome (a tool-less request, by name as before).
        let cells = plan.tool.flatMap { router.outcomeCells(server: server, tool: $0) }
        let before = circuitState(server, cells)
        let started = monotonicNanos()
        runtime.metrics.upstreamCalls.add()
        // While it runs, this caller answers what the server asks its client.
        let route = plan.askClient.map { runtime.serverRequestRoutes.register(backend, caller: plan.caller, ask: $0) }
        defer { if let route { runtime.serverRequestRoutes.unregister(backend, route) } }
        do {
            // A caller that gives up cancels its upstream call, unless others may be waiting on
            // it (a cacheable request can be merged with identical ones; its result fills the cache).
            var request = UpstreamRequest(method: plan.method, params: plan.params)
            if let logs = plan.logs {
                // The request's own stream: its log messages go to its callers; the rest
                // (progress) as from any other stream.
                request.listener = RequestListener { [weak self] method, message in
                    if method == "notifications/message" { logs.deliver(server: server, message) } else { self?.backendNotification(server: server, method: method, message: message) }
                }
            }
            let response = try await backend.request(request, timeout: timeout,
                                                     tenant: plan.tenant, priority: plan.priority, cancellable: plan.lookup.map { _ in false } ?? true)
            let elapsed = monotonicNanos() &- started
            runtime.metrics.upstreamLatency.record(nanoseconds: elapsed)
            latencies.record(nanoseconds: elapsed)
            if let cells { router.record(cells, server: server, latency: .nanoseconds(Int64(elapsed)), success: true) }
            circuitEvents(server: server, cells: cells, before: before)
            pinContinuation(response, server: server)
            return (.success(response), elapsed)
        } catch {
            let elapsed = monotonicNanos() &- started
            if let cells { router.record(cells, server: server, latency: .nanoseconds(Int64(elapsed)), success: false, error: error.message) }
            circuitEvents(server: server, cells: cells, before: before)
            return (.failure(error), elapsed)
        }
    }

    /// An `input_required` result: remember which server sealed its requestState.
    private func pinContinuation(_ response: [UInt8], server: String) {
        guard ByteSearch.contains(response, inputRequiredWord) else { return }
        response.withUnsafeBytes { bytes in MessageDecoder.withPooled { decoder in
            guard let view = try? decoder.decode(bytes), view.resultType.equals("input_required"), view.requestState.isPresent else { return }
            runtime.pins.pin(state: view.requestState.buffer, server: server)
        } }
    }

    /// With `enableAdaptiveTimeouts`, once a tool has 50 answers on record its attempts time out
    /// at 4x its p99 (at least 1 s), never later than the configured or requested timeout.
    private func adaptiveTimeout(_ plan: Plan, _ latencies: LatencyHistogram) -> Duration {
        guard config.optimization.enableAdaptiveTimeouts, !plan.explicitTimeout, let tail = latencies.tail(minimumCount: 50) else { return plan.timeout }
        let adaptive = Duration.nanoseconds(Int64(min(tail.p99 * 4, UInt64(Int64.max / 2))))
        return min(plan.timeout, max(.seconds(1), adaptive))
    }

    /// The hedge delay (this tool's p95, at least 1 ms) when hedging is allowed now: 20
    /// answers on record, and fewer than 5% of requests hedged so far.
    private func hedgeDelay(_ latencies: LatencyHistogram) -> Duration? {
        guard latencies.count >= 20, runtime.metrics.hedges.load() * 20 < runtime.metrics.requests.load() else { return nil }
        return .nanoseconds(Int64(max(latencies.tail().p95, 1_000_000)))
    }

    /// The first attempt, hedged: `primary` now, `secondary` too after `delay` unless the
    /// primary answered; the first success wins. Returns the result, who gave it, and how many
    /// attempts started.
    private func hedged(_ plan: Plan, primary: String, secondary: String, delay: Duration, timeout: Duration, latencies: LatencyHistogram)
        async -> (Result<([UInt8], UInt64), UpstreamError>, String, Int)
    {
        let race = HedgeRace()
        return await withCheckedContinuation { continuation in
            race.begin(continuation)
            Task {
                let (result, elapsed) = await self.attempt(plan, server: primary, timeout: timeout, latencies: latencies)
                // What a direct client would have waited for: the primary, even when the hedge won.
                self.runtime.metrics.baselineNanos.add(elapsed)
                race.report(result.map { ($0, elapsed) }, server: primary)
            }
            Task {
                try? await Task.sleep(for: delay)
                guard self.runtime.metrics.hedges.load() * 20 < self.runtime.metrics.requests.load(), race.start() else {
                    race.skip()
                    return
                }
                self.runtime.metrics.hedges.add()
                let (result, elapsed) = await self.attempt(plan, server: secondary, timeout: timeout, latencies: latencies)
                if race.report(result.map { ($0, elapsed) }, server: secondary) { self.runtime.metrics.hedgeWins.add() }
            }
        }
    }

    private func circuitState(_ server: String, _ cells: Router.OutcomeCells?) -> CircuitState? {
        cells.map { router.circuitState($0) } ?? router.circuitState(server: server)
    }

    private func circuitEvents(server: String, cells: Router.OutcomeCells?, before: CircuitState?) {
        let after = circuitState(server, cells)
        guard after != before else { return }
        if after == .open { runtime.events.emit(.circuitOpened, ["server": .string(server)]) }
        if after == .closed { runtime.events.emit(.circuitClosed, ["server": .string(server)]) }
    }

    // MARK: answers

    private func answer(id: [UInt8], result: [UInt8]) -> OptimizedResponse {
        let message = result.withUnsafeBytes { MessageEncoder.result(idJSON: id, result: $0) }
        return OptimizedResponse(message: message, success: true, server: nil, source: .engine, attempts: 0, executionTime: .zero, error: nil)
    }

    private func failure(id: [UInt8]?, code: Int64, _ text: String) -> OptimizedResponse {
        OptimizedResponse(message: MessageEncoder.error(idJSON: id, code: code, message: text), success: false, server: nil, source: .engine,
                          attempts: 0, executionTime: .zero, error: text)
    }

    /// Every listed server's offers, in configuration order; a name offered by several
    /// servers appears once (replicas of a group offer the same).
    func aggregatedList(_ method: String, allowed: Set<String>?) -> JSONValue {
        let (key, id): (String, String) = switch method {
        case "tools/list": ("tools", "name")
        case "prompts/list": ("prompts", "name")
        case "resources/list": ("resources", "uri")
        default: ("resourceTemplates", "uriTemplate")
        }
        var seen: Set<String> = []
        var items: [JSONValue] = []
        for catalog in catalogs where catalog.error == nil && (allowed?.contains(catalog.server) ?? true) {
            let list: [JSONValue] = switch key {
            case "tools": catalog.tools
            case "prompts": catalog.prompts
            case "resources": catalog.resources
            default: catalog.resourceTemplates
            }
            for item in list {
                guard let name = item[id]?.stringValue, seen.insert(name).inserted else { continue }
                items.append(item)
            }
        }
        return .object(JSONObject([(key: key, value: JSONValue.array(items))]))
    }
}

/// What the reply to a caller needs of a server's answer: where its id is, whether it is a
/// result, its error message. Read once, in the decode that fills the cache when there is one.
struct AnswerShape {
    let idStart: Int?
    let idCount: Int
    let isResult: Bool
    let errorMessage: String?

    init(_ view: MessageView) {
        idStart = view.offset(of: view.idRaw)
        idCount = view.idRaw.count
        isResult = view.kind == .result
        errorMessage = isResult ? nil : view.errorMessage.string
    }

    static func read(_ message: [UInt8]) -> AnswerShape? {
        message.withUnsafeBytes { bytes in MessageDecoder.withPooled { decoder in (try? decoder.decode(bytes)).map(AnswerShape.init) } }
    }

    /// `message` (the answer read) with the caller's id.
    func replacingID(in message: [UInt8], with idJSON: [UInt8]) -> [UInt8] {
        guard idStart != nil else { return message }
        return message.withUnsafeBytes { source in
            idJSON.withUnsafeBytes { MessageEncoder.replacingID(in: source, at: idStart, count: idCount, with: $0) }
        }
    }
}

/// Where a merged request waits for the leader's outcome (which may come before it waits).
final class OutcomeBox: @unchecked Sendable {
    private let lock = Lock()
    @exclusivity(unchecked) private var result: UpstreamOutcome?                                  // guarded by lock
    @exclusivity(unchecked) private var continuation: CheckedContinuation<UpstreamOutcome, Never>?  // guarded by lock

    func deliver(_ r: Result<UpstreamOutcome, any Error>) {
        let outcome: UpstreamOutcome
        switch r {
        case .success(let o): outcome = o
        case .failure(let e): outcome = UpstreamOutcome(message: nil, error: "\(e)", attempts: 0)
        }
        let waiting: CheckedContinuation<UpstreamOutcome, Never>? = lock.withLock {
            if let c = continuation {
                continuation = nil
                return c
            }
            result = outcome
            return nil
        }
        waiting?.resume(returning: outcome)
    }

    func wait() async -> UpstreamOutcome {
        await withCheckedContinuation { c in
            let ready: UpstreamOutcome? = lock.withLock {
                if let r = result { return r }
                continuation = c
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }
}

/// The race of a hedged attempt: two attempts report (or the second is skipped); the first
/// success resumes the waiter; if none succeeds, the last failure does.
final class HedgeRace: @unchecked Sendable {
    typealias Answer = (Result<([UInt8], UInt64), UpstreamError>, String, Int)
    private let lock = Lock()
    @exclusivity(unchecked) private var continuation: CheckedContinuation<Answer, Never>?   // guarded by lock
    @exclusivity(unchecked) private var pending = 2                                          // guarded by lock
    @exclusivity(unchecked) private var attempts = 1                                         // guarded by lock
    @exclusivity(unchecked) private var lastFailure: (UpstreamError, String)?                // guarded by lock

    func begin(_ c: CheckedContinuation<Answer, Never>) { lock.withLock { continuation = c } }

    /// Starts the hedge unless the race is already decided.
    func start() -> Bool {
        lock.withLock {
            guard continuation != nil else { return false }
            attempts += 1
            return true
        }
    }

    /// The hedge will not run.
    func skip() { _ = settle(nil, server: "") }

    /// Returns true when this report won the race.
    @discardableResult
    func report(_ result: Result<([UInt8], UInt64), UpstreamError>, server: String) -> Bool { settle(result, server: server) }

    private func settle(_ result: Result<([UInt8], UInt64), UpstreamError>?, server: String) -> Bool {
        let (resume, answer): (CheckedContinuation<Answer, Never>?, Answer?) = lock.withLock {
            pending -= 1
            guard let c = continuation else { return (nil, nil) }
            switch result {
            case .success(let value)?:
                continuation = nil
                return (c, (.success(value), server, attempts))
            case .failure(let error)?:
                lastFailure = (error, server)
                // The primary failed before the hedge started: no point waiting out the hedge
                // delay; the caller fails over (and counts it) at once.
                if attempts == 1 {
                    continuation = nil
                    return (c, (.failure(error), server, attempts))
                }
            case nil:
                break
            }
            guard pending == 0 else { return (nil, nil) }
            continuation = nil
            let (error, who) = lastFailure ?? (UpstreamError(.closed, "no attempt was made"), server)
            return (c, (.failure(error), who, attempts))
        }
        guard let resume, let answer else { return false }
        resume.resume(returning: answer)
        if case .success = answer.0 { return true }
        return false
    }
}

private let inputRequiredWord = ByteSearch.Needle("input_required")
