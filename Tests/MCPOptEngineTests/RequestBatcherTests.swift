import XCTest
import MCPOptIO
import MCPOptProtocol
import MCPOptUpstream
@testable import MCPOptEngine

/// An upstream that records the batches it is given and answers each request by echoing its
/// method (or fails the ones named "fail").
private final class RecordingUpstream: MCPUpstream, @unchecked Sendable {
    private let lock = NSLock()
    private var sizes: [Int] = []
    var batchSizes: [Int] { lock.withLock { sizes } }
    func start() {}
    func request(_ request: UpstreamRequest, timeout: Duration, cancellable: Bool) async throws(UpstreamError) -> [UInt8] {
        XCTFail("batched requests go through requestBatch")
        return []
    }
    func requestBatch(_ requests: [UpstreamRequest], timeout: Duration) async -> [Result<[UInt8], UpstreamError>] {
        lock.withLock { sizes.append(requests.count) }
        return requests.map { $0.method == "fail" ? .failure(UpstreamError(.closed, "failed")) : .success(Array($0.method.utf8)) }
    }
    func shutdown(grace: Duration) async {}
    func onNotification(_ handler: (@Sendable (String, [UInt8]) -> Void)?) {}
    func onServerRequest(_ handler: ServerRequestHandler?) {}
    var version: ProtocolVersion? { nil }
}

final class RequestBatcherTests: XCTestCase {
    func testConcurrentLowPriorityRequestsGoInBatchesOfAtMostMaxSize() async throws {
        let upstream = RecordingUpstream()
        let batcher = RequestBatcher(upstream: upstream, maxSize: 10, window: .milliseconds(20))
        let results = await withTaskGroup(of: (Int, Result<[UInt8], UpstreamError>).self) { group in
            for i in 0..<25 { group.addTask { (i, await batcher.submit(UpstreamRequest(method: i == 7 ? "fail" : "m\(i)"), timeout: .seconds(5))) } }
            var all: [Int: Result<[UInt8], UpstreamError>] = [:]
            for await (i, r) in group { all[i] = r }
            return all
        }
        // Everyone gets their own answer, the failure stays its own.
        for i in 0..<25 {
            if i == 7 { XCTAssertThrowsError(try results[i]!.get()) } else { XCTAssertEqual(try results[i]!.get(), Array("m\(i)".utf8)) }
        }
        XCTAssertEqual(upstream.batchSizes.reduce(0, +), 25)
        XCTAssertTrue(upstream.batchSizes.allSatisfy { $0 <= 10 }, "\(upstream.batchSizes)")
        XCTAssertGreaterThanOrEqual(upstream.batchSizes.count, 3)
        XCTAssertEqual(batcher.batches.requests, 25)
    }

    func testALoneRequestGoesWhenTheWindowEnds() async throws {
        let upstream = RecordingUpstream()
        let batcher = RequestBatcher(upstream: upstream, maxSize: 10, window: .milliseconds(5))
        let result = await batcher.submit(UpstreamRequest(method: "alone"), timeout: .seconds(5))
        XCTAssertEqual(try result.get(), Array("alone".utf8))
        XCTAssertEqual(upstream.batchSizes, [1])
    }
}
