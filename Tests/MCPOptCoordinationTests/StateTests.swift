import Dispatch
import XCTest
import MCPOptSync
@testable import MCPOptCoordination

final class ClockTests: XCTestCase {
    func testStampsIncreaseEvenWhenTheWallClockStandsStillOrGoesBack() {
        let times = TimeSource([100, 100, 90, 200])
        let clock = HybridLogicalClock(node: "a", now: { times.next() })
        let stamps = (0..<4).map { _ in clock.tick() }
        XCTAssertEqual(stamps.map(\.description), ["100.0@a", "100.1@a", "100.2@a", "200.0@a"])
        XCTAssertEqual(stamps, stamps.sorted())
    }

    func testObservingARemoteStampOrdersLaterLocalStampsAfterIt() {
        let clock = HybridLogicalClock(node: "a", now: { 50 })
        let remote = HLCTimestamp(wallMilliseconds: 1000, logical: 7, node: "b")
        clock.observe(remote)
        XCTAssertGreaterThan(clock.tick(), remote)
        XCTAssertEqual(HLCTimestamp("1000.7@b"), remote)
        XCTAssertNil(HLCTimestamp("garbage"))
    }
}

final class StateStoreTests: XCTestCase {
    func testConcurrentWritesOnTwoInstancesConvergeUnderLastWriterWins() {
        let a = StateStore(clock: HybridLogicalClock(node: "a"))
        let b = StateStore(clock: HybridLogicalClock(node: "b"))
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            for n in 0..<200 {
                (i == 0 ? a : b).put("k\(n % 10)", Array("\(i)-\(n)".utf8))
            }
        }
        // Exchange everything both ways (in any order): both end with the same values.
        for (key, version) in a.snapshot() { b.apply(key, version) }
        for (key, version) in b.snapshot() { a.apply(key, version) }
        XCTAssertEqual(a.snapshot(), b.snapshot())
        XCTAssertEqual(a.snapshot().count, 10)
    }

    func testDeleteWinsOverAnOlderWriteArrivingLate() {
        let a = StateStore(clock: HybridLogicalClock(node: "a"))
        let old = a.put("k", [1])
        a.delete("k")
        a.apply("k", old)
        XCTAssertNil(a.get("k"))
    }

    func testMergeCallbackIsDeterministic() {
        let union: ConflictResolution = .merge { _, older, newer in Array(Set(older.value + newer.value)).sorted() }
        let a = StateStore(clock: HybridLogicalClock(node: "a"), resolution: union)
        let b = StateStore(clock: HybridLogicalClock(node: "b"), resolution: union)
        let va = a.put("set", [1, 2])
        let vb = b.put("set", [2, 3])
        a.apply("set", vb)
        b.apply("set", va)
        XCTAssertEqual(a.get("set")?.value, [1, 2, 3])
        XCTAssertEqual(b.get("set")?.value, [1, 2, 3])
        // Each merge is a new write of its instance; once exchanged, both settle on one version
        // (merging it again changes nothing).
        let ma = a.get("set")!, mb = b.get("set")!
        XCTAssertGreaterThan(ma.stamp, max(va.stamp, vb.stamp))
        a.apply("set", mb)
        b.apply("set", ma)
        XCTAssertEqual(a.get("set"), b.get("set"))
        XCTAssertEqual(a.get("set")?.value, [1, 2, 3])
    }

    func testWatchersSeeChangesUnderTheirPrefix() {
        let store = StateStore(clock: HybridLogicalClock(node: "a"))
        let seen = Seen()
        let id = store.watch(prefix: "cfg/") { key, _ in seen.add(key) }
        store.put("cfg/x", [1])
        store.put("other", [1])
        store.unwatch(id)
        store.put("cfg/y", [1])
        XCTAssertEqual(seen.keys, ["cfg/x"])
    }
}

final class TimeSource: @unchecked Sendable {
    private let lock = Lock()
    private var values: [Int64]
    init(_ values: [Int64]) { self.values = values }
    func next() -> Int64 { lock.withLock { values.isEmpty ? 0 : values.removeFirst() } }
}

final class Seen: @unchecked Sendable {
    private let lock = Lock()
    private var list: [String] = []
    func add(_ k: String) { lock.withLock { list.append(k) } }
    var keys: [String] { lock.withLock { list } }
}
