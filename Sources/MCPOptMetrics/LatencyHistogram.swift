import Histogram
import MCPOptSync

/// Latencies in nanoseconds, 1 ns to 10 minutes at 3 significant digits (HdrHistogram), safe
/// to record from any thread. Recording takes a short lock; the engine keeps one per server and
/// per stage, so contention stays low.
public final class LatencyHistogram: @unchecked Sendable {
    private let lock = Lock()
    /// Everything in one value, so a recording is one (exclusivity-checked) access.
    @exclusivity(unchecked) private var state = State()   // guarded by lock

    private struct State {
        var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000_000, numberOfSignificantValueDigits: .three)
        /// Exact total (the histogram's own mean works on bucket midpoints).
        var total: UInt64 = 0
        /// A coarse copy of the distribution for `tail()`: asking the histogram above for a
        /// percentile walks thousands of buckets in unspecialized generic code (~1.8M instructions).
        var coarse = CoarseTail()
        /// The tail as last computed, and at which count.
        var cachedTail: (p95: UInt64, p99: UInt64) = (0, 0)
        var tailCount: UInt64 = 0

        mutating func record(_ value: UInt64) {
            _ = histogram.record(value)
            coarse.record(value)
            total &+= value
        }

        mutating func tail() -> (p95: UInt64, p99: UInt64) {
            let n = coarse.count
            if n >= tailCount &+ 64 || (tailCount == 0 && n > 0) {
                cachedTail = coarse.percentiles(95, 99)
                tailCount = n
            }
            return cachedTail
        }
    }

    public init() {}

    public func record(nanoseconds: UInt64) {
        let value = min(max(nanoseconds, 1), 600_000_000_000)
        lock.withLock { state.record(value) }
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
            let (histogram, total) = (state.histogram, state.total)
            return Summary(count: histogram.totalCount, sum: total, mean: histogram.totalCount == 0 ? 0 : Double(total) / Double(histogram.totalCount),
                           p50: histogram.valueAtPercentile(50), p90: histogram.valueAtPercentile(90), p99: histogram.valueAtPercentile(99),
                           p999: histogram.valueAtPercentile(99.9), max: histogram.totalCount == 0 ? 0 : histogram.max)
        }
    }

    /// p95 and p99 for decisions made on every request (hedging, timeouts), from a coarse
    /// log-linear copy of the distribution (within 1/32 above the true value, never above the
    /// largest recorded), recomputed once 64 values were added since, so a call is usually a
    /// lock and a comparison.
    public func tail() -> (p95: UInt64, p99: UInt64) {
        lock.withLock { state.tail() }
    }

    /// `tail()` once at least `minimum` values are on record, else nil (one lock for both).
    public func tail(minimumCount minimum: UInt64) -> (p95: UInt64, p99: UInt64)? {
        lock.withLock { state.coarse.count >= minimum ? state.tail() : nil }
    }

    /// Values recorded so far.
    public var count: UInt64 { lock.withLock { state.coarse.count } }

    public func percentile(_ p: Double) -> UInt64 { lock.withLock { state.histogram.valueAtPercentile(p) } }

    public func reset() {
        lock.withLock { state = State() }
    }

    /// A copy of everything recorded, merged into another histogram's view (for totals).
    public func merge(into other: LatencyHistogram) {
        let copy = lock.withLock { state }
        other.lock.withLock {
            other.state.histogram.add(copy.histogram)
            other.state.coarse.add(copy.coarse)
            other.state.total &+= copy.total
        }
    }
}

/// Counts in log-linear buckets: exact below 64, then 32 buckets per power of two (so a
/// bucket spans at most 1/32 of its values). 1,152 buckets cover 1 ns to 10 minutes; finding a
/// percentile walks down from the largest value, a few steps for a tail.
struct CoarseTail {
    static let subBits = 5
    static let bucketCount = 1152   // index of 600e9 (< 2^40) is 1,151
    private(set) var counts = [UInt64](repeating: 0, count: CoarseTail.bucketCount)
    private(set) var count: UInt64 = 0
    private(set) var max: UInt64 = 0

    static func index(_ value: UInt64) -> Int {
        guard value >= 1 << subBits else { return Int(value) }
        let shift = (63 - value.leadingZeroBitCount) - subBits
        return shift << subBits + Int(value >> UInt64(shift))
    }

    /// The largest value that lands in bucket `index`.
    static func highest(_ index: Int) -> UInt64 {
        guard index >= 2 << subBits else { return UInt64(index) }
        let shift = index >> subBits - 1
        let mantissa = UInt64(index & (1 << subBits - 1) + 1 << subBits)
        return (mantissa + 1) << UInt64(shift) - 1
    }

    mutating func record(_ value: UInt64) {
        counts.withUnsafeMutableBufferPointer { $0[Swift.min(Self.index(value), Self.bucketCount - 1)] &+= 1 }
        count &+= 1
        if value > max { max = value }
    }

    mutating func add(_ other: CoarseTail) {
        for i in 0..<Self.bucketCount { counts[i] &+= other.counts[i] }
        count &+= other.count
        max = Swift.max(max, other.max)
    }

    /// The values at two percentiles (`low` <= `high`), as the histogram's `valueAtPercentile`
    /// defines them (the smallest value with that share of the count at or below it), to the
    /// top of its bucket, capped at the largest recorded.
    func percentiles(_ low: Double, _ high: Double) -> (UInt64, UInt64) {
        guard count > 0 else { return (0, 0) }
        func rank(_ p: Double) -> UInt64 { Swift.max(1, UInt64((p.nextDown * Double(count) / 100).rounded(.up))) }
        // Walking down: the answer is the first bucket whose values and those above it
        // exceed `count - rank`.
        let (allowLow, allowHigh) = (count - rank(low), count - rank(high))
        var above: UInt64 = 0
        var found: (low: Int?, high: Int?) = (nil, nil)
        counts.withUnsafeBufferPointer { c in
            var i = Swift.min(Self.index(max), Self.bucketCount - 1)
            while i >= 0 {
                above &+= c[i]
                if found.high == nil, above > allowHigh { found.high = i }
                if above > allowLow {
                    found.low = i
                    break
                }
                i -= 1
            }
        }
        let value = { (i: Int?) in Swift.min(Self.highest(i ?? 0), max) }
        return (value(found.low), value(found.high))
    }
}
