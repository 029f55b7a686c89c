import Foundation
import Glibc
import XCTest
import MCPOptJSON
import MCPOptProtocol
@testable import MCPOptUpstream

/// StreamableHTTPSession against a real FastMCP server over loopback, in both eras and with both
/// response kinds (JSON, SSE), compared with the official SDK client. Exchanges run one at a
/// time over a blocking keep-alive connection here; the engine's connection pool comes later.
final class HTTPServerTests: XCTestCase {
    var server: Process?
    var port = 0

    func startServer(json: Bool) throws {
        let python = try Interop.venvTool("python")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [Interop.repository.appendingPathComponent("Tests/interop/fastmcp_server.py").path] + (json ? ["--json"] : [])
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        server = process
        let peer = BlockingPeer(reading: out)
        guard let line = try peer.readLine(until: Date().addingTimeInterval(30)), let n = Int(String(decoding: line, as: UTF8.self).dropFirst(5)) else {
            throw XCTSkip("the FastMCP server did not start")
        }
        port = n
    }

    /// SIGKILL: on SIGTERM uvicorn's graceful shutdown can wait on its session tasks for long
    /// (SIGTERM left servers behind after the tests).
    override func tearDown() {
        guard let server else { return }
        kill(server.processIdentifier, SIGKILL)
        server.waitUntilExit()
    }

    struct Outcome {
        var version: ProtocolVersion?
        var tools: [String] = []
        var callResult: JSONValue = .null
        var progress = 0
        var notes: [String] = []
    }

    /// tools/list then tools/call `tool` through the session, exchange by exchange.
    func run(mode: ClientSession.Mode, tool: String, arguments: String) throws -> Outcome {
        let connection = try BlockingConnection(port: port)
        defer { connection.close() }
        let session = StreamableHTTPSession(endpoint: .init(host: "127.0.0.1", port: port, path: "/mcp"), mode: mode)
        var outcome = Outcome()
        var queue: [(StreamableHTTPSession.ExchangeID, [UInt8])] = []
        var responses: [UInt64: [UInt8]] = [:]
        let decoder = MessageDecoder()
        func handle(_ events: [StreamableHTTPSession.Event]) {
            for event in events {
                switch event {
                case .request(let id, let bytes): queue.append((id, bytes))
                case .response(let token, let message): responses[token] = message
                case .failed(let token, let error): XCTFail("\(token) failed: \(error)")
                case .violation(let text): XCTFail("violation: \(text)")
                case .notification(let method, _): if method == "notifications/progress" { outcome.notes.append("progress outside its request") }
                case .requestNotification(let token, let method, _):
                    if method == "notifications/progress" { outcome.progress += 1 }
                    if token != 2 { outcome.notes.append("\(method) for token \(token.map(String.init) ?? "none")") }
                case .ready, .serverRequest, .streamEnded, .closeExchange: break
                }
            }
        }
        handle(session.open())
        handle(session.send(UpstreamRequest(method: "tools/list"), token: 1))
        handle(session.send(UpstreamRequest(method: "tools/call", paramsJSON: #"{"name":"\#(tool)","arguments":\#(arguments),"_meta":{"progressToken":"p1"}}"#), token: 2))
        var rounds = 0
        while let (id, bytes) = queue.first, rounds < 50 {
            queue.removeFirst()
            rounds += 1
            try connection.exchange(bytes, deadline: Date().addingTimeInterval(30)) { part in
                switch part {
                case .head(let status, let headers): handle(session.responseHead(id, status: status, headers: headers))
                case .body(let chunk): handle(chunk.withUnsafeBytes { session.responseBody(id, $0) })
                case .end: handle(session.responseEnd(id))
                }
            }
        }
        XCTAssertEqual(session.openExchanges, 0)
        outcome.version = session.version
        let list = try JSONParser.parse(try decoder.decodeOwned(try XCTUnwrap(responses[1])).result!)
        outcome.tools = (list["tools"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }.sorted()
        outcome.callResult = try JSONParser.parse(try decoder.decodeOwned(try XCTUnwrap(responses[2])).result!)
        return outcome
    }

    func checkAgainstSDK(_ ours: Outcome, tool: String, arguments: String) throws {
        let reference = try Interop.sdkReference(tool: tool, arguments: arguments, command: ["http://127.0.0.1:\(port)/mcp"])
        XCTAssertEqual(ours.tools, reference["tools"]?.arrayValue?.compactMap { $0.stringValue })
        XCTAssertEqual(withoutNulls(ours.callResult["content"] ?? .null).canonicalJSONString, withoutNulls(reference["content"] ?? .null).canonicalJSONString)
    }

    func testHandshakeEraWithSSEResponses() throws {
        try startServer(json: false)
        let ours = try run(mode: .handshake, tool: "slow", arguments: #"{"n":3}"#)
        XCTAssertEqual(ours.version?.era, .handshake)
        XCTAssertEqual(ours.callResult["content"]?.arrayValue?.first?["text"], "done 3")
        XCTAssertEqual(ours.progress, 3, "progress notifications ride the request's SSE stream")
        XCTAssertEqual(ours.notes, [], "and are reported as that request's")
        try checkAgainstSDK(try run(mode: .handshake, tool: "add", arguments: #"{"a":2,"b":3}"#), tool: "add", arguments: #"{"a":2,"b":3}"#)
    }

    func testModernEraWithJSONResponses() throws {
        try startServer(json: true)
        let ours = try run(mode: .auto, tool: "add", arguments: #"{"a":2,"b":40}"#)
        XCTAssertEqual(ours.version, .v2026_07_28)
        XCTAssertEqual(ours.callResult["content"]?.arrayValue?.first?["text"], "42")
        XCTAssertEqual(ours.callResult["resultType"], "complete")
        try checkAgainstSDK(try run(mode: .auto, tool: "add", arguments: #"{"a":2,"b":3}"#), tool: "add", arguments: #"{"a":2,"b":3}"#)
    }

    func testModernEraWithSSEResponses() throws {
        try startServer(json: false)
        let ours = try run(mode: .modern, tool: "slow", arguments: #"{"n":2}"#)
        XCTAssertEqual(ours.version, .v2026_07_28)
        XCTAssertEqual(ours.callResult["content"]?.arrayValue?.first?["text"], "done 2")
    }

    func testHandshakeEraWithJSONResponses() throws {
        try startServer(json: true)
        let ours = try run(mode: .handshake, tool: "add", arguments: #"{"a":1,"b":1}"#)
        XCTAssertEqual(ours.version?.era, .handshake)
        XCTAssertEqual(ours.callResult["content"]?.arrayValue?.first?["text"], "2")
    }
}

/// One blocking keep-alive TCP connection to 127.0.0.1.
final class BlockingConnection {
    enum Part { case head(Int, [(name: String, value: String)]), body([UInt8]), end }
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard ok == 0 else { throw XCTSkip("cannot connect to 127.0.0.1:\(port)") }
    }

    func close() { Glibc.close(fd) }

    /// Sends a request and reports the response's parts until it is complete.
    func exchange(_ request: [UInt8], deadline: Date, _ onPart: (Part) -> Void) throws {
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw TransportFailure("send failed") }
            sent += n
        }
        let parser = HTTPParser(.response)
        var headReported = false
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !parser.isComplete {
            let remaining = Int32(max(0, deadline.timeIntervalSinceNow * 1000))
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard remaining > 0, poll(&pfd, 1, remaining) > 0 else { throw TransportFailure("no response in time") }
            let n = recv(fd, &chunk, chunk.count, 0)
            guard n > 0 else { throw TransportFailure("connection closed") }
            var offset = 0
            while offset < n {
                let used = try chunk[offset..<n].withUnsafeBytes { try parser.feed($0) }
                offset += used
                if parser.isHeadComplete && !headReported {
                    headReported = true
                    onPart(.head(parser.status, parser.headers))
                }
                let body = parser.takeBody()
                if !body.isEmpty { onPart(.body(body)) }
                if parser.isComplete { break }
                if used == 0 { break }
            }
        }
        onPart(.end)
    }
}

struct TransportFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
