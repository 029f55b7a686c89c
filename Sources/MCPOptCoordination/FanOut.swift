import Glibc
import MCPOptSync

/// When a fan-out operation has succeeded, and when it may stop early.
public enum FanOutPolicy: Sendable, Equatable, CustomStringConvertible {
    /// Every target must succeed; all are run to the end.
    case all
    /// `n` successes are enough: the rest are cancelled once `n` succeeded, and the operation
    /// fails as soon as `n` can no longer be reached.
    case quorum(Int)
    /// The first success ends it (the others are cancelled).
    case firstSuccess

    public var description: String {
        switch self {
        case .all: "all"
        case .quorum(let n): "quorum(\(n))"
        case .firstSuccess: "first"
        }
    }

    /// Successes needed out of `count` targets.
    func needed(of count: Int) -> Int {
        switch self {
        case .all: count
        case .quorum(let n): min(max(n, 1), count)
        case .firstSuccess: min(1, count)
        }
    }
}

/// What one target answered.
public struct FanOutAnswer: Sendable, Equatable {
    public var success: Bool
    /// The target's result (the tool result's JSON), or nil.
    public var result: [UInt8]?
    /// Why it failed, or nil.
    public var error: String?

    public init(success: Bool, result: [UInt8]? = nil, error: String? = nil) {
        self.success = success
        self.result = result
        self.error = error
    }
}

/// One target's outcome in a fan-out.
public struct FanOutEntry: Sendable, Equatable {
    public enum Status: String, Sendable {
        case success, error, timeout
        /// Not run or cancelled: the policy was decided without it.
        case cancelled
    }

    public var target: String
    public var status: Status
    public var result: [UInt8]?
    public var error: String?
    public var latency: Duration
}

/// The result map of a fan-out: one entry per target, in the order they were given.
public struct FanOutResult: Sendable {
    public var policy: FanOutPolicy
    public var success: Bool
    public var entries: [FanOutEntry]
    public var duration: Duration

    /// Number of targets (the seed's `results.size`).
    public var size: Int { entries.count }
    public var succeeded: Int { entries.filter { $0.status == .success }.count }
    public var failed: Int { entries.filter { $0.status == .error || $0.status == .timeout }.count }
    public subscript(target: String) -> FanOutEntry? { entries.first { $0.target == target } }
}

/// Runs one operation against many targets with bounded concurrency and a per-target timeout,
/// and decides success by a policy. Generic over the call so it is testable without servers;
/// the engine passes a tool call pinned to each server.
public enum FanOut {
    public static func run(targets: [String], policy: FanOutPolicy, concurrency: Int, timeout: Duration,
                           call: @escaping @Sendable (String) async -> FanOutAnswer) async -> FanOutResult {
        let started = ContinuousClock.now
        let needed = policy.needed(of: targets.count)
        var entries = targets.map { FanOutEntry(target: $0, status: .cancelled, result: nil, error: nil, latency: .zero) }
        let limit = max(1, concurrency)

        await withTaskGroup(of: (Int, FanOutEntry).self) { group in
            var next = 0
            var successes = 0
            var failures = 0
            func launch() {
                let index = next
                let target = targets[index]
                next += 1
                group.addTask { (index, await runOne(target, timeout: timeout, call: call)) }
            }
            while next < targets.count && next < limit { launch() }
            for await (index, entry) in group {
                entries[index] = entry
                if entry.status == .success { successes += 1 } else { failures += 1 }
                // Decided either way: stop launching, cancel what runs. `all` runs every call
                // to the end, so its result map is complete.
                if policy != .all, successes >= needed || targets.count - failures < needed {
                    group.cancelAll()
                    break
                }
                if next < targets.count { launch() }
            }
            // Cancelled calls still finish (quickly); their results are not counted.
            for await _ in group {}
        }
        let successes = entries.filter { $0.status == .success }.count
        return FanOutResult(policy: policy, success: successes >= needed && needed > 0, entries: entries,
                            duration: ContinuousClock.now - started)
    }

    /// One call raced against its timeout and the fan-out's cancellation. The call runs as its
    /// own task so a call that ignores cancellation cannot hold the fan-out past its timeout
    /// (it is cancelled and left to finish on its own).
    private static func runOne(_ target: String, timeout: Duration,
                               call: @escaping @Sendable (String) async -> FanOutAnswer) async -> FanOutEntry {
        let started = ContinuousClock.now
        let race = Race()
        let outcome = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Race.Outcome, Never>) in
                race.attach(continuation)
                let work = Task { race.finish(.answered(await call(target))) }
                let timer = Task {
                    try? await Task.sleep(for: timeout)
                    race.finish(.timedOut)
                }
                race.onEnd {
                    work.cancel()
                    timer.cancel()
                }
            }
        } onCancel: {
            race.finish(.cancelled)
        }
        let latency = ContinuousClock.now - started
        switch outcome {
        case .cancelled:
            return FanOutEntry(target: target, status: .cancelled, result: nil, error: "cancelled: the policy was decided", latency: latency)
        case .timedOut:
            return FanOutEntry(target: target, status: .timeout, result: nil, error: "no answer within \(timeout)", latency: latency)
        case .answered(let a):
            return FanOutEntry(target: target, status: a.success ? .success : .error, result: a.result, error: a.error, latency: latency)
        }
    }
}

/// The first of a call's answer, its timeout and its cancellation; later ones are dropped.
/// An outcome that comes before the continuation is attached is delivered on attach.
final class Race: @unchecked Sendable {
    enum Outcome: Sendable {
        case answered(FanOutAnswer)
        case timedOut
        case cancelled
    }

    private let lock = Lock()
    private var continuation: CheckedContinuation<Outcome, Never>?   // guarded by lock
    private var outcome: Outcome?                                     // guarded by lock
    private var endActions: [@Sendable () -> Void] = []               // guarded by lock

    func attach(_ c: CheckedContinuation<Outcome, Never>) {
        let ready: Outcome? = lock.withLock {
            if outcome == nil { continuation = c }
            return outcome
        }
        if let ready { c.resume(returning: ready) }
    }

    /// Runs `action` once the race is decided (at once if it already is).
    func onEnd(_ action: @escaping @Sendable () -> Void) {
        let decided = lock.withLock { () -> Bool in
            if outcome == nil { endActions.append(action) }
            return outcome != nil
        }
        if decided { action() }
    }

    func finish(_ value: Outcome) {
        let taken = lock.withLock { () -> (CheckedContinuation<Outcome, Never>?, [@Sendable () -> Void])? in
            guard outcome == nil else { return nil }
            outcome = value
            defer {
                continuation = nil
                endActions = []
            }
            return (continuation, endActions)
        }
        guard let (continuation, actions) = taken else { return }
        continuation?.resume(returning: value)
        for action in actions { action() }
    }
}
