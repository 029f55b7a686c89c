import Foundation
import Glibc
import XCTest
import MCPOptJSON
import MCPOptProtocol
@testable import MCPOptUpstream

/// ClientSession against real MCP servers from PyPI (installed into .venv by scripts/setup),
/// compared with what the official Python SDK client gets from the same servers. The pipes are
/// driven by a small blocking loop here; the engine's own transport is tested in MCPOptIOTests.
final class RealServerTests: XCTestCase {
    func venvTool(_ name: String) throws -> String { try Interop.venvTool(name) }
    func sdkReference(tool: String, arguments: String, command: [String]) throws -> JSONValue {
        try Interop.sdkReference(tool: tool, arguments: arguments, command: command)
    }

    /// Lists tools and calls one through ClientSession; returns (tool names, content, isError).
    func throughSession(_ command: [String], tool: String, arguments: String) throws -> (tools: [String], content: JSONValue, isError: Bool, version: ProtocolVersion?) {
        let peer = try BlockingPeer(command)
        defer { peer.stop() }
        let session = ClientSession(mode: .auto)
        var responses: [UInt64: [UInt8]] = [:]
        func handle(_ events: [ClientSession.Event]) throws {
            for event in events {
                switch event {
                case .send(let bytes): try peer.send(bytes)
                case .response(let token, let message): responses[token] = message
                case .failed(let token, let error): XCTFail("request \(token) failed: \(error)")
                case .violation(let text): XCTFail("protocol violation: \(text)")
                default: break
                }
            }
        }
        try handle(session.open())
        try handle(session.send(UpstreamRequest(method: "tools/list"), token: 1))
        try handle(session.send(UpstreamRequest(method: "tools/call", paramsJSON: #"{"name":"\#(tool)","arguments":\#(arguments)}"#), token: 2))
        let deadline = Date().addingTimeInterval(30)
        while responses.count < 2 {
            guard let line = try peer.readLine(until: deadline) else { XCTFail("no answer from \(command[0])"); break }
            try handle(line.withUnsafeBytes { session.receive($0) })
        }
        let decoder = MessageDecoder()
        let list = try JSONParser.parse(try decoder.decodeOwned(responses[1] ?? []).result ?? [])
        let call = try JSONParser.parse(try decoder.decodeOwned(responses[2] ?? []).result ?? [])
        let names = (list["tools"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }.sorted()
        return (names, call["content"] ?? .null, call["isError"]?.boolValue ?? false, session.version)
    }

    func testTimeServerMatchesTheOfficialSDK() throws {
        let server = [try venvTool("mcp-server-time")]
        let arguments = #"{"source_timezone":"UTC","time":"12:00","target_timezone":"Asia/Tokyo"}"#
        let ours = try throughSession(server, tool: "convert_time", arguments: arguments)
        let reference = try sdkReference(tool: "convert_time", arguments: arguments, command: server)
        XCTAssertEqual(ours.version?.era, .modern, "mcp-server-time speaks the modern era")
        XCTAssertEqual(ours.tools, reference["tools"]?.arrayValue?.compactMap(\.stringValue))
        XCTAssertEqual(withoutNulls(ours.content).canonicalJSONString, withoutNulls(reference["content"] ?? .null).canonicalJSONString)
        XCTAssertEqual(ours.isError, reference["isError"]?.boolValue)
        XCTAssertTrue(ours.content.jsonString.contains("Asia/Tokyo"))
    }

    func testGitServerMatchesTheOfficialSDK() throws {
        let repo = FileManager.default.temporaryDirectory.appendingPathComponent("mcpopt-git-\(getpid())")
        try? FileManager.default.removeItem(at: repo)
        try FileManager.default.createDirectory(at: repo, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: repo) }
        try run("/usr/bin/git", ["init", "-q", repo.path])
        try "hello\n".write(to: repo.appendingPathComponent("a.txt"), atomically: true, encoding: .utf8)
        let server = [try venvTool("mcp-server-git"), "--repository", repo.path]
        let arguments = #"{"repo_path":"\#(repo.path)"}"#
        let ours = try throughSession(server, tool: "git_status", arguments: arguments)
        let reference = try sdkReference(tool: "git_status", arguments: arguments, command: server)
        XCTAssertEqual(ours.tools, reference["tools"]?.arrayValue?.compactMap(\.stringValue))
        XCTAssertTrue(ours.tools.contains("git_status"))
        XCTAssertEqual(withoutNulls(ours.content).canonicalJSONString, withoutNulls(reference["content"] ?? .null).canonicalJSONString)
        XCTAssertTrue(ours.content.jsonString.contains("a.txt"), "the untracked file shows in the status")
    }

    private func run(_ tool: String, _ arguments: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = arguments
        try p.run()
        p.waitUntilExit()
    }
}

/// Where the real servers and the reference client live.
enum Interop {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func venvTool(_ name: String) throws -> String {
        let venv = ProcessInfo.processInfo.environment["MCPOPT_VENV"] ?? repository.appendingPathComponent(".venv").path
        let path = venv + "/bin/" + name
        guard FileManager.default.isExecutableFile(atPath: path) else {
            // CI always has them (scripts/setup installs them); a bare `swift test` may not.
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("\(path) is missing: run scripts/setup"); throw CancellationError() }
            throw XCTSkip("\(path) is missing: run scripts/setup to install the real MCP servers")
        }
        return path
    }

    /// Runs the official SDK client (Tests/interop/sdk_client.py) against the same server.
    static func sdkReference(tool: String, arguments: String, command: [String]) throws -> JSONValue {
        let python = try venvTool("python")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [repository.appendingPathComponent("Tests/interop/sdk_client.py").path, tool, arguments, "--"] + command
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        return try JSONParser.parse([UInt8](data))
    }

}

/// The SDK drops null members when it re-serializes; compare like with like.
func withoutNulls(_ value: JSONValue) -> JSONValue {
    switch value {
    case .object(let o): .object(JSONObject(o.members.filter { $0.value != .null }.map { ($0.key, withoutNulls($0.value)) }))
    case .array(let a): .array(a.map(withoutNulls))
    default: value
    }
}

/// A child process spoken to line by line with blocking pipes and poll(2) deadlines.
final class BlockingPeer {
    let process = Process()
    let input = Pipe()
    let output: Pipe
    var buffer: [UInt8] = []

    /// Reads lines from an existing pipe (a process started elsewhere).
    init(reading pipe: Pipe) {
        output = pipe
    }

    init(_ command: [String]) throws {
        output = Pipe()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    func send(_ message: [UInt8]) throws {
        try input.fileHandleForWriting.write(contentsOf: Data(message + [0x0A]))
    }

    func readLine(until deadline: Date) throws -> [UInt8]? {
        let fd = output.fileHandleForReading.fileDescriptor
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                return line
            }
            let remaining = Int32(max(0, deadline.timeIntervalSinceNow * 1000))
            if remaining == 0 { return nil }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, remaining) <= 0 { return nil }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { return nil }
            buffer += chunk[..<n]
        }
    }

    func stop() {
        try? input.fileHandleForWriting.close()
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }
}
