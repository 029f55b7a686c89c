import Dispatch
import XCTest
@testable import MCPOptMetrics

final class MetricsTests: XCTestCase {
    func testPercentilesOfAKnownDistribution() {
        let h = LatencyHistogram()
        for n in 1...1000 { h.record(nanoseconds: UInt64(n) * 1000) }  // 1 µs ... 1 ms
        let s = h.summary
        XCTAssertEqual(s.count, 1000)
        XCTAssertEqual(Double(s.p50), 500_000, accuracy: 500)   // within 0.1 % (3 significant digits)
        XCTAssertEqual(Double(s.p99), 990_000, accuracy: 1000)
        XCTAssertEqual(Double(s.max), 1_000_000, accuracy: 1000)
        XCTAssertEqual(s.mean, 500_500)
        XCTAssertEqual(s.sum, 500_500_000)
        h.record(.milliseconds(2))
        XCTAssertEqual(Double(h.summary.max), 2_000_000, accuracy: 2000)
        h.reset()
        XCTAssertEqual(h.summary.count, 0)
    }

    func testConcurrentRecordingLosesNothing() {
        let h = LatencyHistogram()
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for n in 0..<10_000 { h.record(nanoseconds: UInt64(n)) }
        }
        XCTAssertEqual(h.summary.count, 40_000)
    }

    func testPrometheusExposition() {
        var p = PrometheusText()
        p.counter("mcpopt_requests_total", help: "Requests handled.", value: 3, labels: [("server", "git"), ("outcome", "ok")])
        p.counter("mcpopt_requests_total", help: "Requests handled.", value: 1, labels: [("server", "a\"b\\c\nd"), ("outcome", "error")])
        p.gauge("mcpopt_cache_hit_ratio", help: "Hit ratio.", value: 0.25)
        let h = LatencyHistogram()
        h.record(nanoseconds: 1_000_000)
        p.summary("mcpopt_request_seconds", help: "Request latency.", h.summary)
        XCTAssertEqual(p.text, """
            # HELP mcpopt_requests_total Requests handled.
            # TYPE mcpopt_requests_total counter
            mcpopt_requests_total{server="git",outcome="ok"} 3
            mcpopt_requests_total{server="a\\"b\\\\c\\nd",outcome="error"} 1
            # HELP mcpopt_cache_hit_ratio Hit ratio.
            # TYPE mcpopt_cache_hit_ratio gauge
            mcpopt_cache_hit_ratio 0.25
            # HELP mcpopt_request_seconds Request latency.
            # TYPE mcpopt_request_seconds summary
            mcpopt_request_seconds{quantile="0.5"} 0.001
            mcpopt_request_seconds{quantile="0.9"} 0.001
            mcpopt_request_seconds{quantile="0.99"} 0.001
            mcpopt_request_seconds{quantile="0.999"} 0.001
            mcpopt_request_seconds_count 1
            mcpopt_request_seconds_sum 0.001

            """)
    }
}
