import Dispatch
import XCTest
import MCPOptSync
@testable import MCPOptEngine

final class CoalescerTests: XCTestCase {
    struct Boom: Error {}

    func testFollowersGetTheLeadersResult() {
        let c = Coalescer<String, Int>()
        let got = Box()
        guard case .leader = c.join("k", waiter: { got.add($0) }) else { return XCTFail() }
        guard case .follower = c.join("k", waiter: { got.add($0) }) else { return XCTFail() }
        guard case .leader = c.join("other", waiter: { got.add($0) }) else { return XCTFail() }
        c.complete("k", .success(7))
        XCTAssertEqual(got.values, [7, 7])
        c.complete("other", .failure(Boom()))
        XCTAssertEqual(got.failures, 1)
        XCTAssertEqual(c.stats.inFlight, 0)
        XCTAssertEqual(c.stats.merged, 1)
        guard case .leader = c.join("k", waiter: { _ in }) else { return XCTFail("a finished key starts afresh") }
    }

    func testOnlyFollowersMakeWaiters() {
        let c = Coalescer<String, Int>()
        let got = Box()
        var made = 0
        guard case .leader(let a) = c.join("k", follower: { made += 1; return { got.add($0) } }) else { return XCTFail() }
        XCTAssertEqual(made, 0, "the leader has its own result")
        guard case .follower(let b) = c.join("k", follower: { made += 1; return { got.add($0) } }) else { return XCTFail() }
        XCTAssertEqual(made, 1)
        XCTAssertNotEqual(a, b)
        c.complete("k", .success(3))
        XCTAssertEqual(got.values, [3], "delivered to the follower")
        XCTAssertEqual(c.stats.merged, 1)
        guard case .leader(let first) = c.join("j", follower: { { _ in } }), case .follower(let second) = c.join("j", waiter: { got.add($0) }) else { return XCTFail() }
        XCTAssertFalse(c.leave("j", first), "the leader counts as a waiter")
        XCTAssertTrue(c.leave("j", second))
    }

    func testHashedKeysAreTheirBytes() {
        let a = HashedKey(Array("tools/call\u{0}{\"x\":1}".utf8)), same = HashedKey(Array("tools/call\u{0}{\"x\":1}".utf8))
        let other = HashedKey(Array("tools/call\u{0}{\"x\":2}".utf8))
        XCTAssertEqual(a, same)
        XCTAssertEqual(a.hashValue, same.hashValue)
        XCTAssertNotEqual(a, other)
        XCTAssertEqual(Set([a, same, other, HashedKey([])]).count, 3)
    }

    func testWorkIsAbandonedOnlyWhenEveryWaiterLeaves() {
        let c = Coalescer<String, Int>()
        let got = Box()
        guard case .leader(let a) = c.join("k", waiter: { got.add($0) }), case .follower(let b) = c.join("k", waiter: { got.add($0) }) else { return XCTFail() }
        XCTAssertFalse(c.leave("k", a), "one waiter is still there")
        XCTAssertTrue(c.leave("k", b))
        c.complete("k", .success(1))
        XCTAssertEqual(got.values, [], "nobody is left to answer")
    }

    /// A thundering herd: 1,000 identical requests from several threads, one piece of work.
    func testConcurrentHerdRunsTheWorkOnce() {
        let c = Coalescer<Int, Int>()
        let work = Box()
        let answers = Box()
        let leaders = Box()
        let start = DispatchSemaphore(value: 0)
        let group = DispatchGroup()
        // The leader completes only after every request has joined.
        DispatchQueue.concurrentPerform(iterations: 1000) { i in
            group.enter()
            if case .leader = c.join(42, waiter: { answers.add($0); group.leave() }) {
                leaders.add(.success(i))
                DispatchQueue.global().async {
                    start.wait()
                    work.add(.success(1))
                    c.complete(42, .success(99))
                }
            }
        }
        start.signal()
        XCTAssertEqual(group.wait(timeout: .now() + 30), .success)
        XCTAssertEqual(leaders.values.count, 1)
        XCTAssertEqual(work.values.count, 1)
        XCTAssertEqual(answers.values, Array(repeating: 99, count: 1000))
        XCTAssertEqual(c.stats.merged, 999)
    }
}

/// Thread-safe collector for test callbacks.
final class Box: @unchecked Sendable {
    private let lock = Lock()
    private var results: [Result<Int, any Error>] = []
    func add(_ r: Result<Int, any Error>) { lock.withLock { results.append(r) } }
    var values: [Int] { lock.withLock { results.compactMap { try? $0.get() } } }
    var failures: Int { lock.withLock { results.filter { if case .failure = $0 { true } else { false } }.count } }
}
