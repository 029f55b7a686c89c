import Glibc
import MCPOptJSON
import MCPOptProtocol
import MCPOptSync
import MCPOptUpstream

/// When a stdio server that died is started again.
public struct RestartPolicy: Sendable, Equatable {
    public var initialBackoff: Duration = .milliseconds(100)
    public var maxBackoff: Duration = .seconds(10)
    /// A process that lived this long resets the backoff.
    public var stableAfter: Duration = .seconds(30)
    /// nil: restart forever.
    public var maxRestarts: Int? = nil
    public init() {}
}

/// An MCP server over stdio, supervised: started with its command, spoken to with
/// newline-delimited JSON through a `ClientSession` (handshake or discovery, id remapping,
/// cancellation), its stderr kept as a log, restarted with backoff when it dies (requests in
/// flight fail with `.closed` rather than hang), and stopped gracefully (stdin closed, then
/// SIGTERM, then SIGKILL).
///
/// Thread-safe: everything runs on the event loop; `request` and `shutdown` are async.
public final class StdioUpstream: @unchecked Sendable {
    public enum State: String, Sendable { case idle, starting, ready, restarting, stopped }

    public let command: StdioCommand
    public let loop: EventLoop
    public let mode: ClientSession.Mode
    public let policy: RestartPolicy
    /// Longest line accepted from the server (a server writing more without a newline is broken).
    public var maxLineBytes = 64 << 20

    // Visible from any thread.
    private let shared = Lock()
    private var notificationHandler: (@Sendable (String, [UInt8]) -> Void)?   // guarded by shared
    private var serverRequestHandler: ServerRequestHandler?                   // guarded by shared
    private var sharedState = State.idle
    private var sharedRestarts = 0
    private var sharedVersion: ProtocolVersion?
    private var writesIssued = 0
    private var stderrLines: [String] = []
    private var logLines: [String] = []

    // Loop-thread state.
    private var process: ChildProcess?
    private var session: ClientSession?
    private var generation = 0
    private var stdoutBuffer: [UInt8] = []
    private var stderrBuffer: [UInt8] = []
    private var writeQueue: [[UInt8]] = []
    private var writing = false
    /// A batch is being queued: its lines wait to go out together.
    private var holdingWrites = false
    /// Not lazy: a lazy property is checked for exclusivity at every use.
    private let waiters: RequestWaiters
    private var backoff: Duration
    private var startedAt: UInt64 = 0
    private var stopping = false
    /// How long before a modern server's listen stream is opened again after it ended.
    private var listenBackoff: Duration = .seconds(1)
    /// Why the last start failed (reported to requests while no session can take them).
    private var startError: String?
    private var shutdownWaiters: [CheckedContinuation<Void, Never>] = []

    /// Who this client says it is, and what it can do for the server (its capabilities).
    public let identity: ClientSession.Identity

    public init(command: StdioCommand, loop: EventLoop, mode: ClientSession.Mode = .auto, policy: RestartPolicy = .init(),
                identity: ClientSession.Identity = .init()) {
        self.command = command
        self.loop = loop
        self.mode = mode
        self.identity = identity
        self.policy = policy
        backoff = policy.initialBackoff
        waiters = RequestWaiters(loop: loop)
    }

    // MARK: Public API (any thread)

    public var state: State { shared.withLock { sharedState } }
    /// How many times the server was started again after dying.
    public var restarts: Int { shared.withLock { sharedRestarts } }
    /// The protocol version negotiated with the current process.
    public var version: ProtocolVersion? { shared.withLock { sharedVersion } }
    /// The server's latest stderr lines (at most 200).
    public var stderrTail: [String] { shared.withLock { stderrLines } }
    /// What went wrong, as it happened: exits, restarts, protocol violations (at most 200).
    public var events: [String] { shared.withLock { logLines } }

    /// Called (on the I/O thread, so briefly) with each notification the server sends:
    /// list changes, resource updates, progress, log messages.
    public func onNotification(_ handler: (@Sendable (_ method: String, _ message: [UInt8]) -> Void)?) {
        shared.withLock { notificationHandler = handler }
    }

    public func onServerRequest(_ handler: ServerRequestHandler?) {
        shared.withLock { serverRequestHandler = handler }
    }

    /// Starts the server (requests sent before it is ready wait in the session's queue).
    public func start() {
        loop.execute { [self] in
            guard process == nil, !stopping else { return }
            launch()
        }
    }

    /// Sends a request and waits for its response (the whole JSON-RPC message), at most
    /// `timeout`. Errors: `.timeout`, `.closed` (the server died or is stopped; the caller may
    /// retry), `.cancelled`, `.negotiation`, `.protocolViolation`.
    public func request(_ request: UpstreamRequest, timeout: Duration = .seconds(30), cancellable: Bool = false) async throws(UpstreamError) -> [UInt8] {
        try await cancellableRequest(loop, cancellable: cancellable, enqueue: { [self] box, continuation in enqueue(request, timeout: timeout, box: box, continuation) },
                                     cancel: { [self] box in cancelRequest(box) }).get()
    }

    /// Sends requests together: one hop to the loop, and their lines go out in one write.
    public func requestBatch(_ requests: [UpstreamRequest], timeout: Duration) async -> [Result<[UInt8], UpstreamError>] {
        guard !requests.isEmpty else { return [] }
        let gathering = ContinuationGathering<Result<[UInt8], UpstreamError>>(count: requests.count)
        return await withTaskGroup(of: (Int, Result<[UInt8], UpstreamError>).self) { group in
            for index in requests.indices {
                group.addTask { [self] in
                    let result = await withUnsafeContinuation { (continuation: RequestWaiters.Continuation) in
                        // The last one in sends them all.
                        guard let all = gathering.add(index, continuation) else { return }
                        let accepted = loop.execute { [self] in
                            holdingWrites = true
                            for (i, c) in all { enqueue(requests[i], timeout: timeout, box: nil, c) }
                            holdingWrites = false
                            pumpWrites()
                        }
                        if !accepted { for (_, c) in all { c.resume(returning: .failure(UpstreamError(.closed, "the upstream is stopped"))) } }
                    }
                    return (index, result)
                }
            }
            var results = [Result<[UInt8], UpstreamError>](repeating: .failure(UpstreamError(.closed, "not sent")), count: requests.count)
            for await (index, result) in group { results[index] = result }
            return results
        }
    }

    /// Writes to the server's stdin so far (a batch's lines share one).
    public var writeCount: Int { shared.withLock { writesIssued } }

    /// The caller gave up: the server is told (notifications/cancelled) and the caller answered.
    private func cancelRequest(_ box: CancelBox) {
        guard let token = box.token else {
            box.cancelled = true
            return
        }
        if let current = self.session { handle(current.cancel(token: token, reason: "cancelled by the client")) } else { waiters.finish(token, .failure(UpstreamError(.cancelled, "cancelled by the client"))) }
    }

    /// Stops the server: no restart; stdin is closed, then SIGTERM after `grace`, then SIGKILL
    /// after `grace` again. Returns once the process is gone (and reaped).
    public func shutdown(grace: Duration = .seconds(2)) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let accepted = loop.execute { [self] in self.beginShutdown(grace: grace, continuation) }
            if !accepted { continuation.resume() }
        }
    }

    // MARK: Loop thread

    private func setState(_ state: State) { shared.withLock { sharedState = state } }

    private func log(_ line: String) {
        shared.withLock {
            logLines.append(line)
            if logLines.count > 200 { logLines.removeFirst(logLines.count - 200) }
        }
    }

    private func launch() {
        generation += 1
        let current = generation
        setState(.starting)
        // A session created while restarting already holds the requests that came meanwhile.
        let session = self.session ?? ClientSession(mode: mode, identity: identity)
        self.session = session
        stdoutBuffer.removeAll()
        stderrBuffer.removeAll()
        writeQueue.removeAll()
        writing = false
        let child: ChildProcess
        do {
            child = try ChildProcess.spawn(command)
        } catch {
            log(error.message)
            startError = error.message
            self.session = nil
            handle(session.close(reason: error.message))
            scheduleRestart()
            return
        }
        startError = nil
        process = child
        startedAt = monotonicNanos()
        for fd in [child.stdin, child.stdout, child.stderr] { loop.adopt(fd) }
        readStdout(child, current)
        readStderr(child, current)
        if child.pidfd >= 0 {
            loop.whenReadable(child.pidfd) { [self] _ in
                guard current == generation else { return }
                child.reap()
                // What it wrote before dying is still in the pipe: the end of its output
                // reports the exit once that is read (a helper of the server holding the pipe
                // open could keep it from ending, so not later than 250 ms from now).
                loop.after(.milliseconds(250)) { [self] _ in exited(child, current) }
            }
        }
        handle(session.open())
    }

    private func readStdout(_ child: ChildProcess, _ current: Int) {
        loop.read(child.stdout) { [self] result in
            guard current == generation else { return }
            guard case .success(let bytes) = result, !bytes.isEmpty else {
                // End of output: the server is exiting (or closed stdout, which is as bad).
                waitForExit(child, current)
                return
            }
            stdoutBuffer += bytes
            var start = 0
            while let newline = stdoutBuffer[start...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = stdoutBuffer[start..<newline]
                start = newline + 1
                guard line.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\t") }) else { continue }
                guard let session else { break }
                let events = session.receive(Array(line))
                handle(events)
                guard current == generation else { return }
            }
            stdoutBuffer.removeFirst(start)
            if stdoutBuffer.count > maxLineBytes {
                log("the server wrote more than \(maxLineBytes) bytes without a newline; stopping it")
                child.signal(SIGKILL)
                return
            }
            readStdout(child, current)
        }
    }

    private func readStderr(_ child: ChildProcess, _ current: Int) {
        loop.read(child.stderr) { [self] result in
            guard case .success(let bytes) = result, !bytes.isEmpty else { return }
            stderrBuffer += bytes
            var lines: [String] = []
            while let newline = stderrBuffer.firstIndex(of: UInt8(ascii: "\n")) {
                lines.append(String(decoding: stderrBuffer[..<newline], as: UTF8.self))
                stderrBuffer.removeFirst(newline + 1)
            }
            if stderrBuffer.count > 65_536 {
                lines.append(String(decoding: stderrBuffer, as: UTF8.self))
                stderrBuffer.removeAll()
            }
            if !lines.isEmpty {
                shared.withLock {
                    stderrLines += lines
                    if stderrLines.count > 200 { stderrLines.removeFirst(stderrLines.count - 200) }
                }
            }
            readStderr(child, current)
        }
    }

    /// After stdout ended: the exit is reported by the pidfd, or found by polling.
    private func waitForExit(_ child: ChildProcess, _ current: Int) {
        if child.reap() != nil {
            exited(child, current)
            return
        }
        guard child.pidfd < 0 else { return }
        loop.after(.milliseconds(20)) { [self] _ in
            guard current == generation else { return }
            waitForExit(child, current)
        }
    }

    private func exited(_ child: ChildProcess, _ current: Int) {
        guard current == generation, process === child else { return }
        let status = child.reap() ?? -1
        process = nil
        generation += 1   // stale callbacks of this process are ignored from now on
        // What still waits on the pipes ends before their numbers go to the next process's.
        for fd in [child.stdin, child.stdout, child.stderr] { loop.forget(fd) }
        child.closeDescriptors()
        let reason = "the server \(ChildProcess.describe(status))"
        log(reason)
        if let session { handle(session.close(reason: reason)) }
        session = nil
        if stopping {
            setState(.stopped)
            let waiting = shutdownWaiters
            shutdownWaiters.removeAll()
            for continuation in waiting { continuation.resume() }
            return
        }
        let lived = monotonicNanos() - startedAt
        if lived >= UInt64(policy.stableAfter.components.seconds) * 1_000_000_000 { backoff = policy.initialBackoff }
        scheduleRestart()
    }

    private func scheduleRestart() {
        guard !stopping else { return }
        let restarts = shared.withLock { sharedRestarts }
        if let limit = policy.maxRestarts, restarts >= limit {
            log("not restarting: \(limit) restarts already")
            if let session { handle(session.close(reason: startError ?? "the server stopped")) }
            session = nil
            setState(.stopped)
            return
        }
        setState(.restarting)
        // Requests that come before the restart wait in the next session's queue; resource
        // subscriptions carry over to it (it subscribes again once ready).
        let subscribed = session?.subscribedURIs ?? []
        session = ClientSession(mode: mode, identity: identity)
        session?.restoreSubscriptions(subscribed)
        let delay = backoff
        backoff = min(backoff * 2, policy.maxBackoff)
        loop.after(delay) { [self] _ in
            guard !stopping, process == nil else { return }
            shared.withLock { sharedRestarts += 1 }
            log("restarting after \(delay)")
            launch()
        }
    }

    private func enqueue(_ request: UpstreamRequest, timeout: Duration, box: CancelBox?, _ continuation: RequestWaiters.Continuation) {
        if box?.cancelled == true {
            continuation.resume(returning: .failure(UpstreamError(.cancelled, "cancelled by the client")))
            return
        }
        guard !stopping else {
            continuation.resume(returning: .failure(UpstreamError(.closed, "the server is shutting down")))
            return
        }
        if process == nil && session == nil && state == .idle { launch() }
        guard let session else {
            continuation.resume(returning: .failure(UpstreamError(.closed, startError ?? "the server is not running")))
            return
        }
        let token = waiters.add(continuation, timeout: timeout) { [self] token in
            // The session tells the server (notifications/cancelled) and fails the request,
            // which the waiters report as a timeout.
            if let current = self.session { handle(current.cancel(token: token, reason: "no answer within \(timeout)")) } else { waiters.timeOut(token) }
        }
        box?.token = token
        handle(session.send(request, token: token))
    }

    private func handle(_ events: [ClientSession.Event]) {
        for event in events {
            switch event {
            case .send(let bytes):
                writeQueue.append(bytes + [UInt8(ascii: "\n")])
                pumpWrites()
            case .ready:
                setState(.ready)
                let version = session?.version
                shared.withLock { sharedVersion = version }
                // A modern server sends list changes and resource updates on a listen stream.
                listenBackoff = .seconds(1)
                if let session { handle(session.startListening()) }
            case .listenEnded(let retry):
                guard retry, !stopping else { break }
                let wait = listenBackoff, current = generation
                listenBackoff = min(listenBackoff * 2, .seconds(30))
                _ = loop.after(wait) { [self] _ in
                    guard !stopping, current == generation, let session else { return }
                    handle(session.startListening())
                }
            case .stopListen(_, let cancel):
                writeQueue.append(cancel + [UInt8(ascii: "\n")])
                pumpWrites()
            case .response(let token, let message):
                waiters.finish(token, .success(message))
            case .failed(let token, let error):
                waiters.failed(token, error)
            case .notification(let method, let message):
                let handler = shared.withLock { notificationHandler }
                handler?(method, message)
            case .serverRequest(let method, let message):
                answerServerRequest(method: method, message: message)
            case .violation(let text):
                log("protocol violation: \(text)")
            }
        }
    }

    /// Requests from the server (`ping` is answered by the session): to the handler, whose
    /// reply goes back to this same process; "method not found" without one.
    private func answerServerRequest(method: String, message: [UInt8]) {
        let current = generation
        let reply: @Sendable ([UInt8]) -> Void = { [weak self] bytes in
            _ = self?.loop.execute { [weak self] in
                // A reply for a process that has since died is dropped (its request died with it).
                guard let self, self.generation == current else { return }
                self.writeQueue.append(bytes + [UInt8(ascii: "\n")])
                self.pumpWrites()
            }
        }
        dispatchServerRequest(shared.withLock { serverRequestHandler }, method: method, message: message, reply: reply)
    }

    private func pumpWrites() {
        guard !writing, !holdingWrites, let child = process, child.stdin >= 0, !writeQueue.isEmpty else { return }
        writing = true
        // Everything queued goes in one write (lines that came while the last one was out).
        let bytes = writeQueue.count == 1 ? writeQueue[0] : Array(writeQueue.joined())
        writeQueue.removeAll(keepingCapacity: true)
        shared.withLock { writesIssued += 1 }
        let current = generation
        loop.write(child.stdin, bytes) { [self] result in
            guard current == generation else { return }
            writing = false
            if case .failure(let error) = result {
                // The server closed stdin (it is exiting): the exit handler fails the requests.
                log("writing to the server failed: \(error.message)")
                writeQueue.removeAll()
                return
            }
            pumpWrites()
        }
    }

    private func beginShutdown(grace: Duration, _ continuation: CheckedContinuation<Void, Never>) {
        stopping = true
        waiters.failAll(UpstreamError(.closed, "the server is shutting down"))
        guard let child = process else {
            setState(.stopped)
            continuation.resume()
            return
        }
        shutdownWaiters.append(continuation)
        guard shutdownWaiters.count == 1 else { return }
        // Close stdin: a well-behaved server exits on end of input.
        loop.forget(child.stdin)
        child.closeStdin()
        let current = generation
        loop.after(grace) { [self] _ in
            guard current == generation, process === child else { return }
            log("the server did not exit after stdin closed: SIGTERM")
            child.signal(SIGTERM)
            loop.after(grace) { [self] _ in
                guard current == generation, process === child else { return }
                log("the server ignored SIGTERM: SIGKILL")
                child.signal(SIGKILL)
            }
        }
        if child.pidfd < 0 { waitForExit(child, current) }
    }
}

func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
