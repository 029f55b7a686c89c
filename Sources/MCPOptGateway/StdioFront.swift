import Glibc
import MCPOptJSON
import MCPOptProtocol
import MCPOptSync

/// The gateway over stdio, for desktop MCP clients that start their servers as processes: one
/// JSON-RPC message per line on stdin, answers on stdout (nothing else is written there: logs
/// go to stderr). Requests are served concurrently; answers are written whole, one per line,
/// as each is ready. Returns when stdin ends and every request in flight is answered.
public final class StdioFront<Service: MCPService>: @unchecked Sendable {
    public let service: Service
    /// Longest line accepted; a longer one is answered with an error and skipped.
    public var maxLineBytes = 16 << 20
    private let input: Int32
    private let output: Int32
    private let writeLock = Lock()
    private let inFlight = AtomicCounter()
    private let tasksLock = Lock()
    private var tasks: [String: (task: Task<Void, Never>, cancelled: Bool)] = [:]   // guarded by tasksLock
    /// Servers' requests to the client and the answers coming back.
    private let asker = ClientAsker()
    /// The repeat lane (docs/GATEWAY.md): a line that repeats a request the service answered
    /// from its cache, but for its id, is answered without the full path. nil: off. Only the
    /// reading thread uses it.
    private let repeats: RepeatMemo?
    private let repeatsAnsweredCount = AtomicCounter()
    /// Requests the repeat lane answered.
    public var repeatsAnswered: UInt64 { repeatsAnsweredCount.load() }

    /// `repeats`: the repeat lane's bounds; nil turns the lane off.
    public init(service: Service, input: Int32 = 0, output: Int32 = 1, repeats: RepeatMemo.Limits? = RepeatMemo.Limits()) {
        self.service = service
        self.input = input
        self.output = output
        self.repeats = repeats.map { RepeatMemo(limits: $0) }
    }

    /// Reads on a thread of its own (a blocking read must not hold one of the few threads
    /// async work runs on) and serves each line in a task.
    public func run() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let body = Unmanaged.passRetained(ThreadBody { [self] in
                readLoop()
                done.resume()
            })
            var thread = pthread_t()
            let rc = pthread_create(&thread, nil, { raw in
                Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue().run()
                return nil
            }, body.toOpaque())
            if rc != 0 {
                body.release()
                done.resume()
            } else {
                pthread_detach(thread)
            }
        }
        // Stdin ended: listen streams close; answer what is still in flight (bounded: each
        // request has its timeout).
        service.closeStreams()
        while inFlight.load() > 0 { try? await Task.sleep(for: .milliseconds(5)) }
    }

    private func readLoop() {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        var skipping = false
        while true {
            let n = chunk.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { break }
            var start = 0
            for i in 0..<n where chunk[i] == UInt8(ascii: "\n") {
                if !skipping { buffer.append(contentsOf: chunk[start..<i]) }
                if !skipping { dispatch(buffer) }
                skipping = false
                buffer.removeAll(keepingCapacity: true)
                start = i + 1
            }
            if !skipping { buffer.append(contentsOf: chunk[start..<n]) }
            if buffer.count > maxLineBytes {
                skipping = true
                buffer.removeAll()
                send(Array(#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"message longer than \#(maxLineBytes) bytes"}}"#.utf8))
            }
        }
        if !buffer.isEmpty, !skipping { dispatch(buffer) }
    }

    private func dispatch(_ line: [UInt8]) {
        // Blank lines (and a trailing CR) are not messages.
        var line = line
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        guard line.contains(where: { $0 != 0x20 && $0 != 0x09 }) else { return }
        // The client's answer to a server's request (sampling, elicitation, roots).
        if asker.answer(line) { return }
        if let repeats, answerRepeat(line, repeats) { return }
        // Progress about a request goes to stdout between the answers, as a line of its own;
        // so do servers' requests to the client.
        let caller = ServiceCaller(notify: { [weak self] message in self?.send(message) },
                                   ask: { [weak self] request in
                                       guard let self else { return nil }
                                       return await self.asker.ask(request) { [weak self] message in self?.send(message) }
                                   })
        var repeatable: (any RepeatableAnswer)?
        let immediate = repeats != nil ? service.handleImmediately(line, caller: caller, repeatable: &repeatable) : service.handleImmediately(line, caller: caller)
        switch immediate {
        case .answered(let answer):
            if let repeats, let repeatable { remember(line, repeatable, in: repeats) }
            if let answer {
                send(answer)
            } else if ByteSearch.contains(line, cancelledWord) {
                cancel(line)
            }
        case .pending(let pending):
            inFlight.add()
            let key = Self.requestKey(line)
            // Registered before the task can finish (it takes the same lock to unregister).
            tasksLock.withLock {
                let task = Task { [self] in
                    let answer = await service.complete(pending)
                    let cancelled = key.map { k in tasksLock.withLock { tasks.removeValue(forKey: k)?.cancelled ?? false } } ?? false
                    // A cancelled request gets no answer (the client has moved on).
                    if !cancelled { send(answer) }
                    inFlight.subtract()
                }
                if let key { tasks[key] = (task, false) }
            }
        }
    }

    /// Answers `line` if it repeats a request the lane keeps (the same bytes but for a plain id).
    /// Over stdio nothing but the line decides how it is handled: one client, no headers, no
    /// sessions to end; what the service's answer depends on besides, the answer checks.
    private func answerRepeat(_ line: [UInt8], _ repeats: RepeatMemo) -> Bool {
        guard let out = line.withUnsafeBytes({ raw -> [UInt8]? in
            guard let (entry, id) = repeats.find(raw, bodyStart: 0, epoch: 0) else { return nil }
            var out: [UInt8] = []
            let answered = unsafeDowncast(entry.value, to: RepeatEntry.self).answer.answer(id: id, into: &out) { length, out in
                out.reserveCapacity(length + 1)   // and the newline
            }
            guard answered else { return nil }
            out.append(UInt8(ascii: "\n"))
            return out
        }) else { return false }
        repeatsAnsweredCount.add()
        writeAll(out)
        return true
    }

    /// Keeps what answers repeats of `line`, with its id token where the decoder finds it.
    private func remember(_ line: [UInt8], _ answer: any RepeatableAnswer, in repeats: RepeatMemo) {
        line.withUnsafeBytes { raw in
            let id = MessageDecoder.withPooled { decoder -> Range<Int>? in
                guard let view = try? decoder.decode(raw) else { return nil }
                return view.offset(of: view.idRaw).map { $0..<($0 + view.idRaw.count) }
            }
            guard let id else { return }
            repeats.remember(raw, bodyStart: 0, id: id, value: RepeatEntry(answer), footprint: answer.footprint, epoch: 0)
        }
    }

    /// `notifications/cancelled`: the request it names stops (its server is told, where that
    /// is safe: see Engine) and is not answered.
    private func cancel(_ line: [UInt8]) {
        guard case .object(let o)? = try? JSONParser.parse(line), o["method"]?.stringValue == "notifications/cancelled",
              let id = o["params"]?["requestId"] else { return }
        tasksLock.withLock {
            guard var entry = tasks[id.jsonString] else { return }
            entry.cancelled = true
            tasks[id.jsonString] = entry
            entry.task.cancel()
        }
    }

    /// A request's id as canonical JSON text (the key cancellations name it by).
    static func requestKey(_ line: [UInt8]) -> String? {
        line.withUnsafeBytes { bytes in
            MessageDecoder.withPooled { decoder in
                guard let view = try? decoder.decode(bytes), view.idRaw.isPresent, let id = try? JSONParser.parse(view.idRaw.buffer) else { return nil }
                return id.jsonString
            }
        }
    }

    /// Writes a notification to the client (a line of its own between the answers).
    public func notify(_ message: [UInt8]) { send(message) }

    private func send(_ message: [UInt8]) {
        var bytes = message
        bytes.append(UInt8(ascii: "\n"))
        writeAll(bytes)
    }

    /// Writes whole lines (a line never interleaves with another).
    private func writeAll(_ bytes: [UInt8]) {
        writeLock.withLock {
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeBytes { write(output, $0.baseAddress! + offset, $0.count - offset) }
                if n < 0, errno == EINTR { continue }
                if n <= 0 { return }
                offset += n
            }
        }
    }
}

/// What a thread started with pthread_create runs (a C function pointer cannot capture).
final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

private let cancelledWord = ByteSearch.Needle("notifications/cancelled")
