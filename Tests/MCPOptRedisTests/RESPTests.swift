import Foundation
import Glibc
import XCTest
@testable import MCPOptRedis

/// The RESP reader and command formatter, offline and against a real redis-server started here
/// (Debian's; on a Unix socket in a temporary folder, no TCP port, no persistence).
final class RESPTests: XCTestCase {
    func testCommandsAreBinarySafe() {
        XCTAssertEqual(String(decoding: RESPCommand.encode("SET", "k", "v"), as: UTF8.self), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")
        let binary: [UInt8] = [0, 13, 10, 255]
        XCTAssertEqual(RESPCommand.encode([Array("SET".utf8), Array("k".utf8), binary]), Array("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\n".utf8) + binary + [13, 10])
        XCTAssertEqual(String(decoding: RESPCommand.encode([Array("GET".utf8), []]), as: UTF8.self), "*2\r\n$3\r\nGET\r\n$0\r\n\r\n")
    }

    func testReaderHandlesEveryTypeInAnyChunking() throws {
        let stream = Array("+OK\r\n-ERR bad\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n*-1\r\n".utf8)
        let expected: [RESPValue] = [.status("OK"), .error("ERR bad"), .integer(42), .bulk(Array("abc".utf8)), .bulk(nil),
                                     .array([.bulk(Array("a".utf8)), .array([.integer(1)])]), .bulk(nil)]
        for chunk in [1, 3, stream.count] {
            let reader = RESPReader()
            var got: [RESPValue] = []
            var i = 0
            while i < stream.count {
                try stream[i..<min(i + chunk, stream.count)].withUnsafeBytes { try reader.feed($0) }
                while let v = try reader.next() { got.append(v) }
                i += chunk
            }
            XCTAssertEqual(got, expected, "chunk \(chunk)")
        }
    }

    func testReaderRejectsGarbage() throws {
        let reader = RESPReader()
        try Array("?what\r\n".utf8).withUnsafeBytes { try reader.feed($0) }
        XCTAssertThrowsError(try reader.next())
    }

    func testAgainstARealRedisServer() throws {
        let server = try RedisProcess()
        defer { server.stop() }
        let connection = try server.connect()
        defer { close(connection) }
        let reader = RESPReader()
        func call(_ commands: [[UInt8]]...) throws -> [RESPValue] {
            let bytes = commands.flatMap { RESPCommand.encode($0) }
            _ = bytes.withUnsafeBytes { write(connection, $0.baseAddress, $0.count) }
            var replies: [RESPValue] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            let deadline = Date().addingTimeInterval(10)
            while replies.count < commands.count, Date() < deadline {
                var pfd = pollfd(fd: connection, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, 1000) > 0 else { continue }
                let n = read(connection, &buffer, buffer.count)
                guard n > 0 else { break }
                try buffer[..<n].withUnsafeBytes { try reader.feed($0) }
                while let v = try reader.next() { replies.append(v) }
            }
            return replies
        }
        let value: [UInt8] = (0..<1000).map { UInt8($0 % 256) }
        // Pipelined: all three go out before any reply is read.
        let replies = try call([Array("SET".utf8), Array("k".utf8), value], [Array("GET".utf8), Array("k".utf8)], [Array("GET".utf8), Array("missing".utf8)])
        XCTAssertEqual(replies, [.status("OK"), .bulk(value), .bulk(nil)])
        XCTAssertEqual(try call([Array("INCRBY".utf8), Array("n".utf8), Array("5".utf8)]), [.integer(5)])
        XCTAssertTrue(try call([Array("INCR".utf8), Array("k".utf8)]).first?.isError == true)
        let range = try call([Array("RPUSH".utf8), Array("l".utf8), Array("a".utf8), Array("b".utf8)], [Array("LRANGE".utf8), Array("l".utf8), Array("0".utf8), Array("-1".utf8)])
        XCTAssertEqual(range.last, .array([.bulk(Array("a".utf8)), .bulk(Array("b".utf8))]))
    }
}

/// A redis-server for one test, on a Unix socket in a temporary folder.
final class RedisProcess {
    let process = Process()
    let directory: URL
    var socketPath: String { directory.appendingPathComponent("redis.sock").path }

    init() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-server") else {
            if ProcessInfo.processInfo.environment["CI"] != nil { throw XCTSkip("redis-server missing") }
            throw XCTSkip("redis-server is not installed: run scripts/setup")
        }
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("mcpopt-redis-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // setpriv execs redis-server (same pid) with a parent-death signal: a crashed test process
        // does not leave it running.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--pdeathsig", "KILL", "/usr/bin/redis-server", "--port", "0", "--unixsocket", directory.appendingPathComponent("redis.sock").path, "--save", "", "--appendonly", "no",
                             "--dir", directory.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: socketPath), Date() < deadline { usleep(20_000) }
    }

    func connect() throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        _ = withUnsafeMutableBytes(of: &address.sun_path) { raw in socketPath.utf8CString.withUnsafeBytes { raw.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0.prefix(raw.count - 1))) } }
        let ok = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard ok == 0 else { throw XCTSkip("cannot connect to redis at \(socketPath)") }
        return fd
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: directory)
    }
}
