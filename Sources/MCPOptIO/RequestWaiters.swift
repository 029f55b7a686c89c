import MCPOptUpstream

/// Callers waiting for their answers, each with a time limit (loop thread only). Shared by the
/// stdio and HTTP upstreams: a request gets a token; its answer, its failure or its timer ends it.
final class RequestWaiters {
    /// Unsafe, not Checked: every request of every upstream waits on one, and the checked
    /// kind allocates a canary and checks each resume. Each is resumed exactly once: by its
    /// answer, its failure or its timer (`finish`, `failed`, `timeOut`, `failAll`).
    typealias Continuation = UnsafeContinuation<Result<[UInt8], UpstreamError>, Never>

    private struct Waiter {
        let continuation: Continuation
        var timer: UInt64 = 0
        let timeout: Duration
        var timedOut = false
    }

    // Loop thread only: no dynamic exclusivity checks (three a request).
    private let loop: EventLoop
    @exclusivity(unchecked) private var waiters: [TokenKey: Waiter] = [:]
    @exclusivity(unchecked) private var nextToken: UInt64 = 1
    /// Who hears the notifications on a waiting request's own stream (see
    /// UpstreamRequest.listener): apart, so that requests without one (most) pay nothing.
    @exclusivity(unchecked) private var listeners: [TokenKey: RequestListener] = [:]

    init(loop: EventLoop) { self.loop = loop }

    /// Registers a caller; `onTimeout` runs (with the token) when its time is up while it still
    /// waits. The caller is then answered `.timeout` by `failed` or `timeOut`.
    func add(_ continuation: Continuation, timeout: Duration, listener: RequestListener? = nil,
             onTimeout: @escaping (UInt64) -> Void) -> UInt64 {
        let token = nextToken
        nextToken += 1
        // The timer first, then one insertion (its callback never runs within `after`).
        let timer = loop.after(timeout) { [self] fired in
            guard fired, waiters[TokenKey(token)] != nil else { return }
            waiters[TokenKey(token)]?.timedOut = true
            onTimeout(token)
        }
        waiters[TokenKey(token)] = Waiter(continuation: continuation, timer: timer, timeout: timeout)
        if let listener { listeners[TokenKey(token)] = listener }
        return token
    }

    /// Who hears the notifications on the stream of the request of `token`, while it waits.
    func listener(_ token: UInt64) -> RequestListener? { listeners[TokenKey(token)] }

    /// Answers a caller (once; later answers for the token are dropped).
    func finish(_ token: UInt64, _ result: Result<[UInt8], UpstreamError>) {
        guard let waiter = waiters.removeValue(forKey: TokenKey(token)) else { return }
        if !listeners.isEmpty { listeners[TokenKey(token)] = nil }
        loop.cancel(waiter.timer)
        waiter.continuation.resume(returning: result)
    }

    /// A failure from the session: reported as a timeout when the time limit caused it.
    func failed(_ token: UInt64, _ error: UpstreamError) {
        if let waiter = waiters[TokenKey(token)], waiter.timedOut {
            timeOut(token)
        } else {
            finish(token, .failure(error))
        }
    }

    /// Answers a caller whose time is up.
    func timeOut(_ token: UInt64) {
        guard let waiter = waiters[TokenKey(token)] else { return }
        finish(token, .failure(UpstreamError(.timeout, "no answer within \(waiter.timeout)")))
    }

    /// Fails every waiting caller.
    func failAll(_ error: UpstreamError) {
        for key in Array(waiters.keys) { finish(key.raw, .failure(error)) }
    }
}

/// Runs `body` on `loop` with a continuation and waits for it; if the loop no longer takes
/// work, the answer is `.closed`.
func onLoop(_ loop: EventLoop, _ body: @escaping @Sendable (RequestWaiters.Continuation) -> Void) async -> Result<[UInt8], UpstreamError> {
    await withUnsafeContinuation { continuation in
        // A task that runs on the loop (its preferred executor) starts the request here: no
        // work item to queue and run a moment later.
        if loop.isRunningHere {
            body(continuation)
        } else if !loop.execute({ body(continuation) }) {
            continuation.resume(returning: .failure(UpstreamError(.closed, "the event loop is shut down")))
        }
    }
}

/// Carries a request's token to a cancellation that may come before the request is sent
/// (loop thread only).
final class CancelBox: @unchecked Sendable {
    var token: UInt64?
    var cancelled = false
}

/// Waits for `enqueue`'s answer; with `cancellable`, cancelling the caller's task cancels the
/// request (`cancel` runs on the loop with the box).
func cancellableRequest(_ loop: EventLoop, cancellable: Bool, enqueue: @escaping @Sendable (CancelBox?, RequestWaiters.Continuation) -> Void,
                        cancel: @escaping @Sendable (CancelBox) -> Void) async -> Result<[UInt8], UpstreamError> {
    guard cancellable else { return await onLoop(loop) { enqueue(nil, $0) } }
    let box = CancelBox()
    return await withTaskCancellationHandler {
        await onLoop(loop) { enqueue(box, $0) }
    } onCancel: {
        _ = loop.execute { cancel(box) }
    }
}
