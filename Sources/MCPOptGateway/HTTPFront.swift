import Glibc
import MCPOptIO
import MCPOptJSON
import MCPOptProtocol
import MCPOptSync

/// The gateway over Streamable HTTP: `/mcp` (both eras; the protocol rules are GatewayFront's),
/// `/metrics` (Prometheus text) and `/healthz`. HTTP/1.1 with keep-alive, one request at a time
/// per connection, on the engine's own kind of event loop (io_uring, or epoll). Answers are
/// `application/json` (which every client must accept); nothing is streamed yet.
///
/// Secure by default: loopback unless told otherwise, Host and Origin checked (DNS
/// rebinding), an optional bearer token, bounded header and body sizes and connection count.
/// With `Settings.tls` it speaks HTTPS: each accepted connection runs a TLS server session
/// (`TLSConnection`), ciphertext on the socket and plaintext to the parser; answers are
/// encrypted where they are queued, so their order is the order they were written in.
public final class HTTPFront<Service: MCPService>: @unchecked Sendable {
    public struct Settings: Sendable {
        public var host = "127.0.0.1"
        /// 0 picks a free port (see `port` after `start`).
        public var port = 8080
        public var path = "/mcp"
        /// Required as `Authorization: Bearer <token>` on every request when set.
        public var bearerToken: String?
        public var policy = FrontDoor.Policy()
        public var maxConnections = 1024
        /// Repeats of calls answered from the cache are recognised by their bytes and answered
        /// without the full path (see `RepeatMemo`); nil turns that off.
        public var repeats: RepeatMemo.Limits? = RepeatMemo.Limits()
        /// HTTPS: the certificate and key every connection presents; nil is plain HTTP.
        public var tls: TLSServerCredentials?
        /// How long the front's loop looks for the next request (or a server's answer) before
        /// it sleeps: zero sleeps at once. Up to `EventLoop.maxBusyPoll`; docs/GATEWAY.md.
        public var busyPoll: Duration = .zero
        public init() {}
    }

    /// What `/metrics` and `/healthz` answer: (status, content type, body).
    public typealias Page = @Sendable () async -> (status: Int, contentType: String, body: [UInt8])

    public let service: Service
    public let settings: Settings
    public let front: GatewayFront
    public var metricsPage: Page?
    public var healthPage: Page?
    public private(set) var port = 0

    /// The loop the front serves on; requests waiting on a server run on it too (their task
    /// prefers it as executor), so give it to the engine (`Engine.useEventLoop`) and an
    /// upstream call needs no thread hop at all.
    public let loop: EventLoop
    // The front's own state lives on the loop thread (no dynamic exclusivity checks, as in
    // `HTTPConnection`).
    @exclusivity(unchecked) private var listener: Int32 = -1
    /// The accept stream on `listener` (cancelled before it is closed: it holds the socket).
    @exclusivity(unchecked) private var acceptToken: UInt64 = 0
    @exclusivity(unchecked) private var connections: [Int32: HTTPConnection] = [:]   // loop thread only
    /// Servers' requests to clients, sent on the stream of the request they came during.
    private let asker = ClientAsker()
    /// Each session's GET stream (one; a new one replaces it). Loop thread only.
    @exclusivity(unchecked) private var sessionStreams: [String: HTTPConnection] = [:]
    @exclusivity(unchecked) private var stopped = false                          // loop thread only
    /// Requests answered from the cache, by their bytes (loop thread only).
    private let repeats: RepeatMemo?
    private let repeatsAnsweredCount = AtomicCounter()
    /// Requests the repeat lane answered (see `Settings.repeats`).
    public var repeatsAnswered: UInt64 { repeatsAnsweredCount.load() }

    /// HTTPS: what new connections present (loop thread). Starts as `settings.tls`;
    /// `useCredentials` replaces it, and connections made before keep theirs.
    @exclusivity(unchecked) private var credentials: TLSServerCredentials?

    public init(service: Service, settings: Settings) throws(IOError) {
        self.service = service
        self.settings = settings
        credentials = settings.tls
        front = GatewayFront(identity: service.identity, knownMethods: [
            "initialize", "ping", "tools/list", "tools/call", "prompts/list", "prompts/get", "resources/list",
            "resources/templates/list", "resources/read", "completion/complete", "logging/setLevel", "subscriptions/listen",
        ])
        front.policy = settings.policy
        front.onSessionEnded = { [service] sid in service.sessionEnded(sid) }
        repeats = settings.repeats.map { RepeatMemo(limits: $0) }
        loop = try EventLoop(name: "mcpopt-http", busyPoll: settings.busyPoll)
    }

    /// The front loop's busy polls so far (`Settings.busyPoll`): those that found work, and
    /// those that ran out and slept.
    public func busyPollStats() async -> (found: UInt64, expired: UInt64) {
        await withCheckedContinuation { done in
            if !loop.execute({ [loop] in done.resume(returning: loop.busyPollStats) }) { done.resume(returning: (0, 0)) }
        }
    }

    /// HTTPS: new connections present `fresh` (a renewed certificate, without a restart);
    /// connections already made keep the one they started with. False on a plain HTTP front,
    /// which stays plain.
    @discardableResult
    public func useCredentials(_ fresh: TLSServerCredentials) -> Bool {
        guard settings.tls != nil else { return false }
        _ = loop.execute { [self] in credentials = fresh }
        return true
    }

    /// Binds and listens; returns the port.
    @discardableResult
    public func start() throws(IOError) -> Int {
        let (fd, bound) = try Self.listen(host: settings.host, port: settings.port)
        listener = fd
        port = bound
        loop.adopt(fd)
        _ = loop.execute { [self] in startAccepting() }
        return bound
    }

    /// Stops accepting and closes every connection.
    /// Stops accepting and closes every connection; the loop keeps running (an engine that
    /// shares it can still stop its servers gracefully). Returns false if the loop was gone.
    @discardableResult
    public func stopServing() -> Bool {
        service.closeStreams()
        return loop.execute { [self] in
            stopped = true
            // Closed at once: the loop may stop before waiting reads end (their descriptors
            // would stay open), and nothing new is accepted to reuse the numbers.
            for c in Array(connections.values) { close(c, immediately: true) }
            for session in sessionStreams.keys { service.setSessionStream(session, nil) }
            sessionStreams.removeAll()
            if listener >= 0 {
                loop.cancel(acceptToken)
                Glibc.close(listener)
            }
            listener = -1
        }
    }

    /// Stops serving and shuts the loop down.
    public func stop() {
        if stopServing() { loop.shutdown() }
    }

    static func listen(host: String, port: Int) throws(IOError) -> (Int32, Int) {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let info = result else { throw IOError(message: "cannot listen on \(host):\(port): \(String(cString: gai_strerror(rc)))") }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw IOError(errno, "socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            let e = errno
            Glibc.close(fd)
            throw IOError(message: "cannot listen on \(host):\(port): \(String(cString: strerror(e)))")
        }
        guard Glibc.listen(fd, 512) == 0 else {
            let e = errno
            Glibc.close(fd)
            throw IOError(e, "listen")
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        let family = Int32(storage.ss_family)
        let bound: Int = withUnsafePointer(to: &storage) { p in
            if family == AF_INET6 {
                return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
            return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
        return (fd, bound)
    }

    // MARK: loop thread

    /// One accept stream for the listener's life (multishot accept where the kernel has it):
    /// each connection comes as a completion, with no new submission.
    private func startAccepting() {
        guard !stopped, listener >= 0 else { return }
        acceptToken = loop.acceptMultishot(listener) { [self] result in
            switch result {
            case .success(let fd):
                guard !stopped, connections.count < settings.maxConnections else {
                    Glibc.close(fd)
                    return
                }
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                var session: TLSConnection?
                if let credentials {
                    session = TLSConnection(server: credentials)
                    guard session != nil else {   // out of memory: refused as when full
                        Glibc.close(fd)
                        return
                    }
                }
                loop.adopt(fd)
                let connection = HTTPConnection(fd: fd)
                connection.tls = session
                connections[fd] = connection
                connection.isOpen = true
                readMore(connection)
            case .failure(let error):
                // The stream ended. Out of descriptors and the like: start again shortly
                // rather than spin.
                if !stopped, error.code != EBADF, error.code != EINVAL, error.code != ECANCELED {
                    _ = loop.after(.milliseconds(error.code == EMFILE || error.code == ENFILE ? 100 : 0)) { [self] _ in startAccepting() }
                }
            }
        }
    }

    /// What a busy connection may receive before its stream is paused (a client sending
    /// ahead of its answers): the kernel's socket buffer holds the rest.
    private static var pauseBytes: Int { 1 << 20 }

    /// Turns the connection's receive stream on (if it is not): what arrives is appended to
    /// `pending` and parsed when no request runs.
    private func readMore(_ c: HTTPConnection) {
        guard !c.reading else { return }
        c.reading = true
        c.paused = false
        c.readToken = loop.receive(c.fd) { [self] event in
            switch event {
            case .bytes(let bytes):
                guard !c.closeAfterRead, c.isOpen else { return }
                if let tls = c.tls {
                    guard decrypt(c, tls, bytes) else { return }
                } else {
                    c.pending.append(contentsOf: bytes)
                }
                // While a request runs, what comes next waits for its answer.
                if !c.busy {
                    process(c)
                } else if c.pending.count > Self.pauseBytes, !c.paused {
                    c.paused = true
                    loop.cancel(c.readToken)
                }
            case .end(let error):
                c.reading = false
                if c.closeAfterRead {
                    loop.closeDescriptor(c.fd)
                    return
                }
                guard c.isOpen else { return }
                if c.paused, error?.code == ECANCELED {
                    // Paused: started again once the request is answered (nextRequest).
                    if !c.busy { process(c) }
                    return
                }
                // The client went away; a request still running for it is cancelled.
                if let task = c.task, !c.cancelled {
                    c.cancelled = true
                    task.cancel()
                }
                close(c)
            }
        }
    }

    /// HTTPS: ciphertext from the client, the handshake's next step, then the plaintext it
    /// holds appended to `pending`. False when there is nothing to parse: the handshake goes
    /// on, or the session ended or failed (the connection is closed then).
    private func decrypt(_ c: HTTPConnection, _ tls: TLSConnection, _ bytes: UnsafeRawBufferPointer) -> Bool {
        do throws(TLSFailure) {
            let before = c.pending.count
            let sessionOpen = try tls.receive(bytes) { c.pending.append(contentsOf: $0) }
            queue(c, tls.takeOutput())
            if !sessionOpen {
                close(c)
                return false
            }
            return c.pending.count > before
        } catch {
            // A client that does not speak TLS, or a failed handshake: nothing to answer in HTTP.
            close(c)
            return false
        }
    }

    /// Plaintext for the client, as the bytes to put on the socket (encrypted over HTTPS);
    /// nil when the session cannot take it (the connection is closed).
    private func wire(_ c: HTTPConnection, _ bytes: [UInt8]) -> [UInt8]? {
        guard let tls = c.tls else { return bytes }
        do throws(TLSFailure) {
            try tls.write(bytes)
        } catch {
            close(c)
            return nil
        }
        return tls.takeOutput()
    }

    private func close(_ c: HTTPConnection, immediately: Bool = false) {
        guard connections.removeValue(forKey: c.fd) != nil else { return }
        c.isOpen = false
        if let session = c.streamOf, sessionStreams[session] === c {
            sessionStreams.removeValue(forKey: session)
            service.setSessionStream(session, nil)
        }
        // The receive stream must end before the descriptor is closed: closed now, its number
        // could go to a new connection the stream would then read from. So the socket is shut
        // down (the stream ends at once) and closed when the stream has ended.
        if c.reading && !immediately {
            c.closeAfterRead = true
            shutdown(c.fd, Int32(SHUT_RDWR))
            loop.cancel(c.readToken)
            return
        }
        if c.reading { loop.cancel(c.readToken) }
        loop.closeDescriptor(c.fd)   // an answer still being written goes nowhere else
    }

    /// Keeps `c` open as `session`'s stream of server messages (SSE, chunked); a stream the
    /// session had before is closed. A read stays posted on `c` to notice the client going away.
    private func openStream(_ c: HTTPConnection, session: String) {
        guard service.sendsSessionMessages else {
            send(c, status: 405, headers: [("Allow", "POST, DELETE")], body: [])
            return
        }
        if let old = sessionStreams[session] { close(old) }
        c.streamOf = session
        c.streaming = true
        sessionStreams[session] = c
        write(c, Array("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)) { [self] ok in
            if !ok { close(c) }
        }
        readMore(c)   // to notice the client going away
        service.setSessionStream(session) { [weak self] message in
            _ = self?.loop.execute { [weak self] in
                guard let self, self.sessionStreams[session] === c, c.isOpen else { return }
                self.write(c, Self.chunk(Array("event: message\ndata: ".utf8) + message + Array("\n\n".utf8))) { [weak self] ok in
                    if !ok { self?.close(c) }
                }
            }
        }
    }

    /// Parses what has arrived; serves a complete request; reads more otherwise.
    private func process(_ c: HTTPConnection) {
        while !c.busy {
            if !c.pending.isEmpty {
                if !c.feeding, c.lastRepeat != nil, answerRepeatOfLast(c) { return }
                let used: Int
                let first = !c.feeding
                do {
                    used = try c.pending.withUnsafeBytes { (bytes) throws(HTTPParser.Failure) in try c.parser.feed(bytes) }
                } catch {
                    send(c, status: 400, headers: [("Content-Type", "text/plain")], body: Array("Bad Request: \(error)".utf8), close: true)
                    return
                }
                if used > 0 { c.feeding = true }
                // The request's bytes, as they were parsed: what repeats are told by (up to the
                // length the repeat lane keeps).
                if let repeats {
                    if first {
                        c.raw.removeAll(keepingCapacity: true)
                        c.rawIsWhole = true
                    }
                    if c.rawIsWhole {
                        if c.raw.count + used > repeats.limits.maxRequestBytes {
                            c.rawIsWhole = false
                        } else {
                            c.pending.withUnsafeBytes { c.raw.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[..<used])) }
                        }
                    }
                }
                c.pending.removeFirst(used)
                if used == 0 && !c.parser.isComplete { break }
                c.body.append(contentsOf: c.parser.takeBody())
                if c.body.count > settings.policy.maxBodyBytes {
                    send(c, status: 413, headers: [("Content-Type", "text/plain")], body: Array("request body over \(settings.policy.maxBodyBytes) bytes".utf8), close: true)
                    return
                }
            }
            guard c.parser.isComplete else { break }
            c.busy = true
            serve(c)
            return
        }
        readMore(c)
    }

    private func serve(_ c: HTTPConnection) {
        let parser = c.parser
        let body = c.body
        // A repeat of a request answered from the cache: byte for byte the same but for its id,
        // in the same epoch of sessions, so every check below would pass again as it did.
        let epoch = front.answersEpoch
        if c.rawIsWhole, let repeats, let out = c.raw.withUnsafeBytes({ raw -> [UInt8]? in
            guard let (entry, id) = repeats.find(raw, bodyStart: raw.count - body.count, epoch: epoch) else { return nil }
            return repeatAnswer(entry, id: id, connection: c, keepAlive: parser.keepAlive)
        }) {
            sendRepeat(c, out, keepAlive: parser.keepAlive)
            return
        }
        if let token = settings.bearerToken, parser.header("authorization") != "Bearer " + token {
            send(c, status: 401, headers: [("WWW-Authenticate", "Bearer"), ("Content-Type", "text/plain")], body: Array("Unauthorized: a bearer token is required".utf8))
            return
        }
        if let verdict = FrontDoor.checkHostAndOrigin(parser, policy: settings.policy), case .answer(let status, let headers, let body) = verdict {
            send(c, status: status, headers: headers.map { ($0.name, $0.value) }, body: body)
            return
        }
        if !parser.pathIs(settings.path) {
            let path = parser.target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
            guard path == "/metrics" || path == "/healthz" else {
                send(c, status: 404, headers: [("Content-Type", "text/plain")], body: Array("Not Found: the MCP endpoint is \(settings.path)".utf8))
                return
            }
            guard parser.methodIs("GET"), let page = path == "/metrics" ? metricsPage : healthPage else {
                send(c, status: 404, headers: [("Content-Type", "text/plain")], body: Array("Not Found".utf8))
                return
            }
            Task(executorPreference: loop) { [self] in
                let (status, type, bytes) = await page()
                _ = loop.execute { [self] in send(c, status: status, headers: [("Content-Type", type)], body: bytes) }
            }
            return
        }
        let action = MessageDecoder.withPooled { front.handle(parser, body: body, decoder: $0, hostAndOriginChecked: true) }
        switch action {
        case .openStream(let session):
            openStream(c, session: session)
        case .respond(let status, let headers, let bytes):
            // A session's notifications are accepted (202) here; a cancellation also stops the
            // request it names.
            if status == 202, let session = parser.header("mcp-session-id") {
                if ByteSearch.contains(body, cancelledWord) { cancel(body, session: session) }
                // The client's answer to a server's request.
                _ = asker.answer(body, owner: session)
            }
            send(c, status: status, headers: headers.map { ($0.name, $0.value) }, body: bytes)
        case .dispatch(let dispatch):
            // Progress about the request turns its answer into an SSE stream (the client accepts
            // text/event-stream: the front door checked) with the notifications first.
            // So are servers' requests to the client (a handshake-era session answers them in
            // POSTs of their own).
            // The connection's relays, made once per connection (and per session for asks), not
            // per request: most requests are answered without using them.
            let notify = c.notify ?? relayNotifications(c)
            var caller = ServiceCaller(partition: parser.header("authorization").map { String(hash64Hex($0)) } ?? "", session: dispatch.sessionID,
                                       notify: notify)
            if let session = dispatch.sessionID {
                if let relay = c.ask, relay.session == session {
                    caller.ask = relay.ask
                } else {
                    let ask: @Sendable ([UInt8]) async -> [UInt8]? = { [weak self] request in await self?.asker.ask(request, owner: session, send: notify) }
                    c.ask = (session, ask)
                    caller.ask = ask
                }
            }
            // Cache hits and protocol answers are served here, on the loop thread; only work
            // that waits on a server goes to a task.
            var repeatable: (any RepeatableAnswer)?
            let immediate = c.rawIsWhole && repeats != nil
                ? service.handleImmediately(dispatch.message, caller: caller, repeatable: &repeatable) : service.handleImmediately(dispatch.message, caller: caller)
            switch immediate {
            case .answered(let answer):
                if let repeatable, let range = dispatch.requestIDRange { remember(c, body: body, id: range, repeatable, epoch: epoch) }
                reply(c, answer, era: dispatch.era)
            case .pending(let pending):
                // A handshake-era session may cancel it by a notification (by session and id:
                // kept on the connection, looked for only when a cancellation comes); any
                // client, by closing the connection (watched while it runs).
                c.cancelled = false
                c.runningSession = dispatch.sessionID
                c.runningID = dispatch.requestID ?? []
                let era = dispatch.era
                c.task = Task(executorPreference: loop) { [self] in
                    let answer = await service.complete(pending)
                    // The task runs on the loop (its executor) unless the loop is stopping.
                    if loop.isRunningHere {
                        answered(c, answer, era: era)
                    } else {
                        _ = loop.execute { [self] in answered(c, answer, era: era) }
                    }
                }
                if c.pending.isEmpty { readMore(c) }
            }
        }
    }

    /// Keeps what answers repeats of `c`'s request (its body the tail of its bytes: not chunked).
    private func remember(_ c: HTTPConnection, body: [UInt8], id: Range<Int>, _ answer: any RepeatableAnswer, epoch: UInt64) {
        guard let repeats, c.raw.count >= body.count, c.raw.suffix(body.count).elementsEqual(body) else { return }
        let bodyStart = c.raw.count - body.count
        let entry = c.raw.withUnsafeBytes { raw in
            repeats.remember(raw, bodyStart: bodyStart, id: (bodyStart + id.lowerBound)..<(bodyStart + id.upperBound), value: RepeatEntry(answer),
                             footprint: answer.footprint, epoch: epoch)
        }
        if let entry { c.lastRepeat = (entry, c.parser.keepAlive) }
    }

    /// The whole HTTP answer to a repeat of `entry`'s request with `id`, or nil (the full path
    /// answers). `c` remembers the entry: its next request is checked against it first.
    private func repeatAnswer(_ entry: RepeatMemo.Entry, id: UnsafeRawBufferPointer, connection c: HTTPConnection, keepAlive: Bool) -> [UInt8]? {
        var out: [UInt8] = []
        let answered = unsafeDowncast(entry.value, to: RepeatEntry.self).answer.answer(id: id, into: &out) { length, out in
            out.reserveCapacity(96 + length)
            Self.appendJSONHead(&out, length: length, keepAlive: keepAlive)
        }
        guard answered else { return nil }
        c.lastRepeat = (entry, keepAlive)
        return out
    }

    /// Answers the request at the start of `c.pending` if it repeats the last one the repeat
    /// lane knew on `c`, before any parsing (see `RepeatMemo.repeatAt`): the same head, so the
    /// same parse and checks, and the same body but for the id.
    private func answerRepeatOfLast(_ c: HTTPConnection) -> Bool {
        guard let (last, keepAlive) = c.lastRepeat else { return false }
        let epoch = front.answersEpoch
        guard let out = c.pending.withUnsafeBytes({ pending -> [UInt8]? in
            guard let id = RepeatMemo.repeatAt(last, in: pending, epoch: epoch) else { return nil }
            return repeatAnswer(last, id: id, connection: c, keepAlive: keepAlive)
        }) else { return false }
        c.pending.removeFirst(last.requestLength)
        c.busy = true
        sendRepeat(c, out, keepAlive: keepAlive)
        return true
    }

    /// Sends a repeat's answer (head and body in `out`).
    private func sendRepeat(_ c: HTTPConnection, _ out: [UInt8], keepAlive: Bool) {
        c.answered = true
        repeatsAnsweredCount.add()
        writeAnswer(c, out, keepAlive: keepAlive)
    }

    /// The request `c` waited on a server for is answered (loop thread).
    private func answered(_ c: HTTPConnection, _ answer: [UInt8], era: ProtocolEra) {
        c.task = nil
        c.runningSession = nil
        guard c.isOpen else { return }   // the client is gone
        // A cancelled request gets no answer (the client has moved on): an event stream that
        // ends without one.
        if c.cancelled { endWithoutAnswer(c) } else { reply(c, answer, era: era) }
    }

    /// What sends a notification to the client of `c` while its request runs (kept on `c`).
    private func relayNotifications(_ c: HTTPConnection) -> @Sendable ([UInt8]) -> Void {
        // Weakly: the connection keeps the closure.
        let notify: @Sendable ([UInt8]) -> Void = { [weak self, weak c] message in
            guard let c else { return }
            _ = self?.loop.execute { [weak self] in self?.stream(c, message) }
        }
        c.notify = notify
        return notify
    }

    /// `notifications/cancelled` from a session: its request that names stops (its server is
    /// told where that is safe: see Engine) and gets no answer.
    private func cancel(_ message: [UInt8], session: String) {
        guard case .object(let o)? = try? JSONParser.parse(message), o["method"]?.stringValue == "notifications/cancelled",
              let id = o["params"]?["requestId"]?.jsonString else { return }
        // Rare: a scan of the open connections costs less than a table kept for every request.
        // Ids compare canonical, as the cancellation's requestId is read.
        for c in connections.values where c.runningSession == session && !c.cancelled {
            guard let task = c.task, canonicalRequestID(c.runningID) == id else { continue }
            c.cancelled = true
            task.cancel()
            return
        }
    }

    /// Ends the answer to a cancelled request: an SSE stream with no response in it.
    private func endWithoutAnswer(_ c: HTTPConnection) {
        c.answered = true
        let keepAlive = c.parser.keepAlive
        let bytes: [UInt8]
        if c.streaming {
            c.streaming = false
            bytes = Array("0\r\n\r\n".utf8)
        } else {
            bytes = Array("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nContent-Length: 0\r\n\r\n".utf8)
        }
        write(c, bytes) { [self] ok in
            guard ok, keepAlive, c.isOpen else {
                close(c)
                return
            }
            nextRequest(c)
        }
    }

    /// A notification for the request in progress on `c`: the first one sends the head of an
    /// SSE answer (chunked), each is an event.
    private func stream(_ c: HTTPConnection, _ message: [UInt8]) {
        guard c.isOpen, c.busy, !c.answered else { return }
        if !c.streaming {
            c.streaming = true
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
            write(c, Array(head.utf8))
        }
        write(c, Self.chunk(Array("event: message\ndata: ".utf8) + message + Array("\n\n".utf8)))
    }

    static func chunk(_ bytes: [UInt8]) -> [UInt8] {
        Array(String(bytes.count, radix: 16).utf8) + [13, 10] + bytes + [13, 10]
    }

    /// Queues bytes for `c`, written in order; `then` gets whether they all went out.
    private func write(_ c: HTTPConnection, _ bytes: [UInt8], then: ((Bool) -> Void)? = nil) {
        guard let bytes = wire(c, bytes) else {
            then?(false)
            return
        }
        queue(c, bytes, then: then)
    }

    /// Queues bytes as they go on the socket (after `wire`, or a TLS handshake's).
    private func queue(_ c: HTTPConnection, _ bytes: [UInt8], then: ((Bool) -> Void)? = nil) {
        if bytes.isEmpty && then == nil { return }
        guard !c.writing else {
            c.outbox.append((bytes, then))
            return
        }
        c.writing = true
        issue(c, bytes, then)
    }

    /// Writes `bytes`, then what queued up meanwhile.
    private func issue(_ c: HTTPConnection, _ bytes: [UInt8], _ then: ((Bool) -> Void)?) {
        loop.write(c.fd, bytes) { [self] result in
            let ok: Bool
            if case .success = result { ok = true } else { ok = false }
            then?(ok)
            guard ok, c.isOpen, !c.outbox.isEmpty else {
                if !ok || !c.isOpen { c.outbox.removeAll() }
                c.writing = false
                return
            }
            let (next, nextThen) = c.outbox.removeFirst()
            issue(c, next, nextThen)
        }
    }

    private func reply(_ c: HTTPConnection, _ answer: [UInt8]?, era: ProtocolEra) {
        c.answered = true
        if c.streaming {
            // The answer is the stream's last event; then the chunked body ends.
            c.streaming = false
            let last = Self.chunk(Array("event: message\ndata: ".utf8) + (answer ?? []) + Array("\n\n".utf8)) + Array("0\r\n\r\n".utf8)
            let keepAlive = c.parser.keepAlive
            write(c, last) { [self] ok in
                guard ok, keepAlive, c.isOpen else {
                    close(c)
                    return
                }
                nextRequest(c)
            }
            return
        }
        guard let answer else {
            send(c, status: 202, headers: [], body: [])
            return
        }
        var status = 200
        if era == .modern, let code = Self.errorCode(answer) { status = RPCErrorCode.httpStatus(for: code) }
        send(c, status: status, json: true, body: answer)
    }

    static func errorCode(_ message: [UInt8]) -> Int64? {
        message.withUnsafeBytes { bytes in
            MessageDecoder.withPooled { decoder in
                guard let view = try? decoder.decode(bytes), view.kind == .error else { return nil }
                return view.errorCode
            }
        }
    }

    /// Sends a response with `headers`. `json`: a JSON answer, whose Content-Type (and for a 200
    /// the status line too) comes from a literal: no header array to build and walk.
    private func send(_ c: HTTPConnection, status: Int, headers: [(String, String)] = [], json: Bool = false, body: [UInt8],
                      close closing: Bool = false) {
        guard c.isOpen else { return }
        let keepAlive = !closing && c.parser.isComplete && c.parser.keepAlive
        // Head and body in one buffer, one write.
        var out: [UInt8] = []
        out.reserveCapacity(128 + headers.reduce(0) { $0 + $1.0.utf8.count + $1.1.utf8.count + 4 } + body.count)
        if status == 200, json, headers.isEmpty {
            Self.appendJSONHead(&out, length: body.count, keepAlive: keepAlive)
        } else {
            out.append(literal: "HTTP/1.1 ")
            out.append(decimal: status)
            out.append(UInt8(ascii: " "))
            out.append(literal: Self.reason(status))
            out.append(literal: "\r\n")
            if json { out.append(literal: "Content-Type: application/json\r\n") }
            if !headers.isEmpty { out.append(headerLines: headers) }
            out.append(literal: "Content-Length: ")
            out.append(decimal: body.count)
            out.append(literal: keepAlive ? "\r\n\r\n" : "\r\nConnection: close\r\n\r\n")
        }
        out.append(contentsOf: body)
        writeAnswer(c, out, keepAlive: keepAlive)
    }

    /// Writes a whole answer; then the connection takes its next request, or closes.
    private func writeAnswer(_ c: HTTPConnection, _ plaintext: [UInt8], keepAlive: Bool) {
        // Most answers go out whole, at once, on a connection with nothing queued: then what
        // follows runs on the loop's next turn (never inside this call: a client's pipelined
        // requests would nest), through the connection itself, with no closure made.
        guard let out = c.tls == nil ? plaintext : wire(c, plaintext) else { return }
        var rest = out
        if !c.writing, c.outbox.isEmpty, c.isOpen {
            let written = out.withUnsafeBytes { loop.writeNow(c.fd, $0) }
            if written == out.count {
                afterThisTurn(c, keepAlive ? .nextRequest : .close)
                return
            }
            if written < 0 && written != -Int(EAGAIN) && written != -Int(EWOULDBLOCK) {
                afterThisTurn(c, .close)
                return
            }
            if written > 0 { rest = Array(out[written...]) }   // the rest waits for room
        }
        queue(c, rest) { [self] ok in
            guard ok, keepAlive, c.isOpen else {
                close(c)
                return
            }
            nextRequest(c)
        }
    }

    private func afterThisTurn(_ c: HTTPConnection, _ next: HTTPConnection.AfterWrite) {
        c.afterWrite = next
        if c.onWritten == nil { c.onWritten = { [weak self, unowned c] in self?.afterWrite(c) } }
        loop.callSoon(c)
    }

    /// After an answer written at once (`writeAnswer`).
    private func afterWrite(_ c: HTTPConnection) {
        let next = c.afterWrite
        c.afterWrite = .none
        switch next {
        case .nextRequest where c.isOpen: nextRequest(c)
        case .nextRequest, .close: close(c)
        case .none: break
        }
    }

    /// The head of a 200 JSON answer of `length` bytes: one literal for the status line and the
    /// content type (most answers).
    static func appendJSONHead(_ out: inout [UInt8], length: Int, keepAlive: Bool) {
        out.append(literal: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ")
        out.append(decimal: length)
        out.append(literal: keepAlive ? "\r\n\r\n" : "\r\nConnection: close\r\n\r\n")
    }

    /// The answer went out: the connection takes its next request.
    private func nextRequest(_ c: HTTPConnection) {
        c.answered = false
        c.feeding = false
        c.rawIsWhole = false
        c.parser.next()
        c.body.removeAll(keepingCapacity: true)
        c.busy = false
        process(c)
    }

    static func reason(_ status: Int) -> StaticString {
        switch status {
        case 200: "OK"
        case 202: "Accepted"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 406: "Not Acceptable"
        case 413: "Payload Too Large"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }
}

/// A request id token as JSON re-encodes it (how a cancellation's requestId is compared).
/// Integers and plain strings are that already, so they are not parsed (this runs on every
/// request that waits on a server).
func canonicalRequestID(_ token: [UInt8]) -> String? {
    func plain(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F || b == 0x2E || b == 0x3A
    }
    // An integer: an optional minus, then digits with no leading zero ("0" alone aside).
    let magnitude = token.first == UInt8(ascii: "-") ? token.dropFirst() : token[...]
    let integer = !magnitude.isEmpty && token.count <= 15 && magnitude.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
        && (token.count == 1 || magnitude.first != UInt8(ascii: "0"))
    let string = token.count >= 2 && token.first == 0x22 && token.last == 0x22 && token.dropFirst().dropLast().allSatisfy(plain)
    if integer || string { return String(decoding: token, as: UTF8.self) }
    return (try? JSONParser.parse(token))?.jsonString
}

/// A short stable hash of a credential: cache partitions never hold the credential itself.
func hash64Hex(_ text: String) -> String {
    var copy = text
    return String(copy.withUTF8 { hash64(UnsafeRawBufferPointer($0)) }, radix: 16)
}

private let cancelledWord = ByteSearch.Needle("notifications/cancelled")

/// One client connection of an `HTTPFront`. Touched on the loop thread only (tasks hand
/// results back through `loop.execute`). Outside the generic front: a type nested in a generic
/// class has its metadata looked up at run time, and dictionaries of it are not specialized
/// (callgrind counted seven unspecialized lookups a request).
final class HTTPConnection: LoopCallback, @unchecked Sendable {
    // Its state is confined to the loop thread, so Swift's dynamic exclusivity checks (about
    // 95 instructions an access, a dozen accesses a request) could never fire: unchecked.
    let fd: Int32
    let parser = HTTPParser(.request)
    /// In the front's table of connections (a flag: the table lookup cost five a request).
    @exclusivity(unchecked) var isOpen = false
    @exclusivity(unchecked) var pending: [UInt8] = []
    @exclusivity(unchecked) var body: [UInt8] = []
    @exclusivity(unchecked) var busy = false
    /// The answer became an SSE stream (a notification came before it): chunks follow.
    @exclusivity(unchecked) var streaming = false
    /// The answer was given: later notifications for the request are dropped.
    @exclusivity(unchecked) var answered = false
    /// Writes in order: one at a time, the rest wait here.
    @exclusivity(unchecked) var outbox: [(bytes: [UInt8], then: ((Bool) -> Void)?)] = []
    @exclusivity(unchecked) var writing = false
    /// The session whose GET stream this connection carries, if it is one.
    @exclusivity(unchecked) var streamOf: String?
    /// The connection's receive stream is on (one submission for many reads; it stays on
    /// while a request runs, to notice the client going away).
    @exclusivity(unchecked) var reading = false
    @exclusivity(unchecked) var readToken: UInt64 = 0
    /// The stream was stopped because too much arrived while a request ran; it starts
    /// again when the request is answered.
    @exclusivity(unchecked) var paused = false
    /// Closed while the stream was on: the descriptor is closed when the stream ends.
    @exclusivity(unchecked) var closeAfterRead = false
    /// The request waiting on a server, and whether the client cancelled it.
    @exclusivity(unchecked) var task: Task<Void, Never>?
    @exclusivity(unchecked) var cancelled = false
    /// HTTPS: this connection's TLS server session.
    @exclusivity(unchecked) var tls: TLSConnection?
    /// That request's session (nil: none, or no request running) and raw JSON id: what a
    /// `notifications/cancelled` names.
    @exclusivity(unchecked) var runningSession: String?
    @exclusivity(unchecked) var runningID: [UInt8] = []
    /// Sends a notification to this client during its request (made on its first request).
    @exclusivity(unchecked) var notify: (@Sendable ([UInt8]) -> Void)?
    /// Asks this client for a session's server request (made for the last session it served).
    @exclusivity(unchecked) var ask: (session: String, ask: @Sendable ([UInt8]) async -> [UInt8]?)?
    /// Bytes of the current request were parsed.
    @exclusivity(unchecked) var feeding = false
    /// The current request's bytes as parsed, while they are all there (see `RepeatMemo`).
    @exclusivity(unchecked) var raw: [UInt8] = []
    @exclusivity(unchecked) var rawIsWhole = false
    /// The last request the repeat lane knew on this connection, and whether it kept the
    /// connection alive: the next request is compared with it before it is parsed.
    @exclusivity(unchecked) var lastRepeat: (entry: RepeatMemo.Entry, keepAlive: Bool)?
    /// What follows an answer written at once, on the loop's next turn (`onWritten`, made
    /// once per connection, does it).
    enum AfterWrite { case none, nextRequest, close }
    @exclusivity(unchecked) var afterWrite = AfterWrite.none
    @exclusivity(unchecked) var onWritten: (() -> Void)?
    init(fd: Int32) { self.fd = fd }
    func loopTurn() { onWritten?() }
}

/// What the fronts' `RepeatMemo`s keep (a class: the memo holds objects, and the fronts take
/// it back with `unsafeDowncast`, not a dynamic cast to the protocol).
final class RepeatEntry {
    let answer: any RepeatableAnswer
    init(_ answer: any RepeatableAnswer) { self.answer = answer }
}
