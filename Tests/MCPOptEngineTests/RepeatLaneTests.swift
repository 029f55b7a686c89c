import Foundation
import Glibc
import XCTest
import MCPOptGateway
import MCPOptJSON
import MCPOptProtocol
@testable import MCPOptEngine

/// The HTTP front's repeat lane (`RepeatMemo`, `HitReplay`) in `mcpopt serve`'s arrangement, in
/// front of the FastMCP key-value server (Tests/interop/kv_server.py, which counts the reads it
/// serves): a repeat of a cached call is answered as the full path answers it, with its own id,
/// and counted as a hit; whatever the full path would decide differently (a write, a catalog
/// change, another credential, an ended session, a check the headers fail) is decided by it.
/// The client is a blocking socket with bounded receive timeouts; nothing is timed.
final class RepeatLaneTests: XCTestCase, @unchecked Sendable {
    struct Answer {
        let status: Int
        let headers: [String: String]
        let body: String
        var json: JSONValue? { try? JSONParser.parse(Array(body.utf8)) }
        var text: String? { json?["result"]?["content"]?.arrayValue?.first?["text"]?.stringValue }
    }

    private func startGateway(repeats: Bool = true, servers: [String]? = nil) async throws -> (HTTPFront<Gateway>, Engine) {
        let list = try servers ?? [RequestPathTests.kvServer("kv")]
        let engine = try Engine(json: #"{"mcpServers": {\#(list.joined(separator: ","))}, "caching": {"tools": {"reads_served": false}}}"#)
        let gateway = Gateway(engine: engine)
        var settings = HTTPFront<Gateway>.Settings()
        settings.port = 0
        if !repeats { settings.repeats = nil }
        let front = try HTTPFront(service: gateway, settings: settings)
        engine.useEventLoop(front.loop)
        _ = await gateway.start()
        try front.start()
        addTeardownBlock {
            front.stopServing()
            await engine.stop()
            front.stop()
        }
        return (front, engine)
    }

    private func connect(_ port: Int) throws -> Int32 {
        let fd = try XCTUnwrap(connectLoopback(port), "cannot connect to the front")
        var timeout = timeval(tv_sec: 20, tv_usec: 0)   // every read below is bounded
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        addTeardownBlock { Glibc.close(fd) }
        return fd
    }

    private func sendAll(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    /// One request, its answer read whole (Content-Length bodies only: these answers have no
    /// progress to stream).
    /// `credential`: the bearer token sent, or nil for none (the gateway requires none; it
    /// partitions the cache).
    private func exchange(_ fd: Int32, method: String = "POST", body: String, session: String?, credential: String? = "alice", headers: [String] = [],
                          split: Bool = false) -> Answer? {
        var head = "\(method) /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json, text/event-stream\r\nContent-Type: application/json\r\n"
        if let credential { head += "Authorization: Bearer \(credential)\r\n" }
        if let session { head += "Mcp-Session-Id: \(session)\r\nMCP-Protocol-Version: 2025-06-18\r\n" }
        for h in headers { head += h + "\r\n" }
        head += "Content-Length: \(body.utf8.count)\r\n\r\n"
        if split {
            // The body a moment after the head: the front reads the request in two goes.
            sendAll(fd, Array(head.utf8))
            usleep(50_000)
            sendAll(fd, Array(body.utf8))
        } else {
            sendAll(fd, Array((head + body).utf8))
        }
        return receive(fd)
    }

    /// Bytes read past the last answer (pipelined answers), by socket.
    private var unread: [Int32: [UInt8]] = [:]

    /// Reads one answer.
    private func receive(_ fd: Int32) -> Answer? {
        var received = unread.removeValue(forKey: fd) ?? []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            if let end = received.indices.dropLast(3).first(where: { received[$0..<($0 + 4)].elementsEqual([13, 10, 13, 10]) }) {
                let headText = String(decoding: received[..<end], as: UTF8.self)
                var lines = headText.components(separatedBy: "\r\n")
                let status = Int(lines.removeFirst().split(separator: " ")[1]) ?? 0
                var fields: [String: String] = [:]
                for line in lines {
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                }
                let length = Int(fields["content-length"] ?? "0") ?? 0
                if received.count >= end + 4 + length {
                    unread[fd] = Array(received[(end + 4 + length)...])
                    return Answer(status: status, headers: fields, body: String(decoding: received[(end + 4)..<(end + 4 + length)], as: UTF8.self))
                }
            }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            received += buffer[0..<n]
        }
    }

    private func initialize(_ fd: Int32) throws -> String {
        let answer = exchange(fd, body: #"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#, session: nil)
        let session = try XCTUnwrap(answer?.headers["mcp-session-id"])
        XCTAssertEqual(exchange(fd, body: #"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, session: session)?.status, 202)
        return session
    }

    private func call(_ tool: String, _ arguments: String, id: String) -> String {
        #"{"jsonrpc":"2.0","id":\#(id),"method":"tools/call","params":{"name":"\#(tool)","arguments":\#(arguments)}}"#
    }

    private func reads(_ fd: Int32, _ session: String) -> Int {
        Int(exchange(fd, body: call("reads_served", "{}", id: "900"), session: session)?.text ?? "") ?? -1
    }

    func testARepeatOfACachedCallIsAnsweredAsTheFullPathAnswersItUntilAnythingItDependsOnChanges() async throws {
        let (front, engine) = try await startGateway()
        let fd = try connect(front.port)
        let session = try initialize(fd)
        XCTAssertEqual(exchange(fd, body: call("put", #"{"key":"a","value":"1"}"#, id: "1"), session: session)?.text, "ok")
        // A miss (the server reads), a hit through the full path (the lane learns it), then
        // repeats through the lane.
        XCTAssertEqual(exchange(fd, body: call("get", #"{"key":"a"}"#, id: "2"), session: session)?.text, "1")
        let readsAfterMiss = reads(fd, session)
        let full = try XCTUnwrap(exchange(fd, body: call("get", #"{"key":"a"}"#, id: "3"), session: session))
        XCTAssertEqual(front.repeatsAnswered, 0)
        let hitsBefore = engine.metrics.cacheHits.load()
        for id in ["4", "5"] {
            let lane = try XCTUnwrap(exchange(fd, body: call("get", #"{"key":"a"}"#, id: id), session: session))
            XCTAssertEqual(lane.status, 200)
            XCTAssertEqual(lane.headers["content-type"], "application/json")
            XCTAssertEqual(lane.body, full.body.replacingOccurrences(of: #""id":3"#, with: #""id":\#(id)"#), "the full path's answer, with the repeat's id")
        }
        XCTAssertEqual(front.repeatsAnswered, 2)
        XCTAssertEqual(engine.metrics.cacheHits.load() - hitsBefore, 2, "answers of the lane are counted as hits")
        // A longer id changes the Content-Length: the full path, once per id length; a string
        // id and a negative one of that length then go through the lane.
        XCTAssertEqual(exchange(fd, body: call("get", #"{"key":"a"}"#, id: #""""#), session: session)?.json?["id"], .string(""))
        XCTAssertEqual(front.repeatsAnswered, 2)
        XCTAssertEqual(exchange(fd, body: call("get", #"{"key":"a"}"#, id: "-7"), session: session)?.json?["id"], .int(-7))
        XCTAssertEqual(front.repeatsAnswered, 3)
        XCTAssertEqual(reads(fd, session), readsAfterMiss, "no repeat reached the server")

        // A write in the group drops the cached read: the repeat goes to the server, fresh.
        XCTAssertEqual(exchange(fd, body: call("put", #"{"key":"a","value":"2"}"#, id: "7"), session: session)?.text, "ok")
        XCTAssertEqual(exchange(fd, body: call("get", #"{"key":"a"}"#, id: "8"), session: session)?.text, "2")
        XCTAssertEqual(front.repeatsAnswered, 3)
        XCTAssertEqual(reads(fd, session), readsAfterMiss + 1)
        // What the lane knows names the cache entry, not its value: the refilled entry answers.
        XCTAssertEqual(exchange(fd, body: call("get", #"{"key":"a"}"#, id: "9"), session: session)?.text, "2")
        XCTAssertEqual(front.repeatsAnswered, 4)

        // A catalog replaced: the full path decides (a hit still), then the lane learns again.
        engine.runtime.setCatalog(try XCTUnwrap(engine.runtime.catalog("kv")))
        XCTAssertEqual(exchange(fd, body: call("get", #"{"key":"a"}"#, id: "8"), session: session)?.text, "2")
        XCTAssertEqual(front.repeatsAnswered, 4)
        XCTAssertEqual(exchange(fd, body: call("get", #"{"key":"a"}"#, id: "9"), session: session)?.text, "2")
        XCTAssertEqual(front.repeatsAnswered, 5)

        // Another credential is another cache partition: the full path, and the server.
        let readsBefore = reads(fd, session)
        XCTAssertEqual(exchange(fd, body: call("get", #"{"key":"a"}"#, id: "9"), session: session, credential: "bob")?.text, "2")
        XCTAssertEqual(front.repeatsAnswered, 5)
        XCTAssertEqual(reads(fd, session), readsBefore + 1)
        // A caller without credentials has a partition of its own too: what it fetched is not
        // served to a credentialed caller (the result is not marked public), nor the reverse.
        XCTAssertEqual(exchange(fd, body: call("put", #"{"key":"b","value":"3"}"#, id: "9"), session: session)?.text, "ok")
        XCTAssertEqual(exchange(fd, body: call("get", #"{"key":"a"}"#, id: "9"), session: session)?.text, "2")
        let base = reads(fd, session)
        for _ in 0..<2 { XCTAssertEqual(exchange(fd, body: call("get", #"{"key":"b"}"#, id: "9"), session: session, credential: nil)?.text, "3") }
        XCTAssertEqual(reads(fd, session), base + 1, "the anonymous caller's repeat is its own hit")
        XCTAssertEqual(exchange(fd, body: call("get", #"{"key":"b"}"#, id: "9"), session: session, credential: "carol")?.text, "3")
        XCTAssertEqual(reads(fd, session), base + 2, "a credentialed caller is not served the anonymous caller's entry")
        XCTAssertEqual(exchange(fd, body: call("get", #"{"key":"a"}"#, id: "9"), session: session, credential: nil)?.text, "2")
        XCTAssertEqual(reads(fd, session), base + 3, "nor is the anonymous caller served alice's")
        XCTAssertEqual(exchange(fd, body: call("get", #"{"key":"a"}"#, id: "9"), session: session)?.text, "2")
        XCTAssertEqual(reads(fd, session), base + 3, "alice's entry is still there")
        // A header the front refuses is refused, whatever the lane knows of the body.
        XCTAssertEqual(exchange(fd, body: call("get", #"{"key":"a"}"#, id: "9"), session: session, headers: ["Origin: http://evil.example"])?.status, 403)
        // A request read in two goes is a repeat too (the front keeps the bytes it parses).
        let beforeSplit = front.repeatsAnswered
        XCTAssertEqual(exchange(fd, body: call("get", #"{"key":"a"}"#, id: "7"), session: session, split: true)?.text, "2")
        XCTAssertEqual(front.repeatsAnswered, beforeSplit + 1)

        // Repeats sent together (pipelined) are answered in order, each with its own id; one
        // with a longer id (another Content-Length) in between takes the full path.
        let before = front.repeatsAnswered
        let pipelined = ["5", "678", "6"].map { id in
            let body = call("get", #"{"key":"a"}"#, id: id)
            return "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json, text/event-stream\r\nContent-Type: application/json\r\n"
                + "Authorization: Bearer alice\r\nMcp-Session-Id: \(session)\r\nMCP-Protocol-Version: 2025-06-18\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body
        }.joined()
        sendAll(fd, Array(pipelined.utf8))
        for id in [5, 678, 6] {
            let answer = try XCTUnwrap(receive(fd))
            XCTAssertEqual(answer.json?["id"], .int(Int64(id)))
            XCTAssertEqual(answer.text, "2")
        }
        XCTAssertEqual(front.repeatsAnswered - before, 2)

        // `Connection: close`, on connections of their own: the second is a repeat (the memo
        // after the parse), answered with the same framing, and the connection ends.
        for round in 0..<2 {
            let other = try connect(front.port)
            let before = front.repeatsAnswered
            let answer = try XCTUnwrap(exchange(other, body: call("get", #"{"key":"a"}"#, id: "4"), session: session, headers: ["Connection: close"]))
            XCTAssertEqual(answer.text, "2")
            XCTAssertEqual(answer.headers["connection"], "close")
            XCTAssertEqual(front.repeatsAnswered - before, UInt64(round), "the first is learnt, the second repeats it")
            var byte: UInt8 = 0
            XCTAssertEqual(recv(other, &byte, 1, 0), 0, "the front closed the connection")
        }

        // An ended session: the same bytes are refused as the full path refuses them.
        XCTAssertEqual(exchange(fd, method: "DELETE", body: "", session: session)?.status, 200)
        let answered = front.repeatsAnswered
        XCTAssertEqual(exchange(fd, body: call("get", #"{"key":"a"}"#, id: "9"), session: session)?.status, 404)
        XCTAssertEqual(front.repeatsAnswered, answered)
    }

    private func request(_ method: String, _ params: String, id: String) -> String {
        #"{"jsonrpc":"2.0","id":\#(id),"method":"\#(method)","params":\#(params)}"#
    }

    /// The kv server, spoken to in the handshake era: its resources and prompts then come
    /// without the modern era's `ttlMs` (FastMCP's is 0: not to be cached), and the cache's
    /// default TTL applies.
    private func handshakeKV(_ name: String) throws -> String {
        String(try RequestPathTests.kvServer(name).dropLast()) + #", "protocol": "handshake"}"#
    }

    func testRepeatsOfResourceReadsAndPromptsAreAnsweredByTheLaneAndAWriteStillReachesThem() async throws {
        let (front, engine) = try await startGateway(servers: [handshakeKV("kv")])
        let fd = try connect(front.port)
        let session = try initialize(fd)
        XCTAssertEqual(exchange(fd, body: call("put", #"{"key":"r","value":"1"}"#, id: "1"), session: session)?.text, "ok")
        let read = request("resources/read", #"{"uri":"kv://r"}"#, id: "2")
        let miss = try XCTUnwrap(exchange(fd, body: read, session: session))
        XCTAssertEqual(miss.json?["result"]?["contents"]?.arrayValue?.first?["text"]?.stringValue, "1")
        let readsAfterMiss = reads(fd, session)
        let full = try XCTUnwrap(exchange(fd, body: request("resources/read", #"{"uri":"kv://r"}"#, id: "3"), session: session))
        XCTAssertEqual(front.repeatsAnswered, 0)
        let hitsBefore = engine.metrics.cacheHits.load()
        for id in ["4", "5"] {
            let lane = try XCTUnwrap(exchange(fd, body: request("resources/read", #"{"uri":"kv://r"}"#, id: id), session: session))
            XCTAssertEqual(lane.body, full.body.replacingOccurrences(of: #""id":3"#, with: #""id":\#(id)"#))
        }
        XCTAssertEqual(front.repeatsAnswered, 2)
        XCTAssertEqual(engine.metrics.cacheHits.load() - hitsBefore, 2)
        XCTAssertEqual(reads(fd, session), readsAfterMiss, "no repeat reached the server")
        // A write in the group drops the cached read: the repeat is fresh from the server.
        XCTAssertEqual(exchange(fd, body: call("put", #"{"key":"r","value":"2"}"#, id: "6"), session: session)?.text, "ok")
        let fresh = try XCTUnwrap(exchange(fd, body: request("resources/read", #"{"uri":"kv://r"}"#, id: "7"), session: session))
        XCTAssertEqual(fresh.json?["result"]?["contents"]?.arrayValue?.first?["text"]?.stringValue, "2")
        XCTAssertEqual(front.repeatsAnswered, 2)

        // prompts/get: the second is a hit through the full path, the rest through the lane.
        let prompt = { (id: String) in self.request("prompts/get", #"{"name":"describe","arguments":{"key":"r"}}"#, id: id) }
        let first = try XCTUnwrap(exchange(fd, body: prompt("8"), session: session))
        XCTAssertTrue(first.body.contains("Describe the value stored under r"), first.body)
        let second = try XCTUnwrap(exchange(fd, body: prompt("9"), session: session))
        let before = front.repeatsAnswered
        let third = try XCTUnwrap(exchange(fd, body: prompt("7"), session: session))
        XCTAssertEqual(front.repeatsAnswered, before + 1)
        XCTAssertEqual(third.body, second.body.replacingOccurrences(of: #""id":9"#, with: #""id":7"#))

        // A modern-era client (no session): its answers are completed as modern results, the
        // lane's as the full path's.
        let meta = #""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#
        let modern = { (id: String) in
            self.exchange(fd, body: self.request("resources/read", #"{"uri":"kv://r",\#(meta)}"#, id: id), session: nil, headers: ["MCP-Protocol-Version: 2026-07-28"])
        }
        let fullModern = try XCTUnwrap(modern("20"))
        XCTAssertEqual(fullModern.json?["result"]?["resultType"], "complete", fullModern.body)
        XCTAssertEqual(fullModern.json?["result"]?["contents"]?.arrayValue?.first?["text"]?.stringValue, "2")
        let beforeModern = front.repeatsAnswered
        let laneModern = try XCTUnwrap(modern("21"))
        XCTAssertEqual(front.repeatsAnswered, beforeModern + 1)
        XCTAssertEqual(laneModern.body, fullModern.body.replacingOccurrences(of: #""id":20"#, with: #""id":21"#))
    }

    func testAResourceTwoGroupsServeIsNotReplayed() async throws {
        // Both servers offer kv://{key}: which one a read goes to (and so its cache key)
        // follows the circuits, which the lane does not follow.
        let (front, engine) = try await startGateway(servers: [handshakeKV("kv"), handshakeKV("kv2")])
        let fd = try connect(front.port)
        let session = try initialize(fd)
        for id in 1...4 {
            XCTAssertNotNil(exchange(fd, body: request("resources/read", #"{"uri":"kv://z"}"#, id: "\(id)"), session: session)?.json?["result"])
        }
        XCTAssertEqual(engine.metrics.cacheHits.load(), 3, "hits through the full path")
        XCTAssertEqual(front.repeatsAnswered, 0)
    }

    func testWithTheLaneOffEveryRepeatTakesTheFullPath() async throws {
        let (front, engine) = try await startGateway(repeats: false)
        let fd = try connect(front.port)
        let session = try initialize(fd)
        _ = exchange(fd, body: call("put", #"{"key":"b","value":"1"}"#, id: "1"), session: session)
        for id in 2...5 { XCTAssertEqual(exchange(fd, body: call("get", #"{"key":"b"}"#, id: "\(id)"), session: session)?.text, "1") }
        XCTAssertEqual(front.repeatsAnswered, 0)
        XCTAssertEqual(engine.metrics.cacheHits.load(), 3)
    }

    // MARK: over stdio

    /// The stdio front over two pipes, in front of the kv server; `lines` sends a line and
    /// reads the answer's line (bounded waits).
    private final class StdioPipes: @unchecked Sendable {
        let toFront: Int32, fromFront: Int32
        var pending: [UInt8] = []
        init(toFront: Int32, fromFront: Int32) {
            self.toFront = toFront
            self.fromFront = fromFront
        }
        func exchange(_ line: String) -> String? {
            let bytes = Array((line + "\n").utf8)
            guard bytes.withUnsafeBytes({ write(toFront, $0.baseAddress, $0.count) }) == bytes.count else { return nil }
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while true {
                if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let answer = String(decoding: pending[..<newline], as: UTF8.self)
                    pending.removeSubrange(...newline)
                    return answer
                }
                var ready = pollfd(fd: fromFront, events: Int16(POLLIN), revents: 0)
                guard poll(&ready, 1, 20_000) == 1 else { return nil }
                let n = read(fromFront, &buffer, buffer.count)
                if n <= 0 { return nil }
                pending += buffer[0..<n]
            }
        }
    }

    private func startStdio(repeats: Bool) async throws -> (StdioFront<Gateway>, StdioPipes) {
        let engine = try Engine(json: #"{"mcpServers": {\#(try RequestPathTests.kvServer("kv"))}, "caching": {"tools": {"reads_served": false}}}"#)
        let gateway = Gateway(engine: engine)
        _ = await gateway.start()
        var inputPipe: [Int32] = [0, 0], outputPipe: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&inputPipe), 0)
        XCTAssertEqual(pipe(&outputPipe), 0)
        let (input, output) = (inputPipe, outputPipe)
        let front = StdioFront(service: gateway, input: input[0], output: output[1], repeats: repeats ? RepeatMemo.Limits() : nil)
        let running = Task { await front.run() }
        addTeardownBlock {
            close(input[1])   // stdin ends: the front returns
            await running.value
            await engine.stop()
            for fd in [input[0], output[0], output[1]] { close(fd) }
        }
        return (front, StdioPipes(toFront: input[1], fromFront: output[0]))
    }

    private func text(_ line: String?) -> String? {
        line.flatMap { try? JSONParser.parse(Array($0.utf8)) }?["result"]?["content"]?.arrayValue?.first?["text"]?.stringValue
    }

    func testOverStdioRepeatsOfACachedCallAreAnsweredByTheLane() async throws {
        let (front, pipes) = try await startStdio(repeats: true)
        let reads = { Int(self.text(pipes.exchange(self.call("reads_served", "{}", id: "900"))) ?? "") ?? -1 }
        XCTAssertEqual(text(pipes.exchange(call("put", #"{"key":"a","value":"1"}"#, id: "1"))), "ok")
        XCTAssertEqual(text(pipes.exchange(call("get", #"{"key":"a"}"#, id: "2"))), "1")
        let readsAfterMiss = reads()
        let full = try XCTUnwrap(pipes.exchange(call("get", #"{"key":"a"}"#, id: "3")))
        XCTAssertEqual(front.repeatsAnswered, 0)
        for id in ["4", #""x-5""#] {
            let lane = try XCTUnwrap(pipes.exchange(call("get", #"{"key":"a"}"#, id: id)))
            XCTAssertEqual(lane, full.replacingOccurrences(of: #""id":3"#, with: #""id":\#(id)"#), "the full path's answer, with the repeat's id")
        }
        XCTAssertEqual(front.repeatsAnswered, 2)
        XCTAssertEqual(reads(), readsAfterMiss, "no repeat reached the server")
        // A write drops the cached read: the repeat is fresh from the server.
        XCTAssertEqual(text(pipes.exchange(call("put", #"{"key":"a","value":"2"}"#, id: "6"))), "ok")
        XCTAssertEqual(text(pipes.exchange(call("get", #"{"key":"a"}"#, id: "7"))), "2")
        XCTAssertEqual(front.repeatsAnswered, 2)
        XCTAssertEqual(reads(), readsAfterMiss + 1)
    }

    func testOverStdioWithTheLaneOffRepeatsTakeTheFullPath() async throws {
        let (front, pipes) = try await startStdio(repeats: false)
        XCTAssertEqual(text(pipes.exchange(call("put", #"{"key":"b","value":"1"}"#, id: "1"))), "ok")
        for id in 2...5 { XCTAssertEqual(text(pipes.exchange(call("get", #"{"key":"b"}"#, id: "\(id)"))), "1") }
        XCTAssertEqual(front.repeatsAnswered, 0)
    }
}

