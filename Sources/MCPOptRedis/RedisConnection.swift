import Glibc
import MCPOptIO

/// Where a Redis server is: `redis://[user[:password]@]host[:port][/db]`, the same with
/// `rediss://` (TLS), or `unix:///path`.
public struct RedisEndpoint: Sendable, Equatable {
    public var host = "127.0.0.1"
    public var port = 6379
    /// A Unix socket path instead of host and port.
    public var unixPath: String?
    public var database = 0
    public var username: String?
    public var password: String?
    /// rediss://: TLS, the server's certificate checked against these CAs and the host.
    public var tls: TLSOptions?

    public init(host: String = "127.0.0.1", port: Int = 6379) {
        self.host = host
        self.port = port
    }

    /// Parses a URL; nil when it is not one of the two forms above.
    public static func parse(_ url: String) -> RedisEndpoint? {
        var e = RedisEndpoint()
        if url.hasPrefix("unix://") {
            let path = String(url.dropFirst("unix://".count))
            guard path.hasPrefix("/") else { return nil }
            e.unixPath = path
            return e
        }
        if url.hasPrefix("rediss://") { e.tls = TLSOptions() }
        guard url.hasPrefix("redis://") || e.tls != nil else { return nil }
        var rest = Substring(url.dropFirst(e.tls != nil ? "rediss://".count : "redis://".count))
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                e.username = credentials[..<colon].isEmpty ? nil : String(credentials[..<colon])
                e.password = String(credentials[credentials.index(after: colon)...])
            } else if !credentials.isEmpty {
                e.username = String(credentials)
            }
        }
        if let slash = rest.firstIndex(of: "/") {
            let db = rest[rest.index(after: slash)...]
            if !db.isEmpty {
                guard let n = Int(db), n >= 0 else { return nil }
                e.database = n
            }
            rest = rest[..<slash]
        }
        var host = rest
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            let after = host[host.index(after: close)...]
            e.host = String(host[host.index(after: host.startIndex)..<close])
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), (1...65535).contains(p) else { return nil }
                e.port = p
            }
            return e
        }
        if let colon = host.lastIndex(of: ":") {
            guard let p = Int(host[host.index(after: colon)...]), (1...65535).contains(p) else { return nil }
            e.port = p
            host = host[..<colon]
        }
        if !host.isEmpty { e.host = String(host) }
        return e
    }

    public var description: String { unixPath.map { "unix://\($0)" } ?? "\(host):\(port)" }
}

/// Why a Redis command got no reply.
public struct RedisError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable { case connect, timeout, closed, server, protocolViolation }
    public let kind: Kind
    public let message: String
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { message }
}

/// One connection to Redis on an event loop: commands are pipelined (sent as they come,
/// replies matched in order). A command that times out or a broken stream closes the
/// connection and fails everything in flight: replies are ordered, so one lost reply leaves
/// nothing to trust. In subscriber mode, `onMessage` gets each pub/sub message.
public final class RedisConnection: @unchecked Sendable {
    public let endpoint: RedisEndpoint
    public let loop: EventLoop

    private struct Pending {
        var seq: UInt64
        var expected: Int
        var replies: [RESPValue] = []
        let done: (Result<[RESPValue], RedisError>) -> Void
        var timer: UInt64
    }

    // Loop-thread state.
    private var fd: Int32 = -1
    private var open = false
    private var closed = false
    /// Why it closed, for commands sent after ("" while open).
    private var closedReason = ""
    private var pending: [Pending] = []
    /// Commands waiting for the write in progress to finish (loop thread).
    private var outbox: [UInt8] = []
    private var writing = false
    /// Counts connections: a completion of an earlier one (this object connects again after a
    /// failure) is recognised and dropped, never fed to the current one.
    private var generation: UInt64 = 0
    private var head = 0
    private var nextSeq: UInt64 = 0
    private var reader = RESPReader()
    /// rediss://: the CAs (loaded at the first connect) and this connection's TLS session.
    private var trust: TLSTrust?
    private var tls: TLSConnection?
    /// Told once the TLS handshake is done (or failed): `connect` waits for it.
    private var handshakeDone: ((Result<Void, RedisError>) -> Void)?
    /// rediss://: whether the last connect's handshake resumed the session of an earlier one
    /// (set before `connect` returns, read after it).
    public private(set) var resumedLastHandshake = false
    /// Whether this connection has had a reply yet.
    private var answered = false
    private var onMessage: ((_ channel: [UInt8], _ payload: [UInt8]) -> Void)?
    private var onClose: ((String) -> Void)?

    public init(endpoint: RedisEndpoint, loop: EventLoop) {
        self.endpoint = endpoint
        self.loop = loop
    }

    /// Connects, authenticates and selects the database; throws a clear error otherwise.
    /// `onMessage` (subscriber connections) gets pub/sub messages; `onClose` is told once when
    /// the connection ends for any reason after it was open.
    public func connect(timeout: Duration, onMessage: (@Sendable (_ channel: [UInt8], _ payload: [UInt8]) -> Void)? = nil,
                        onClose: (@Sendable (String) -> Void)? = nil) async throws(RedisError) {
        let result: Result<Void, RedisError> = await withCheckedContinuation { continuation in
            let accepted = loop.execute { [self] in
                start(timeout: timeout, onMessage: onMessage, onClose: onClose) { continuation.resume(returning: $0) }
            }
            if !accepted { continuation.resume(returning: .failure(RedisError(.closed, "the event loop is stopping"))) }
        }
        try result.get()
        var setup: [[[UInt8]]] = []
        if let password = endpoint.password {
            setup.append([Array("AUTH".utf8)] + (endpoint.username.map { [Array($0.utf8)] } ?? []) + [Array(password.utf8)])
        }
        if endpoint.database != 0 { setup.append([Array("SELECT".utf8), Array(String(endpoint.database).utf8)]) }
        guard !setup.isEmpty else { return }
        let replies = try await pipeline(setup, timeout: timeout)
        if let error = replies.first(where: \.isError), case .error(let text) = error {
            close(reason: "setup failed: \(text)")
            throw RedisError(.connect, "Redis at \(endpoint.description) refused the connection's setup: \(text)")
        }
    }

    /// Sends one command; its reply (a Redis error reply is returned, not thrown).
    public func command(_ arguments: [[UInt8]], timeout: Duration) async throws(RedisError) -> RESPValue {
        try await pipeline([arguments], timeout: timeout)[0]
    }

    /// Sends several commands at once; their replies, in order.
    public func pipeline(_ commands: [[[UInt8]]], timeout: Duration) async throws(RedisError) -> [RESPValue] {
        var encoded: [UInt8] = []
        for c in commands { encoded += RESPCommand.encode(c) }
        let bytes = encoded
        let result: Result<[RESPValue], RedisError> = await withCheckedContinuation { continuation in
            let accepted = loop.execute { [self] in
                send(bytes, expecting: commands.count, timeout: timeout) { continuation.resume(returning: $0) }
            }
            if !accepted { continuation.resume(returning: .failure(RedisError(.closed, "the event loop is stopping"))) }
        }
        return try result.get()
    }

    /// Closes the connection (in-flight commands fail).
    public func close() {
        loop.execute { [self] in close(reason: "closed") }
    }

    // MARK: loop thread

    private func start(timeout: Duration, onMessage: ((_ channel: [UInt8], _ payload: [UInt8]) -> Void)?, onClose: ((String) -> Void)?,
                       _ done: @escaping (Result<Void, RedisError>) -> Void) {
        // A connection may be connected again after it failed or was closed.
        if fd >= 0 { close(reason: "reconnecting") }
        closed = false
        closedReason = ""
        answered = false
        resumedLastHandshake = false
        generation &+= 1
        let current = generation
        reader = RESPReader()
        self.onMessage = onMessage
        self.onClose = onClose
        let (family, address): (Int32, [UInt8])
        do { (family, address) = try Self.address(endpoint) } catch { return done(.failure(error)) }
        fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return done(.failure(RedisError(.connect, "socket: \(String(cString: strerror(errno)))"))) }
        if family != AF_UNIX {
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        loop.adopt(fd)
        var finished = false
        // Whatever happens, `done` is called once: a connect superseded by another (the object
        // connected again meanwhile) fails without touching the newer connection.
        let superseded = RedisError(.closed, "the connection to Redis at \(endpoint.description) was replaced while connecting")
        let timer = loop.after(timeout) { [self] fired in
            guard fired, !finished else { return }
            finished = true
            guard generation == current else { return done(.failure(superseded)) }
            close(reason: "connect timed out")
            done(.failure(RedisError(.timeout, "cannot connect to Redis at \(endpoint.description) within \(timeout)")))
        }
        loop.connect(fd, address: address) { [self] result in
            guard !finished else { return }
            guard generation == current else {
                finished = true
                loop.cancel(timer)
                return done(.failure(superseded))
            }
            if case .failure(let error) = result {
                finished = true
                loop.cancel(timer)
                close(reason: error.message)
                return done(.failure(RedisError(.connect, "cannot connect to Redis at \(endpoint.description): \(error.message)")))
            }
            guard endpoint.tls != nil else {
                finished = true
                loop.cancel(timer)
                open = true
                readMore()
                return done(.success(()))
            }
            // rediss://: open once the handshake is done, within the same time limit.
            handshakeDone = { [self] outcome in
                guard !finished else { return }
                finished = true
                loop.cancel(timer)
                if case .success = outcome { open = true }
                done(outcome)
            }
            startTLS()
        }
    }

    /// Starts the TLS handshake on the connected socket; `handshakeDone` hears how it ends.
    private func startTLS() {
        if trust == nil, let options = endpoint.tls {
            do {
                trust = try TLSTrust(options)
            } catch {
                return failHandshake(error.message)
            }
        }
        guard let trust, let session = TLSConnection(trust: trust, host: endpoint.host) else { return failHandshake("out of memory for a TLS session") }
        tls = session
        do throws(TLSFailure) {
            _ = try session.handshake()
        } catch {
            return failHandshake(error.message)
        }
        flushCiphertext()   // the ClientHello; nothing else is queued before the connection is open
        readMore()
    }

    private func failHandshake(_ reason: String) {
        let told = handshakeDone
        handshakeDone = nil
        close(reason: reason)
        told?(.failure(RedisError(.connect, "cannot connect to Redis at \(endpoint.description): \(reason)")))
    }

    private func send(_ bytes: [UInt8], expecting count: Int, timeout: Duration, _ done: @escaping (Result<[RESPValue], RedisError>) -> Void) {
        guard open, !closed else {
            return done(.failure(RedisError(.closed, "the connection to Redis at \(endpoint.description) is closed\(closedReason.isEmpty ? "" : ": " + closedReason)")))
        }
        nextSeq += 1
        let seq = nextSeq   // unique across generations: a stale timer finds nothing
        let timer = loop.after(timeout) { [self] fired in
            guard fired, pending[head...].contains(where: { $0.seq == seq }) else { return }
            close(reason: "a command timed out after \(timeout)", kind: .timeout)
        }
        pending.append(Pending(seq: seq, expected: count, done: done, timer: timer))
        if let tls {
            do throws(TLSFailure) {
                try tls.write(bytes)
            } catch {
                return close(reason: error.message, kind: .protocolViolation)
            }
            outbox += tls.takeOutput()
        } else {
            outbox += bytes
        }
        flush()
    }

    /// Queues what the TLS session has for Redis (handshake flights), then writes.
    private func flushCiphertext() {
        if let tls { outbox += tls.takeOutput() }
        flush()
    }

    /// Writes what was queued, one write at a time (commands pipelined while a write is out
    /// go together in the next one): the loop does not order two writes on one fd.
    private func flush() {
        guard !writing, !outbox.isEmpty, !closed else { return }
        writing = true
        let bytes = outbox
        outbox.removeAll(keepingCapacity: true)
        let current = generation
        loop.write(fd, bytes) { [self] result in
            guard generation == current else { return }   // a write of a closed connection
            writing = false
            if case .failure(let error) = result { return close(reason: "write failed: \(error.message)") }
            flush()
        }
    }

    private func readMore() {
        let current = generation
        loop.read(fd) { [self] result in
            guard generation == current, !closed else { return }
            guard case .success(let bytes) = result, !bytes.isEmpty else {
                if handshakeDone != nil { return failHandshake("Redis closed the connection during the TLS handshake") }
                close(reason: "Redis closed the connection")
                return
            }
            var fed: String?
            if let tls {
                let outcome = bytes.withUnsafeBytes { raw -> Result<Bool, TLSFailure> in
                    do throws(TLSFailure) {
                        let sessionOpen = try tls.receive(raw, established: {
                            resumedLastHandshake = tls.resumed
                            let told = handshakeDone
                            handshakeDone = nil
                            told?(.success(()))
                        }) { plaintext in
                            guard fed == nil else { return }
                            do throws(RESPReader.Failure) { try reader.feed(plaintext) } catch { fed = error.description }
                        }
                        return .success(sessionOpen)
                    } catch {
                        return .failure(error)
                    }
                }
                flushCiphertext()
                switch outcome {
                case .success(true): break
                case .success(false): return close(reason: "Redis closed the TLS session")
                case .failure(let error):
                    if handshakeDone != nil { return failHandshake(error.message) }
                    return close(reason: error.message, kind: .protocolViolation)
                }
            } else {
                fed = bytes.withUnsafeBytes { raw in
                    do { try reader.feed(raw) } catch let e as RESPReader.Failure { return e.description } catch { return "\(error)" }
                    return nil
                }
            }
            if let fed {
                close(reason: "unreadable reply: \(fed)", kind: .protocolViolation)
                return
            }
            do throws(RESPReader.Failure) {
                while let reply = try reader.next() {
                    answered = true
                    deliver(reply)
                }
            } catch {
                close(reason: "unreadable reply: \(error.description)", kind: .protocolViolation)
                return
            }
            if !closed { readMore() }
        }
    }

    private func deliver(_ reply: RESPValue) {
        if let onMessage, case .array(let parts) = reply, parts.count == 3, parts[0].bytes == messageWord,
           let channel = parts[1].bytes, let payload = parts[2].bytes {
            onMessage(channel, payload)
            return
        }
        guard head < pending.count else { return }   // an unsolicited reply: nothing waits for it
        pending[head].replies.append(reply)
        guard pending[head].replies.count == pending[head].expected else { return }
        let finished = pending[head]
        head += 1
        if head == pending.count {
            pending.removeAll(keepingCapacity: true)
            head = 0
        }
        loop.cancel(finished.timer)
        finished.done(.success(finished.replies))
    }

    private func close(reason given: String, kind: RedisError.Kind = .closed) {
        guard !closed else { return }
        closed = true
        // A Redis that asked for a client certificate drops a new connection without a word
        // when it gets none (or one it does not take): say what it asked for.
        var reason = given
        if let tls, tls.certificateRequested, !answered {
            let mine = endpoint.tls?.clientCertificate
            reason += mine == nil ? " (Redis asked for a client certificate; none is configured: clientCert, clientKey)"
                : " (Redis asked for a client certificate; it may not accept \(mine!))"
        }
        closedReason = reason
        let wasOpen = open
        open = false
        if fd >= 0 {
            // Shut down first: an operation still in the kernel holds the socket open, and Redis
            // must see the connection end. Then the read and any write still waiting are
            // dropped before the number can be reused (their completions, ECANCELED, are
            // ignored by the generation check).
            shutdown(fd, Int32(SHUT_RDWR))
            loop.closeDescriptor(fd)
            fd = -1
        }
        outbox.removeAll()
        writing = false
        tls = nil
        handshakeDone = nil
        let waiting = pending[head...]
        pending.removeAll()
        head = 0
        for p in waiting {
            loop.cancel(p.timer)
            p.done(.failure(RedisError(kind, "Redis at \(endpoint.description): \(reason)")))
        }
        if wasOpen { onClose?(reason) }
        onClose = nil
        onMessage = nil
    }

    static func address(_ endpoint: RedisEndpoint) throws(RedisError) -> (Int32, [UInt8]) {
        if let path = endpoint.unixPath {
            var a = sockaddr_un()
            a.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: a.sun_path) else { throw RedisError(.connect, "unix socket path too long: \(path)") }
            withUnsafeMutableBytes(of: &a.sun_path) { raw in raw.copyBytes(from: bytes) }
            return (AF_UNIX, withUnsafeBytes(of: &a) { Array($0) })
        }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(endpoint.host, String(endpoint.port), &hints, &result)
        guard rc == 0, let info = result else { throw RedisError(.connect, "cannot resolve \(endpoint.host): \(String(cString: gai_strerror(rc)))") }
        defer { freeaddrinfo(result) }
        return (info.pointee.ai_family, Array(UnsafeRawBufferPointer(start: info.pointee.ai_addr, count: Int(info.pointee.ai_addrlen))))
    }
}

private let messageWord = Array("message".utf8)
