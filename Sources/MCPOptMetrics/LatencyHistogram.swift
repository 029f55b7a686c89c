import Histogram
import MCPOptSync

/// Latencies in nanoseconds, 1 ns to 10 minutes at 3 significant digits (HdrHistogram), safe
/// to record from any thread. Recording takes a short lock; the engine keeps one per server and
/// per stage, so contention stays low.
public final class LatencyHistogram: @unchecked Sendable {
    private let lock = Lock()
    private var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000_000, numberOfSignificantValueDigits: .three)
    /// Exact total (the histogram's own mean works on bucket midpoints).
    private var total: UInt64 = 0
    /// The tail as last computed, and at which count (computing walks every bucket).
    private var cachedTail: (p95: UInt64, p99: UInt64) = (0, 0)
    private var tailCount: UInt64 = 0

    public init() {}

    public func record(nanoseconds: UInt64) {
        let value = min(max(nanoseconds, 1), 600_000_000_000)
        lock.withLock {
            _ = histogram.record(value)
            total &+= value
        }
    }

    public func record(_ duration: Duration) {
        let (s, atto) = duration.components
        record(nanoseconds: s < 0 ? 0 : UInt64(s) * 1_000_000_000 + UInt64(atto / 1_000_000_000))
    }

    public struct Summary: Sendable, Equatable {
        public var count: UInt64
        /// Exact sum of the recorded values.
        public var sum: UInt64
        public var mean: Double
        public var p50: UInt64
        public var p90: UInt64
        public var p99: UInt64
        public var p999: UInt64
        public var max: UInt64
    }

    /// Percentiles in nanoseconds.
    public var summary: Summary {
        lock.withLock {
            Summary(count: histogram.totalCount, sum: total, mean: histogram.totalCount == 0 ? 0 : Double(total) / Double(histogram.totalCount),
                    p50: histogram.valueAtPercentile(50), p90: histogram.valueAtPercentile(90), p99: histogram.valueAtPercentile(99),
                    p999: histogram.valueAtPercentile(99.9), max: histogram.totalCount == 0 ? 0 : histogram.max)
        }
    }

    /// p95 and p99 for decisions made on every request (hedging, timeouts): recomputed only
    /// when max(64, an eighth of the count) values were added since, so a call is usually a
    /// lock and a comparison.
    public func tail() -> (p95: UInt64, p99: UInt64) {
        lock.withLock {
            let n = histogram.totalCount
            // Each recomputation scans the histogram's buckets: rarer as the count grows.
            if n >= tailCount &+ max(64, tailCount / 8) || (tailCount == 0 && n > 0) {
                cachedTail = (histogram.valueAtPercentile(95), histogram.valueAtPercentile(99))
                tailCount = n
            }
            return cachedTail
        }
    }

    /// Values recorded so far.
    public var count: UInt64 { lock.withLock { histogram.totalCount } }

    public func percentile(_ p: Double) -> UInt64 { lock.withLock { histogram.valueAtPercentile(p) } }

    public func reset() {
        lock.withLock {
            histogram.reset()
            total = 0
        }
    }

    /// A copy of everything recorded, merged into another histogram's view (for totals).
    public func merge(into other: LatencyHistogram) {
        let (copy, sum) = lock.withLock { (histogram, total) }
        other.lock.withLock {
            other.histogram.add(copy)
            other.total &+= sum
        }
    }
}
