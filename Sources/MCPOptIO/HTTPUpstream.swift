import Glibc
import MCPOptJSON
import MCPOptProtocol
import MCPOptSync
import MCPOptUpstream

/// An MCP server over Streamable HTTP: a `StreamableHTTPSession` (eras, session ids, SSE, 404
/// re-initialization) over a pool of HTTP/1.1 keep-alive connections on the event loop.
///
/// Each exchange takes an idle connection, or opens one while fewer than `maxConnections` are
/// open, or waits for one. A reused connection the server had closed meanwhile is noticed (end
/// of stream before any response byte) and the exchange is sent again on a fresh one.
/// `shutdown` ends the server's session (DELETE) and closes the connections.
///
/// With `tls` (an https:// server) each connection speaks TLS: the handshake (the server's
/// certificate checked against `tls`'s CAs and the endpoint's host) comes before its first
/// request, and bytes go through the connection's `TLSConnection` to and from the socket. CAs
/// that cannot be loaded fail the session as an unresolvable host does.
public final class HTTPUpstream: @unchecked Sendable {
    public let endpoint: StreamableHTTPSession.Endpoint
    public let loop: EventLoop
    public let maxConnections: Int
    public let tls: TLSOptions?

    // Guarded by `shared` (so not checked for exclusivity at run time as well).
    private let shared = Lock()
    @exclusivity(unchecked) private var notificationHandler: (@Sendable (String, [UInt8]) -> Void)?
    @exclusivity(unchecked) private var serverRequestHandler: ServerRequestHandler?
    @exclusivity(unchecked) private var opened = 0
    @exclusivity(unchecked) private var resumed = 0
    @exclusivity(unchecked) private var sharedVersion: ProtocolVersion?
    @exclusivity(unchecked) private var logLines: [String] = []

    private let headers: [(String, String)]
    private let mode: ClientSession.Mode

    // Loop-thread state: confined, so Swift's dynamic exclusivity checks (about 95
    // instructions an access) could never fire here; unchecked.
    @exclusivity(unchecked) private var session: StreamableHTTPSession
    @exclusivity(unchecked) private var address: [UInt8]?
    @exclusivity(unchecked) private var trust: TLSTrust?
    @exclusivity(unchecked) private var addressFamily: Int32 = AF_INET
    @exclusivity(unchecked) private var idle: [Connection] = []
    /// Every open connection, busy or idle (shutdown closes them all, also streams a server
    /// keeps open after its answer).
    @exclusivity(unchecked) private var connections: [ObjectIdentifier: Connection] = [:]
    private var open: Int { connections.count }
    @exclusivity(unchecked) private var waiting: [(StreamableHTTPSession.ExchangeID, [UInt8])] = []
    /// Not lazy: a lazy property is checked for exclusivity at every use.
    private let waiters: RequestWaiters
    @exclusivity(unchecked) private var started = false
    @exclusivity(unchecked) private var stopping = false
    /// How long before the GET stream is opened again after it ended (doubles to 30 s).
    @exclusivity(unchecked) private var streamBackoff: Duration = .seconds(1)

    /// One keep-alive connection and the exchange it carries.
    private final class Connection {
        let fd: Int32
        let parser = HTTPParser(.response)
        @exclusivity(unchecked) var exchange: StreamableHTTPSession.ExchangeID?
        @exclusivity(unchecked) var request: [UInt8] = []
        @exclusivity(unchecked) var headReported = false
        @exclusivity(unchecked) var receivedAny = false
        @exclusivity(unchecked) var reused = false
        /// The connection's receive stream, on from connect to close (one submission for all
        /// its answers; while idle it notices the server closing).
        @exclusivity(unchecked) var receiveToken: UInt64 = 0
        /// Shutting down: the answer to DELETE (or the end) is waited for here.
        @exclusivity(unchecked) var onShutdownAnswer: (() -> Void)?
        /// https: the session, and its ciphertext writes (one at a time per fd: the loop's rule).
        @exclusivity(unchecked) var tls: TLSConnection?
        @exclusivity(unchecked) var tlsWriting = false
        @exclusivity(unchecked) var tlsQueued: [UInt8] = []
        init(fd: Int32) { self.fd = fd }
    }

    public init(endpoint: StreamableHTTPSession.Endpoint, headers: [(String, String)] = [], loop: EventLoop,
                mode: ClientSession.Mode = .auto, maxConnections: Int = 8, identity: ClientSession.Identity = .init(), tls: TLSOptions? = nil) {
        self.identity = identity
        self.endpoint = endpoint
        self.tls = tls
        self.loop = loop
        self.maxConnections = max(1, maxConnections)
        self.headers = headers
        self.mode = mode
        session = StreamableHTTPSession(endpoint: endpoint, headers: headers, mode: mode, identity: identity)
        waiters = RequestWaiters(loop: loop)
    }

    /// Who this client says it is, and what it can do for the server (its capabilities).
    public let identity: ClientSession.Identity

    /// Connections opened so far (a keep-alive pool opens few).
    public var connectionsOpened: Int { shared.withLock { opened } }
    /// https: connections whose handshake resumed an earlier session (no certificate exchange).
    public var connectionsResumed: Int { shared.withLock { resumed } }
    public var version: ProtocolVersion? { shared.withLock { sharedVersion } }
    /// What went wrong, as it happened (at most 200 lines).
    public var events: [String] { shared.withLock { logLines } }

    /// Called (on the I/O thread, so briefly) with each notification the server sends:
    /// list changes, resource updates, progress, log messages.
    public func onNotification(_ handler: (@Sendable (_ method: String, _ message: [UInt8]) -> Void)?) {
        shared.withLock { notificationHandler = handler }
    }

    public func onServerRequest(_ handler: ServerRequestHandler?) {
        shared.withLock { serverRequestHandler = handler }
    }

    private func log(_ line: String) {
        shared.withLock {
            logLines.append(line)
            if logLines.count > 200 { logLines.removeFirst(logLines.count - 200) }
        }
    }

    /// Starts the session (discovery or handshake); requests sent before wait for it.
    public func start() {
        loop.execute { [self] in begin() }
    }

    public func request(_ request: UpstreamRequest, timeout: Duration = .seconds(30), cancellable: Bool = false) async throws(UpstreamError) -> [UInt8] {
        try await cancellableRequest(loop, cancellable: cancellable, enqueue: { [self] box, continuation in enqueue(request, timeout: timeout, box: box, continuation) },
                                     cancel: { [self] box in cancelRequest(box) }).get()
    }

    /// The caller gave up: the server is told (notifications/cancelled) and the caller answered.
    private func cancelRequest(_ box: CancelBox) {
        guard let token = box.token else {
            box.cancelled = true
            return
        }
        handle(session.cancel(token: token, reason: "cancelled by the client"))
            waiters.finish(token, .failure(UpstreamError(.cancelled, "cancelled by the client")))
    }

    /// Ends the server's session (DELETE, where it has one) and closes every connection.
    /// https: reads the CA bundle and the client certificate again (renewed files) for the
    /// connections opened from now on; open ones keep what they started with. Nil when done (or
    /// nothing to do: plain HTTP, or a session that never got its TLS context), else why the
    /// files did not load: the context in use stays.
    public func reloadTLS() async -> String? {
        guard let tls else { return nil }
        return await withCheckedContinuation { (done: CheckedContinuation<String?, Never>) in
            let accepted = loop.execute { [self] in
                guard trust != nil else { return done.resume(returning: nil) }
                do throws(TLSSetupError) {
                    trust = try TLSTrust(tls)
                    done.resume(returning: nil)
                } catch {
                    log("TLS files not reloaded: \(error.message)")
                    done.resume(returning: error.message)
                }
            }
            if !accepted { done.resume(returning: "the event loop is stopping") }
        }
    }

    public func shutdown(grace: Duration = .seconds(1)) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let accepted = loop.execute { [self] in self.beginShutdown(grace: grace, continuation) }
            if !accepted { continuation.resume() }
        }
    }

    // MARK: Loop thread

    /// Opens the session; why it cannot (the host does not resolve, the CAs do not load).
    @discardableResult
    private func begin() -> String? {
        guard !started else { return nil }
        started = true
        var failure: String?
        if address == nil { failure = resolve() }
        if failure == nil, let tls, trust == nil {
            do {
                trust = try TLSTrust(tls)
            } catch {
                failure = error.message
            }
        }
        if let failure {
            log(failure)
            handle(session.close(reason: failure))
            return failure
        }
        handle(session.open())
        return nil
    }

    /// The endpoint's address (a numeric host, or the first address a name resolves to).
    private func resolve() -> String? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(endpoint.host, String(endpoint.port), &hints, &result)
        guard rc == 0, let info = result else { return "cannot resolve \(endpoint.host): \(String(cString: gai_strerror(rc)))" }
        defer { freeaddrinfo(result) }
        addressFamily = info.pointee.ai_family
        address = Array(UnsafeRawBufferPointer(start: info.pointee.ai_addr, count: Int(info.pointee.ai_addrlen)))
        return nil
    }

    private func enqueue(_ request: UpstreamRequest, timeout: Duration, box: CancelBox?, _ continuation: RequestWaiters.Continuation) {
        if box?.cancelled == true {
            continuation.resume(returning: .failure(UpstreamError(.cancelled, "cancelled by the client")))
            return
        }
        guard !stopping else {
            continuation.resume(returning: .failure(UpstreamError(.closed, "the upstream is shutting down")))
            return
        }
        if session.phase == .closed {
            // The last session failed (server down, negotiation refused): try a new one, so a
            // server that comes back is found, and this request gets the new attempt's error.
            session = StreamableHTTPSession(endpoint: endpoint, headers: headers, mode: mode, identity: identity)
            started = false
        }
        if let failure = begin() {
            continuation.resume(returning: .failure(UpstreamError(.closed, failure)))
            return
        }
        let token = waiters.add(continuation, timeout: timeout, listener: request.listener) { [self] token in
            handle(session.cancel(token: token, reason: "no answer within \(timeout)"))
            // Over HTTP the answer may still arrive on its stream; the caller is told now.
            waiters.timeOut(token)
        }
        box?.token = token
        handle(session.send(request, token: token))
    }

    private func handle(_ events: [StreamableHTTPSession.Event]) {
        for event in events {
            switch event {
            case .request(let id, let bytes):
                dispatch(id, bytes)
            case .ready:
                let version = session.version
                shared.withLock { sharedVersion = version }
                // A handshake-era server sends what belongs to no request on the GET stream; a
                // modern one on a subscriptions/listen stream.
                streamBackoff = .seconds(1)
                handle(session.openStream())
            case .streamEnded(let retry):
                guard retry, !stopping else { break }
                let wait = streamBackoff
                streamBackoff = min(streamBackoff * 2, .seconds(30))
                _ = loop.after(wait) { [self] _ in if !stopping { handle(session.openStream()) } }
            case .closeExchange(let id):
                // A listen stream replaced by a newer one.
                guard let connection = connections.values.first(where: { $0.exchange == id }) else { break }
                drop(connection)
                drainWaiting()
            case .response(let token, let message):
                waiters.finish(token, .success(message))
            case .failed(let token, let error):
                waiters.failed(token, error)
            case .notification(let method, let message):
                let handler = shared.withLock { notificationHandler }
                handler?(method, message)
            case .requestNotification(let token, let method, let message):
                // The request's own listener; else the server-wide handler, but never with a log
                // message about a request: its caller wants none (or is gone), and the
                // server-wide handler serves every client.
                if let token, let own = waiters.listener(token) {
                    own.onNotification(method, message)
                } else if method != "notifications/message" {
                    let handler = shared.withLock { notificationHandler }
                    handler?(method, message)
                }
            case .serverRequest(let method, let message):
                // The reply is POSTed back in the same session (the server answers 202).
                let reply: @Sendable ([UInt8]) -> Void = { [weak self] bytes in
                    _ = self?.loop.execute { [weak self] in
                        guard let self else { return }
                        self.handle(self.session.reply(bytes))
                    }
                }
                dispatchServerRequest(shared.withLock { serverRequestHandler }, method: method, message: message, reply: reply)
            case .violation(let text):
                log("protocol violation: \(text)")
            }
        }
    }

    private func dispatch(_ id: StreamableHTTPSession.ExchangeID, _ bytes: [UInt8]) {
        if let connection = idle.popLast() {
            connection.reused = true
            send(id, bytes, on: connection)
        } else if open < maxConnections {
            connect(id, bytes)
        } else {
            waiting.append((id, bytes))
        }
    }

    private func connect(_ id: StreamableHTTPSession.ExchangeID, _ bytes: [UInt8]) {
        guard let address else {
            handle(session.exchangeFailed(id, reason: "no address for \(endpoint.host)"))
            return
        }
        let fd = socket(addressFamily, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            handle(session.exchangeFailed(id, reason: "socket: \(String(cString: strerror(errno)))"))
            return
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        loop.adopt(fd)
        shared.withLock { opened += 1 }
        let connection = Connection(fd: fd)
        connections[ObjectIdentifier(connection)] = connection
        loop.connect(fd, address: address) { [self] result in
            if case .failure(let error) = result {
                drop(connection)
                handle(session.exchangeFailed(id, reason: "\(error.message) (\(endpoint.authority))"))
                drainWaiting()
                return
            }
            startReceiving(connection)
            guard tls != nil else {
                send(id, bytes, on: connection)
                return
            }
            guard let trust else {   // never plaintext to an https server
                failOrRetry(connection, reason: "no TLS context for \(endpoint.authority)")
                return
            }
            // The request waits for the handshake, which the server's answers drive.
            connection.exchange = id
            connection.request = bytes
            guard let session = TLSConnection(trust: trust, host: endpoint.host) else {
                failOrRetry(connection, reason: "out of memory for a TLS session")
                return
            }
            connection.tls = session
            do throws(TLSFailure) {
                _ = try session.handshake()
                writeTLS(session.takeOutput(), on: connection)
            } catch {
                failOrRetry(connection, reason: "\(error.message) (\(endpoint.authority))")
            }
        }
    }

    private func send(_ id: StreamableHTTPSession.ExchangeID, _ bytes: [UInt8], on connection: Connection) {
        connection.exchange = id
        connection.request = bytes
        connection.headReported = false
        connection.receivedAny = false
        if let session = connection.tls {
            do throws(TLSFailure) {
                try session.write(bytes)
            } catch {
                failOrRetry(connection, reason: error.message)
                return
            }
            writeTLS(session.takeOutput(), on: connection)
            return
        }
        loop.write(connection.fd, bytes) { [self] result in
            if case .failure(let error) = result {
                failOrRetry(connection, reason: error.message)
                return
            }
        }
    }

    /// Ciphertext for the peer, after what is being written on the connection. Not once the
    /// connection is dropped: its descriptor number may already be another connection's.
    private func writeTLS(_ bytes: [UInt8], on connection: Connection) {
        guard !bytes.isEmpty, connections[ObjectIdentifier(connection)] === connection else { return }
        if connection.tlsWriting {
            connection.tlsQueued += bytes
            return
        }
        connection.tlsWriting = true
        loop.write(connection.fd, bytes) { [self] result in
            connection.tlsWriting = false
            if case .failure(let error) = result {
                failOrRetry(connection, reason: error.message)
                return
            }
            if !connection.tlsQueued.isEmpty {
                let next = connection.tlsQueued
                connection.tlsQueued = []
                writeTLS(next, on: connection)
            }
        }
    }

    /// Ciphertext from the server: the handshake's next step, then the plaintext it holds.
    private func receivedTLS(_ bytes: UnsafeRawBufferPointer, on connection: Connection, _ session: TLSConnection) {
        do throws(TLSFailure) {
            let established: () throws(TLSFailure) -> Void = {
                if session.resumed { self.shared.withLock { self.resumed += 1 } }
                // The request goes out with the handshake's last flight.
                if connection.exchange != nil { try session.write(connection.request) }
            }
            let sessionOpen = try session.receive(bytes, established: established) { plaintext in
                // The plaintext may end the connection's use (dropped, closed): the rest is moot.
                guard connections[ObjectIdentifier(connection)] === connection else { return }
                received(plaintext, on: connection)
            }
            writeTLS(session.takeOutput(), on: connection)
            if !sessionOpen, connections[ObjectIdentifier(connection)] === connection { ended(connection) }
        } catch {
            failOrRetry(connection, reason: "\(error.message) (\(endpoint.authority))")
        }
    }

    /// The connection's receive stream (multishot recv into the loop's buffers where the
    /// kernel has it): the answers of every exchange on it, and its end.
    private func startReceiving(_ connection: Connection) {
        connection.receiveToken = loop.receive(connection.fd) { [self] event in
            guard connections[ObjectIdentifier(connection)] === connection else { return }
            if let answered = connection.onShutdownAnswer {
                drop(connection)
                answered()
                return
            }
            switch event {
            case .bytes(let bytes):
                if let session = connection.tls { receivedTLS(bytes, on: connection, session) } else { received(bytes, on: connection) }
            case .end: ended(connection)
            }
        }
    }

    private func ended(_ connection: Connection) {
        guard let id = connection.exchange else {
            drop(connection)   // an idle connection the server closed
            return
        }
        // End of stream: a body delimited by the close ends here; else the exchange failed.
        if (try? connection.parser.finish()) != nil, connection.parser.isComplete {
            complete(connection, id, keepAlive: false)
        } else {
            failOrRetry(connection, reason: closedReason(connection))
        }
    }

    /// Why an exchange ended with the connection: a server that asked for a client certificate
    /// and closed a new connection before answering anything (what it does when it gets none, or
    /// one it does not take) says nothing more, so that is said.
    private func closedReason(_ connection: Connection) -> String {
        guard let session = connection.tls, session.certificateRequested, !connection.reused, !connection.receivedAny else {
            return "the server closed the connection"
        }
        return tls?.clientCertificate == nil
            ? "the server closed the connection after asking for a client certificate; none is configured (clientCert, clientKey)"
            : "the server closed the connection after asking for a client certificate; it may not accept \(tls?.clientCertificate ?? "")"
    }

    private func received(_ bytes: UnsafeRawBufferPointer, on connection: Connection) {
        guard let id = connection.exchange else {
            drop(connection)   // bytes no request asked for: the connection cannot be trusted
            return
        }
        connection.receivedAny = true
        var offset = 0
        while offset < bytes.count {
            let used: Int
            do {
                used = try connection.parser.feed(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
            } catch {
                drop(connection)
                handle(session.exchangeFailed(id, reason: "bad HTTP response: \(error)"))
                drainWaiting()
                return
            }
            offset += used
            if connection.parser.isHeadComplete && !connection.headReported {
                connection.headReported = true
                let parser = connection.parser
                handle(session.responseHead(id, status: parser.status) { parser.header($0) })
            }
            // The body goes from the parser's buffer to the session's without a copy between.
            let events = connection.parser.takeBody { $0.isEmpty ? [] : session.responseBody(id, $0) }
            if !events.isEmpty { handle(events) }
            if connection.parser.isComplete {
                complete(connection, id, keepAlive: connection.parser.keepAlive && offset == bytes.count)
                return
            }
            if used == 0 { break }
        }
    }

    private func complete(_ connection: Connection, _ id: StreamableHTTPSession.ExchangeID, keepAlive: Bool) {
        connection.exchange = nil
        handle(session.responseEnd(id))
        if keepAlive && !stopping {
            connection.parser.next()
            if let (next, bytes) = waiting.first {
                waiting.removeFirst()
                connection.reused = true
                send(next, bytes, on: connection)
            } else {
                idle.append(connection)
            }
        } else {
            drop(connection)
            drainWaiting()
        }
    }

    /// A reused connection that ends before any response byte was closed by the server while
    /// idle: send the exchange again on a fresh connection. Anything else fails the exchange.
    private func failOrRetry(_ connection: Connection, reason: String) {
        guard let id = connection.exchange else { drop(connection); return }
        let request = connection.request
        let retry = connection.reused && !connection.receivedAny
        drop(connection)
        if retry && !stopping {
            connect(id, request)
        } else {
            handle(session.exchangeFailed(id, reason: reason))
            drainWaiting()
        }
    }

    private func drop(_ connection: Connection) {
        guard connections.removeValue(forKey: ObjectIdentifier(connection)) != nil else { return }
        connection.exchange = nil
        idle.removeAll { $0 === connection }
        // The stream holds the socket until it ends: cancelled first (its end is ignored); a
        // write still waiting is dropped (the number may go to the next connection).
        loop.cancel(connection.receiveToken)
        loop.closeDescriptor(connection.fd)
    }

    private func drainWaiting() {
        while open < maxConnections, !waiting.isEmpty {
            let (id, bytes) = waiting.removeFirst()
            connect(id, bytes)
        }
    }

    private func beginShutdown(grace: Duration, _ continuation: CheckedContinuation<Void, Never>) {
        stopping = true
        waiters.failAll(UpstreamError(.closed, "the upstream is shutting down"))
        let closeAll = { [self] in
            for connection in Array(connections.values) { drop(connection) }
            idle.removeAll()
            handle(session.close(reason: "shut down"))
            continuation.resume()
        }
        // DELETE ends the server's session; at most `grace` is spent waiting for its answer.
        guard let termination = session.terminationRequest(), let connection = idle.popLast() else {
            closeAll()
            return
        }
        var done = false
        let finishOnce = { if !done { done = true; closeAll() } }
        loop.after(grace) { _ in finishOnce() }
        // The answer (or the end) comes on the connection's receive stream.
        connection.onShutdownAnswer = finishOnce
        if let session = connection.tls {
            guard (try? session.write(termination)) != nil else { return finishOnce() }
            writeTLS(session.takeOutput(), on: connection)
        } else {
            loop.write(connection.fd, termination) { _ in }
        }
    }
}
