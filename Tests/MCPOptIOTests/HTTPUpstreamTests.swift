import Foundation
import Glibc
import XCTest
import MCPOptTestSupport
import MCPOptJSON
import MCPOptProtocol
import MCPOptUpstream
@testable import MCPOptIO

/// Streamable HTTP through the reactor's keep-alive pool, against a real FastMCP server (both
/// eras, JSON and SSE responses).
final class HTTPUpstreamTests: XCTestCase {
    private var server: Process?

    override func tearDown() { stopServer() }

    /// SIGKILL: uvicorn's graceful shutdown on SIGTERM can wait on its session tasks for long.
    private func stopServer() {
        guard let server else { return }
        kill(server.processIdentifier, SIGKILL)
        server.waitUntilExit()
        self.server = nil
    }

    private func venvTool(_ name: String) throws -> String {
        let venv = ProcessInfo.processInfo.environment["MCPOPT_VENV"] ?? StdioUpstreamTests.repository.appendingPathComponent(".venv").path
        let path = venv + "/bin/" + name
        guard FileManager.default.isExecutableFile(atPath: path) else {
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("\(path) is missing: run scripts/setup"); throw CancellationError() }
            throw XCTSkip("\(path) is missing: run scripts/setup to install the real MCP servers")
        }
        return path
    }

    /// Starts Tests/interop/fastmcp_server.py and returns its port; over HTTPS with `tls`
    /// (a certificate and its key).
    private func startServer(json: Bool, tls: (certificate: String, key: String)? = nil, clientCA: String? = nil, keepAlive: Double? = nil) throws -> Int {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try venvTool("python"))
        var arguments = [StdioUpstreamTests.repository.appendingPathComponent("Tests/interop/fastmcp_server.py").path]
        if json { arguments.append("--json") }
        if let tls { arguments += ["--tls", tls.certificate, tls.key] }
        if let clientCA { arguments += ["--client-ca", clientCA] }
        if let keepAlive { arguments += ["--keep-alive", String(keepAlive)] }
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        server = process
        var text = ""
        let deadline = Date().addingTimeInterval(30)
        while !text.contains("\n"), Date() < deadline {
            let data = out.fileHandleForReading.availableData
            if data.isEmpty { break }
            text += String(decoding: data, as: UTF8.self)
        }
        guard let line = text.split(separator: "\n").first, line.hasPrefix("PORT "), let port = Int(line.dropFirst(5)) else {
            XCTFail("the FastMCP server did not start: \(text)")
            throw CancellationError()
        }
        return port
    }

    private func result(_ message: [UInt8]) throws -> JSONValue {
        try JSONParser.parse(try MessageDecoder().decodeOwned(message).result ?? [])
    }

    private func call(_ tool: String, _ arguments: String) -> UpstreamRequest {
        UpstreamRequest(method: "tools/call", paramsJSON: #"{"name":"\#(tool)","arguments":\#(arguments)}"#)
    }

    func testFastMCPInBothErasWithJSONAndSSE() async throws {
        for json in [false, true] {
            let port = try startServer(json: json)
            for mode in [ClientSession.Mode.handshake, .auto] {
                let loop = try EventLoop()
                let upstream = HTTPUpstream(endpoint: .init(host: "127.0.0.1", port: port, path: "/mcp"), loop: loop, mode: mode)
                upstream.start()
                let list: JSONValue
                do {
                    list = try result(try await upstream.request(UpstreamRequest(method: "tools/list"), timeout: .seconds(10)))
                } catch {
                    XCTFail("tools/list (json \(json), \(mode)): \(error); events: \(upstream.events)")
                    throw error
                }
                let names = Set((list["tools"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue })
                XCTAssertTrue(names.isSuperset(of: ["add", "slow"]), "\(names)")
                let sum = try result(try await upstream.request(call("add", #"{"a":2,"b":40}"#)))
                XCTAssertEqual(sum["content"]?.arrayValue?.first?["text"], "42", "json \(json) mode \(mode)")
                let slow = try result(try await upstream.request(call("slow", #"{"n":2}"#)))
                XCTAssertEqual(slow["content"]?.arrayValue?.first?["text"], "done 2")
                XCTAssertEqual(upstream.version?.era, mode == .handshake ? .handshake : .modern, "json \(json)")
                await upstream.shutdown()
                loop.shutdown()
            }
            stopServer()
        }
    }

    func testKeepAliveConnectionsAreReusedAndCapped() async throws {
        let port = try startServer(json: true)
        let loop = try EventLoop()
        defer { loop.shutdown() }
        let upstream = HTTPUpstream(endpoint: .init(host: "127.0.0.1", port: port, path: "/mcp"), loop: loop, mode: .handshake, maxConnections: 3)
        upstream.start()
        _ = try await upstream.request(call("add", #"{"a":0,"b":0}"#))
        let afterHandshake = upstream.connectionsOpened
        for index in 0..<15 {
            let sum = try result(try await upstream.request(call("add", #"{"a":\#(index),"b":1}"#)))
            XCTAssertEqual(sum["content"]?.arrayValue?.first?["text"]?.stringValue, String(index + 1))
        }
        XCTAssertEqual(upstream.connectionsOpened, afterHandshake, "sequential requests reuse a keep-alive connection")
        let request = call("add", #"{"a":1,"b":1}"#)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<12 { group.addTask { _ = try await upstream.request(request) } }
            try await group.waitForAll()
        }
        XCTAssertLessThanOrEqual(upstream.connectionsOpened, afterHandshake + 3, "never more than maxConnections at once")
        await upstream.shutdown()
    }

    func testUnreachableServerFailsClearly() async throws {
        let loop = try EventLoop()
        defer { loop.shutdown() }
        let upstream = HTTPUpstream(endpoint: .init(host: "127.0.0.1", port: 1, path: "/mcp"), loop: loop)
        upstream.start()
        do {
            _ = try await upstream.request(UpstreamRequest(method: "tools/list"), timeout: .seconds(5))
            XCTFail("nothing listens on port 1")
        } catch {
            XCTAssertTrue(error.message.contains("refused"), error.message)
        }
        await upstream.shutdown()
    }
}

extension HTTPUpstreamTests {
    /// A server's request to the client arrives on the stream of the call it came during; the
    /// handler's reply is POSTed back in the same session, and the call completes with it.
    func testServerRequestsReachTheHandlerAndItsReplyTheServer() async throws {
        // SSE answers only: a server answering in plain JSON has no stream to ask on.
        for json in [false] {
            let port = try startServer(json: json)
            let loop = try EventLoop()
            let upstream = HTTPUpstream(endpoint: .init(host: "127.0.0.1", port: port, path: "/mcp"), loop: loop, mode: .handshake,
                                        identity: .init(capabilities: ["sampling": [:]]))
            let asked = LockedStrings()
            upstream.onServerRequest { method, message, reply in
                asked.append(method)
                let id = (try? JSONParser.parse(message))?["id"] ?? .null
                let answer: JSONValue = ["jsonrpc": "2.0", "id": id,
                                         "result": ["role": "assistant", "model": "test", "content": ["type": "text", "text": "forty-two"]]]
                reply(Array(answer.jsonString.utf8))
            }
            upstream.start()
            let answer: JSONValue
            do {
                answer = try result(try await upstream.request(call("ask_client", #"{"question":"six times seven?"}"#), timeout: .seconds(20)))
            } catch {
                XCTFail("json \(json): \(error); asked \(asked.items); events \(upstream.events)")
                throw error
            }
            XCTAssertEqual(answer["content"]?.arrayValue?.first?["text"], "the model said: forty-two", "json \(json): \(answer)")
            XCTAssertEqual(asked.items, ["sampling/createMessage"])
            await upstream.shutdown()
            loop.shutdown()
            stopServer()
        }
    }
}

final class LockedStrings: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    func append(_ s: String) { lock.lock(); stored.append(s); lock.unlock() }
    var items: [String] { lock.lock(); defer { lock.unlock() }; return stored }
}

extension HTTPUpstreamTests {
    /// What a handshake-era server sends outside of any request (here a resource update after
    /// the call answered) arrives on the session's GET stream, which the upstream keeps open.
    func testNotificationsOutsideRequestsArriveOnTheGetStream() async throws {
        try await checkGetStream(port: try startServer(json: false), host: "127.0.0.1", tls: nil)
    }

    /// The GET stream's notification arrives, and requests still flow beside the open stream.
    func checkGetStream(port: Int, host: String, tls: TLSOptions?) async throws {
        let loop = try EventLoop()
        let upstream = HTTPUpstream(endpoint: .init(host: host, port: port, path: "/mcp"), loop: loop, mode: .handshake, tls: tls)
        let seen = LockedStrings()
        upstream.onNotification { method, message in
            if method == "notifications/resources/updated" { seen.append(String(decoding: message, as: UTF8.self)) }
        }
        upstream.start()
        let answer = try result(try await upstream.request(call("touch_later", #"{"uri":"data://greeting"}"#), timeout: .seconds(20)))
        XCTAssertEqual(answer["content"]?.arrayValue?.first?["text"], "scheduled")
        let deadline = Date().addingTimeInterval(10)
        while seen.items.isEmpty, Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        XCTAssertEqual(seen.items.count, 1, "events: \(upstream.events)")
        XCTAssertTrue(seen.items.first?.contains("data://greeting") == true, "\(seen.items)")
        let sum = try result(try await upstream.request(call("add", #"{"a":1,"b":2}"#)))
        XCTAssertEqual(sum["content"]?.arrayValue?.first?["text"], "3")
        await upstream.shutdown()
        loop.shutdown()
        stopServer()
    }
}

/// https:// servers: the handshake, the server's certificate checked against the configured
/// CAs and the host asked for, and every exchange (POST answers as JSON and SSE, the GET
/// stream) carried over TLS. Against the real FastMCP server behind uvicorn's TLS, with a CA
/// made for the test (Tests/interop/make_test_certs.sh).
extension HTTPUpstreamTests {
    private func makeCertificates() throws -> String { try TestCertificates.make(for: self) }

    func testHTTPSWithAPrivateCA() async throws {
        let certificates = try makeCertificates()
        for json in [false, true] {
            let port = try startServer(json: json, tls: ("\(certificates)/server.pem", "\(certificates)/server.key"))
            // By address (the certificate names 127.0.0.1) and by name (it names localhost: SNI).
            for (host, mode) in [("127.0.0.1", ClientSession.Mode.handshake), ("localhost", .auto)] {
                let loop = try EventLoop()
                let upstream = HTTPUpstream(endpoint: .init(host: host, port: port, path: "/mcp"), loop: loop, mode: mode,
                                            tls: TLSOptions(caFile: "\(certificates)/ca.pem"))
                upstream.start()
                let sum: JSONValue
                do {
                    sum = try result(try await upstream.request(call("add", #"{"a":2,"b":40}"#), timeout: .seconds(10)))
                } catch {
                    XCTFail("\(host), json \(json): \(error); events: \(upstream.events)")
                    throw error
                }
                XCTAssertEqual(sum["content"]?.arrayValue?.first?["text"], "42", "\(host), json \(json)")
                // Progress on the call's stream, and keep-alive reuse of the TLS connection.
                let slow = try result(try await upstream.request(call("slow", #"{"n":3}"#)))
                XCTAssertEqual(slow["content"]?.arrayValue?.first?["text"], "done 3")
                let opened = upstream.connectionsOpened
                for index in 0..<5 {
                    let next = try result(try await upstream.request(call("add", #"{"a":\#(index),"b":1}"#)))
                    XCTAssertEqual(next["content"]?.arrayValue?.first?["text"]?.stringValue, String(index + 1))
                }
                XCTAssertEqual(upstream.connectionsOpened, opened, "sequential requests reuse the TLS connection")
                await upstream.shutdown()
                loop.shutdown()
            }
            stopServer()
        }
    }

    /// Requests at once over a pool of TLS connections (under ThreadSanitizer in CI: the name
    /// says Concurrent): every answer its own, never more connections than the cap.
    func testHTTPSConcurrentRequestsShareThePool() async throws {
        let certificates = try makeCertificates()
        let port = try startServer(json: true, tls: ("\(certificates)/server.pem", "\(certificates)/server.key"))
        let loop = try EventLoop()
        defer { loop.shutdown() }
        let upstream = HTTPUpstream(endpoint: .init(host: "127.0.0.1", port: port, path: "/mcp"), loop: loop, mode: .handshake, maxConnections: 3,
                                    tls: TLSOptions(caFile: "\(certificates)/ca.pem"))
        upstream.start()
        _ = try await upstream.request(call("add", #"{"a":0,"b":0}"#), timeout: .seconds(10))
        let before = upstream.connectionsOpened
        let sums = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
            for index in 0..<16 {
                let request = call("add", #"{"a":\#(index),"b":100}"#)
                group.addTask {
                    let answer = try await upstream.request(request, timeout: .seconds(20))
                    let result = try JSONParser.parse(try MessageDecoder().decodeOwned(answer).result ?? [])
                    return (index, result["content"]?.arrayValue?.first?["text"]?.stringValue)
                }
            }
            var all: [Int: String?] = [:]
            for try await (index, text) in group { all[index] = text }
            return all
        }
        for index in 0..<16 { XCTAssertEqual(sums[index] ?? nil, String(index + 100)) }
        XCTAssertLessThanOrEqual(upstream.connectionsOpened, before + 3, "never more than maxConnections at once")
        await upstream.shutdown()
        stopServer()
    }

    /// The server closes an idle TLS connection (close_notify, then the end): the next request
    /// goes on a fresh connection, with a new handshake, and is answered. Once the server has
    /// given a session, every new connection resumes it (no certificate exchange).
    func testHTTPSServerClosingIdleConnections() async throws {
        let certificates = try makeCertificates()
        let port = try startServer(json: true, tls: ("\(certificates)/server.pem", "\(certificates)/server.key"), keepAlive: 0.3)
        let loop = try EventLoop()
        defer { loop.shutdown() }
        let upstream = HTTPUpstream(endpoint: .init(host: "127.0.0.1", port: port, path: "/mcp"), loop: loop, mode: .handshake,
                                    tls: TLSOptions(caFile: "\(certificates)/ca.pem"))
        upstream.start()
        var before: (opened: Int, resumed: Int)?
        for index in 0..<3 {
            let sum = try result(try await upstream.request(call("add", #"{"a":\#(index),"b":10}"#), timeout: .seconds(10)))
            // The session's start has been answered: the server's session tickets are in.
            if before == nil { before = (upstream.connectionsOpened, upstream.connectionsResumed) }
            XCTAssertEqual(sum["content"]?.arrayValue?.first?["text"]?.stringValue, String(index + 10), "events: \(upstream.events)")
            try await Task.sleep(for: .milliseconds(800))   // past the server's keep-alive
        }
        XCTAssertGreaterThanOrEqual(upstream.connectionsOpened, 3, "each request after an idle close opens a new connection")
        let reconnects = upstream.connectionsOpened - before!.opened
        XCTAssertGreaterThanOrEqual(reconnects, 2, "the requests after the first each found their connection closed")
        XCTAssertEqual(upstream.connectionsResumed - before!.resumed, reconnects, "every reconnect resumed a session")
        await upstream.shutdown()
        stopServer()
    }

    /// A notification outside any request comes on the GET stream: a second TLS connection,
    /// held open.
    func testHTTPSGetStream() async throws {
        let certificates = try makeCertificates()
        let port = try startServer(json: false, tls: ("\(certificates)/server.pem", "\(certificates)/server.key"))
        try await checkGetStream(port: port, host: "localhost", tls: TLSOptions(caFile: "\(certificates)/ca.pem"))
    }

    /// A server that wants a client certificate (mutual TLS): given one its CA signed, requests
    /// are answered; without one, the request fails and says what the server wanted; a key that
    /// is not the certificate's fails before anything is sent.
    func testHTTPSMutualTLS() async throws {
        let certificates = try makeCertificates()
        let port = try startServer(json: true, tls: ("\(certificates)/server.pem", "\(certificates)/server.key"), clientCA: "\(certificates)/ca.pem")
        defer { stopServer() }
        func outcome(_ tls: TLSOptions) async -> Result<String, UpstreamError> {
            let loop: EventLoop
            do { loop = try EventLoop() } catch { return .failure(UpstreamError(.closed, error.message)) }
            defer { loop.shutdown() }
            let upstream = HTTPUpstream(endpoint: .init(host: "localhost", port: port, path: "/mcp"), loop: loop, mode: .handshake, tls: tls)
            upstream.start()
            defer { Task { await upstream.shutdown() } }
            do {
                let answer = try await upstream.request(call("add", #"{"a":40,"b":2}"#), timeout: .seconds(10))
                let sum = try? JSONParser.parse(try MessageDecoder().decodeOwned(answer).result ?? [])
                return .success(sum?["content"]?.arrayValue?.first?["text"]?.stringValue ?? "?")
            } catch {
                return .failure(error)
            }
        }
        let ca = "\(certificates)/ca.pem"
        let with = await outcome(TLSOptions(caFile: ca, clientCertificate: "\(certificates)/client.pem", clientKey: "\(certificates)/client.key"))
        XCTAssertEqual(try with.get(), "42")
        let without = await outcome(TLSOptions(caFile: ca))
        guard case .failure(let refused) = without else { return XCTFail("answered without a client certificate: \(without)") }
        XCTAssertTrue(refused.message.contains("asking for a client certificate; none is configured"), refused.message)
        let mismatched = await outcome(TLSOptions(caFile: ca, clientCertificate: "\(certificates)/client.pem", clientKey: "\(certificates)/server.key"))
        guard case .failure(let wrongKey) = mismatched else { return XCTFail("answered with a mismatched key: \(mismatched)") }
        XCTAssertTrue(wrongKey.message.contains("client certificate") && wrongKey.message.contains("mismatch"), wrongKey.message)
    }

    /// The CA bundle read again (`reloadTLS`): connections opened after use the new one; files
    /// that do not load leave the one in use.
    func testHTTPSReloadsItsTLSFiles() async throws {
        let certificates = try makeCertificates()
        // Idle connections close after 0.3 s: a request after a pause opens a new one.
        let port = try startServer(json: true, tls: ("\(certificates)/server.pem", "\(certificates)/server.key"), keepAlive: 0.3)
        defer { stopServer() }
        let bundle = "\(certificates)/bundle.pem"
        func put(_ source: String) throws {
            _ = unlink(bundle)
            try FileManager.default.copyItem(atPath: source, toPath: bundle)
        }
        try put("\(certificates)/ca.pem")
        let loop = try EventLoop()
        defer { loop.shutdown() }
        let upstream = HTTPUpstream(endpoint: .init(host: "127.0.0.1", port: port, path: "/mcp"), loop: loop, mode: .handshake,
                                    tls: TLSOptions(caFile: bundle))
        upstream.start()
        func sum(_ a: Int) async throws -> String? {
            let answer = try await upstream.request(call("add", #"{"a":\#(a),"b":1}"#), timeout: .seconds(10))
            return try result(answer)["content"]?.arrayValue?.first?["text"]?.stringValue
        }
        let first = try await sum(1)
        XCTAssertEqual(first, "2")
        // A bundle that does not load: refused, and the CA in use stays.
        try "not a certificate\n".write(toFile: bundle, atomically: true, encoding: .utf8)
        let refused = await upstream.reloadTLS()
        XCTAssertTrue(refused?.contains("cannot load the CA certificates") ?? false, refused ?? "reloaded")
        // A bundle without the server's CA: loaded, and connections opened after are refused.
        try put("\(certificates)/other.pem")
        let reloaded = await upstream.reloadTLS()
        XCTAssertNil(reloaded)
        try await Task.sleep(for: .milliseconds(800))
        do {
            _ = try await sum(2)
            XCTFail("a connection checked against the reloaded bundle was accepted")
        } catch {
            XCTAssertTrue("\(error)".contains("certificate was not accepted"), "\(error)")
        }
        // The right CA again: answered.
        try put("\(certificates)/ca.pem")
        let back = await upstream.reloadTLS()
        XCTAssertNil(back)
        try await Task.sleep(for: .milliseconds(800))
        let again = try await sum(3)
        XCTAssertEqual(again, "4")
        await upstream.shutdown()
    }

    /// A certificate no trusted CA signed, or one for another name: the request fails and says
    /// why; nothing is sent in the clear.
    func testHTTPSRefusesCertificatesItCannotTrust() async throws {
        let certificates = try makeCertificates()
        func failure(_ certificate: String, caFile: String?, host: String = "127.0.0.1") async throws -> String {
            let port = try startServer(json: true, tls: ("\(certificates)/\(certificate).pem", "\(certificates)/\(certificate).key"))
            defer { stopServer() }
            let loop = try EventLoop()
            defer { loop.shutdown() }
            let upstream = HTTPUpstream(endpoint: .init(host: host, port: port, path: "/mcp"), loop: loop, mode: .handshake, tls: TLSOptions(caFile: caFile))
            upstream.start()
            do {
                _ = try await upstream.request(call("add", #"{"a":1,"b":1}"#), timeout: .seconds(10))
                XCTFail("\(certificate) with \(caFile ?? "the system's CAs") was accepted")
                return ""
            } catch {
                await upstream.shutdown()
                return error.message
            }
        }
        let untrusted = try await failure("server", caFile: nil)
        XCTAssertTrue(untrusted.contains("certificate was not accepted") && untrusted.contains("issuer"), untrusted)
        let otherName = try await failure("other", caFile: "\(certificates)/ca.pem", host: "localhost")
        XCTAssertTrue(otherName.contains("certificate was not accepted") && otherName.contains("mismatch"), otherName)
        // A CA bundle that is not one fails the session with OpenSSL's reason.
        let notPEM = try await failure("server", caFile: "\(certificates)/server.key")
        XCTAssertTrue(notPEM.contains("cannot load the CA certificates"), notPEM)
    }
}
