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

    func testTailIsCloseAboveTheExactPercentiles() {
        let h = LatencyHistogram()
        for n in 1...1000 { h.record(nanoseconds: UInt64(n) * 1000) }  // 1 µs ... 1 ms
        let tail = h.tail()
        // At or above the exact value, by at most a bucket (1/32).
        XCTAssertGreaterThanOrEqual(tail.p95, 950_000)
        XCTAssertLessThanOrEqual(tail.p95, 950_000 + 950_000 / 32)
        XCTAssertGreaterThanOrEqual(tail.p99, 990_000)
        XCTAssertLessThanOrEqual(tail.p99, 1_000_000)   // never above the largest recorded
        let same = LatencyHistogram()
        for _ in 0..<100 { same.record(nanoseconds: 3_141_593) }
        XCTAssertEqual(same.tail().p95, 3_141_593)
        XCTAssertEqual(same.tail().p99, 3_141_593)
    }

    func testTailIsRecomputedEvery64Values() {
        let h = LatencyHistogram()
        for _ in 0..<100 { h.record(nanoseconds: 1000) }
        XCTAssertEqual(h.tail().p99, 1000)
        for _ in 0..<63 { h.record(nanoseconds: 1_000_000) }
        XCTAssertEqual(h.tail().p99, 1000, "63 values since: the last tail still stands")
        h.record(nanoseconds: 1_000_000)
        XCTAssertEqual(h.tail().p99, 1_000_000)
        h.reset()
        XCTAssertEqual(h.tail().p99, 0)
        h.record(nanoseconds: 5)
        XCTAssertEqual(h.tail().p99, 5, "after a reset the first value counts at once")
        XCTAssertNil(h.tail(minimumCount: 2))
        XCTAssertEqual(h.tail(minimumCount: 1)?.p99, 5)
        let total = LatencyHistogram()
        h.merge(into: total)
        XCTAssertEqual(total.tail().p95, 5)
    }

    func testCoarseBucketsSpanAtMostAThirtySecondOfTheirValues() {
        var value: UInt64 = 1
        while value <= 600_000_000_000 {
            for v in [value, value + 1, value * 3 / 2, value * 2 - 1] where v <= 600_000_000_000 {
                let i = CoarseTail.index(v)
                XCTAssertLessThan(i, CoarseTail.bucketCount)
                let top = CoarseTail.highest(i)
                XCTAssertGreaterThanOrEqual(top, v)
                XCTAssertLessThanOrEqual(top - v, v / 32)
                if i > 0 { XCTAssertLessThan(CoarseTail.highest(i - 1), v, "buckets are contiguous") }
            }
            value *= 2
        }
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
