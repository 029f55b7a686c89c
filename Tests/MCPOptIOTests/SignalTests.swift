import Foundation
import Dispatch
import Glibc
import XCTest
@testable import MCPOptIO

/// A write to a peer that went away fails with EPIPE on the loop thread; it does not raise
/// SIGPIPE, whose default action would end the host process (a C host that never ignored it).
final class SignalTests: XCTestCase {
    func testWriteToAClosedPipeIsEPIPENotASignal() throws {
        // This process keeps SIGPIPE's default action for the test (terminate): were the loop
        // thread not to block it, the write below would end the test run.
        let previous = signal(SIGPIPE, SIG_DFL)
        defer { signal(SIGPIPE, previous) }
        let loop = try EventLoop()
        defer { loop.shutdown() }
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        close(fds[0])   // the reader is gone
        let result = LockedBox()
        let done = DispatchSemaphore(value: 0)
        let writeEnd = fds[1]
        XCTAssertTrue(loop.execute {
            let byte: UInt8 = 1
            let n = withUnsafePointer(to: byte) { write(writeEnd, $0, 1) }
            result.set(n, errno)
            done.signal()
        })
        XCTAssertEqual(done.wait(timeout: .now() + 5), .success)
        close(fds[1])
        XCTAssertEqual(result.value?.0, -1)
        XCTAssertEqual(result.value?.1, EPIPE)
    }
}

final class LockedBox: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: (Int, Int32)?
    func set(_ n: Int, _ e: Int32) { lock.lock(); stored = (n, e); lock.unlock() }
    var value: (Int, Int32)? { lock.lock(); defer { lock.unlock() }; return stored }
}
