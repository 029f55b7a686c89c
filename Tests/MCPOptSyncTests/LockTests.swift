import Dispatch
import Foundation
import XCTest
import MCPOptSync

/// The futex mutex behind `Lock`: mutual exclusion under contention (a plain counter guarded
/// by it loses no increment), sleeping waiters woken (a holder that keeps it while others wait),
/// and, run under ThreadSanitizer (the name says "Concurrent"), accesses it orders are not races.
final class LockTests: XCTestCase {
    final class Counter: @unchecked Sendable {
        let lock = Lock()
        var value = 0   // guarded by lock
    }

    func testConcurrentIncrementsAreAllCountedAndWaitersWake() {
        let counter = Counter()
        let threads = 4, rounds = 100_000
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            DispatchQueue.concurrentPerform(iterations: threads) { _ in
                for _ in 0..<rounds { counter.lock.withLock { counter.value += 1 } }
            }
            done.signal()
        }
        // Bounded: a lost wake-up would leave a waiter asleep for good.
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success, "a waiter was never woken")
        XCTAssertEqual(counter.lock.withLock { counter.value }, threads * rounds)

        // A holder that keeps the lock while others queue up: they sleep (past the spin) and
        // each is woken when it is given back.
        let held = DispatchSemaphore(value: 0), finished = DispatchSemaphore(value: 0)
        let holder = Thread {
            counter.lock.withLock {
                held.signal()
                usleep(50_000)
                counter.value = -1
            }
        }
        holder.start()
        held.wait()
        for _ in 0..<3 {
            Thread {
                counter.lock.withLock { counter.value -= 1 }
                finished.signal()
            }.start()
        }
        for _ in 0..<3 { XCTAssertEqual(finished.wait(timeout: .now() + 10), .success, "a sleeping waiter was never woken") }
        XCTAssertEqual(counter.lock.withLock { counter.value }, -4, "the waiters ran after the holder, one at a time")
    }

    func testThrowingBodyGivesTheLockBack() {
        struct Refused: Error {}
        let lock = Lock()
        XCTAssertThrowsError(try lock.withLock { () throws(Refused) -> Int in throw Refused() })
        XCTAssertEqual(lock.withLock { 7 }, 7, "taken again after a throw")
    }
}
