import CMCPOptIO
import Glibc
import MCPOptSync

/// An I/O error: the failing operation and the errno text.
public struct IOError: Error, Equatable, Sendable, CustomStringConvertible {
    public let code: Int32
    public let message: String
    public init(_ code: Int32, _ what: String) {
        self.code = code
        message = "\(what): \(String(cString: strerror(code)))"
    }
    public init(message: String) {
        code = 0
        self.message = message
    }
    public var description: String { message }
}

/// An event-loop thread owning one completion-based reactor: io_uring when the kernel allows
/// it, epoll otherwise (or when `MCPOPT_IO=epoll`). Operations are started on the loop's own
/// thread (`execute` gets there from any other) and their callbacks run there.
public final class EventLoop: @unchecked Sendable {
    public enum Backend: String, Sendable, CaseIterable { case uring, epoll }

    public let backend: Backend
    /// Kernel facilities this loop uses ("fast-poll", "multishot-accept", "multishot-recv",
    /// "buffer-rings", "submit-all", "coop-taskrun", "defer-taskrun"): those found at start, less the multishot
    /// ones when turned off (`MCPOPT_IO_MULTISHOT=0`). Empty on epoll.
    public let features: [String]
    /// Kernel facilities found at start, used or not.
    public let kernelFeatures: [String]
    /// Why io_uring was not used ("" when it was, or epoll was asked for).
    public let fallbackReason: String

    /// The reactor; freed (and nil) when the loop thread ends. Read by other threads only
    /// under `lock` (wake-ups).
    private var loop: OpaquePointer!
    private let lock = Lock()
    // The state below is confined (to the lock, or to the loop thread), so Swift's dynamic
    // exclusivity checks on it could never fire; they cost ~95 instructions an access, and a
    // gateway request made about 30 of them here (callgrind, 2026-11-30).
    @exclusivity(unchecked) private var queue: [Work] = []      // guarded by lock
    /// The loop thread swaps it with `queue`: both keep their capacity, no allocation a turn.
    @exclusivity(unchecked) private var draining: [Work] = []   // loop thread
    @exclusivity(unchecked) private var stopping = false                         // guarded by lock
    private var thread = pthread_t()
    private var loopThread = pthread_t()
    private let started = Semaphore()
    private let finished = Semaphore()

    // Loop-thread state.
    /// By token; a stream's stays until its last completion.
    @exclusivity(unchecked) private var callbacks: [TokenKey: Completion] = [:]
    @exclusivity(unchecked) private var nextToken: UInt64 = 1
    /// Callbacks to run before the loop next waits (work the loop thread queued for itself,
    /// operations that could not be submitted); swapped with `running`, as `queue` is.
    @exclusivity(unchecked) private var deferred: [Work] = []
    @exclusivity(unchecked) private var running: [Work] = []

    /// Starts a loop thread. `backend` nil: io_uring if available (or as MCPOPT_IO says).
    /// `multishot` nil: as MCPOPT_IO_MULTISHOT says (on unless "0"). `receiveBuffers`: the
    /// provided buffers multishot receives land in (default 64 of 16 KiB). `busyPoll`: how long
    /// the loop looks for work before it sleeps (zero, the default: it sleeps at once; at most
    /// `maxBusyPoll`); see `mco_loop_options.busy_poll_ns` and docs/IO.md.
    public init(backend preference: Backend? = nil, name: String = "mcpopt-io", multishot: Bool? = nil,
                receiveBuffers: (count: Int, size: Int)? = nil, busyPoll: Duration = .zero) throws(IOError) {
        var error = [CChar](repeating: 0, count: 256)
        let code: Int32 = switch preference {
        case .uring: Int32(MCO_BACKEND_URING)
        case .epoll: Int32(MCO_BACKEND_EPOLL)
        case nil: Int32(MCO_BACKEND_AUTO)
        }
        guard busyPoll >= .zero, busyPoll <= Self.maxBusyPoll else {
            throw IOError(message: "busy polling of \(busyPoll): between 0 and \(Self.maxBusyPoll)")
        }
        var options = mco_loop_options(entries: 256, multishot: multishot.map { $0 ? 1 : 0 } ?? -1,
                                       buffer_count: UInt32(receiveBuffers?.count ?? 0), buffer_size: UInt32(receiveBuffers?.size ?? 0),
                                       busy_poll_ns: Self.nanoseconds(busyPoll))
        guard let created = mco_loop_new(code, &options, &error, error.count) else {
            throw IOError(message: String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        loop = created
        backend = mco_loop_backend(created) == Int32(MCO_BACKEND_URING) ? .uring : .epoll
        let names = [(MCO_FEATURE_FAST_POLL, "fast-poll"), (MCO_FEATURE_MULTISHOT_ACCEPT, "multishot-accept"),
                     (MCO_FEATURE_MULTISHOT_RECV, "multishot-recv"), (MCO_FEATURE_BUFFER_RINGS, "buffer-rings"),
                     (MCO_FEATURE_SUBMIT_ALL, "submit-all"), (MCO_FEATURE_COOP_TASKRUN, "coop-taskrun"),
                     (MCO_FEATURE_DEFER_TASKRUN, "defer-taskrun")]
        let found = mco_loop_features(created), used = mco_loop_features_in_use(created)
        kernelFeatures = names.filter { found & UInt32($0.0) != 0 }.map(\.1)
        features = names.filter { used & UInt32($0.0) != 0 }.map(\.1)
        fallbackReason = String(cString: mco_loop_fallback_reason(created))
        let box = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            let loop = Unmanaged<EventLoop>.fromOpaque(raw!).takeRetainedValue()
            loop.run()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<EventLoop>.fromOpaque(box).release()
            mco_loop_free(created)
            throw IOError(rc, "pthread_create")
        }
        _ = name
        started.wait()
    }

    deinit { if let loop { mco_loop_free(loop) } }

    /// Whether the caller runs on this loop's thread.
    public var inLoop: Bool { pthread_equal(pthread_self(), loopThread) != 0 }

    /// Whether the caller runs on this loop's thread and the loop still takes work (what
    /// `execute` would run, the caller may run at once).
    public var isRunningHere: Bool { inLoop && !lock.withLock { stopping } }

    /// Runs `work` on the loop thread, soon. Safe from any thread. Returns false (and drops
    /// `work`) once the loop is shutting down.
    @discardableResult
    public func execute(_ work: @escaping @Sendable () -> Void) -> Bool {
        submit(.closure(work))
    }

    private func submit(_ work: Work) -> Bool {
        // From the loop thread itself: runs before the loop next waits, with no wake-up.
        if isRunningHere {
            deferred.append(work)
            return true
        }
        return lock.withLock { () -> Bool in
            guard !stopping, let loop else { return false }
            queue.append(work)
            _ = mco_loop_wake(loop)
            return true
        }
    }

    /// Stops the loop after the work already queued, and waits for its thread to end. Pending
    /// operations are abandoned (their callbacks are not called); close their fds afterwards.
    public func shutdown() {
        let first = lock.withLock { () -> Bool in
            defer { stopping = true }
            if !stopping, let loop { _ = mco_loop_wake(loop) }
            return !stopping
        }
        guard first else { return }
        if !inLoop {
            finished.wait()
            pthread_join(thread, nil)
        } else {
            pthread_detach(thread)
        }
    }

    private func run() {
        // A host may leave SIGPIPE at its default (terminate): on this thread a write to a peer
        // that went away must only fail with EPIPE. Children reset it (spawn.c).
        var pipeSignal = sigset_t()
        sigemptyset(&pipeSignal)
        sigaddset(&pipeSignal, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &pipeSignal, nil)
        loopThread = pthread_self()
        started.signal()
        var completions = [mco_completion](repeating: mco_completion(), count: 64)
        while true {
            let stop = lock.withLock { () -> Bool in
                swap(&queue, &draining)
                return stopping
            }
            for item in draining { run(item) }
            draining.removeAll(keepingCapacity: true)
            while !deferred.isEmpty {
                swap(&deferred, &running)
                for item in running { run(item) }
                running.removeAll(keepingCapacity: true)
            }
            if stop { break }
            let count = completions.withUnsafeMutableBufferPointer { mco_loop_wait(loop, $0.baseAddress, Int32($0.count), -1) }
            if count < 0 { continue }
            for index in 0..<Int(count) {
                let completion = completions[index]
                // A stream keeps its callback until its last completion.
                if completion.flags & UInt32(MCO_COMPLETION_MORE) != 0 {
                    callbacks[TokenKey(completion.token)]?.run(completion)
                } else if let callback = callbacks.removeValue(forKey: TokenKey(completion.token)) {
                    callback.run(completion)
                }
            }
        }
        // The kernel resources go with the thread: the ring (or epoll fd) and the wake-up fd;
        // then the callbacks of what was still pending, and the buffers they own.
        lock.withLock {
            mco_loop_free(loop)
            loop = nil
        }
        callbacks.removeAll()
        deferred.removeAll()
        running.removeAll()
        draining.removeAll()
        finished.signal()
    }

    private func run(_ work: Work) {
        switch work {
        case .closure(let body): body()
        case .job(let job): job.runSynchronously(on: asUnownedTaskExecutor())
        case .callback(let object): object.loopTurn()
        }
    }

    // MARK: Operations (loop thread only)

    private func token(_ callback: @escaping (Int32) -> Void) -> UInt64 {
        streamToken { callback($0.result) }
    }

    private func streamToken(_ callback: @escaping (mco_completion) -> Void) -> UInt64 {
        let token = nextToken
        nextToken &+= 1
        if nextToken >= 1 << 63 { nextToken = 1 }   // the C loop keeps tokens from 2^63 up
        callbacks[TokenKey(token)] = Completion(run: callback)
        return token
    }

    private func submitted(_ rc: Int32, _ token: UInt64, _ what: String) {
        guard rc < 0 else { return }
        // Not submitted: fail it on the next turn (after the caller returns: callbacks never
        // run inside the call that started the operation).
        if let callback = callbacks.removeValue(forKey: TokenKey(token)) {
            let failure = mco_completion(token: token, result: rc, flags: 0, data: nil)
            deferred.append(.closure { callback.run(failure) })
        }
    }

    /// Makes an fd usable by this loop (non-blocking for epoll).
    public func adopt(_ fd: Int32) { _ = mco_loop_adopt(loop, fd) }

    /// Reads up to `maxBytes`: the bytes ([] at end of file), or an error.
    /// Reads what is there (waiting until something is). Returns a token for `cancel`: a read
    /// still waiting must be cancelled before its descriptor is closed, or it may later read
    /// from another connection that reuses the number.
    @discardableResult
    public func read(_ fd: Int32, maxBytes: Int = 65_536, _ done: @escaping (Result<[UInt8], IOError>) -> Void) -> UInt64 {
        // Owned by the callback: freed with it, also when a stopping loop drops it uncalled.
        let buffer = IOBuffer(byteCount: maxBytes)
        let token = token { result in
            if result < 0 { done(.failure(IOError(-result, "read"))) } else {
                done(.success(Array(UnsafeRawBufferPointer(start: buffer.pointer, count: Int(result)))))
            }
        }
        submitted(mco_loop_read(loop, fd, buffer.pointer, UInt32(maxBytes), token), token, "read")
        return token
    }

    /// Calls `object.loopTurn()` on the loop's next turn (loop thread only): after the caller
    /// returns, before the loop next waits, as `execute` from the loop thread, without a
    /// closure to allocate.
    public func callSoon(_ object: LoopCallback) {
        deferred.append(.callback(object))
    }

    /// Writes what the descriptor takes of `bytes` now, without waiting (loop thread only):
    /// the count written, or -errno (-EAGAIN: no room). For an answer written whole, at once,
    /// the usual case, with no operation, callback or copy; what is left goes through `write`.
    public func writeNow(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
        guard !bytes.isEmpty else { return 0 }
        let written = Glibc.write(fd, bytes.baseAddress, bytes.count)
        return written < 0 ? -Int(errno) : written
    }

    /// Writes all of `bytes` (continuing after partial writes). One write at a time per fd:
    /// the next after `done` (the HTTP front, the upstreams and the Redis connection queue
    /// theirs). Two at once could interleave, the second going at once while the rest of the
    /// first waits for room.
    public func write(_ fd: Int32, _ bytes: [UInt8], _ done: @escaping (Result<Void, IOError>) -> Void) {
        // Most writes go at once (the socket or pipe has room; adopted fds do not block): from
        // the caller's bytes, with no copy, no operation and no token. Only what the kernel did
        // not take is copied and waits for room through the reactor. `done` still runs after
        // this returns, as every callback does.
        let written = bytes.withUnsafeBytes { writeNow(fd, $0) }
        if written == bytes.count {
            deferred.append(.closure { done(.success(())) })
            return
        }
        if written < 0 && written != -Int(EAGAIN) && written != -Int(EWOULDBLOCK) {
            let code = Int32(-written)
            deferred.append(.closure { done(.failure(IOError(code, "write"))) })
            return
        }
        let offset = max(written, 0)
        let buffer = IOBuffer(byteCount: bytes.count - offset)
        bytes.withUnsafeBytes { buffer.pointer.copyMemory(from: $0.baseAddress! + offset, byteCount: bytes.count - offset) }
        writeRemaining(fd, buffer, offset: 0, total: bytes.count - offset, done)
    }

    private func writeRemaining(_ fd: Int32, _ buffer: IOBuffer, offset: Int, total: Int,
                                _ done: @escaping (Result<Void, IOError>) -> Void) {
        guard offset < total else {
            done(.success(()))
            return
        }
        let token = token { [unowned self] result in
            if result < 0 {
                done(.failure(IOError(-result, "write")))
            } else {
                writeRemaining(fd, buffer, offset: offset + Int(result), total: total, done)
            }
        }
        submitted(mco_loop_write(loop, fd, buffer.pointer + offset, UInt32(total - offset), token), token, "write")
    }

    /// Accepts a connection: the new fd (close-on-exec).
    public func accept(_ fd: Int32, _ done: @escaping (Result<Int32, IOError>) -> Void) {
        let token = token { result in done(result < 0 ? .failure(IOError(-result, "accept")) : .success(result)) }
        submitted(mco_loop_accept(loop, fd, token), token, "accept")
    }

    /// Accepts connections on a listening socket until an error or `cancel`: `onEach` gets each
    /// new fd (close-on-exec, non-blocking), and once a failure, the last call (ECANCELED
    /// after `cancel`). Multishot accept on io_uring where the kernel has it; otherwise
    /// one-shot accepts the loop repeats (epoll: on readiness).
    @discardableResult
    public func acceptMultishot(_ fd: Int32, _ onEach: @escaping (Result<Int32, IOError>) -> Void) -> UInt64 {
        let token = streamToken { c in onEach(c.result < 0 ? .failure(IOError(-c.result, "accept")) : .success(c.result)) }
        submitted(mco_loop_accept_multishot(loop, fd, token), token, "accept")
        return token
    }

    /// What a receive stream delivers: bytes (valid only during the call: copy what you
    /// keep), and once, its end: nil at end of file, else the error (ECANCELED after `cancel`).
    public enum Received {
        case bytes(UnsafeRawBufferPointer)
        case end(IOError?)
    }

    /// Receives from `fd` until end of file, an error or `cancel` (the token is for that): one
    /// submission for the stream's whole life. On io_uring with multishot recv and buffer
    /// rings the kernel receives into the loop's provided buffers (a socket is needed); else
    /// (pipes, `MCPOPT_IO_MULTISHOT=0`, epoll) the loop reads up to `maxBytes` on readiness.
    /// Cancel before closing `fd`: the stream holds the socket open until it ends.
    @discardableResult
    public func receive(_ fd: Int32, maxBytes: Int = 65_536, _ onEvent: @escaping (Received) -> Void) -> UInt64 {
        let token = streamToken { c in
            if c.result > 0, let data = c.data {
                onEvent(.bytes(UnsafeRawBufferPointer(start: data, count: Int(c.result))))
            } else if c.flags & UInt32(MCO_COMPLETION_MORE) == 0 {
                onEvent(.end(c.result < 0 ? IOError(-c.result, "receive") : nil))
            }
        }
        submitted(mco_loop_recv(loop, fd, UInt32(maxBytes), token), token, "receive")
        return token
    }

    /// What multishot receives did so far (loop thread only): completions from provided
    /// buffers, times the buffer ring ran dry (ENOBUFS), streams submitted again.
    public var receiveStats: (ringCompletions: UInt64, enobufs: UInt64, rearms: UInt64) {
        var stats = mco_loop_stats()
        mco_loop_stats_get(loop, &stats)
        return (stats.ring_completions, stats.enobufs, stats.rearms)
    }

    /// The longest busy poll a loop takes.
    public static let maxBusyPoll = Duration.nanoseconds(Int64(MCO_BUSY_POLL_MAX_NS))

    /// Busy polls so far (loop thread only): those that found work, and those that ran out of
    /// time and slept.
    public var busyPollStats: (found: UInt64, expired: UInt64) {
        var stats = mco_loop_stats()
        mco_loop_stats_get(loop, &stats)
        return (stats.busy_polls_found, stats.busy_polls_expired)
    }

    /// Connects a socket to an IPv4 or IPv6 address (`sockaddr_in` / `sockaddr_in6` bytes).
    public func connect(_ fd: Int32, address: [UInt8], _ done: @escaping (Result<Void, IOError>) -> Void) {
        let storage = IOBuffer(byteCount: address.count)
        address.withUnsafeBytes { storage.pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        let token = token { result in
            withExtendedLifetime(storage) {}
            done(result < 0 ? .failure(IOError(-result, "connect")) : .success(()))
        }
        submitted(mco_loop_connect(loop, fd, storage.pointer.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count), token), token, "connect")
    }

    /// Calls `done` when `fd` becomes readable.
    public func whenReadable(_ fd: Int32, _ done: @escaping (Result<Void, IOError>) -> Void) {
        let token = token { result in done(result < 0 ? .failure(IOError(-result, "poll")) : .success(())) }
        submitted(mco_loop_poll_readable(loop, fd, token), token, "poll")
    }

    /// Calls `done` after `delay` (with false when the timer was cancelled). Returns the timer's
    /// token for `cancel`.
    @discardableResult
    public func after(_ delay: Duration, _ done: @escaping (Bool) -> Void) -> UInt64 {
        let token = token { result in done(result == -ETIME) }
        submitted(mco_loop_timer(loop, Self.nanoseconds(delay), token), token, "timer")
        return token
    }

    /// A duration in whole nanoseconds for the C side (a negative one is zero).
    private static func nanoseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        return UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds) / 1_000_000_000)
    }

    /// Cancels a pending operation or timer (its callback sees ECANCELED / false).
    public func cancel(_ token: UInt64) {
        guard token != 0 else { return }   // never issued (an operation that was not started)
        _ = mco_loop_cancel(loop, token)
    }

    /// Drops every read and write still waiting on `fd` (their callbacks get ECANCELED). Call
    /// it before closing `fd`: a number closed with an operation on it can go to the next file
    /// opened, which the operation would then read from or write to. Streams are cancelled
    /// (`cancel`) and closed once ended, as before.
    public func forget(_ fd: Int32) {
        guard fd >= 0 else { return }
        _ = mco_loop_forget(loop, fd)
    }

    /// Closes `fd` once what still waits on it is forgotten (see `forget`): how a descriptor
    /// this loop served is closed.
    public func closeDescriptor(_ fd: Int32) {
        forget(fd)
        Glibc.close(fd)
    }

    /// Operations in flight (callbacks not yet called).
    public var pendingOperations: Int { callbacks.count }
}

/// A counting semaphore (pthread condition), for start-up and shutdown hand-offs.
final class Semaphore: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    private var count = 0
    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
    }
    deinit {
        pthread_cond_destroy(&condition)
        pthread_mutex_destroy(&mutex)
    }
    func signal() {
        pthread_mutex_lock(&mutex)
        count += 1
        pthread_cond_signal(&condition)
        pthread_mutex_unlock(&mutex)
    }
    func wait() {
        pthread_mutex_lock(&mutex)
        while count == 0 { pthread_cond_wait(&condition, &mutex) }
        count -= 1
        pthread_mutex_unlock(&mutex)
    }
}

/// Tasks may prefer the loop as their executor (`Task(executorPreference: loop)`): their code
/// then runs on the loop thread between I/O completions, and an upstream answer arriving on
/// this loop resumes its caller without a thread hop.
extension EventLoop: TaskExecutor {
    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if !submit(.job(job)) {
            // The loop is stopping: the task still runs to its end, on the global pool.
            globalConcurrentExecutor.enqueue(ExecutorJob(job))
        }
    }
}

/// Work queued for the loop thread: a closure, or a task's job (run on the loop as its
/// executor). A closure kept in an enum keeps its own representation: in an array of bare
/// closures each one was wrapped in a new closure (an allocation per `execute`) to fit the
/// array's generic element, and a job needed a closure of its own.
enum Work: @unchecked Sendable {
    case closure(() -> Void)
    case job(UnownedJob)
    case callback(LoopCallback)
}

/// An object the loop calls on its next turn (`EventLoop.callSoon`): the object is the
/// callback, so nothing is allocated per call.
public protocol LoopCallback: AnyObject {
    func loopTurn()
}

/// An operation's callback, kept in a struct for the same reason as `Work`.
struct Completion {
    let run: (mco_completion) -> Void
}

/// Memory an operation's buffer lives in, owned by the operation's callback: freed when the
/// callback is, whether it ran or a stopping loop dropped it.
final class IOBuffer {
    let pointer: UnsafeMutableRawPointer
    init(byteCount: Int) { pointer = .allocate(byteCount: byteCount, alignment: 16) }
    deinit { pointer.deallocate() }
}
