import Dispatch
import Foundation
import Glibc
import XCTest
@testable import MCPOptIO

/// Streams (multishot accept, receive into provided buffers) on each way the loop carries them
/// out: io_uring multishot, io_uring one-shot emulation, epoll. Peers run on other threads
/// (the class name puts these under ThreadSanitizer too: scripts/swift-tsan). Every wait is
/// bounded; nothing is timed.
final class StreamConcurrentTests: XCTestCase {
    private struct Mode {
        let name: String
        let make: () throws -> EventLoop
    }

    private let modes: [Mode] = [
        Mode(name: "uring multishot") { try EventLoop(backend: .uring, multishot: true) },
        Mode(name: "uring one-shot") { try EventLoop(backend: .uring, multishot: false) },
        Mode(name: "epoll") { try EventLoop(backend: .epoll) },
    ]

    private func onEachMode(_ body: (EventLoop, String) throws -> Void) throws {
        for mode in modes {
            let loop = try mode.make()
            defer { loop.shutdown() }
            try body(loop, mode.name)
        }
    }

    /// Whether `loop` receives through the kernel's multishot recv and buffer ring.
    private func usesRing(_ loop: EventLoop) -> Bool {
        loop.features.contains("multishot-recv") && loop.features.contains("buffer-rings")
    }

    /// Runs `body` on the loop and waits (bounded) until it calls `finish`.
    private func onLoop(_ loop: EventLoop, _ what: String, timeout: TimeInterval = 10,
                        _ body: @escaping @Sendable (EventLoop, @escaping @Sendable () -> Void) -> Void) {
        let done = DispatchSemaphore(value: 0)
        loop.execute { body(loop) { done.signal() } }
        XCTAssertEqual(done.wait(timeout: .now() + timeout), .success, "timed out: \(what)")
    }

    /// Reads a value the loop thread owns, on the loop thread.
    private func onLoopValue<T>(_ loop: EventLoop, _ read: @escaping @Sendable () -> T) -> T {
        let box = Box<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        loop.execute { box.value = read(); done.signal() }
        _ = done.wait(timeout: .now() + 10)
        return box.value!
    }

    private func socketPair() -> (Int32, Int32) {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds), 0)
        return (fds[0], fds[1])
    }


    private func connectBlocking(_ address: sockaddr_in) -> Int32 {
        var address = address
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        XCTAssertEqual(rc, 0)
        return fd
    }

    /// Writes all of `bytes` on a blocking descriptor, in pieces of the sizes `pieces` gives.
    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], pieces: (Int) -> Int = { $0 }) {
        var offset = 0
        bytes.withUnsafeBytes { raw in
            while offset < bytes.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, min(pieces(bytes.count - offset), bytes.count - offset))
                if n <= 0 { return }
                offset += n
            }
        }
    }

    private static func pattern(_ count: Int, seed: UInt64 = 0x9E37_79B9) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
    }

    /// Runs `body` on another thread; the group is for joining it.
    private static func start(_ body: @escaping @Sendable () -> Void) -> DispatchGroup {
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group, execute: body)
        return group
    }

    private func openDescriptors() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
    }

    func testFeaturesInUseFollowTheSwitch() throws {
        let on = try EventLoop(backend: .uring, multishot: true)
        defer { on.shutdown() }
        let off = try EventLoop(backend: .uring, multishot: false)
        defer { off.shutdown() }
        // What the kernel has is listed either way; what is used follows the switch.
        XCTAssertEqual(on.kernelFeatures, off.kernelFeatures)
        for name in ["multishot-accept", "multishot-recv", "buffer-rings"] {
            XCTAssertEqual(on.features.contains(name), on.kernelFeatures.contains(name), name)
            XCTAssertFalse(off.features.contains(name), name)
        }
        setenv("MCPOPT_IO_MULTISHOT", "0", 1)
        let byEnvironment = try EventLoop(backend: .uring)
        unsetenv("MCPOPT_IO_MULTISHOT")
        defer { byEnvironment.shutdown() }
        XCTAssertFalse(byEnvironment.features.contains("multishot-recv"))
        let epoll = try EventLoop(backend: .epoll)
        defer { epoll.shutdown() }
        XCTAssertEqual(epoll.features, [])
    }

    func testMultishotAcceptOfManyConnections() throws {
        try onEachMode { loop, mode in
            let (listening, address) = loopbackListener()
            let count = 200
            let accepted = Box<[Int32]>([])
            let ended = Box<Int32?>(nil)
            let token = Box<UInt64>(0)
            let allIn = DispatchSemaphore(value: 0)
            loop.execute {
                loop.adopt(listening)
                token.value = loop.acceptMultishot(listening) { result in
                    switch result {
                    case .success(let fd):
                        accepted.value.append(fd)
                        if accepted.value.count == count { allIn.signal() }
                    case .failure(let error):
                        ended.value = error.code
                    }
                }
            }
            // Clients on this thread while the loop accepts (the backlog holds the rest).
            var clients: [Int32] = []
            for _ in 0..<count { clients.append(connectBlocking(address)) }
            XCTAssertEqual(allIn.wait(timeout: .now() + 10), .success, "\(mode): accepted \(onLoopValue(loop) { accepted.value.count })")
            onLoop(loop, "\(mode): cancel") { loop, finish in
                loop.cancel(token.value)
                func check() { if ended.value != nil { finish() } else { loop.after(.milliseconds(1)) { _ in check() } } }
                check()
            }
            XCTAssertEqual(onLoopValue(loop) { ended.value }, ECANCELED, mode)
            let fds = onLoopValue(loop) { accepted.value }
            XCTAssertEqual(Set(fds).count, count, "\(mode): distinct descriptors")
            for fd in fds { XCTAssertNotEqual(fcntl(fd, F_GETFL) & O_NONBLOCK, 0, "\(mode): accepted non-blocking"); close(fd) }
            for fd in clients { close(fd) }
            close(listening)
        }
    }

    func testLargeFragmentedDataThroughTheRing() throws {
        try onEachMode { loop, mode in
            let (server, client) = socketPair()
            let sent = Self.pattern(3 << 20)
            let received = Box<[UInt8]>([])
            let end = Box<String>("")
            let writer = Self.start {
                var turn = 0
                // Pieces from 1 byte to 70 KB: the reader sees them split and merged anyway.
                Self.writeAll(client, sent) { _ in
                    turn += 1
                    return [1, 7, 4_096, 70_000, 1_500, 16_384, 333][turn % 7]
                }
                shutdown(client, Int32(SHUT_WR))
            }
            onLoop(loop, mode, timeout: 30) { loop, finish in
                loop.adopt(server)
                loop.receive(server) { event in
                    switch event {
                    case .bytes(let bytes): received.value.append(contentsOf: bytes)
                    case .end(let error):
                        end.value = error.map { "\($0)" } ?? "eof"
                        finish()
                    }
                }
            }
            XCTAssertEqual(writer.wait(timeout: .now() + 10), .success)
            XCTAssertEqual(end.value, "eof", mode)
            XCTAssertEqual(received.value.count, sent.count, mode)
            XCTAssertTrue(received.value == sent, "\(mode): bytes intact and in order")
            if mode == "uring multishot", usesRing(loop) {
                XCTAssertGreaterThan(onLoopValue(loop) { loop.receiveStats.ringCompletions }, 0, "received through the buffer ring")
            }
            close(server)
            close(client)
        }
    }

    func testTinyRingRunsDryAndNothingIsLost() throws {
        // Two 64-byte buffers: the kernel ends the multishot receive with ENOBUFS over and over;
        // the loop submits it again once the buffers are back.
        let loop = try EventLoop(backend: .uring, multishot: true, receiveBuffers: (count: 2, size: 64))
        defer { loop.shutdown() }
        let (server, client) = socketPair()
        let sent = Self.pattern(150_000, seed: 7)
        // All of it waits in the socket before the stream starts (the buffer holds it).
        var size: Int32 = 1 << 20
        setsockopt(client, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        let writer = Self.start {
            Self.writeAll(client, sent)
            shutdown(client, Int32(SHUT_WR))
        }
        let received = Box<[UInt8]>([])
        let largest = Box<Int>(0)
        onLoop(loop, "tiny ring", timeout: 30) { loop, finish in
            loop.adopt(server)
            loop.receive(server) { event in
                switch event {
                case .bytes(let bytes):
                    largest.value = max(largest.value, bytes.count)
                    received.value.append(contentsOf: bytes)
                case .end: finish()
                }
            }
        }
        XCTAssertEqual(writer.wait(timeout: .now() + 10), .success)
        XCTAssertTrue(received.value == sent, "bytes intact and in order (\(received.value.count) of \(sent.count))")
        if usesRing(loop) {
            let stats = onLoopValue(loop) { loop.receiveStats }
            XCTAssertGreaterThan(stats.enobufs, 0, "the ring ran dry")
            XCTAssertGreaterThan(stats.rearms, 0, "and the stream went again")
            XCTAssertLessThanOrEqual(largest.value, 64, "one buffer per completion")
        }
        close(server)
        close(client)
    }

    func testCancellationMidStreamLosesNothing() throws {
        try onEachMode { loop, mode in
            let (server, client) = socketPair()
            let first = Self.pattern(200_000, seed: 1), second = Self.pattern(50_000, seed: 2)
            let received = Box<[UInt8]>([])
            let ends = Box<[String]>([])
            let afterEnd = Box<Int>(0)
            let firstEnded = DispatchSemaphore(value: 0)
            let writer = Self.start {
                Self.writeAll(client, first)
                _ = firstEnded.wait(timeout: .now() + 10)
                Self.writeAll(client, second)
                shutdown(client, Int32(SHUT_WR))
            }
            onLoop(loop, mode, timeout: 30) { loop, finish in
                loop.adopt(server)
                let token = Box<UInt64>(0)
                token.value = loop.receive(server, maxBytes: 4_096) { event in
                    switch event {
                    case .bytes(let bytes):
                        if !ends.value.isEmpty { afterEnd.value += 1 }
                        received.value.append(contentsOf: bytes)
                        // Cancelled at the first bytes; what the kernel already took still comes.
                        if received.value.count == bytes.count { loop.cancel(token.value) }
                    case .end(let error):
                        ends.value.append(error.map { "\($0.code)" } ?? "eof")
                        firstEnded.signal()
                        // A new stream on the same socket takes the rest.
                        loop.receive(server) { event in
                            switch event {
                            case .bytes(let bytes): received.value.append(contentsOf: bytes)
                            case .end(let error):
                                ends.value.append(error.map { "\($0.code)" } ?? "eof")
                                finish()
                            }
                        }
                    }
                }
            }
            XCTAssertEqual(writer.wait(timeout: .now() + 10), .success)
            XCTAssertEqual(ends.value, ["\(ECANCELED)", "eof"], mode)
            XCTAssertEqual(afterEnd.value, 0, "\(mode): nothing delivered after the end")
            XCTAssertTrue(received.value == first + second, "\(mode): every byte once, in order (\(received.value.count))")
            close(server)
            close(client)
        }
    }

    func testPeerCloseEndsTheStream() throws {
        try onEachMode { loop, mode in
            // Over TCP: an orderly close after a last message, and a reset.
            let (listening, address) = loopbackListener()
            let orderly = connectBlocking(address), reset = connectBlocking(address)
            let events = Box<[String]>([])
            onLoop(loop, mode) { loop, finish in
                loop.adopt(listening)
                var streams = 0
                let token = Box<UInt64>(0)
                token.value = loop.acceptMultishot(listening) { result in
                    guard case .success(let fd) = result else { return }
                    streams += 1
                    if streams == 2 { loop.cancel(token.value) }
                    var text: [UInt8] = []
                    loop.receive(fd) { event in
                        switch event {
                        case .bytes(let bytes): text.append(contentsOf: bytes)
                        case .end(let error):
                            events.value.append(String(decoding: text, as: UTF8.self) + ":" + (error.map { "\($0.code)" } ?? "eof"))
                            close(fd)
                            if events.value.count == 2 { finish() }
                        }
                    }
                }
                DispatchQueue.global().async {
                    Self.writeAll(orderly, Array("bye".utf8))
                    close(orderly)
                    var linger = linger(l_onoff: 1, l_linger: 0)
                    setsockopt(reset, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
                    close(reset)
                }
            }
            XCTAssertEqual(Set(events.value), ["bye:eof", ":\(ECONNRESET)"], mode)
            close(listening)
        }
    }

    func testPipesAreReadOnReadiness() throws {
        // recv needs a socket: on a pipe the loop reads instead (any mode).
        try onEachMode { loop, mode in
            var fds: [Int32] = [0, 0]
            XCTAssertEqual(pipe(&fds), 0)
            let sent = Self.pattern(300_000, seed: 3)
            let received = Box<[UInt8]>([])
            let (reader, pipeWriter) = (fds[0], fds[1])
            let writer = Self.start {
                Self.writeAll(pipeWriter, sent)
                close(pipeWriter)
            }
            onLoop(loop, mode, timeout: 30) { loop, finish in
                loop.adopt(reader)
                loop.receive(reader) { event in
                    switch event {
                    case .bytes(let bytes): received.value.append(contentsOf: bytes)
                    case .end: finish()
                    }
                }
            }
            XCTAssertEqual(writer.wait(timeout: .now() + 10), .success)
            XCTAssertTrue(received.value == sent, mode)
            close(reader)
        }
    }

    func testNoLeakedDescriptorsAfterShutdownWithStreamsInFlight() throws {
        for mode in modes { try mode.make().shutdown() }   // first uses may open descriptors of their own
        let before = openDescriptors()
        for mode in modes {
            let loop = try mode.make()
            let (listening, address) = loopbackListener()
            let accepted = Box<[Int32]>([])
            let clients = (0..<16).map { _ in connectBlocking(address) }
            onLoop(loop, mode.name) { loop, finish in
                loop.adopt(listening)
                loop.acceptMultishot(listening) { result in
                    guard case .success(let fd) = result else { return }
                    accepted.value.append(fd)
                    // Half the streams are cancelled; the rest are still on at shutdown.
                    let token = loop.receive(fd) { _ in }
                    if accepted.value.count % 2 == 0 { loop.cancel(token) }
                    if accepted.value.count == clients.count { finish() }
                }
            }
            for fd in clients { Self.writeAll(fd, Array("pending".utf8)) }
            loop.shutdown()   // the accept stream and receive streams still on
            for fd in accepted.value + clients + [listening] { close(fd) }
        }
        XCTAssertEqual(openDescriptors(), before, "no descriptor left behind")
    }
}

/// A TCP socket listening on 127.0.0.1 at a port the kernel picks, and its address.
func loopbackListener(backlog: Int32 = 512) -> (Int32, sockaddr_in) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = bind(fd, $0, length) } }
    withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &length) } }
    XCTAssertEqual(listen(fd, backlog), 0)
    return (fd, address)
}
