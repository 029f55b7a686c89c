import Foundation
import XCTest

/// Throwaway TLS material for the tests that speak TLS to real servers (FastMCP behind
/// uvicorn, redis-server): a CA and certificates made by Tests/interop/make_test_certs.sh.
public enum TestCertificates {
    /// The repository (this file is Tests/MCPOptTestSupport/TestCertificates.swift).
    public static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A fresh directory with ca.pem, server.pem/.key (localhost, 127.0.0.1) and other.pem/.key
    /// (elsewhere.example), removed when `test` ends. Without openssl: skipped, or failed on CI.
    public static func make(for test: XCTestCase) throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mcpopt-certs-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        let make = Process()
        make.executableURL = URL(fileURLWithPath: "/bin/bash")
        make.arguments = [repository.appendingPathComponent("Tests/interop/make_test_certs.sh").path, directory]
        try make.run()
        make.waitUntilExit()
        guard make.terminationStatus == 0 else {
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("make_test_certs.sh failed: run scripts/setup (openssl)"); throw CancellationError() }
            throw XCTSkip("make_test_certs.sh failed (is openssl installed? scripts/setup)")
        }
        test.addTeardownBlock { try? FileManager.default.removeItem(atPath: directory) }
        return directory
    }
}
