import ArgumentParser
import Dispatch
import Glibc
import MCPOptCache
import MCPOptJSON
import MCPOptMock

/// `mcpopt bench cache`: the L1 memory cache's speed (get latency, throughput on one and two
/// threads, a 90/10 get/set mix), its metadata per item, and its hit ratio against LRU at equal
/// memory on synthetic and agent-shaped traces.
struct BenchCache: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cache", abstract: "L1 memory cache: latency, throughput, memory per item, hit ratio against LRU.")

    @Flag(help: "Print machine-readable JSON instead of a table.")
    var json = false

    @Option(help: "Keys in the speed test (32-byte keys, 256-byte values, Zipf 0.99 access).")
    var keys = 1_000_000

    @Option(help: "Requests per hit-ratio workload (8M: at 2M, a trace touches each of the 1M keys twice on average and the figures are mostly the warm-up).")
    var requests = 8_000_000

    @Option(help: "Seconds per throughput run.")
    var seconds = 1.0

    @Flag(help: "Also run every hit-ratio workload at a quarter, half, twice and four times its budget (about a minute more).")
    var sweep = false

    func run() throws {
        let speed = try SpeedBench(keyCount: keys, seconds: seconds).run()
        let bench = HitRatioBench(requests: requests)
        let quality = try bench.run()
        let sweepRows: JSONValue? = sweep ? try bench.run(budgetFactors: HitRatioBench.sweepFactors) : nil
        var fields: JSONObject = ["benchmark": "cache", "speed": speed, "hitRatio": quality]
        if let sweepRows { fields["hitRatioSweep"] = sweepRows }
        let result = JSONValue.object(fields)
        if json {
            print(result.jsonString)
            return
        }
        func n(_ value: JSONValue?) -> String { JSONWriter.number(value?.doubleValue ?? .nan) }
        print("L1 memory cache, \(n(speed["keys"])) keys of 32 bytes, 256-byte values, Zipf 0.99 (pages: \(speed["pageSource"]?.stringValue ?? "?"))")
        print("  get hit latency     p50 \(n(speed["getP50Ns"])) ns   p99 \(n(speed["getP99Ns"])) ns   p99.9 \(n(speed["getP999Ns"])) ns")
        print("  get, 1,000 hot keys \(n(speed["hotGetNs"])) ns per call (the cost of the call itself)")
        print("  gets/s              1 thread \(n(speed["getsPerSecond1"]))   2 threads \(n(speed["getsPerSecond2"]))   scaling \(n(speed["getScaling"]))x")
        print("  90/10 get/set ops/s 1 thread \(n(speed["mixedPerSecond1"]))   2 threads \(n(speed["mixedPerSecond2"]))")
        print("  sets/s              1 thread \(n(speed["setsPerSecond1"]))")
        print("  metadata per item   \(n(speed["metadataBytesPerItem"])) bytes (header \(n(speed["headerBytes"])), index+sketch+tables \(n(speed["indexBytesPerItem"])));  slab rounding \(n(speed["slabRoundingBytesPerItem"])) bytes")
        print("")
        print("hit ratio at equal memory                budget  scans   mcpopt      LRU  difference   slab LRU  difference   non-scan: mcpopt     LRU  slab LRU")
        for row in quality.arrayValue ?? [] {
            print("  " + (row["workload"]?.stringValue ?? "").padding(36) + (n(row["budgetMiB"]) + " MiB").leftPad(8)
                + (n(row["scanShare"]) + "%").leftPad(7) + (n(row["mcpopt"]) + "%").leftPad(9) + (n(row["lru"]) + "%").leftPad(9)
                + (n(row["pointsAboveLRU"]) + " pts").leftPad(12) + (n(row["slabLRU"]) + "%").leftPad(11) + (n(row["pointsAboveSlabLRU"]) + " pts").leftPad(12)
                + (n(row["mcpoptReusable"]) + "%").leftPad(18) + (n(row["lruReusable"]) + "%").leftPad(8) + (n(row["slabLRUReusable"]) + "%").leftPad(10))
        }
        guard let sweepRows = sweepRows?.arrayValue else { return }
        print("")
        print("hit ratio by budget (points above LRU; above slab LRU in parentheses)")
        let factors = HitRatioBench.sweepFactors
        print("  " + "workload".padding(36) + factors.map { "x\(JSONWriter.number($0))".leftPad(20) }.joined())
        var index = 0
        while index < sweepRows.count {
            let group = sweepRows[index..<min(index + factors.count, sweepRows.count)]
            var line = "  " + (group.first?["workload"]?.stringValue ?? "").padding(36)
            for row in group {
                line += "\(n(row["budgetMiB"])) MiB \(n(row["pointsAboveLRU"])) (\(n(row["pointsAboveSlabLRU"])))".leftPad(20)
            }
            print(line)
            index += factors.count
        }
    }
}

/// Keys for the benchmarks: 32 bytes, the id in the first eight.
private func writeKey(_ id: UInt64, into key: UnsafeMutableRawBufferPointer) {
    key.storeBytes(of: id.littleEndian, as: UInt64.self)
    for index in 8..<32 { key[index] = UInt8(truncatingIfNeeded: 0x41 &+ UInt64(index) &+ (id >> 8)) }
}

private struct SpeedBench {
    let keyCount: Int
    let seconds: Double

    func run() throws -> JSONValue {
        var configuration = MemoryCacheConfiguration(memoryBudget: 1 << 30)
        configuration.maxItemSize = 1 << 20
        let cache = try MemoryCache(configuration)
        let keys = UnsafeMutableRawBufferPointer.allocate(byteCount: keyCount * 32, alignment: 8)
        defer { keys.deallocate() }
        let value = [UInt8](repeating: 0x5A, count: 256)
        for id in 0..<keyCount {
            let key = UnsafeMutableRawBufferPointer(rebasing: keys[id * 32..<(id + 1) * 32])
            writeKey(UInt64(id), into: key)
            try value.withUnsafeBytes { _ = try cache.set(UnsafeRawBufferPointer(key), $0) }
        }
        // The access sequence, drawn before timing.
        let zipf = ZipfSampler(count: keyCount, exponent: 0.99)
        var random = BenchRandom(seed: 7)
        let sequence = (0..<(1 << 22)).map { _ in Int32(zipf.sample(&random)) }
        let keyBase = UnsafeRawPointer(keys.baseAddress!)

        // Latency, one get at a time, less the clock's own cost.
        var overheads: [UInt64] = []
        for _ in 0..<10_000 {
            let start = BenchClock.nanos()
            overheads.append(BenchClock.nanos() - start)
        }
        overheads.sort()
        let clockCost = quantile(overheads, 0.5)
        var samples = [UInt64](repeating: 0, count: 1_000_000)
        var buffer = [UInt8](repeating: 0, count: 512)
        buffer.withUnsafeMutableBytes { out in
            for round in 0..<2 {   // the first round warms caches and branch predictors
                for index in samples.indices {
                    let key = UnsafeRawBufferPointer(start: keyBase + Int(sequence[index &+ round]) * 32, count: 32)
                    let start = BenchClock.nanos()
                    let read = cache.get(key, into: out)
                    let elapsed = BenchClock.nanos() - start
                    samples[index] = elapsed > clockCost ? elapsed - clockCost : 0
                    precondition(read == .hit(length: 256))
                }
            }
        }
        samples.sort()

        func throughput(threads: Int, setEvery: Int) -> Double {
            let counts = UnsafeMutablePointer<Int>.allocate(capacity: threads * 16)
            counts.initialize(repeating: 0, count: threads * 16)
            defer { counts.deallocate() }
            let deadline = BenchClock.nanos() + UInt64(seconds * 1e9)
            let start = BenchClock.nanos()
            let shared = UnsafeSendable(counts: counts, keys: keyBase)
            let sequence = sequence
            DispatchQueue.concurrentPerform(iterations: threads) { thread in
                var out = [UInt8](repeating: 0, count: 512)
                var position = thread * 1_000_003
                var done = 0
                out.withUnsafeMutableBytes { out in
                    value.withUnsafeBytes { value in
                        while BenchClock.nanos() < deadline {
                            for _ in 0..<1024 {
                                position = (position + 1) & (sequence.count - 1)
                                let key = UnsafeRawBufferPointer(start: shared.keys + Int(sequence[position]) * 32, count: 32)
                                if setEvery > 0 && position % setEvery == 0 {
                                    _ = try? cache.set(key, value)
                                } else {
                                    _ = cache.get(key, into: out)
                                }
                            }
                            done += 1024
                        }
                    }
                }
                shared.counts[thread * 16] = done
            }
            let elapsed = Double(BenchClock.nanos() - start) / 1e9
            return (0..<threads).reduce(0.0) { $0 + Double(counts[$1 * 16]) } / elapsed
        }
        // The same get over 1,000 keys that stay in the CPU's caches: the cost of the call
        // itself, to set beside the C ABI's (scripts/bench-bindings).
        let hotGetNs: Double = buffer.withUnsafeMutableBytes { out in
            var best = Double.infinity
            for _ in 0..<5 {
                let start = BenchClock.nanos()
                for round in 0..<200 {
                    for id in 0..<1_000 {
                        _ = cache.get(UnsafeRawBufferPointer(start: keyBase + ((id &* 7 &+ round) % 1_000) * 32, count: 32), into: out)
                    }
                }
                best = min(best, Double(BenchClock.nanos() - start) / 200_000)
            }
            return best
        }
        let gets1 = throughput(threads: 1, setEvery: 0)
        let gets2 = throughput(threads: 2, setEvery: 0)
        let mixed1 = throughput(threads: 1, setEvery: 10)
        let mixed2 = throughput(threads: 2, setEvery: 10)
        let sets1 = throughput(threads: 1, setEvery: 1)

        let stats = cache.stats()
        let items = Double(stats.items)
        let header = Double(MemoryCache.itemSize(keyLength: 32, valueLength: 0) - 32)
        let indexPerItem = Double(stats.overheadBytes) / items
        let rounding = Double(stats.bytesUsed - stats.classes.reduce(0) { $0 + $1.payloadBytes }) / items
        func r(_ x: Double, _ digits: Double = 1) -> JSONValue { .double((x * digits).rounded() / digits) }
        return [
            "keys": .int(Int64(keyCount)), "pageSource": .string(stats.pageSource), "shards": .int(Int64(stats.shards)),
            "getP50Ns": .int(Int64(quantile(samples, 0.5))), "getP99Ns": .int(Int64(quantile(samples, 0.99))),
            "getP999Ns": .int(Int64(quantile(samples, 0.999))), "clockCostNs": .int(Int64(clockCost)),
            "hotGetNs": r(hotGetNs, 10),
            "getsPerSecond1": r(gets1), "getsPerSecond2": r(gets2), "getScaling": r(gets2 / gets1, 100),
            "mixedPerSecond1": r(mixed1), "mixedPerSecond2": r(mixed2), "setsPerSecond1": r(sets1),
            "headerBytes": r(header), "indexBytesPerItem": r(indexPerItem, 10),
            "metadataBytesPerItem": r(header + indexPerItem, 10), "slabRoundingBytesPerItem": r(rounding, 10),
            "evictions": .int(Int64(stats.evictions)),
        ]
    }
}

private struct UnsafeSendable: @unchecked Sendable {
    let counts: UnsafeMutablePointer<Int>
    let keys: UnsafeRawPointer
}

/// Hit ratio with fill-on-miss, against an exact LRU holding the same bytes (header, key and
/// value per item, without the slab's rounding: the comparison favours LRU).
private struct HitRatioBench {
    let requests: Int

    struct Workload {
        let name: String
        var budget: Int
        let ids: [UInt64]
        let size: (UInt64) -> Int
    }

    /// The budgets of `--sweep`, as multiples of each workload's own.
    static let sweepFactors: [Double] = [0.25, 0.5, 1, 2, 4]

    /// Keys read once by a scan (ids from one million up in the scan workloads, ten million in
    /// the agent trace): no policy can hit them, so the hit ratio of the other requests is
    /// reported too.
    static func isScan(_ id: UInt64) -> Bool { id >= 1_000_000 }

    func workloads() -> [Workload] {
        // Each workload draws from its own seed, so adding one does not change the others.
        var random = BenchRandom(seed: 11)
        let universe = 1_000_000
        let zipf99 = ZipfSampler(count: universe, exponent: 0.99)
        let zipf70 = ZipfSampler(count: universe, exponent: 0.7)
        let fixed: (UInt64) -> Int = { _ in 256 }
        var list: [Workload] = []
        list.append(Workload(name: "Zipf 0.99", budget: 32 << 20,
                             ids: (0..<requests).map { _ in UInt64(zipf99.sample(&random)) }, size: fixed))
        list.append(Workload(name: "Zipf 0.7", budget: 32 << 20,
                             ids: (0..<requests).map { _ in UInt64(zipf70.sample(&random)) }, size: fixed))
        // Zipf with one-time scans: short ones (20,000 keys every 50,000 requests, a fifth of
        // the cache) and long ones (150,000 keys every 100,000 requests, more than the cache
        // holds: what flushes an LRU).
        var nextScanKey = UInt64(universe)
        random = BenchRandom(seed: 12)
        for (every, length, name) in [(50_000, 20_000, "Zipf 0.99 + short scans"), (100_000, 150_000, "Zipf 0.99 + long scans"),
                                      (300_000, 100_000, "Zipf 0.99 + rare cache-sized scans")] {
            var scanned: [UInt64] = []
            while scanned.count < requests {
                for _ in 0..<every { scanned.append(UInt64(zipf99.sample(&random))) }
                for _ in 0..<length { scanned.append(nextScanKey); nextScanKey += 1 }
            }
            list.append(Workload(name: name, budget: 32 << 20, ids: Array(scanned.prefix(requests)), size: fixed))
        }
        // An agent's reads: a few hot files read again and again, a long tail of files, and
        // bursts of scans (grep over a tree) reading thousands of files once. Sizes are
        // lognormal around 2 KiB, capped at 64 KiB.
        let tail = ZipfSampler(count: 100_000, exponent: 0.8)
        random = BenchRandom(seed: 13)
        var agent: [UInt64] = []
        var scanCursor: UInt64 = 10_000_000
        while agent.count < requests {
            let draw = random.unit()
            if draw < 0.4 {
                agent.append(random.next() % 30)
            } else if draw < 0.99988 {
                agent.append(1_000 + UInt64(tail.sample(&random)))
            } else {
                let burst = 500 + Int(random.next() % 3_000)
                for _ in 0..<burst { agent.append(scanCursor); scanCursor += 1 }
            }
        }
        let agentSize: (UInt64) -> Int = { id in
            var r = BenchRandom(seed: id &* 0x2545_F491_4F6C_DD1D)
            // Box-Muller: lognormal with median 2 KiB, sigma 1.
            let u1 = max(r.unit(), 1e-12), u2 = r.unit()
            let normal = (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
            return min(65_536, max(16, Int(2_048 * exp(normal))))
        }
        list.append(Workload(name: "agent trace (files+scans)", budget: 16 << 20, ids: Array(agent.prefix(requests)), size: agentSize))
        return list
    }

    /// One row per workload, or per workload and budget factor (in that order) when given.
    func run(budgetFactors: [Double] = [1]) throws -> JSONValue {
        var rows: [JSONValue] = []
        for (base, factor) in workloads().flatMap({ base in budgetFactors.map { (base, $0) } }) {
            var workload = base
            workload.budget = Int(Double(base.budget) * factor)
            let ours = try simulateOurs(workload)
            let lru = simulateLRU(workload, slab: nil)
            // The same LRU paying the slab's rounding (memcached's policy on the same memory):
            // the policies compared alone.
            let slabCache = try MemoryCache(MemoryCacheConfiguration(memoryBudget: workload.budget))
            let slabLRU = simulateLRU(workload, slab: slabCache)
            let reusable = Double(workload.ids.filter { !Self.isScan($0) }.count)
            let total = Double(workload.ids.count)
            func pct(_ x: Double) -> JSONValue { .double((x * 1000).rounded() / 10) }
            rows.append([
                "workload": .string(workload.name), "budgetMiB": .int(Int64(workload.budget >> 20)),
                "requests": .int(Int64(workload.ids.count)), "scanShare": pct(1 - reusable / total),
                "mcpopt": pct(ours.total / total), "lru": pct(lru.total / total),
                "pointsAboveLRU": .double(((ours.total - lru.total) / total * 1000).rounded() / 10),
                "mcpoptReusable": pct(ours.reusable / reusable), "lruReusable": pct(lru.reusable / reusable),
                "slabLRU": pct(slabLRU.total / total), "pointsAboveSlabLRU": .double(((ours.total - slabLRU.total) / total * 1000).rounded() / 10),
                "slabLRUReusable": pct(slabLRU.reusable / reusable),
            ])
        }
        return .array(rows)
    }

    private func simulateOurs(_ workload: Workload) throws -> (total: Double, reusable: Double) {
        let cache = try MemoryCache(MemoryCacheConfiguration(memoryBudget: workload.budget))
        let value = [UInt8](repeating: 1, count: 65_536)
        var out = [UInt8](repeating: 0, count: 65_536)
        var key = [UInt8](repeating: 0, count: 32)
        var hits = 0, reusableHits = 0
        for id in workload.ids {
            key.withUnsafeMutableBytes { writeKey(id, into: $0) }
            let hit = key.withUnsafeBytes { k in out.withUnsafeMutableBytes { cache.get(k, into: $0) } }
            if case .hit = hit {
                hits += 1
                if !Self.isScan(id) { reusableHits += 1 }
                continue
            }
            let size = workload.size(id)
            _ = try key.withUnsafeBytes { k in try value.withUnsafeBytes { try cache.set(k, UnsafeRawBufferPointer(rebasing: $0[0..<size])) } }
        }
        return (Double(hits), Double(reusableHits))
    }

    private func simulateLRU(_ workload: Workload, slab: MemoryCache?) -> (total: Double, reusable: Double) {
        // With a slab, the budget is the pages the cache actually holds, and items cost chunks.
        var lru = ByteLRU(budget: slab.map { $0.stats().pageSize * ($0.configuration.memoryBudget / $0.stats().pageSize) } ?? workload.budget)
        var hits = 0, reusableHits = 0
        for id in workload.ids {
            if lru.get(id) {
                hits += 1
                if !Self.isScan(id) { reusableHits += 1 }
            } else {
                let size = MemoryCache.itemSize(keyLength: 32, valueLength: workload.size(id))
                lru.insert(id, size: slab?.chunkSize(forItemSize: size) ?? size)
            }
        }
        return (Double(hits), Double(reusableHits))
    }
}

/// An exact LRU with a byte budget (a doubly linked list over arrays and a dictionary).
private struct ByteLRU {
    let budget: Int
    var used = 0
    var slots: [UInt64: Int32] = [:]
    var ids: [UInt64] = [], sizes: [Int] = [], prev: [Int32] = [], next: [Int32] = []
    var free: [Int32] = []
    var head: Int32 = -1, tail: Int32 = -1

    init(budget: Int) { self.budget = budget }

    mutating func unlink(_ node: Int32) {
        let p = prev[Int(node)], n = next[Int(node)]
        if p >= 0 { next[Int(p)] = n } else { head = n }
        if n >= 0 { prev[Int(n)] = p } else { tail = p }
    }

    mutating func pushFront(_ node: Int32) {
        prev[Int(node)] = -1
        next[Int(node)] = head
        if head >= 0 { prev[Int(head)] = node } else { tail = node }
        head = node
    }

    mutating func get(_ id: UInt64) -> Bool {
        guard let node = slots[id] else { return false }
        unlink(node)
        pushFront(node)
        return true
    }

    mutating func insert(_ id: UInt64, size: Int) {
        while used + size > budget && tail >= 0 {
            let victim = tail
            unlink(victim)
            used -= sizes[Int(victim)]
            slots[ids[Int(victim)]] = nil
            free.append(victim)
        }
        let node: Int32
        if let reused = free.popLast() {
            node = reused
            ids[Int(node)] = id
            sizes[Int(node)] = size
        } else {
            node = Int32(ids.count)
            ids.append(id); sizes.append(size); prev.append(-1); next.append(-1)
        }
        slots[id] = node
        used += size
        pushFront(node)
    }
}
