import Foundation
import XCTest
@testable import MCPOptCache

final class MemoryCacheTests: XCTestCase {
    func testTagListsInternToTheSameSetWhateverTheirOrder() throws {
        let names = NameTable()
        let ab = try names.tagSet(["a", "b"])
        XCTAssertNotEqual(ab, 0)
        XCTAssertEqual(try names.tagSet(["a", "b"]), ab, "a list seen before")
        XCTAssertEqual(try names.tagSet(["b", "a", "b"]), ab, "another order, a repeat: the same set")
        XCTAssertEqual(try names.tagSet([]), 0)
        let c = try names.tagSet(["c"])
        XCTAssertNotEqual(c, ab)
        XCTAssertEqual(names.tagSetsContaining("a")[Int(ab)], true)
        XCTAssertEqual(names.tagSetsContaining("a")[Int(c)], false)
    }

    private func cache(budget: Int = 4 << 20, coherence: Duration? = nil, shards: Int? = nil) throws -> MemoryCache {
        var configuration = MemoryCacheConfiguration(memoryBudget: budget)
        configuration.coherenceTimeout = coherence
        configuration.shards = shards
        return try MemoryCache(configuration)
    }

    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    func testSetGetOverwriteDelete() throws {
        let cache = try cache()
        XCTAssertNil(cache.get("a"))
        try cache.set("a", bytes("one"))
        XCTAssertEqual(cache.get("a"), bytes("one"))
        try cache.set("a", bytes("a longer second value that lands in another size class, \(String(repeating: "x", count: 200))"))
        XCTAssertEqual(cache.get("a").map { String(decoding: $0, as: UTF8.self) }?.hasPrefix("a longer"), true)
        try cache.set("empty", [])
        XCTAssertEqual(cache.get("empty"), [])
        XCTAssertTrue(cache.delete("a"))
        XCTAssertFalse(cache.delete("a"))
        XCTAssertNil(cache.get("a"))
        let stats = cache.stats()
        XCTAssertEqual(stats.items, 1)
        XCTAssertEqual(stats.hits, 3)
        XCTAssertEqual(stats.misses, 2)
        XCTAssertEqual(stats.invalidations, 1)
    }

    func testCopyOutIntoCallerBuffer() throws {
        let cache = try cache()
        try cache.set("k", bytes("hello"))
        var buffer = [UInt8](repeating: 0, count: 8)
        let key = bytes("k")
        let read = key.withUnsafeBytes { k in buffer.withUnsafeMutableBytes { cache.get(k, into: $0) } }
        XCTAssertEqual(read, .hit(length: 5))
        XCTAssertEqual(Array(buffer.prefix(5)), bytes("hello"))
        var small = [UInt8](repeating: 0, count: 2)
        let tooSmall = key.withUnsafeBytes { k in small.withUnsafeMutableBytes { cache.get(k, into: $0) } }
        XCTAssertEqual(tooSmall, .bufferTooSmall(length: 5))
        XCTAssertEqual(small, [0, 0])
    }

    func testBadInputIsRefusedClearly() throws {
        XCTAssertThrowsError(try MemoryCache(MemoryCacheConfiguration(memoryBudget: 0))) { error in
            XCTAssertTrue("\(error)".contains("memory budget is 0 bytes"), "\(error)")
        }
        var badShards = MemoryCacheConfiguration(memoryBudget: 1 << 20)
        badShards.shards = 3
        XCTAssertThrowsError(try MemoryCache(badShards))
        let cache = try cache(budget: 1 << 20)
        XCTAssertThrowsError(try cache.set("", bytes("v"))) { XCTAssertEqual($0 as? CacheError, .emptyKey) }
        XCTAssertThrowsError(try cache.set(String(repeating: "k", count: 5000), bytes("v"))) {
            XCTAssertEqual($0 as? CacheError, .keyTooLong(length: 5000, limit: 4096))
        }
        let huge = [UInt8](repeating: 1, count: cache.maxItemSize)
        XCTAssertThrowsError(try cache.set("big", huge)) { error in
            guard case .tooLarge(let size, let limit) = error as? CacheError else { return XCTFail("\(error)") }
            XCTAssertGreaterThan(size, limit)
            XCTAssertTrue("\(error)".hasPrefix("too large to cache"))
        }
        XCTAssertThrowsError(try cache.set("k", bytes("v"), CacheItemOptions(ttl: .zero))) {
            guard case .invalidTTL = $0 as? CacheError else { return XCTFail("\($0)") }
        }
        XCTAssertNil(cache.get(""))
        XCTAssertFalse(cache.delete(""))
        // Nothing else was disturbed.
        try cache.set("ok", bytes("fine"))
        XCTAssertEqual(cache.get("ok"), bytes("fine"))
    }

    func testTTLExpiresLazilyAndInBackground() throws {
        let cache = try cache()
        try cache.set("short", bytes("s"), CacheItemOptions(ttl: .milliseconds(30)))
        try cache.set("long", bytes("l"), CacheItemOptions(ttl: .seconds(60)))
        try cache.set("forever", bytes("f"))
        XCTAssertEqual(cache.get("short"), bytes("s"))
        Thread.sleep(forTimeInterval: 0.15)
        XCTAssertNil(cache.get("short"), "expired items read as misses")
        XCTAssertEqual(cache.stats().items, 3, "not yet swept")
        XCTAssertEqual(cache.sweepExpired(slotsPerShard: 1 << 20), 1)
        let stats = cache.stats()
        XCTAssertEqual(stats.items, 2)
        XCTAssertEqual(stats.expirations, 1)
        XCTAssertEqual(cache.get("long"), bytes("l"))
        XCTAssertEqual(cache.get("forever"), bytes("f"))
    }

    func testBackgroundSweeperGivesExpiredMemoryBack() throws {
        let cache = try cache()
        for index in 0..<100 { try cache.set("k\(index)", bytes("v"), CacheItemOptions(ttl: .milliseconds(20))) }
        try cache.set("kept", bytes("v"))
        cache.startExpirySweeper(every: .milliseconds(10))
        defer { cache.stopExpirySweeper() }
        let deadline = Date().addingTimeInterval(5)
        while cache.stats().items > 1 && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        let stats = cache.stats()
        XCTAssertEqual(stats.items, 1, "no read or explicit sweep needed")
        XCTAssertEqual(stats.expirations, 100)
        XCTAssertEqual(cache.get("kept"), bytes("v"))
    }

    func testCoherenceTimeoutBoundsGroupedItems() throws {
        let cache = try cache(coherence: .milliseconds(30))
        try cache.set("grouped", bytes("g"), CacheItemOptions(ttl: .seconds(60), coherenceGroup: "fs"))
        try cache.set("ungrouped", bytes("u"), CacheItemOptions(ttl: .seconds(60)))
        Thread.sleep(forTimeInterval: 0.15)
        XCTAssertNil(cache.get("grouped"))
        XCTAssertEqual(cache.get("ungrouped"), bytes("u"))
    }

    func testEveryInvalidationForm() throws {
        let cache = try cache()
        try cache.set("Read:/src/a.swift", bytes("1"), CacheItemOptions(coherenceGroup: "fs", tags: ["src"]))
        try cache.set("Read:/src/lib/b.swift", bytes("2"), CacheItemOptions(coherenceGroup: "fs", tags: ["src", "lib"]))
        try cache.set("Read:/docs/c.md", bytes("3"), CacheItemOptions(coherenceGroup: "fs", tags: ["docs"]))
        try cache.set("Search:src", bytes("4"), CacheItemOptions(coherenceGroup: "search", tags: ["src"]))
        try cache.set("Other", bytes("5"))

        XCTAssertEqual(cache.invalidate(pattern: "Read:/src/*"), 2)
        XCTAssertNil(cache.get("Read:/src/a.swift"))
        XCTAssertNil(cache.get("Read:/src/lib/b.swift"))
        XCTAssertNotNil(cache.get("Read:/docs/c.md"))

        try cache.set("Read:/src/a.swift", bytes("1"), CacheItemOptions(coherenceGroup: "fs", tags: ["src"]))
        XCTAssertEqual(cache.invalidateTag("src"), 2)
        XCTAssertNil(cache.get("Search:src"))
        XCTAssertNotNil(cache.get("Read:/docs/c.md"))

        XCTAssertEqual(cache.invalidateGroup("fs"), 1)
        XCTAssertNil(cache.get("Read:/docs/c.md"))
        XCTAssertEqual(cache.invalidateGroup("never-seen"), 0)
        XCTAssertEqual(cache.invalidateTag("never-seen"), 0)

        XCTAssertEqual(cache.invalidate(pattern: "Other"), 1, "a pattern without wildcards is a key")
        try cache.set("x?y", bytes("6"))
        XCTAssertEqual(cache.invalidate(pattern: "x\\?y"), 1, "escaped wildcard")
        try cache.set("a", bytes("7"))
        cache.clear()
        XCTAssertNil(cache.get("a"))
        XCTAssertEqual(cache.stats().items, 0)
        try cache.set("a", bytes("8"))
        XCTAssertEqual(cache.get("a"), bytes("8"), "usable after clear")
    }

    func testFillRacingWithInvalidationIsRefused() throws {
        let cache = try cache()
        // Key invalidation between ticket and fill (the key was not even cached).
        var ticket = cache.ticket(for: bytes("k"))
        cache.delete("k")
        XCTAssertEqual(try cache.set("k", bytes("stale"), ticket: ticket), .invalidatedDuringFill)
        XCTAssertNil(cache.get("k"))
        // Group invalidation between ticket and fill.
        ticket = cache.ticket(for: bytes("k"))
        cache.invalidateGroup("fs")
        XCTAssertEqual(try cache.set("k", bytes("stale"), CacheItemOptions(coherenceGroup: "fs"), ticket: ticket), .invalidatedDuringFill)
        // Pattern and tag invalidations too.
        ticket = cache.ticket(for: bytes("k"))
        cache.invalidate(pattern: "zzz*")
        XCTAssertEqual(try cache.set("k", bytes("stale"), ticket: ticket), .invalidatedDuringFill)
        // Undisturbed: stored.
        ticket = cache.ticket(for: bytes("k"))
        XCTAssertEqual(try cache.set("k", bytes("fresh"), ticket: ticket), .stored)
        XCTAssertEqual(cache.get("k"), bytes("fresh"))
        XCTAssertEqual(cache.stats().rejectedFills, 3)
    }

    /// Random operations against a plain dictionary: with room for everything, every read
    /// agrees; under memory pressure, a read returns the latest value or nothing, never another.
    func testRandomizedAgainstReferenceModel() throws {
        for (budget, roomy) in [(64 << 20, true), (256 << 10, false)] {
            let cache = try cache(budget: budget)
            var model: [String: [UInt8]] = [:]
            var generator = SplitMix(seed: 42)
            for step in 0..<40_000 {
                let key = "key-\(generator.next() % 2_000)"
                switch generator.next() % 10 {
                case 0...3:
                    let length = Int(generator.next() % (generator.next() % 8 == 0 ? 3_000 : 200))
                    let value = (0..<length).map { UInt8(truncatingIfNeeded: $0 &+ step) }
                    try cache.set(key, value)
                    model[key] = value
                case 4:
                    let deleted = cache.delete(key)
                    if roomy { XCTAssertEqual(deleted, model[key] != nil) }
                    model[key] = nil
                case 5 where step % 97 == 0:
                    let prefix = "key-\(generator.next() % 10)"
                    cache.invalidate(pattern: prefix + "*")
                    model = model.filter { !$0.key.hasPrefix(prefix) }
                default:
                    let got = cache.get(key)
                    if roomy {
                        XCTAssertEqual(got, model[key], "step \(step) key \(key)")
                    } else if let got {
                        XCTAssertEqual(got, model[key], "step \(step): a read returned a value that is not the latest")
                    }
                }
                if step % 1000 == 0 {
                    let stats = cache.stats()
                    XCTAssertLessThanOrEqual(stats.pageBytes, budget, "budget exceeded")
                    if roomy { XCTAssertEqual(stats.items, model.count) }
                }
            }
            let stats = cache.stats()
            XCTAssertLessThanOrEqual(stats.pageBytes, budget)
            if !roomy { XCTAssertGreaterThan(stats.evictions, 0, "the small budget must have forced evictions") }
        }
    }

    /// When the value sizes shift, pages move to the class now written, so the new sizes are
    /// cached instead of stranded memory refusing them.
    func testSlabRebalancingFollowsTheSizeMix() throws {
        let cache = try cache(budget: 1 << 20, shards: 1)
        for index in 0..<20_000 { try cache.set("small-\(index)", [UInt8](repeating: 1, count: 40)) }
        let before = cache.stats()
        let smallClass = before.classes.firstIndex { $0.items > 0 }!
        XCTAssertGreaterThan(before.classes[smallClass].pages, 4)
        for index in 0..<5_000 { try cache.set("large-\(index)", [UInt8](repeating: 2, count: 2_000)) }
        let after = cache.stats()
        XCTAssertGreaterThan(after.rebalances, 0)
        let largeItems = after.classes.filter { $0.chunkSize >= 2_000 }.reduce(0) { $0 + $1.items }
        XCTAssertGreaterThan(largeItems, 200, "large values must get most of the memory: \(after.classes.filter { $0.items > 0 })")
        XCTAssertNotNil(cache.get("large-4999"))
        XCTAssertLessThanOrEqual(after.pageBytes, 1 << 20)
    }

    /// S3-FIFO keeps a re-read working set through a scan of keys read once, where LRU would
    /// have flushed it.
    func testScanResistance() throws {
        let cache = try cache(budget: 1 << 20, shards: 1)
        let value = [UInt8](repeating: 7, count: 200)
        let hot = (0..<500).map { "hot-\($0)" }
        for round in 0..<3 {
            for key in hot where cache.get(key) == nil { try cache.set(key, value) }
            _ = round
        }
        for index in 0..<20_000 { try cache.set("scan-\(index)", value) }
        let kept = hot.filter { cache.get($0) != nil }.count
        XCTAssertGreaterThan(kept, 400, "the hot set should survive the scan")
    }

    func testHotKeysAndPreload() throws {
        let cache = try cache()
        try cache.set("cold", bytes("c"))
        try cache.set("warm", bytes("w"))
        try cache.set("hot", bytes("h"))
        _ = cache.get("warm")
        for _ in 0..<5 { _ = cache.get("hot") }
        let hot = cache.hotKeys(limit: 10)
        XCTAssertEqual(hot.map { String(decoding: $0.key, as: UTF8.self) }, ["hot", "warm"])
        XCTAssertGreaterThan(hot[0].accessCount, hot[1].accessCount)

        let fresh = try self.cache()
        let stored = fresh.preload(hot.map { (key: $0.key, value: cache.get($0.key)!, options: CacheItemOptions()) })
        XCTAssertEqual(stored, 2)
        XCTAssertEqual(fresh.get("hot"), bytes("h"))
    }

    /// Items put straight into the main queue while the cache fills are not hot until read.
    func testHotKeysAreReadKeysAfterAFill() throws {
        let cache = try cache(budget: 1 << 20, shards: 1)
        for index in 0..<2_000 { try cache.set("key-\(index)", [UInt8](repeating: 3, count: 200)) }
        for _ in 0..<3 { XCTAssertNotNil(cache.get("key-5")) }
        XCTAssertEqual(cache.hotKeys(limit: 100).map { String(decoding: $0.key, as: UTF8.self) }, ["key-5"])
    }

    func testStatsDescribeMemory() throws {
        let cache = try cache(budget: 8 << 20)
        for index in 0..<1000 { try cache.set("k\(index)", [UInt8](repeating: 0, count: 256)) }
        let stats = cache.stats()
        XCTAssertEqual(stats.items, 1000)
        XCTAssertEqual(stats.sets, 1000)
        XCTAssertLessThanOrEqual(stats.pageBytes, 8 << 20)
        XCTAssertGreaterThanOrEqual(stats.bytesUsed, 1000 * MemoryCache.itemSize(keyLength: 2, valueLength: 256))
        XCTAssertGreaterThan(stats.overheadBytes, 0)
        XCTAssertTrue(["jemalloc", "mmap"].contains(stats.pageSource))
        let used = stats.classes.filter { $0.items > 0 }
        XCTAssertEqual(used.count, 1)
        XCTAssertEqual(used[0].payloadBytes, 1000 * 24 + 1000 * 256 + 1000 * 8 - 100 * 8 + 0, accuracy: 1000 * 8)
    }

    /// Readers, writers, invalidators and the expiry sweeper at once (run under TSan by
    /// scripts/swift-tsan). Every value embeds its key and a checksum: a torn or misdirected
    /// read would fail the check.
    func testConcurrentReadersWritersInvalidatorsAndExpiry() throws {
        let cache = try cache(budget: 2 << 20)
        let keys = (0..<512).map { "key-\($0)" }
        @Sendable func value(for key: String, version: Int) -> [UInt8] {
            var bytes = Array("\(key)#\(version)#".utf8)
            bytes += [UInt8](repeating: UInt8(truncatingIfNeeded: version), count: version % 300)
            let sum = bytes.reduce(UInt8(0)) { $0 &+ $1 }
            return bytes + [sum]
        }
        @Sendable func valid(_ bytes: [UInt8], key: String) -> Bool {
            guard let sum = bytes.last else { return false }
            let body = bytes.dropLast()
            return body.reduce(UInt8(0)) { $0 &+ $1 } == sum && body.starts(with: Array("\(key)#".utf8))
        }
        let failures = Counter()
        DispatchQueue.concurrentPerform(iterations: 6) { worker in
            var generator = SplitMix(seed: UInt64(worker))
            for step in 0..<20_000 {
                let key = keys[Int(generator.next() % UInt64(keys.count))]
                switch worker {
                case 0, 1, 2:
                    if let got = cache.get(key), !valid(got, key: key) { failures.add() }
                case 3:
                    let options = CacheItemOptions(ttl: step % 3 == 0 ? .milliseconds(5) : nil,
                                                   coherenceGroup: step % 2 == 0 ? "even" : "odd", tags: ["t\(step % 4)"])
                    _ = try? cache.set(key, value(for: key, version: step), options)
                case 4:
                    let ticket = cache.ticket(for: Array(key.utf8))
                    _ = try? cache.set(key, value(for: key, version: step), ticket: ticket)
                    if step % 500 == 0 { cache.invalidateGroup("even") }
                    if step % 700 == 0 { cache.invalidateTag("t1") }
                    if step % 900 == 0 { cache.invalidate(pattern: "key-1*") }
                default:
                    if step % 50 == 0 { cache.sweepExpired(slotsPerShard: 256) }
                    if step % 5_000 == 0 { _ = cache.stats() }
                    cache.delete(key)
                }
            }
        }
        XCTAssertEqual(failures.value, 0)
        XCTAssertLessThanOrEqual(cache.stats().pageBytes, 2 << 20)
    }

    /// Index tables double while readers are inside them; replaced tables are freed only when
    /// no reader can hold them (TSan and ASan-style checks would catch a use after free).
    func testConcurrentIndexGrowthWhileReading() throws {
        let cache = try cache(budget: 16 << 20, shards: 1)
        let failures = Counter()
        DispatchQueue.concurrentPerform(iterations: 3) { worker in
            if worker == 0 {
                for index in 0..<30_000 { _ = try? cache.set("grow-\(index)", Array("v\(index)".utf8)) }
                return
            }
            var generator = SplitMix(seed: UInt64(worker))
            for _ in 0..<60_000 {
                let index = Int(generator.next() % 30_000)
                if let got = cache.get("grow-\(index)"), got != Array("v\(index)".utf8) { failures.add() }
            }
        }
        XCTAssertEqual(failures.value, 0)
        let stats = cache.stats()
        XCTAssertEqual(stats.items, 30_000)
        XCTAssertEqual(cache.get("grow-29999"), Array("v29999".utf8))
    }

    func testKeyPatterns() {
        XCTAssertTrue(KeyPattern("Read:/src/*").matches(Array("Read:/src/a/b.swift".utf8)))
        XCTAssertFalse(KeyPattern("Read:/src/*").matches(Array("Read:/docs/a".utf8)))
        XCTAssertTrue(KeyPattern("*.swift").matches(Array("Read:/src/a.swift".utf8)))
        XCTAssertFalse(KeyPattern("*.swift").matches(Array("Read:/src/a.swiftx".utf8)))
        XCTAssertTrue(KeyPattern("a?c*z").matches(Array("abcxyz".utf8)))
        XCTAssertFalse(KeyPattern("a?c*z").matches(Array("ac".utf8)))
        XCTAssertTrue(KeyPattern("*").matches([]))
        XCTAssertTrue(KeyPattern("a**b").matches(Array("ab".utf8)))
        XCTAssertTrue(KeyPattern("a\\*").matches(Array("a*".utf8)))
        XCTAssertFalse(KeyPattern("a\\*").matches(Array("ab".utf8)))
        XCTAssertTrue(KeyPattern("a\\*").isLiteral)
    }
}

/// Deterministic random numbers for reproducible tests.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
