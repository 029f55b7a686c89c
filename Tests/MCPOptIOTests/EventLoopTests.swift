import Dispatch
import Foundation
import Glibc
import XCTest
@testable import MCPOptIO

/// The reactor on both backends: pipes, sockets, timers, cross-thread work, shutdown.
final class EventLoopTests: XCTestCase {
    private func openDescriptors() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
    }

    private func onEachBackend(busyPoll: Duration = .zero, _ body: (EventLoop) throws -> Void) throws {
        for backend in EventLoop.Backend.allCases {
            let loop = try EventLoop(backend: backend, busyPoll: busyPoll)
            XCTAssertEqual(loop.backend, backend)
            defer { loop.shutdown() }
            try body(loop)
        }
    }

    /// Runs `body` on the loop and waits (bounded) until it calls `finish`.
    private func onLoop(_ loop: EventLoop, timeout: TimeInterval = 5, _ body: @escaping @Sendable (EventLoop, @escaping @Sendable () -> Void) -> Void) {
        let done = DispatchSemaphore(value: 0)
        loop.execute { body(loop) { done.signal() } }
        XCTAssertEqual(done.wait(timeout: .now() + timeout), .success, "timed out on \(loop.backend)")
    }

    /// Reads `fd` into `received` until end of file (or an error), then calls `then`.
    private static func readAll(_ loop: EventLoop, _ fd: Int32, maxBytes: Int, into received: Box<[UInt8]>, then: @escaping @Sendable () -> Void) {
        loop.read(fd, maxBytes: maxBytes) { result in
            guard case .success(let bytes) = result, !bytes.isEmpty else { return then() }
            received.value += bytes
            readAll(loop, fd, maxBytes: maxBytes, into: received, then: then)
        }
    }

    func testPipesReadAndWrite() throws {
        try onEachBackend { loop in
            var fds: [Int32] = [0, 0]
            XCTAssertEqual(pipe(&fds), 0)
            let (reader, writer) = (fds[0], fds[1])
            let received = Box<[UInt8]>([])
            onLoop(loop) { loop, finish in
                loop.adopt(reader)
                loop.adopt(writer)
                loop.write(writer, Array("hello, loop".utf8)) { result in
                    if case .failure(let error) = result { XCTFail("\(error)") }
                    close(writer)
                }
                Self.readAll(loop, reader, maxBytes: 4, into: received, then: finish)
            }
            close(reader)
            XCTAssertEqual(String(decoding: received.value, as: UTF8.self), "hello, loop", "\(loop.backend)")
        }
    }

    /// A write the pipe cannot take at once (over its 64 KiB) goes partly at once and finishes
    /// through the reactor; the next write, made when it is done, follows it: the reader gets
    /// every byte in order, and each write's callback runs once, in order.
    func testAWriteLargerThanThePipeFinishesAndTheNextFollowsIt() throws {
        try onEachBackend { loop in
            var fds: [Int32] = [0, 0]
            XCTAssertEqual(pipe(&fds), 0)
            let (reader, writer) = (fds[0], fds[1])
            let big = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 % 251) }
            let parts = [big, Array("first".utf8), big, Array("second".utf8)]
            let received = Box<[UInt8]>([])
            let finished = Box<[Int]>([])
            onLoop(loop, timeout: 20) { loop, finish in
                loop.adopt(reader)
                loop.adopt(writer)
                func write(_ index: Int) {
                    guard index < parts.count else {
                        close(writer)
                        return
                    }
                    loop.write(writer, parts[index]) { result in
                        if case .failure(let error) = result { XCTFail("\(error)") }
                        finished.value.append(index)
                        write(index + 1)
                    }
                }
                write(0)
                Self.readAll(loop, reader, maxBytes: 65_536, into: received, then: finish)
            }
            close(reader)
            let expected = parts.flatMap { $0 }
            XCTAssertEqual(received.value.count, expected.count, "\(loop.backend)")
            XCTAssertTrue(received.value == expected, "\(loop.backend): bytes out of order")
            XCTAssertEqual(finished.value, [0, 1, 2, 3], "\(loop.backend)")
        }
    }

    func testTimersFireAndCancel() throws {
        try timersFireAndCancel(busyPoll: .zero)
        // A busy poll longer than the wait until the next timer ends at that timer.
        try timersFireAndCancel(busyPoll: .milliseconds(10))
    }

    private func timersFireAndCancel(busyPoll: Duration) throws {
        try onEachBackend(busyPoll: busyPoll) { loop in
            let outcomes = Box<[String]>([])
            onLoop(loop) { loop, finish in
                let start = DispatchTime.now()
                let cancelled = loop.after(.seconds(10)) { fired in outcomes.value.append(fired ? "late" : "cancelled") }
                loop.after(.milliseconds(30)) { fired in
                    let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
                    outcomes.value.append(fired && elapsed >= 25 ? "fired" : "early \(elapsed)")
                    loop.cancel(cancelled)
                    loop.after(.milliseconds(1)) { _ in finish() }
                }
            }
            XCTAssertEqual(outcomes.value, ["fired", "cancelled"], "\(loop.backend)")
        }
    }

    /// Timers started with ever earlier deadlines (more than the ring's wake-up timeouts, so the
    /// last ones depend on the bounded wait) all fire, in deadline order, none early; a timer
    /// cancelled before its deadline reports so and never fires; a long timer cancelled leaves
    /// nothing that fires later.
    func testManyTimersFireInDeadlineOrderAndCancelledOnesDoNot() throws {
        try manyTimersFireInDeadlineOrder(busyPoll: .zero)
        try manyTimersFireInDeadlineOrder(busyPoll: .milliseconds(10))
    }

    private func manyTimersFireInDeadlineOrder(busyPoll: Duration) throws {
        try onEachBackend(busyPoll: busyPoll) { loop in
            let fired = Box<[Int]>([])
            let early = Box<[String]>([])
            let cancelled = Box<[Int]>([])
            onLoop(loop, timeout: 10) { loop, finish in
                let start = DispatchTime.now().uptimeNanoseconds
                for i in 0..<10 {
                    let delay = 200 - i * 15   // 200, 185, ... 65 ms: each earlier than the last
                    let token = loop.after(.milliseconds(delay)) { didFire in
                        let elapsed = Int((DispatchTime.now().uptimeNanoseconds - start) / 1_000_000)
                        if !didFire { cancelled.value.append(i); return }
                        if elapsed < delay { early.value.append("\(i) at \(elapsed) ms") }
                        fired.value.append(i)
                    }
                    if i == 4 { loop.cancel(token) }
                }
                let long = loop.after(.seconds(30)) { didFire in if didFire { early.value.append("the long timer fired") } }
                loop.cancel(long)
                loop.after(.milliseconds(260)) { _ in finish() }
            }
            XCTAssertEqual(fired.value, [9, 8, 7, 6, 5, 3, 2, 1, 0], "\(loop.backend)")
            XCTAssertEqual(cancelled.value, [4], "\(loop.backend)")
            XCTAssertEqual(early.value, [], "\(loop.backend)")
        }
    }

    func testTCPLoopbackEcho() throws {
        try onEachBackend { loop in
            let (listener, address) = loopbackListener(backlog: 8)
            let bytes = withUnsafeBytes(of: address) { Array($0) }
            let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            let echoed = Box<[UInt8]>([])
            onLoop(loop) { loop, finish in
                loop.adopt(listener)
                loop.adopt(client)
                loop.accept(listener) { result in
                    guard case .success(let server) = result else { XCTFail("accept: \(result)"); finish(); return }
                    loop.adopt(server)
                    loop.read(server) { result in
                        guard case .success(let request) = result else { finish(); return }
                        loop.write(server, request.reversed()) { _ in close(server) }
                    }
                }
                loop.connect(client, address: bytes) { result in
                    guard case .success = result else { XCTFail("connect: \(result)"); finish(); return }
                    loop.write(client, Array("ping".utf8)) { _ in
                        loop.read(client) { result in
                            if case .success(let answer) = result { echoed.value = answer }
                            finish()
                        }
                    }
                }
            }
            close(client)
            close(listener)
            XCTAssertEqual(String(decoding: echoed.value, as: UTF8.self), "gnip", "\(loop.backend)")
        }
    }

    func testConnectToAClosedPortFails() throws {
        try onEachBackend { loop in
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = in_port_t(UInt16(1).bigEndian)   // nothing listens on port 1
            let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            let failure = Box<String>("")
            let bytes = withUnsafeBytes(of: address) { Array($0) }
            onLoop(loop) { loop, finish in
                loop.adopt(client)
                loop.connect(client, address: bytes) { result in
                    if case .failure(let error) = result { failure.value = error.message }
                    finish()
                }
            }
            close(client)
            XCTAssertTrue(failure.value.contains("refused"), "\(loop.backend): \(failure.value)")
        }
    }

    /// Work posted from several threads at once all runs, on the loop thread (TSan).
    func testTasksPreferringTheLoopRunOnItAcrossAwaitsAndFinishAfterShutdown() async throws {
        for backend in EventLoop.Backend.allCases {
            let loop = try EventLoop(backend: backend)
            let onLoopThroughout = await Task(executorPreference: loop) { () -> Bool in
                var all = loop.inLoop
                for _ in 0..<20 {
                    // Resumed by the loop's own timer: the continuation comes back to the loop.
                    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                        loop.execute { _ = loop.after(.microseconds(100)) { _ in c.resume() } }
                    }
                    all = all && loop.inLoop
                    try? await Task.sleep(for: .microseconds(50))
                    all = all && loop.inLoop
                }
                return all
            }.value
            XCTAssertTrue(onLoopThroughout, "\(backend)")
            loop.shutdown()
            // The loop is gone: a task preferring it still runs to its end (on the global pool).
            let finished = await Task(executorPreference: loop) { () -> Bool in
                try? await Task.sleep(for: .milliseconds(1))
                return !loop.inLoop
            }.value
            XCTAssertTrue(finished)
        }
    }

    func testConcurrentExecuteFromManyThreads() throws {
        try executeFromManyThreads(busyPoll: .zero)
        // Work queued from other threads reaches a loop that is busy polling, not only a sleeping one.
        try executeFromManyThreads(busyPoll: .milliseconds(2))
    }

    private func executeFromManyThreads(busyPoll: Duration) throws {
        try onEachBackend(busyPoll: busyPoll) { loop in
            let count = Box<Int>(0)
            let done = DispatchSemaphore(value: 0)
            DispatchQueue.concurrentPerform(iterations: 4) { _ in
                for _ in 0..<500 {
                    loop.execute {
                        XCTAssertTrue(loop.inLoop)
                        count.value += 1
                        if count.value == 2_000 { done.signal() }
                    }
                }
            }
            XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
            let final = DispatchSemaphore(value: 0)
            loop.execute { XCTAssertEqual(count.value, 2_000); final.signal() }
            final.wait()
        }
    }

    /// With busy polling, a loop that answers a peer's messages one at a time takes the next one
    /// while it polls (the peer answers within microseconds, the poll lasts 10 ms), and after
    /// the last it polls until its time is up and sleeps. Without, it never polls.
    func testBusyPollingTakesTheNextRequestWithoutSleepingThenSleeps() throws {
        for busyPoll in [Duration.zero, .milliseconds(10)] {
            try onEachBackend(busyPoll: busyPoll) { loop in
                var fds: [Int32] = [0, 0]
                XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds), 0)
                let (served, peer) = (fds[0], fds[1])
                let stream = Box<UInt64>(0)
                onLoop(loop) { loop, finish in
                    loop.adopt(served)
                    stream.value = loop.receive(served) { event in
                        guard case .bytes(let bytes) = event else { return }
                        loop.write(served, Array(bytes)) { _ in }
                    }
                    finish()
                }
                var answered = 0
                for i in 0..<200 {
                    var byte = UInt8(i & 0xFF)
                    guard write(peer, &byte, 1) == 1 else { break }
                    var back: UInt8 = 0
                    guard read(peer, &back, 1) == 1, back == byte else { break }
                    answered += 1
                }
                XCTAssertEqual(answered, 200, "\(loop.backend)")
                usleep(50_000)   // five times the poll: it ran out and the loop slept
                let stats = Box<(found: UInt64, expired: UInt64)>((0, 0))
                onLoop(loop) { loop, finish in
                    stats.value = loop.busyPollStats
                    loop.cancel(stream.value)
                    finish()
                }
                if busyPoll == .zero {
                    XCTAssertEqual(stats.value.found, 0, "\(loop.backend)")
                    XCTAssertEqual(stats.value.expired, 0, "\(loop.backend)")
                } else {
                    XCTAssertGreaterThanOrEqual(stats.value.found, 100, "\(loop.backend): polls that found the next request")
                    XCTAssertGreaterThanOrEqual(stats.value.expired, 1, "\(loop.backend): the poll after the last request ran out")
                }
                close(peer)
                usleep(1_000)
                close(served)
            }
        }
    }

    func testBusyPollingOutsideItsBoundsIsRefused() {
        for wrong in [Duration.milliseconds(-1), EventLoop.maxBusyPoll + .nanoseconds(1)] {
            XCTAssertThrowsError(try EventLoop(busyPoll: wrong)) { error in
                XCTAssertTrue("\(error)".contains("busy polling"), "\(error)")
            }
        }
    }

    func testBackendChoiceAndNoLeakedDescriptors() throws {
        // Warm up once: first uses may open process-wide descriptors of their own.
        try EventLoop().shutdown()
        let before = openDescriptors()
        for _ in 0..<5 {
            let loop = try EventLoop()
            loop.execute { }
            loop.shutdown()
        }
        XCTAssertEqual(openDescriptors(), before, "loops leave no fds behind")
        setenv("MCPOPT_IO", "epoll", 1)
        defer { unsetenv("MCPOPT_IO") }
        let forced = try EventLoop()
        XCTAssertEqual(forced.backend, .epoll)
        forced.shutdown()
        setenv("MCPOPT_IO", "kqueue", 1)
        XCTAssertThrowsError(try EventLoop()) { XCTAssertTrue("\($0)".contains("MCPOPT_IO=kqueue")) }
        unsetenv("MCPOPT_IO")
        let automatic = try EventLoop()
        // On this kernel io_uring is allowed; where it is not, auto falls back with a reason.
        XCTAssertTrue(automatic.backend == .uring || !automatic.fallbackReason.isEmpty)
        if automatic.backend == .uring { XCTAssertFalse(automatic.features.isEmpty) }
        automatic.shutdown()
        XCTAssertFalse(automatic.execute { }, "a stopped loop refuses work")
    }
}

extension EventLoopTests {
    /// Fills a non-blocking pipe's buffer: a write to it then has to wait.
    private static func fill(_ fd: Int32) {
        let chunk = [UInt8](repeating: 0x2E, count: 65_536)
        for _ in 0..<64 where chunk.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) > 0 {}
    }

    /// Reads what `fd` has now (non-blocking), up to end of file or EAGAIN.
    private static func drain(_ fd: Int32) -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return out }
            out += buffer[..<n]
        }
    }

    /// A read and a write still waiting when their descriptors are forgotten and closed: both
    /// end with ECANCELED, and the files that then take those numbers (dup2) are left alone:
    /// the new reader's bytes go to the new read, none of the old write's bytes reach the new
    /// writer's pipe (io_uring's poll used to call read/write on the number once it woke), and
    /// a new write there that has to wait is not refused as a second one (epoll kept the old in
    /// the number's slot).
    func testAForgottenDescriptorsWaitingReadAndWriteLeaveTheNextFileWithItsNumberAlone() throws {
        try onEachBackend { loop in
            var a: [Int32] = [0, 0], b: [Int32] = [0, 0], c: [Int32] = [0, 0], d: [Int32] = [0, 0]
            XCTAssertEqual(pipe(&a), 0)
            XCTAssertEqual(pipe(&b), 0)
            // The new pipes, made first so that their numbers are other ones until moved.
            XCTAssertEqual(pipe(&c), 0)
            XCTAssertEqual(pipe(&d), 0)
            let (oldReader, oldWriter) = (a[0], b[1])
            let oldRead = Box<[String]>([]), oldWrite = Box<[String]>([])
            onLoop(loop) { loop, finish in
                loop.adopt(oldReader)
                loop.adopt(oldWriter)
                Self.fill(oldWriter)
                loop.read(oldReader) { result in oldRead.value.append(Self.describe(result.map { String(decoding: $0, as: UTF8.self) })) }
                loop.write(oldWriter, Array("old bytes".utf8)) { result in oldWrite.value.append(Self.describe(result.map { "written" })) }
                loop.forget(oldReader)
                loop.forget(oldWriter)
                close(oldReader)
                close(oldWriter)
                finish()
            }
            // The new pipes take the old numbers.
            XCTAssertEqual(dup2(c[0], oldReader), oldReader)
            XCTAssertEqual(dup2(d[1], oldWriter), oldWriter)
            close(c[0])
            close(d[1])
            _ = fcntl(d[0], F_SETFL, fcntl(d[0], F_GETFL) | O_NONBLOCK)
            // The old pipes wake up: the one read from has a writer that closes, the one
            // written to is drained (writable again), then closed.
            close(a[1])
            _ = fcntl(b[0], F_SETFL, fcntl(b[0], F_GETFL) | O_NONBLOCK)
            _ = Self.drain(b[0])
            let freshWriter = c[1]
            let newRead = Box<String>("")
            let newWrite = Box<String>("")
            onLoop(loop) { loop, finish in
                loop.adopt(oldReader)
                loop.adopt(oldWriter)
                Self.fill(oldWriter)
                loop.write(oldWriter, Array("new bytes".utf8)) { result in newWrite.value = Self.describe(result.map { "written" }) }
                loop.read(oldReader) { result in
                    newRead.value = Self.describe(result.map { String(decoding: $0, as: UTF8.self) })
                    finish()
                }
                _ = Array("fresh".utf8).withUnsafeBytes { Glibc.write(freshWriter, $0.baseAddress, $0.count) }
            }
            // Draining the new pipe lets the new write go; any stale one would go too.
            var reachedNewPipe = Self.drain(d[0])
            for _ in 0..<200 {   // bounded: 2 s
                let done = Box(false)
                onLoop(loop) { _, finish in
                    done.value = !newWrite.value.isEmpty
                    finish()
                }
                if done.value { break }
                usleep(10_000)
                reachedNewPipe += Self.drain(d[0])
            }
            usleep(20_000)
            reachedNewPipe += Self.drain(d[0])
            let text = String(decoding: reachedNewPipe, as: UTF8.self)
            XCTAssertEqual(newRead.value, "fresh", "\(loop.backend): the new read got the new pipe's bytes")
            XCTAssertEqual(oldRead.value, ["ECANCELED"], "\(loop.backend)")
            XCTAssertEqual(oldWrite.value, ["ECANCELED"], "\(loop.backend)")
            XCTAssertFalse(text.contains("old bytes"), "\(loop.backend): the old write reached the new pipe")
            XCTAssertEqual(newWrite.value, "written", "\(loop.backend): the new write, which had to wait, went")
            XCTAssertTrue(text.hasSuffix("new bytes"), "\(loop.backend)")
            onLoop(loop) { loop, finish in
                loop.forget(oldReader)
                loop.forget(oldWriter)
                finish()
            }
            for fd in [oldReader, oldWriter, b[0], c[1], d[0]] { close(fd) }
        }
    }

    private static func describe(_ result: Result<String, IOError>) -> String {
        switch result {
        case .success(let text): text
        case .failure(let error): error.code == ECANCELED ? "ECANCELED" : "error \(error.code)"
        }
    }
}

/// Loop-confined mutable state for tests (touched on the loop thread, read after a barrier).
final class Box<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}
