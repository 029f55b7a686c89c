import MCPOptIO
import MCPOptSync
import MCPOptUpstream

/// Low-priority requests to one server (refresh-ahead of hot entries, agents configured
/// `priority: "low"`) are sent together: a batch fills up to `maxSize` requests or for
/// `window` after its first, then goes to the upstream at once (over stdio: one hop to the
/// I/O loop and one write for all its lines). Fewer wake-ups and syscalls for work nobody
/// waits on, and the higher priorities are never held back by it (they do not batch).
final class RequestBatcher: @unchecked Sendable {
    typealias Outcome = Result<[UInt8], UpstreamError>

    let maxSize: Int
    let window: Duration
    private let upstream: any MCPUpstream
    private let lock = Lock()
    private var open: [Item] = []   // guarded by lock
    /// Bumped per batch sent: a timer only flushes the batch it was set for.
    private var generation = 0                                                                         // guarded by lock
    private let sentBatches: AtomicCounter
    private let sentRequests: AtomicCounter

    /// `batches` and `requests` count what is sent (the engine's metrics).
    init(upstream: any MCPUpstream, maxSize: Int, window: Duration, batches: AtomicCounter = AtomicCounter(), requests: AtomicCounter = AtomicCounter()) {
        self.upstream = upstream
        self.maxSize = max(1, maxSize)
        self.window = window
        sentBatches = batches
        sentRequests = requests
    }

    /// Batches sent so far, and the requests in them.
    var batches: (count: UInt64, requests: UInt64) { (sentBatches.load(), sentRequests.load()) }

    private typealias Item = (request: UpstreamRequest, timeout: Duration, continuation: CheckedContinuation<Outcome, Never>)

    /// Joins the open batch and returns this request's response once the batch is answered.
    func submit(_ request: UpstreamRequest, timeout: Duration) async -> Outcome {
        await withCheckedContinuation { (continuation: CheckedContinuation<Outcome, Never>) in
            // A full batch is taken under the same lock that filled it: another request cannot
            // join it between the two (batches of maxSize + 1 were seen under ThreadSanitizer).
            let (full, startTimer, batch) = lock.withLock { () -> ([Item], Bool, Int) in
                open.append((request, timeout, continuation))
                if open.count >= maxSize { return (takeOpen(), false, generation) }
                return ([], open.count == 1, generation)
            }
            if !full.isEmpty {
                send(full)
            } else if startTimer {
                let window = window
                Task { [weak self] in
                    try? await Task.sleep(for: window)
                    self?.flush(batch)
                }
            }
        }
    }

    /// Sends batch `batch` if it is still the open one (its window ended).
    private func flush(_ batch: Int) {
        let taken = lock.withLock { batch == generation ? takeOpen() : [] }
        if !taken.isEmpty { send(taken) }
    }

    /// The open batch, closed (the next request starts another). Under the lock.
    private func takeOpen() -> [Item] {
        generation += 1
        defer { open.removeAll(keepingCapacity: true) }
        return open
    }

    private func send(_ taken: [Item]) {
        sentBatches.add()
        sentRequests.add(UInt64(taken.count))
        let upstream = upstream
        Task {
            let results = await upstream.requestBatch(taken.map(\.request), timeout: taken.map(\.timeout).max() ?? .seconds(30))
            for (item, result) in zip(taken, results) { item.continuation.resume(returning: result) }
        }
    }
}
