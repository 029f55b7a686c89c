import Dispatch
import Foundation
import XCTest
@testable import MCPOpt

/// mcpopt_coordinate_operation, mcpopt_transactions_recover and mcpopt_state_compare_and_set
/// on bad input: a status and a message, never a crash, and nothing else disturbed.
final class CoordinationABITests: XCTestCase {
    private var engine: OpaquePointer?

    override func setUp() {
        // Two configured servers that are never started: every bad request is refused before.
        let json = #"{"mcpServers": {"a": {"command": "/nonexistent/a"}, "b": {"command": "/nonexistent/b"}}}"#
        XCTAssertEqual(json.withCString { mcpopt_engine_create($0, -1, &engine) }, 0)
    }

    override func tearDown() {
        mcpopt_engine_destroy(engine)
    }

    private func coordinate(_ request: String?, length: Int? = nil) -> (Int32, String) {
        var out: UnsafeMutablePointer<CChar>?
        var outLength = 0
        let status: Int32
        if let request {
            status = request.withCString { mcpopt_coordinate_operation(engine, $0, length ?? request.utf8.count, &out, &outLength) }
        } else {
            status = mcpopt_coordinate_operation(engine, nil, length ?? 0, &out, &outLength)
        }
        defer { mcpopt_free(out) }
        XCTAssertEqual(status == 0, out != nil, "output exactly on success")
        return (status, String(cString: mcpopt_last_error_message()))
    }

    func testBadRequestsAreStatuses() {
        let cases: [(String?, Int32, String)] = [
            (nil, ABIStatus.invalidArgument.rawValue, "NULL"),
            ("{", ABIStatus.malformedJSON.rawValue, "JSON"),
            ("[]", ABIStatus.invalidArgument.rawValue, "object"),
            (#"{"servers": ["a"]}"#, ABIStatus.invalidArgument.rawValue, "operation"),
            (#"{"operation": "t"}"#, ABIStatus.invalidArgument.rawValue, "servers"),
            (#"{"operation": "t", "servers": ["a"], "calls": []}"#, ABIStatus.invalidArgument.rawValue, "not both"),
            (#"{"operation": "t", "servers": [1]}"#, ABIStatus.invalidArgument.rawValue, "server names"),
            (#"{"operation": "t", "servers": ["a", "nope"]}"#, ABIStatus.invalidArgument.rawValue, "unknown server \"nope\""),
            (#"{"operation": "t", "servers": ["a", "a"]}"#, ABIStatus.invalidArgument.rawValue, "named twice"),
            (#"{"operation": "t", "servers": []}"#, ABIStatus.invalidArgument.rawValue, "no servers"),
            (#"{"operation": "t", "servers": ["a"], "policy": "most"}"#, ABIStatus.invalidArgument.rawValue, "policy"),
            (#"{"operation": "t", "servers": ["a", "b"], "policy": "quorum", "quorum": 3}"#, ABIStatus.invalidArgument.rawValue, "quorum of 3"),
            (#"{"operation": "t", "servers": ["a"], "policy": "quorum"}"#, ABIStatus.invalidArgument.rawValue, "quorum"),
            (#"{"operation": "t", "servers": ["a"], "timeoutMs": -1}"#, ABIStatus.invalidArgument.rawValue, "timeoutMs"),
            (#"{"operation": "t", "servers": ["a"], "concurrency": 0.5}"#, ABIStatus.invalidArgument.rawValue, "concurrency"),
            (#"{"operation": "t", "servers": ["a"], "mode": "2pc"}"#, ABIStatus.invalidArgument.rawValue, "mode"),
            (#"{"operation": "t", "servers": ["a"], "extra": 1}"#, ABIStatus.invalidArgument.rawValue, "unknown key \"extra\""),
            (#"{"operation": "t", "calls": [{"tool": "x"}]}"#, ABIStatus.invalidArgument.rawValue, "calls[0].server"),
            (#"{"operation": "t", "servers": ["a"], "mode": "transaction"}"#, ABIStatus.unsupported.rawValue, "enableDistributedTransactions"),
        ]
        for (request, expected, message) in cases {
            let (status, text) = coordinate(request)
            XCTAssertEqual(status, expected, "\(request ?? "NULL"): \(text)")
            XCTAssertTrue(text.contains(message), "\(request ?? "NULL"): \(text)")
        }
        // Invalid UTF-8 and a wrong length.
        let bad: [UInt8] = [0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D, 0]
        let status = bad.withUnsafeBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: bad.count) { c -> Int32 in
                var out: UnsafeMutablePointer<CChar>?
                return mcpopt_coordinate_operation(engine, c, bad.count - 1, &out, nil)
            }
        }
        XCTAssertEqual(status, ABIStatus.invalidUTF8.rawValue)
        XCTAssertEqual(#"{"operation":"t"}"#.withCString { mcpopt_coordinate_operation(engine, $0, 5, nil, nil) }, ABIStatus.invalidArgument.rawValue, "out_json NULL")
        XCTAssertEqual(mcpopt_coordinate_operation(OpaquePointer(bitPattern: 0x1234), nil, 0, nil, nil), ABIStatus.invalidArgument.rawValue)

        var out: UnsafeMutablePointer<CChar>?
        XCTAssertEqual(mcpopt_transactions_recover(engine, &out, nil), ABIStatus.unsupported.rawValue, "transactions are off")
        XCTAssertNil(out)
        XCTAssertEqual(mcpopt_transactions_recover(engine, nil, nil), ABIStatus.invalidArgument.rawValue)
    }

    func testCompareAndSetLocally() {
        func cas(_ key: String, _ expected: String?, _ value: String) -> (Int32, String?) {
            var version: UnsafeMutablePointer<CChar>?
            let status = key.withCString { k in
                value.withCString { v in
                    if let expected {
                        return expected.withCString { mcpopt_state_compare_and_set(engine, k, key.utf8.count, $0, v, value.utf8.count, &version) }
                    }
                    return mcpopt_state_compare_and_set(engine, k, key.utf8.count, nil, v, value.utf8.count, &version)
                }
            }
            defer { mcpopt_free(version) }
            return (status, version.map { String(cString: $0) })
        }
        let (first, v1) = cas("k", nil, "1")
        XCTAssertEqual(first, 0)
        XCTAssertNotNil(v1)
        XCTAssertEqual(cas("k", nil, "2").0, ABIStatus.conflict.rawValue, "the key has a value now")
        XCTAssertTrue(String(cString: mcpopt_last_error_message()).contains("not at version"))
        let (second, v2) = cas("k", v1, "2")
        XCTAssertEqual(second, 0)
        XCTAssertNotEqual(v1, v2)
        XCTAssertEqual(cas("k", v1, "3").0, ABIStatus.conflict.rawValue, "a stale version")
        XCTAssertEqual(cas("k", "not a version", "3").0, ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(cas("", nil, "3").0, ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(mcpopt_state_compare_and_set(engine, nil, 1, nil, nil, 0, nil), ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual("k".withCString { mcpopt_state_compare_and_set(engine, $0, 1, nil, nil, 5, nil) }, ABIStatus.invalidArgument.rawValue, "NULL value with a length")

        // What CAS wrote is what get reads.
        var value: UnsafeMutableRawPointer?
        var length = 0
        var version: UnsafeMutablePointer<CChar>?
        XCTAssertEqual("k".withCString { mcpopt_state_get(engine, $0, 1, &value, &length, &version) }, 0)
        XCTAssertEqual(String(decoding: UnsafeRawBufferPointer(start: value, count: length), as: UTF8.self), "2")
        XCTAssertEqual(version.map { String(cString: $0) }, v2)
        mcpopt_free(value)
        mcpopt_free(version)
    }
}

/// mcpopt_optimize_request_async: bad input is a status and no callback; a request is answered
/// once through the callback.
final class AsyncRequestABITests: XCTestCase {
    final class Answers: @unchecked Sendable {
        let lock = NSLock()
        var texts: [String] = []
        let done = DispatchSemaphore(value: 0)
    }

    func testCallbackFormAnswersOnceAndRefusesBadInput() throws {
        var engine: OpaquePointer?
        XCTAssertEqual(#"{"mcpServers": {}}"#.withCString { mcpopt_engine_create($0, -1, &engine) }, 0)
        defer { mcpopt_engine_destroy(engine) }
        let answers = Answers()
        let box = Unmanaged.passRetained(answers)
        defer { box.release() }
        let callback: @convention(c) (UnsafeMutableRawPointer?, Int32, UnsafePointer<CChar>?, Int) -> Void = { user, status, json, length in
            let a = Unmanaged<Answers>.fromOpaque(user!).takeUnretainedValue()
            let text = String(decoding: UnsafeRawBufferPointer(start: json, count: length), as: UTF8.self)
            a.lock.lock()
            a.texts.append("\(status) \(text)")
            a.lock.unlock()
            a.done.signal()
        }
        let ping = #"{"jsonrpc":"2.0","id":7,"method":"ping"}"#
        XCTAssertEqual(ping.withCString { mcpopt_optimize_request_async(engine, $0, -1, nil, 0, callback, box.toOpaque()) }, 0)
        XCTAssertEqual(answers.done.wait(timeout: .now() + 10), .success)
        // Bad input: statuses, and no callback.
        XCTAssertEqual("{".withCString { mcpopt_optimize_request_async(engine, $0, -1, nil, 0, callback, box.toOpaque()) }, ABIStatus.malformedJSON.rawValue)
        XCTAssertEqual(#"{"jsonrpc":"2.0","method":"x"}"#.withCString { mcpopt_optimize_request_async(engine, $0, -1, nil, 0, callback, box.toOpaque()) }, ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(ping.withCString { mcpopt_optimize_request_async(engine, $0, -1, nil, 0, nil, nil) }, ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(ping.withCString { mcpopt_optimize_request_async(engine, $0, -1, "{\"bogus\":1}", -1, callback, box.toOpaque()) }, ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual(ping.withCString { mcpopt_optimize_request_async(OpaquePointer(bitPattern: 0x99), $0, -1, nil, 0, callback, nil) }, ABIStatus.invalidHandle.rawValue)
        XCTAssertEqual(answers.done.wait(timeout: .now() + 0.3), .timedOut, "no callback for refused input")
        answers.lock.lock()
        defer { answers.lock.unlock() }
        XCTAssertEqual(answers.texts.count, 1)
        XCTAssertTrue(answers.texts[0].hasPrefix("0 {\"response\":"), answers.texts[0])
        XCTAssertTrue(answers.texts[0].contains("\"id\":7"), answers.texts[0])
    }
}
