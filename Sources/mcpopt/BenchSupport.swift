import Glibc

/// Shared pieces of the `mcpopt bench` subcommands.
enum BenchClock {
    @inline(__always)
    static func nanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// Deterministic random numbers (SplitMix64), so every run draws the same workload.
struct BenchRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    @inline(__always)
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

/// Zipf-distributed ranks in 0..<count with exponent `s` (rank 0 the most popular), drawn by
/// binary search over the cumulative distribution.
struct ZipfSampler {
    private var cumulative: [Double]
    init(count: Int, exponent: Double) {
        cumulative = []
        cumulative.reserveCapacity(count)
        var sum = 0.0
        for rank in 1...count {
            sum += 1 / pow(Double(rank), exponent)
            cumulative.append(sum)
        }
        for index in cumulative.indices { cumulative[index] /= sum }
    }
    func sample(_ random: inout BenchRandom) -> Int {
        let u = random.unit()
        var low = 0, high = cumulative.count - 1
        while low < high {
            let middle = (low + high) / 2
            if cumulative[middle] >= u { high = middle } else { low = middle + 1 }
        }
        return low
    }
}

/// The q-quantile (0...1) of sorted samples.
func quantile<T: BinaryInteger>(_ sorted: [T], _ q: Double) -> T {
    sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))]
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
