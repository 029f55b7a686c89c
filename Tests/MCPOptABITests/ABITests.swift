import Dispatch
import XCTest
@testable import MCPOpt

/// The C interface called from Swift: the same entry points a C host uses, here so that the
/// handle registry and the per-thread error state run under ThreadSanitizer.
private func create(_ json: String) -> (Int32, OpaquePointer?) {
    var engine: OpaquePointer?
    let status = json.withCString { mcpopt_engine_create($0, -1, &engine) }
    return (status, engine)
}

final class ABITests: XCTestCase {
    private func lastIssues() -> [String] {
        guard let e = mcpopt_last_error() else { return [] }
        defer { mcpopt_error_free(e) }
        return (0..<mcpopt_error_issue_count(e)).map { String(cString: mcpopt_error_issue_path(e, $0)!) }
    }

    func testCreateDescribeDestroy() throws {
        let (status, engine) = create(#"{"mcpServers":{"a":{"command":"x"}}}"#)
        XCTAssertEqual(status, 0)
        var json: UnsafeMutablePointer<CChar>?
        var length = 0
        XCTAssertEqual(mcpopt_engine_describe(engine, &json, &length), 0)
        let text = String(cString: try XCTUnwrap(json))
        XCTAssertEqual(text.utf8.count, length)
        XCTAssertTrue(text.contains(#""active":1"#))
        mcpopt_free(json)
        XCTAssertEqual(mcpopt_engine_destroy(engine), 0)
        XCTAssertEqual(mcpopt_engine_destroy(engine), ABIStatus.invalidHandle.rawValue)
        XCTAssertEqual(engines.count, 0)
    }

    func testErrorsCarryStatusAndPaths() {
        let (status, engine) = create(#"{"routing":{"minConfidence":5},"nope":1}"#)
        XCTAssertEqual(status, ABIStatus.invalidConfig.rawValue)
        XCTAssertNil(engine)
        XCTAssertEqual(mcpopt_last_status(), ABIStatus.invalidConfig.rawValue)
        XCTAssertEqual(lastIssues(), ["$.routing.minConfidence", "$.nope"])
        XCTAssertEqual(String(cString: mcpopt_status_string(status)), "invalid config")
        XCTAssertEqual("{}".withCString { mcpopt_config_validate($0, -1) }, 0)
        XCTAssertEqual(String(cString: mcpopt_last_error_message()), "")
        XCTAssertEqual(mcpopt_config_validate(nil, 0), ABIStatus.invalidArgument.rawValue)
        XCTAssertEqual("{}".withCString { mcpopt_config_validate($0, -7) }, ABIStatus.invalidArgument.rawValue)
    }

    /// Threads create, describe and destroy their own engines and use a shared one that the
    /// main thread destroys midway; each thread's last error stays its own.
    func testConcurrentHandlesAndLastErrors() {
        let (status, shared) = create("{}")
        XCTAssertEqual(status, 0)
        let sharedHandle = UInt(bitPattern: shared.map { Int(bitPattern: UnsafeRawPointer($0)) } ?? 0)
        let failures = Counter()
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for i in 0..<100 {
                if worker == 0 && i == 50 {
                    if mcpopt_engine_destroy(OpaquePointer(bitPattern: sharedHandle)) != 0 { failures.add() }
                }
                let (s, engine) = create(#"{"mcpServers":{"s\#(worker)":{"command":"x"}}}"#)
                if s != 0 { failures.add() }
                var json: UnsafeMutablePointer<CChar>?
                if mcpopt_engine_describe(engine, &json, nil) != 0 { failures.add() }
                if let json, !String(cString: json).contains("s\(worker)") { failures.add() }
                mcpopt_free(json)
                let sharedStatus = mcpopt_engine_describe(OpaquePointer(bitPattern: sharedHandle), &json, nil)
                if sharedStatus != 0 && sharedStatus != ABIStatus.invalidHandle.rawValue { failures.add() }
                mcpopt_free(json)
                if mcpopt_engine_destroy(engine) != 0 { failures.add() }
                // A failure on this thread leaves this thread's message, whatever the others do.
                let bad = #"{"routing":{"minConfidence":\#(worker + 2)}}"#
                if bad.withCString({ mcpopt_config_validate($0, -1) }) != ABIStatus.invalidConfig.rawValue { failures.add() }
                if !String(cString: mcpopt_last_error_message()).contains("\(worker + 2) is out of range") { failures.add() }
            }
        }
        XCTAssertEqual(failures.value, 0)
        XCTAssertEqual(engines.count, 0)
    }
}

private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
