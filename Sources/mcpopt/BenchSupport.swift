import Glibc
import MCPOptMock

/// Shared pieces of the `mcpopt bench` subcommands.
enum BenchClock {
    @inline(__always)
    static func nanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

typealias BenchRandom = SeededRandom

/// The q-quantile (0...1) of sorted samples.
func quantile<T: BinaryInteger>(_ sorted: [T], _ q: Double) -> T {
    sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))]
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
