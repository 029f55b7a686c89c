import Glibc

/// Deterministic random numbers (SplitMix64): the same seed draws the same workload, the same
/// latencies, the same faults.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }

    @inline(__always)
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    /// Standard normal (Box-Muller).
    public mutating func normal() -> Double {
        let u1 = max(unit(), 1e-300), u2 = unit()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }

    /// Lognormal with the given median and 99th percentile (sigma = ln(p99 / median) / z99).
    public mutating func lognormal(median: Double, p99: Double) -> Double {
        guard median > 0 else { return 0 }
        let sigma = log(max(p99, median) / median) / 2.326_347_874
        return median * exp(sigma * normal())
    }

    /// A seed derived from a base seed and a name (stable across runs and machines: FNV-1a).
    public static func seed(_ base: UInt64, _ name: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325 ^ base
        for b in name.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }
}

/// Zipf-distributed ranks in 0..<count with exponent `s` (rank 0 the most popular), drawn by
/// binary search over the cumulative distribution.
public struct ZipfSampler: Sendable {
    private var cumulative: [Double]
    public init(count: Int, exponent: Double) {
        cumulative = []
        cumulative.reserveCapacity(count)
        var sum = 0.0
        for rank in 1...max(1, count) {
            sum += 1 / pow(Double(rank), exponent)
            cumulative.append(sum)
        }
        for index in cumulative.indices { cumulative[index] /= sum }
    }
    public func sample(_ random: inout SeededRandom) -> Int {
        let u = random.unit()
        var low = 0, high = cumulative.count - 1
        while low < high {
            let middle = (low + high) / 2
            if cumulative[middle] >= u { high = middle } else { low = middle + 1 }
        }
        return low
    }
}
