import Foundation
import XCTest
import MCPOptConfig
@testable import MCPOptEngine

/// A busy server's queue: priority first, then tenants in turn, FIFO within a tenant; bounded.
final class ConcurrencyLimiterTests: XCTestCase {
    final class Order: @unchecked Sendable {
        private let lock = NSLock()
        private var names: [String] = []
        func add(_ n: String) { lock.lock(); names.append(n); lock.unlock() }
        var all: [String] { lock.lock(); defer { lock.unlock() }; return names }
    }

    func testWaitersAreServedByPriorityThenTenantsInTurn() async throws {
        let limiter = ConcurrencyLimiter(limit: 1, queueLimit: 7)
        let holding = await limiter.acquire()
        XCTAssertTrue(holding)
        let order = Order()
        var tasks: [Task<Void, Never>] = []
        let arrivals: [(String, String, Priority)] = [("a1", "A", .normal), ("a2", "A", .normal), ("a3", "A", .normal), ("b1", "B", .normal),
                                                      ("low", "C", .low), ("crit", "D", .critical), ("a4", "A", .normal)]
        for (i, (name, tenant, priority)) in arrivals.enumerated() {
            tasks.append(Task {
                if await limiter.acquire(tenant: tenant, priority: priority) {
                    order.add(name)
                    limiter.release()
                }
            })
            // Arrivals in this order: each waits before the next comes (bounded).
            for _ in 0..<1_000 where limiter.waiting < i + 1 { try await Task.sleep(for: .milliseconds(1)) }
            XCTAssertEqual(limiter.waiting, i + 1)
        }
        // Full: the next is refused at once, not queued.
        let refused = await limiter.acquire(tenant: "E", priority: .critical)
        XCTAssertFalse(refused)
        limiter.release()
        for t in tasks { await t.value }
        XCTAssertEqual(order.all, ["crit", "a1", "b1", "a2", "a3", "a4", "low"])
    }
}
