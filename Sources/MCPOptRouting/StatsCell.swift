import CMCPOptConcurrency
import Glibc
import MCPOptSync

/// Statistics of one (server, tool) pair, or of a whole server: a 64-byte cell of atomics,
/// updated lock-free from any thread. Cells never move or go away while their store lives, so
/// a routing table may point at them and readers may read them without any lock.
///
/// Words: 0 latency EWMA (ns, Double bits), 1 its variance, 2 samples, 3 requests in flight,
/// 4 outcome window (bit i: the i-th latest outcome succeeded), 5 outcomes in the window (at
/// most 64, low 8 bits) and a moving average of success (high 32 bits, fixed point), 6 time of
/// the last outcome (ms), 7 circuit breaker (server cells).
struct StatsCell {
    let words: UnsafeMutablePointer<UInt64>

    static let ewma = 0, variance = 1, samples = 2, inFlight = 3, window = 4, windowCount = 5, lastUpdate = 6, breaker = 7

    @inline(__always) var latencyEWMA: Double { Double(bitPattern: mco_load64(words + Self.ewma)) }
    @inline(__always) var latencyVariance: Double { Double(bitPattern: mco_load64(words + Self.variance)) }
    @inline(__always) var samples: UInt64 { mco_load64(words + Self.samples) }
    @inline(__always) var inFlight: Int64 { Int64(bitPattern: mco_load64(words + Self.inFlight)) }
    @inline(__always) var lastUpdateMillis: UInt64 { mco_load64(words + Self.lastUpdate) }

    /// Success rate over the window (1 when it is empty).
    @inline(__always) var successRate: Double {
        let count = min(mco_load64(words + Self.windowCount) & 0xFF, 64)
        guard count > 0 else { return 1 }
        let mask: UInt64 = count == 64 ? .max : (1 << count) - 1
        return Double((mco_load64(words + Self.window) & mask).nonzeroBitCount) / Double(count)
    }

    @inline(__always) var windowCount: Int { Int(mco_load64(words + Self.windowCount) & 0xFF) }

    /// Success as a moving average (weight of the newest outcome: the EWMA alpha): what
    /// predictions use, since it forgets old failures quickly once a server recovers, where the
    /// 64-outcome window (for circuit breakers and requirements) keeps evidence longer.
    @inline(__always) var recentSuccess: Double {
        let word = mco_load64(words + Self.windowCount)
        return word & 0xFF == 0 ? 1 : Double(word >> 32) / Double(UInt32.max)
    }

    @inline(__always) func begin() { mco_add64(words + Self.inFlight, 1) }

    /// Records an outcome. Latency feeds the moving average only for successes (a fast error
    /// must not make a server look fast); every outcome enters the window.
    func record(latencyNanos: Double, success: Bool, alpha: Double, nowMillis: UInt64, started: Bool) {
        if started { mco_sub64(words + Self.inFlight, 1) }
        if success {
            let count = mco_add64(words + Self.samples, 1)
            while true {
                let old = mco_load64(words + Self.ewma)
                let mean = Double(bitPattern: old)
                let next = count == 1 || mean == 0 ? latencyNanos : mean + alpha * (latencyNanos - mean)
                if mco_cas64(words + Self.ewma, old, next.bitPattern) != 0 {
                    let delta = latencyNanos - mean
                    while true {
                        let oldVariance = mco_load64(words + Self.variance)
                        let variance = count == 1 ? 0 : (1 - alpha) * (Double(bitPattern: oldVariance) + alpha * delta * delta)
                        if mco_cas64(words + Self.variance, oldVariance, variance.bitPattern) != 0 { break }
                    }
                    break
                }
            }
        }
        while true {
            let old = mco_load64(words + Self.window)
            if mco_cas64(words + Self.window, old, old << 1 | (success ? 1 : 0)) != 0 { break }
        }
        while true {
            let old = mco_load64(words + Self.windowCount)
            let count = old & 0xFF
            let average = count == 0 ? (success ? 1.0 : 0.0) : Double(old >> 32) / Double(UInt32.max) + alpha * ((success ? 1 : 0) - Double(old >> 32) / Double(UInt32.max))
            let fixed = UInt64(max(0, min(1, average)) * Double(UInt32.max))
            if mco_cas64(words + Self.windowCount, old, fixed << 32 | min(count + 1, 64)) != 0 { break }
        }
        mco_store64(words + Self.lastUpdate, nowMillis)
    }

    /// Forgets the outcome window (a circuit that closes starts afresh).
    func resetWindow() {
        mco_store64(words + Self.window, 0)
        mco_store64(words + Self.windowCount, 0)
    }
}

/// Where the cells live: chunks of cache-line-aligned cells, found by key under a lock (only
/// when tables are built and outcomes are recorded by name; routing reads cells by pointer).
final class StatsStore: @unchecked Sendable {
    private let lock = Lock()
    @exclusivity(unchecked) private var cells: [String: UnsafeMutablePointer<UInt64>] = [:]
    @exclusivity(unchecked) private var chunks: [UnsafeMutablePointer<UInt64>] = []
    private var used = StatsStore.cellsPerChunk
    static let cellsPerChunk = 1024

    deinit { for chunk in chunks { free(chunk) } }

    /// The cell of a server (tool nil) or of a (server, tool) pair, created on first use.
    func cell(server: String, tool: String?) -> StatsCell {
        let key = tool.map { server + "\u{0}" + $0 } ?? server
        return lock.withLock {
            if let words = cells[key] { return StatsCell(words: words) }
            if used == Self.cellsPerChunk {
                let chunk = mco_cache_line_alloc(Self.cellsPerChunk * 64)!.bindMemory(to: UInt64.self, capacity: Self.cellsPerChunk * 8)
                chunks.append(chunk)
                used = 0
            }
            let words = chunks[chunks.count - 1] + used * 8
            used += 1
            cells[key] = words
            return StatsCell(words: words)
        }
    }

    /// The cell if it exists (recording an outcome for a pair never routed creates nothing).
    func existingCell(server: String, tool: String?) -> StatsCell? {
        let key = tool.map { server + "\u{0}" + $0 } ?? server
        return lock.withLock { cells[key].map { StatsCell(words: $0) } }
    }

    var bytes: Int { lock.withLock { chunks.count * Self.cellsPerChunk * 64 } }
    var count: Int { lock.withLock { cells.count } }
}
