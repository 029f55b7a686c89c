import XCTest
import MCPOptSync
@testable import MCPOptCoordination

final class FanOutTests: XCTestCase {
    /// Records how many calls ran at once.
    final class Gauge: @unchecked Sendable {
        private let lock = Lock()
        private var now = 0
        private(set) var peak = 0
        private(set) var started: [String] = []
        func enter(_ target: String) { lock.withLock { now += 1; peak = max(peak, now); started.append(target) } }
        func leave() { lock.withLock { now -= 1 } }
    }

    func testConcurrentCallsAllSucceedWithinTheBound() async {
        let gauge = Gauge()
        let targets = (0..<100).map { "s\($0)" }
        let result = await FanOut.run(targets: targets, policy: .all, concurrency: 8, timeout: .seconds(10)) { target in
            gauge.enter(target)
            try? await Task.sleep(for: .milliseconds(2))
            gauge.leave()
            return FanOutAnswer(success: true, result: Array(target.utf8))
        }
        XCTAssertTrue(result.success)
        XCTAssertEqual(result.size, 100)
        XCTAssertEqual(result.succeeded, 100)
        XCTAssertEqual(result.entries.map(\.target), targets, "results keep the order of the targets")
        XCTAssertEqual(result["s42"]?.result, Array("s42".utf8))
        XCTAssertLessThanOrEqual(gauge.peak, 8)
        XCTAssertGreaterThan(gauge.peak, 1)
    }

    func testAllFailsWhenOneFailsAndReportsWhy() async {
        let result = await FanOut.run(targets: ["a", "b", "c"], policy: .all, concurrency: 3, timeout: .seconds(10)) { target in
            if target == "b" { return FanOutAnswer(success: false, error: "b is broken") }
            try? await Task.sleep(for: .milliseconds(50))   // slower than b's failure
            return FanOutAnswer(success: true)
        }
        XCTAssertEqual(result["a"]?.status, .success, "all runs every call to the end, even after a failure")
        XCTAssertEqual(result["c"]?.status, .success)
        XCTAssertFalse(result.success)
        XCTAssertEqual(result["b"]?.status, .error)
        XCTAssertEqual(result["b"]?.error, "b is broken")
        XCTAssertEqual(result.failed, 1)
    }

    func testConcurrentQuorumStopsOnceReachedAndFailsOnceUnreachable() async {
        // Two fast successes reach a quorum of 2: the slow third is cancelled, not awaited.
        let clock = ContinuousClock()
        let started = clock.now
        let reached = await FanOut.run(targets: ["fast1", "fast2", "slow"], policy: .quorum(2), concurrency: 3, timeout: .seconds(30)) { target in
            if target == "slow" { try? await Task.sleep(for: .seconds(20)) }
            return FanOutAnswer(success: true)
        }
        XCTAssertTrue(reached.success)
        XCTAssertEqual(reached["slow"]?.status, .cancelled)
        XCTAssertLessThan(clock.now - started, .seconds(15), "the slow call was not waited for")

        let unreachable = await FanOut.run(targets: ["a", "b", "c"], policy: .quorum(2), concurrency: 1, timeout: .seconds(10)) { target in
            FanOutAnswer(success: target == "c", error: target == "c" ? nil : "down")
        }
        XCTAssertFalse(unreachable.success)
        XCTAssertEqual(unreachable["c"]?.status, .cancelled, "after a and b failed a quorum of 2 was out of reach: c never ran")
    }

    func testFirstSuccessWins() async {
        let result = await FanOut.run(targets: ["down", "up", "late"], policy: .firstSuccess, concurrency: 3, timeout: .seconds(30)) { target in
            switch target {
            case "down": return FanOutAnswer(success: false, error: "down")
            case "late":
                try? await Task.sleep(for: .seconds(20))
                return FanOutAnswer(success: true)
            default:
                try? await Task.sleep(for: .milliseconds(5))
                return FanOutAnswer(success: true)
            }
        }
        XCTAssertTrue(result.success)
        XCTAssertEqual(result.succeeded, 1)
        XCTAssertEqual(result["up"]?.status, .success)
        XCTAssertEqual(result["late"]?.status, .cancelled)
    }

    func testTimeoutEvenWhenTheCallIgnoresCancellation() async {
        let result = await FanOut.run(targets: ["stuck", "ok"], policy: .all, concurrency: 2, timeout: .milliseconds(100)) { target in
            if target == "stuck" {
                // Ignores cancellation: a blocking wait of 2 s.
                let until = ContinuousClock.now + .seconds(2)
                while ContinuousClock.now < until { usleep(10_000) }
            }
            return FanOutAnswer(success: true)
        }
        XCTAssertFalse(result.success)
        XCTAssertEqual(result["stuck"]?.status, .timeout)
        XCTAssertLessThan(result.duration, .seconds(1.5), "the fan-out returned at its timeout, not when the call gave up")
        XCTAssertEqual(result["ok"]?.status, .success)
    }

    func testEmptyTargets() async {
        let result = await FanOut.run(targets: [], policy: .all, concurrency: 4, timeout: .seconds(1)) { _ in FanOutAnswer(success: true) }
        XCTAssertFalse(result.success, "nothing ran: nothing succeeded")
        XCTAssertEqual(result.size, 0)
    }
}
