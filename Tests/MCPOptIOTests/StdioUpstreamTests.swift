import Foundation
import Glibc
import XCTest
import MCPOptJSON
import MCPOptProtocol
import MCPOptUpstream
@testable import MCPOptIO

/// stdio servers through the reactor: a real one from PyPI, and one that misbehaves on purpose.
final class StdioUpstreamTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    private func venvTool(_ name: String) throws -> String {
        let venv = ProcessInfo.processInfo.environment["MCPOPT_VENV"] ?? Self.repository.appendingPathComponent(".venv").path
        let path = venv + "/bin/" + name
        guard FileManager.default.isExecutableFile(atPath: path) else {
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("\(path) is missing: run scripts/setup"); throw CancellationError() }
            throw XCTSkip("\(path) is missing: run scripts/setup to install the real MCP servers")
        }
        return path
    }

    private func faulty() throws -> StdioCommand {
        StdioCommand(command: try venvTool("python"), arguments: [Self.repository.appendingPathComponent("Tests/interop/faulty_server.py").path])
    }

    private func result(_ message: [UInt8]) throws -> JSONValue {
        try JSONParser.parse(try MessageDecoder().decodeOwned(message).result ?? [])
    }

    private func call(_ tool: String, _ arguments: String = "{}") -> UpstreamRequest {
        UpstreamRequest(method: "tools/call", paramsJSON: #"{"name":"\#(tool)","arguments":\#(arguments)}"#)
    }

    func testRealTimeServerOnBothBackends() async throws {
        let server = StdioCommand(command: try venvTool("mcp-server-time"))
        for backend in EventLoop.Backend.allCases {
            let loop = try EventLoop(backend: backend)
            let upstream = StdioUpstream(command: server, loop: loop)
            upstream.start()
            let list = try result(try await upstream.request(UpstreamRequest(method: "tools/list"), timeout: .seconds(30)))
            let names = (list["tools"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }.sorted()
            XCTAssertEqual(names, ["convert_time", "get_current_time"], "\(backend)")
            let converted = try result(try await upstream.request(call("convert_time", #"{"source_timezone":"UTC","time":"12:00","target_timezone":"Asia/Tokyo"}"#)))
            XCTAssertTrue(converted.jsonString.contains("Asia/Tokyo"), converted.jsonString)
            XCTAssertEqual(upstream.version?.era, .modern)
            await upstream.shutdown()
            XCTAssertEqual(upstream.state, .stopped)
            loop.shutdown()
        }
    }

    func testABatchGoesOutInOneWriteAndEachGetsItsOwnAnswer() async throws {
        let loop = try EventLoop()
        defer { loop.shutdown() }
        let upstream = StdioUpstream(command: try faulty(), loop: loop)
        upstream.start()
        _ = try await upstream.request(call("echo", #"{"n":0}"#))   // negotiated
        let before = upstream.writeCount
        let results = await upstream.requestBatch((1...10).map { call("echo", #"{"n":\#($0)}"#) }, timeout: .seconds(20))
        XCTAssertEqual(upstream.writeCount - before, 1, "ten lines, one write")
        for (n, outcome) in zip(1..., results) {
            let text = try result(try outcome.get())["content"]?.arrayValue?.first?["text"]?.stringValue
            XCTAssertEqual(text, #"{"n": \#(n)}"#)
        }
        // One request the server refuses does not fail the others.
        let mixed = await upstream.requestBatch([UpstreamRequest(method: "no/such/method"), call("echo", #"{"n":11}"#)], timeout: .seconds(20))
        XCTAssertEqual(try MessageDecoder().decodeOwned(try mixed[0].get()).kind, .error)
        XCTAssertEqual(try result(try mixed[1].get())["content"]?.arrayValue?.first?["text"]?.stringValue, #"{"n": 11}"#)
        await upstream.shutdown()
    }

    func testAnAnswerWrittenJustBeforeTheServerDiesReachesItsCaller() async throws {
        let loop = try EventLoop()
        defer { loop.shutdown() }
        var policy = RestartPolicy()
        policy.initialBackoff = .milliseconds(10)
        let upstream = StdioUpstream(command: try faulty(), loop: loop, policy: policy)
        upstream.start()
        // The exit and the last line arrive together: the line must be read first. Five rounds,
        // since which is noticed first is up to the kernel.
        for round in 0..<5 {
            do {
                let answer = try result(try await upstream.request(call("answer_then_crash"), timeout: .seconds(20)))
                XCTAssertEqual(answer["content"]?.arrayValue?.first?["text"]?.stringValue, "last words", "round \(round)")
            } catch {
                XCTFail("round \(round): \(error)")
            }
            // The next round goes to the next process (a request sent to the dying one fails).
            for _ in 0..<500 where upstream.restarts < round + 1 { try await Task.sleep(for: .milliseconds(10)) }
            XCTAssertEqual(upstream.restarts, round + 1)
        }
        await upstream.shutdown()
    }

    func testServerCrashingMidCallFailsTheCallAndIsRestarted() async throws {
        let loop = try EventLoop()
        defer { loop.shutdown() }
        var policy = RestartPolicy()
        policy.initialBackoff = .milliseconds(50)
        let upstream = StdioUpstream(command: try faulty(), loop: loop, policy: policy)
        upstream.start()
        let echo = try result(try await upstream.request(call("echo", #"{"n":1}"#)))
        XCTAssertTrue(echo.jsonString.contains("n"))
        do {
            _ = try await upstream.request(call("crash"), timeout: .seconds(10))
            XCTFail("a crash must fail the call")
        } catch {
            XCTAssertEqual(error.kind, .closed)
            XCTAssertTrue(error.message.contains("exited with status 3"), error.message)
        }
        // The supervisor restarts it; the next call works.
        let again = try result(try await upstream.request(call("echo", #"{"n":2}"#), timeout: .seconds(20)))
        XCTAssertTrue(again.jsonString.contains("2"))
        XCTAssertEqual(upstream.restarts, 1)
        XCTAssertTrue(upstream.stderrTail.contains("crashing on purpose"), "\(upstream.stderrTail)")
        XCTAssertTrue(upstream.events.contains { $0.contains("exited with status 3") })
        await upstream.shutdown()
    }

    func testGarbageAndHalfLinesAreSurvived() async throws {
        let loop = try EventLoop(backend: .epoll)
        defer { loop.shutdown() }
        let upstream = StdioUpstream(command: try faulty(), loop: loop)
        upstream.start()
        let answer = try result(try await upstream.request(call("garbage"), timeout: .seconds(10)))
        XCTAssertTrue(answer.jsonString.contains("after garbage"))
        XCTAssertTrue(upstream.events.contains { $0.contains("protocol violation") }, "\(upstream.events)")
        XCTAssertEqual(upstream.restarts, 0, "a bad line does not cost the session")
        await upstream.shutdown()
    }

    func testConcurrentRequestsWhenOneNeverAnswers() async throws {
        let loop = try EventLoop()
        defer { loop.shutdown() }
        let upstream = StdioUpstream(command: try faulty(), loop: loop)
        upstream.start()
        let slowRequest = call("slow", #"{"k":"slow"}"#)
        async let slow = upstream.request(slowRequest, timeout: .seconds(10))
        do {
            _ = try await upstream.request(call("silent"), timeout: .milliseconds(200))
            XCTFail("silence must time out")
        } catch {
            XCTAssertEqual(error.kind, .timeout)
            XCTAssertTrue(error.message.contains("no answer within"), error.message)
        }
        let slowAnswer = try result(try await slow)
        XCTAssertTrue(slowAnswer.jsonString.contains("slow"))
        let echo = try result(try await upstream.request(call("echo", #"{"still":"here"}"#)))
        XCTAssertTrue(echo.jsonString.contains("here"))
        await upstream.shutdown()
    }

    func testMissingProgramIsAClearError() async throws {
        let loop = try EventLoop()
        defer { loop.shutdown() }
        var policy = RestartPolicy()
        policy.maxRestarts = 0
        let upstream = StdioUpstream(command: StdioCommand(command: "/nonexistent/mcp-server"), loop: loop, policy: policy)
        upstream.start()
        do {
            _ = try await upstream.request(UpstreamRequest(method: "tools/list"), timeout: .seconds(5))
            XCTFail("no such program")
        } catch {
            XCTAssertEqual(error.kind, .closed)
            XCTAssertTrue(error.message.contains("cannot start /nonexistent/mcp-server"), error.message)
        }
        await upstream.shutdown()
    }

    func testGracefulShutdownLeavesNoProcessOrDescriptor() async throws {
        func cycle() async throws {
            let loop = try EventLoop()
            let upstream = StdioUpstream(command: try faulty(), loop: loop)
            upstream.start()
            _ = try await upstream.request(call("echo"))
            await upstream.shutdown(grace: .milliseconds(500))
            loop.shutdown()
            XCTAssertEqual(upstream.state, .stopped)
        }
        // The first cycle may open process-wide descriptors of the runtime (Dispatch, the
        // concurrency pool) that stay; a second cycle must leave the count where it found it.
        try await cycle()
        let before = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
        try await cycle()
        // The child was reaped: no zombie of ours remains.
        var status: Int32 = 0
        XCTAssertEqual(waitpid(-1, &status, WNOHANG), -1)
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -2, before)
    }
}
