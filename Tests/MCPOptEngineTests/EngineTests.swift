import XCTest
import MCPOptConfig
import MCPOptJSON
@testable import MCPOptEngine

final class EngineTests: XCTestCase {
    func testDescribeReportsServersGroupsAndEffectiveConfig() throws {
        let engine = try Engine(json: #"{"mcpServers":{"a":{"command":"x","group":"g"},"b":{"url":"http://127.0.0.1:9/mcp","group":"g"},"c":{"command":"y","disabled":true}}}"#)
        let d = engine.describe()
        XCTAssertEqual(d["version"], .string(MCPOptVersion.string))
        XCTAssertEqual(d["servers"]?["configured"], .int(3))
        XCTAssertEqual(d["servers"]?["active"], .int(2))
        XCTAssertEqual(d["servers"]?["stdio"], .int(1))
        XCTAssertEqual(d["servers"]?["http"], .int(1))
        XCTAssertEqual(d["servers"]?["groups"], ["g": ["a", "b"]])
        XCTAssertEqual(d["config"]?["caching"]?["memoryCacheSize"], .int(100 << 20))
        // The XCTest runner does not link jemalloc.
        XCTAssertEqual(d["allocator"], .string("system"))
    }

    func testInvalidConfigIsRefused() {
        XCTAssertThrowsError(try Engine(json: #"{"routing":{"minConfidence":3}}"#)) { error in
            XCTAssertEqual((error as? ConfigError)?.issues.first?.path.description, "$.routing.minConfidence")
        }
    }
}
