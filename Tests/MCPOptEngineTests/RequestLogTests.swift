import Foundation
import Glibc
import XCTest
import MCPOptGateway
import MCPOptJSON
import MCPOptProtocol
@testable import MCPOptEngine

/// Servers' log messages about a request (sent on that request's own stream) go to the caller
/// of that request only, filtered by its level; those that belong to no request (stdio) keep
/// the session-wide relay. Against a real FastMCP server over Streamable HTTP (its `chatty`
/// tool logs with `ctx.debug/info/warning`), behind a handshake-era and a modern-era backend
/// session, and the FastMCP key-value server over stdio.
class LogFixture: XCTestCase, @unchecked Sendable {
    var server: Process?

    override func tearDown() {
        guard let server else { return }
        kill(server.processIdentifier, SIGKILL)
        server.waitUntilExit()
    }

    /// Starts Tests/interop/fastmcp_server.py; its port.
    func startFastMCP() throws -> Int {
        let python = try RequestPathTests.venvTool("python")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [RequestPathTests.repository.appendingPathComponent("Tests/interop/fastmcp_server.py").path]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        server = process
        var line: [UInt8] = []
        while !line.contains(UInt8(ascii: "\n")) {
            let data = out.fileHandleForReading.availableData
            if data.isEmpty { break }   // it died
            line += data
        }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("PORT "), let port = Int(text.dropFirst(5).prefix { $0.isNumber }) else {
            XCTFail("the FastMCP server did not start: \(text)")
            throw CancellationError()
        }
        return port
    }

    /// The FastMCP server as `logs_h` (handshake-era session) and `logs_m` (modern), the
    /// key-value server over stdio as `kv`; `chatty` results are cached (so merged).
    func makeEngine(port: Int) throws -> Engine {
        let url = "http://127.0.0.1:\(port)/mcp"
        return try Engine(json: #"""
            {"mcpServers": {"logs_h": {"url": "\#(url)", "protocol": "handshake"}, "logs_m": {"url": "\#(url)", "protocol": "modern"},
                            \#(try RequestPathTests.kvServer("kv"))},
             "caching": {"tools": {"chatty": "60s"}}}
            """#)
    }

    /// A tools/call of `tool`, with `_meta` (modern-era envelope and log level) when given.
    func call(_ tool: String, _ arguments: String, id: Int = 1, modern: Bool = false, level: String? = nil) -> [UInt8] {
        var meta: [String] = []
        if modern { meta += [#""io.modelcontextprotocol/protocolVersion":"2026-07-28""#, #""io.modelcontextprotocol/clientCapabilities":{}"#] }
        if let level { meta.append(#""io.modelcontextprotocol/logLevel":"\#(level)""#) }
        let metaJSON = meta.isEmpty ? "" : #","_meta":{"# + meta.joined(separator: ",") + "}"
        return Array(#"{"jsonrpc":"2.0","id":\#(id),"method":"tools/call","params":{"name":"\#(tool)","arguments":\#(arguments)\#(metaJSON)}}"#.utf8)
    }

    /// "<logger or server> <level> <text>" of a log message.
    static func describe(_ message: [UInt8], server: String? = nil) -> String {
        guard let params = (try? JSONParser.parse(message))?["params"] else { return "unreadable" }
        let data = params["data"]
        let text = data?["msg"]?.stringValue ?? data?.stringValue ?? "?"
        return "\(server ?? params["logger"]?.stringValue ?? "-") \(params["level"]?.stringValue ?? "?") \(text)"
    }

    static func said(_ who: String, _ levels: [String], _ tag: String) -> [String] { levels.map { "\(who) \($0) \($0) \(tag)" } }
}

final class RequestLogTests: LogFixture, @unchecked Sendable {
    /// `heard` gets the log messages at `level` or above (named after their server).
    func options(_ server: String, _ heard: LockedList?, level: LogLevel = .debug) -> OptimizeOptions {
        var o = OptimizeOptions(servers: [server])
        if let heard {
            o.logLevel = level
            o.onNotification = { message in heard.append(Self.describe(message)) }
        }
        return o
    }

    func testALogOnARequestStreamGoesToItsCallerOnly() async throws {
        let engine = try makeEngine(port: try startFastMCP())
        await engine.start()
        addTeardownBlock { await engine.stop() }
        let everyone = LockedList()
        engine.onServerLog { server, message in everyone.append(Self.describe(message, server: server)) }
        for server in ["logs_h", "logs_m"] {
            let mine = LockedList()
            let r = await engine.optimizeRequest(call("chatty", #"{"tag":"a-\#(server)"}"#, level: "debug"), options(server, mine))
            XCTAssertTrue(r.success, r.error ?? "")
            // Another caller's request that asks for no logs: its messages reach nobody.
            let other = await engine.optimizeRequest(call("chatty", #"{"tag":"b-\#(server)"}"#, level: "debug"), options(server, nil))
            XCTAssertTrue(other.success, other.error ?? "")
            XCTAssertEqual(mine.items, Self.said(server, ["debug", "info", "warning"], "a-\(server)"), "the caller hears its own request's messages")
            // A modern-era request that does not opt in gets none from a modern-era server.
            let silent = LockedList()
            _ = await engine.optimizeRequest(call("chatty", #"{"tag":"c-\#(server)"}"#), options(server, silent))
            XCTAssertEqual(silent.items, server == "logs_m" ? [] : Self.said(server, ["debug", "info", "warning"], "c-\(server)"),
                           "a modern server logs only for requests that ask; a handshake-era one always (the gateway filters)")
        }
        XCTAssertEqual(everyone.items, [], "messages about a request never go to the listener of messages outside requests")
        XCTAssertEqual(engine.runtime.requestLogs.count, 0)
    }

    /// Identical requests merged into one: every caller that wants logs hears the leader's
    /// request's messages at its own level (the modern server sends what the leader asked for).
    func testConcurrentMergedCallersEachHearTheRequestsMessages() async throws {
        let engine = try makeEngine(port: try startFastMCP())
        await engine.start()
        addTeardownBlock { await engine.stop() }
        for (server, leaderListens) in [("logs_m", true), ("logs_h", false)] {
            // The leader at debug, a follower at warning, one that wants none.
            let leader = LockedList(), follower = LockedList()
            let merged = engine.runtime.coalescer.stats.merged
            let arguments = #"{"tag":"m-\#(server)","wait_ms":1500}"#
            let first = Task { await engine.optimizeRequest(self.call("chatty", arguments, id: 1, level: "debug"), self.options(server, leaderListens ? leader : nil)) }
            await eventually("the first request is in flight") { engine.runtime.coalescer.stats.inFlight == 1 }
            let second = Task { await engine.optimizeRequest(self.call("chatty", arguments, id: 2, level: "warning"), self.options(server, follower, level: .warning)) }
            let third = Task { await engine.optimizeRequest(self.call("chatty", arguments, id: 3), self.options(server, nil)) }
            let results = [await first.value, await second.value, await third.value]
            XCTAssertEqual(results.map(\.source), [.origin, .coalesced, .coalesced], "\(results.map(\.error))")
            XCTAssertEqual(engine.runtime.coalescer.stats.merged, merged + 2)
            let all = Self.said(server, ["debug", "info", "warning"], "m-\(server)")
            XCTAssertEqual(leader.items, leaderListens ? all : [])
            XCTAssertEqual(follower.items, Self.said(server, ["warning"], "m-\(server)"), "a merged caller hears the request it waits on, at its own level")
        }
        XCTAssertEqual(engine.runtime.requestLogs.count, 0, "nothing is left behind")
    }

    /// Callers joining, hearing and leaving one merged request's listeners from many threads:
    /// each hears at least the message delivered after it joined, and nothing is left behind.
    func testConcurrentJoinsDeliveriesAndLeavesOfMergedListeners() async {
        let registry = RequestLogRegistry()
        let key = HashedKey(Array("k".utf8))
        let heard = LockedList()
        let message = Array(#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#.utf8)
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<200 {
                group.addTask {
                    let logs = registry.join(key)
                    logs.absorb(RequestLogs(level: i % 2 == 0 ? .debug : .info, relay: { _ in heard.append("\(i)") }))
                    logs.deliver(server: "s", message)
                    registry.leave(key)
                }
            }
        }
        XCTAssertEqual(registry.count, 0)
        XCTAssertEqual(Set(heard.items).count, 200, "every caller heard the message delivered after it joined")
    }

    /// Over stdio nothing ties a message to a request: it goes to the listener of messages
    /// outside requests, not to the caller.
    func testStdioLogsBelongToNoRequest() async throws {
        let engine = try makeEngine(port: try startFastMCP())
        await engine.start()
        addTeardownBlock { await engine.stop() }
        let everyone = LockedList(), mine = LockedList()
        engine.onServerLog { server, message in everyone.append(Self.describe(message, server: server)) }
        let r = await engine.optimizeRequest(call("log_twice", #"{"message":"hi"}"#, level: "info"), options("kv", mine, level: .info))
        XCTAssertTrue(r.success, r.error ?? "")
        XCTAssertEqual(mine.items, [])
        XCTAssertEqual(everyone.items, ["kv info info: hi", "kv warning warning: hi"])
    }
}

/// Identical cacheable requests merged into one upstream call: every caller that sent a
/// progress token hears the call's progress with its own token; none is left behind.
final class MergedProgressTests: LogFixture, @unchecked Sendable {
    /// A tools/call of the FastMCP server's `slow` (progress `n` times after `wait_ms`), with a
    /// progress token when given.
    func slow(id: Int, token: String?, modern: Bool) -> [UInt8] {
        var meta: [String] = []
        if modern { meta += [#""io.modelcontextprotocol/protocolVersion":"2026-07-28""#, #""io.modelcontextprotocol/clientCapabilities":{}"#] }
        if let token { meta.append(#""progressToken":"\#(token)""#) }
        let metaJSON = meta.isEmpty ? "" : #","_meta":{"# + meta.joined(separator: ",") + "}"
        return Array(#"{"jsonrpc":"2.0","id":\#(id),"method":"tools/call","params":{"name":"slow","arguments":{"n":3,"wait_ms":1500}\#(metaJSON)}}"#.utf8)
    }

    /// "token progress/total" of each progress notification heard.
    func options(_ server: String, _ heard: LockedList) -> OptimizeOptions {
        var o = OptimizeOptions(servers: [server])
        o.onNotification = { message in
            guard let params = (try? JSONParser.parse(message))?["params"] else { return heard.append("unreadable") }
            heard.append("\(params["progressToken"]?.stringValue ?? "?") \(params["progress"]?.doubleValue ?? -1)/\(params["total"]?.doubleValue ?? -1)")
        }
        return o
    }

    func testEveryMergedCallerHearsTheCallsProgressWithItsOwnToken() async throws {
        let port = try startFastMCP()
        let url = "http://127.0.0.1:\(port)/mcp"
        let engine = try Engine(json: #"""
            {"mcpServers": {"p_h": {"url": "\#(url)", "protocol": "handshake"}, "p_m": {"url": "\#(url)", "protocol": "modern"}},
             "caching": {"tools": {"slow": "60s"}}}
            """#)
        await engine.start()
        addTeardownBlock { await engine.stop() }
        for server in ["p_h", "p_m"] {
            let modern = server == "p_m"
            let leader = LockedList(), follower = LockedList(), silent = LockedList()
            let merged = engine.runtime.coalescer.stats.merged
            let first = Task { await engine.optimizeRequest(self.slow(id: 1, token: "lead", modern: modern), self.options(server, leader)) }
            await eventually("the first request is in flight") { engine.runtime.coalescer.stats.inFlight == 1 }
            let second = Task { await engine.optimizeRequest(self.slow(id: 2, token: "follow", modern: modern), self.options(server, follower)) }
            let third = Task { await engine.optimizeRequest(self.slow(id: 3, token: nil, modern: modern), self.options(server, silent)) }
            let results = [await first.value, await second.value, await third.value]
            XCTAssertEqual(results.map(\.source), [.origin, .coalesced, .coalesced], "\(server): \(results.map(\.error))")
            XCTAssertEqual(engine.runtime.coalescer.stats.merged, merged + 2, server)
            XCTAssertEqual(leader.items, ["lead 1.0/3.0", "lead 2.0/3.0", "lead 3.0/3.0"], server)
            XCTAssertEqual(follower.items, ["follow 1.0/3.0", "follow 2.0/3.0", "follow 3.0/3.0"], "\(server): a merged caller hears the call's progress, with its own token")
            XCTAssertEqual(silent.items, [], "\(server): a caller that sent no token hears none")
            // The answer is cached now: a later identical call is a hit, with no progress.
            let later = LockedList()
            let hit = await engine.optimizeRequest(slow(id: 4, token: "late", modern: modern), options(server, later))
            XCTAssertEqual(hit.source, .memory)
            XCTAssertEqual(later.items, [])
        }
        XCTAssertEqual(engine.runtime.progress.count, 0, "nothing is left behind")
    }

    /// Progress must increase (the protocol says so); what a second, hedged attempt reports
    /// again is dropped, and nothing is kept once the request ends.
    func testProgressThatDoesNotIncreaseIsDropped() {
        let relay = ProgressRelay()
        let heard = LockedList()
        let token = relay.begin(original: Array(#""mine""#.utf8), relay: { message in
            let params = (try? JSONParser.parse(message))?["params"]
            heard.append("\(params?["progressToken"]?.stringValue ?? "?") \(params?["progress"]?.doubleValue ?? -1)")
        })
        for progress in [1, 2, 1, 3, 2, 3, 4] {
            relay.relay(Array(#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"\#(token)","progress":\#(progress),"total":4}}"#.utf8))
        }
        XCTAssertEqual(heard.items, ["mine 1.0", "mine 2.0", "mine 3.0", "mine 4.0"])
        relay.end(token)
        XCTAssertEqual(relay.count, 0)
    }

    /// A caller merged into a request whose server already reported progress first hears the
    /// progress reached so far (with its own token), then what follows; never less than it heard.
    func testALateMergedCallerFirstHearsTheProgressReachedSoFar() {
        let relay = ProgressRelay()
        let heard = LockedList()
        func listener(_ name: String) -> @Sendable ([UInt8]) -> Void {
            { message in
                let params = (try? JSONParser.parse(message))?["params"]
                heard.append("\(name): \(params?["progressToken"]?.stringValue ?? "?") \(params?["progress"]?.doubleValue ?? -1) \(params?["message"]?.stringValue ?? "")")
            }
        }
        func progress(_ token: String, _ value: Int) {
            relay.relay(Array(#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"\#(token)","progress":\#(value),"total":9,"message":"step \#(value)"}}"#.utf8))
        }
        let key = HashedKey(Array("same call".utf8))
        let leader = relay.begin(original: Array(#""lead""#.utf8), relay: listener("leader"))
        relay.lead(key, token: leader)
        progress(leader, 1)
        progress(leader, 2)
        let follower = relay.begin(original: Array(#""late""#.utf8), relay: listener("follower"))
        relay.follow(key, token: follower)
        progress(leader, 2)
        progress(leader, 3)
        XCTAssertEqual(heard.items, ["leader: lead 1.0 step 1", "leader: lead 2.0 step 2", "follower: late 2.0 step 2",
                                     "leader: lead 3.0 step 3", "follower: late 3.0 step 3"])
        relay.end(follower)
        relay.end(leader)
        XCTAssertEqual(relay.count, 0)
    }

    /// Leaders and merged callers beginning, joining, hearing and ending from many threads:
    /// every merged caller hears the progress relayed after it joined, with its own token,
    /// and nothing is left behind.
    func testConcurrentLeadersFollowersAndRelays() async {
        let relay = ProgressRelay()
        let heard = LockedList()
        await withTaskGroup(of: Void.self) { group in
            for flight in 0..<20 {
                group.addTask {
                    let key = HashedKey(Array("key \(flight)".utf8))
                    let leader = relay.begin(original: Array("\"L\(flight)\"".utf8), relay: { _ in })
                    relay.lead(key, token: leader)
                    // A server's progress increases: a flight's relays take their values in order.
                    let progress = NSLock()
                    nonisolated(unsafe) var reached = 0
                    await withTaskGroup(of: Void.self) { followers in
                        for f in 0..<10 {
                            followers.addTask {
                                let own = relay.begin(original: Array("\"F\(flight)-\(f)\"".utf8), relay: { message in
                                    if let token = (try? JSONParser.parse(message))?["params"]?["progressToken"]?.stringValue { heard.append(token) }
                                })
                                relay.follow(key, token: own)
                                progress.withLock {
                                    reached += 1
                                    relay.relay(Array(#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"\#(leader)","progress":\#(reached)}}"#.utf8))
                                }
                                relay.end(own)
                            }
                        }
                    }
                    relay.end(leader)
                }
            }
        }
        XCTAssertEqual(relay.count, 0, "nothing is left behind")
        let tokens = Set(heard.items)
        XCTAssertEqual(tokens.count, 200, "each merged caller heard, with its own token, the progress relayed after it joined")
        XCTAssertTrue(tokens.allSatisfy { $0.hasPrefix("F") })
    }
}
