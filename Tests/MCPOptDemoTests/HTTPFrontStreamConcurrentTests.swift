import Dispatch
import Foundation
import Glibc
import MCPOptGateway
import MCPOptMock
import XCTest

/// The HTTP front on its accept and receive streams, with each I/O mode the environment can
/// choose (io_uring with and without multishot, epoll): many keep-alive clients, requests in
/// pieces and pipelined, a client far ahead of its answers, and no descriptor left after stop.
/// Clients are blocking sockets on this thread with bounded receive timeouts; nothing is timed.
final class HTTPFrontStreamConcurrentTests: XCTestCase {
    private let modes: [(name: String, io: String, multishot: String)] = [
        ("uring multishot", "uring", "1"), ("uring one-shot", "uring", "0"), ("epoll", "epoll", "1"),
    ]

    private func withMode(_ mode: (name: String, io: String, multishot: String), _ body: () throws -> Void) rethrows {
        setenv("MCPOPT_IO", mode.io, 1)
        setenv("MCPOPT_IO_MULTISHOT", mode.multishot, 1)
        defer {
            unsetenv("MCPOPT_IO")
            unsetenv("MCPOPT_IO_MULTISHOT")
        }
        try body()
    }

    private func front(slowHealth: Bool = false) throws -> HTTPFront<MockServer> {
        var settings = HTTPFront<MockServer>.Settings()
        settings.port = 0
        let front = try HTTPFront(service: MockServer(profile: MockProfile.preset("files", name: "f")!), settings: settings)
        front.healthPage = {
            if slowHealth { try? await Task.sleep(for: .milliseconds(300)) }
            return (200, "text/plain", Array("ok".utf8))
        }
        try front.start()
        return front
    }

    private func connectClient(_ port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        XCTAssertEqual(rc, 0)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)   // every read below is bounded
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    private func send(_ fd: Int32, _ text: String) { Self.send(fd, text) }

    private static func send(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    /// Reads until `count` answers (status lines) have arrived, or the peer closes, or 10 s pass.
    private func answers(_ fd: Int32, _ count: Int) -> [String] {
        var text = ""
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while text.components(separatedBy: "HTTP/1.1 ").count - 1 < count {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            text += String(decoding: buffer[0..<n], as: UTF8.self)
        }
        return text.components(separatedBy: "HTTP/1.1 ").dropFirst().map { String($0.prefix(3)) }
    }

    private func request(_ port: Int) -> String { "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n\r\n" }

    /// This process's descriptors of TCP sockets with `port` at either end (the front's listener
    /// and connections, the test's clients). Counting every descriptor instead is at the mercy of
    /// other tests' background work in the same process (seen once in CI: one more, not ours).
    private func descriptors(onPort port: Int) -> [String] {
        let hex = String(format: ":%04X", port)
        var inodes = Set<String>()
        for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
            // Read to the end: a /proc table reports size 0 and comes a page at a time.
            guard let data = FileHandle(forReadingAtPath: table)?.readDataToEndOfFile() else { continue }
            let text = String(decoding: data, as: UTF8.self)
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                guard fields.count > 9, fields[1].hasSuffix(hex) || fields[2].hasSuffix(hex) else { continue }
                inodes.insert(String(fields[9]))
            }
        }
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return fds.filter { fd in
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + fd),
                  target.hasPrefix("socket:[") else { return false }
            return inodes.contains(String(target.dropFirst(8).dropLast()))
        }
    }

    func testManyKeepAliveClientsPiecesAndPipelining() throws {
        for mode in modes {
            try withMode(mode) {
                let front = try front()
                defer { front.stop() }
                let port = front.port
                let clients = (0..<40).map { _ in connectClient(port) }
                for (i, fd) in clients.enumerated() {
                    let whole = request(port)
                    if i % 2 == 0 {
                        // In pieces: the head split mid-line, then three more requests in one write.
                        let cut = whole.index(whole.startIndex, offsetBy: 7)
                        send(fd, String(whole[..<cut]))
                        send(fd, String(whole[cut...]))
                        send(fd, whole + whole + whole)
                    } else {
                        for _ in 0..<4 { send(fd, whole) }
                    }
                }
                for fd in clients {
                    XCTAssertEqual(answers(fd, 4), ["200", "200", "200", "200"], mode.name)
                    close(fd)
                }
            }
        }
    }

    func testAClientFarAheadOfItsAnswersIsServedThenRefused() throws {
        for mode in modes {
            try withMode(mode) {
                let front = try front(slowHealth: true)
                defer { front.stop() }
                let fd = connectClient(front.port)
                // A slow request, then 4 MiB that is no HTTP, sent while the answer is awaited
                // (the front stops receiving past its limit; the socket buffers hold the rest).
                send(fd, request(front.port))
                let sender = DispatchGroup()
                DispatchQueue.global().async(group: sender) {
                    Self.send(fd, String(repeating: "x", count: 4 << 20))
                }
                XCTAssertEqual(answers(fd, 2), ["200", "400"], mode.name)
                shutdown(fd, Int32(SHUT_RDWR))   // the sender may still be blocked: it fails now
                XCTAssertEqual(sender.wait(timeout: .now() + 10), .success)
                close(fd)
            }
        }
    }

    func testNoDescriptorLeftAfterStopWithConnectionsOpen() throws {
        for mode in modes {
            try withMode(mode) {
                try front().stop()   // first uses may open process-wide descriptors
                let front = try front()
                let port = front.port
                let clients = (0..<24).map { _ in connectClient(port) }
                // Some served and kept alive, some half a request in, some closed by the client.
                for (i, fd) in clients.enumerated() {
                    switch i % 3 {
                    case 0:
                        send(fd, request(port))
                        XCTAssertEqual(answers(fd, 1), ["200"], mode.name)
                    case 1:
                        send(fd, "GET /hea")
                    default:
                        send(fd, request(port))
                        XCTAssertEqual(answers(fd, 1), ["200"], mode.name)
                        close(fd)
                    }
                }
                // The check sees the front's sockets and the clients' while they are open.
                XCTAssertGreaterThanOrEqual(descriptors(onPort: port).count, 1 + 16 + 16, mode.name)
                front.stop()
                for (i, fd) in clients.enumerated() where i % 3 != 2 {
                    // The front closed its side: each client sees the end.
                    var byte: UInt8 = 0
                    var n = recv(fd, &byte, 1, 0)
                    while n < 0 && errno == EINTR { n = recv(fd, &byte, 1, 0) }
                    XCTAssertEqual(n, 0, "\(mode.name): closed by the front (errno \(errno))")
                    close(fd)
                }
                XCTAssertEqual(descriptors(onPort: port), [], "\(mode.name): no descriptor left behind")
            }
        }
    }
}
