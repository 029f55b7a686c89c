import CMCPOptCache
import CMCPOptConcurrency
import Glibc
import MCPOptSync

/// The in-process cache level: bytes to bytes, in a fixed memory budget, safe from any thread.
///
/// Keys are hashed once (XXH3) and the hash picks the shard, the index slot and a fingerprint.
/// Reads take no lock (see `CacheShard.read`) and copy the value out, so what a caller holds
/// never changes under it. Writers lock one shard. Eviction is S3-FIFO per size class, with a
/// TinyLFU filter into the main queue; memory is slab pages (see `SlabGeometry`) that move
/// between size classes as the value sizes shift.
public final class MemoryCache: @unchecked Sendable {
    public let configuration: MemoryCacheConfiguration
    let shards: [CacheShard]
    /// The shards' read sides, by index (no reference counting on the read path).
    private let readers: UnsafeMutablePointer<ShardReader>
    private let shardMask: Int
    private let names = NameTable()
    private let pages: PageSource
    private let geometry: SlabGeometry
    /// Per-thread striped hit/miss counters (a shared counter would make readers contend).
    private let counters: UnsafeMutablePointer<mco_stripe>
    private let startMillis: UInt64
    /// Largest item accepted, header included.
    public let maxItemSize: Int

    public init(_ configuration: MemoryCacheConfiguration = .init()) throws(CacheError) {
        let budget = configuration.memoryBudget
        guard budget >= MemoryCacheConfiguration.minimumBudget else {
            throw .invalidConfiguration("memory budget is \(budget) bytes; at least \(MemoryCacheConfiguration.minimumBudget) (64 KiB) is needed")
        }
        var shardCount = configuration.shards ?? Self.defaultShards(budget: budget)
        guard shardCount > 0, shardCount <= 64, shardCount & (shardCount - 1) == 0 else {
            throw .invalidConfiguration("shards must be a power of two from 1 to 64, not \(shardCount)")
        }
        while shardCount > 1 && budget / shardCount < MemoryCacheConfiguration.minimumBudget { shardCount /= 2 }
        guard configuration.maxItemSize > MemoryLayout<mco_item>.size else {
            throw .invalidConfiguration("maxItemSize must be more than the \(MemoryLayout<mco_item>.size)-byte item header")
        }
        if let timeout = configuration.coherenceTimeout, timeout <= .zero {
            throw .invalidConfiguration("coherenceTimeout must be positive")
        }
        self.configuration = configuration
        let geometry = SlabGeometry(shardBudget: budget / shardCount)
        guard let pages = PageSource(forceMmap: configuration.forceMmap, pageSize: geometry.pageSize,
                                     maxBytes: geometry.pageSize * geometry.pagesPerShard * shardCount) else {
            throw .invalidConfiguration("out of memory setting up the page source")
        }
        self.geometry = geometry
        self.pages = pages
        maxItemSize = min(configuration.maxItemSize, geometry.pageSize)
        shards = (0..<shardCount).map { _ in CacheShard(geometry: geometry, source: pages) }
        shardMask = shardCount - 1
        readers = .allocate(capacity: shardCount)
        readers.initialize(from: shards.map(\.reader), count: shardCount)
        counters = mco_cache_line_alloc(MemoryLayout<mco_stripe>.stride * Int(MCO_STRIPES))!
            .bindMemory(to: mco_stripe.self, capacity: Int(MCO_STRIPES))
        counters.initialize(repeating: mco_stripe(), count: Int(MCO_STRIPES))
        startMillis = mco_coarse_millis()
    }

    deinit {
        sweeper.withLock { $0.running = false }
        free(counters)
        readers.deallocate()
    }

    /// One shard per 32 MiB, up to 16: each shard keeps about 32 pages or more to spread over
    /// its size classes, and reads take no lock whatever the count, so few shards suffice.
    static func defaultShards(budget: Int) -> Int {
        var shards = 1
        while shards < 16 && budget / (shards * 2) >= 32 << 20 { shards *= 2 }
        return shards
    }

    // MARK: Time

    /// Cache time in 10 ms ticks since the cache started (0 is reserved for "never expires").
    @inline(__always)
    func nowTicks() -> UInt32 {
        UInt32(truncatingIfNeeded: min((mco_coarse_millis() &- startMillis) / 10 + 1, UInt64(UInt32.max - 1)))
    }

    private func expiryTicks(_ options: CacheItemOptions, now: UInt32) throws(CacheError) -> UInt32 {
        var ttl = options.ttl
        if options.coherenceGroup != nil, let bound = configuration.coherenceTimeout {
            ttl = min(ttl ?? bound, bound)
        }
        guard let ttl else { return 0 }
        guard ttl > .zero else { throw .invalidTTL("it must be positive, not \(ttl)") }
        let (seconds, attoseconds) = ttl.components
        let ticks = seconds.multipliedReportingOverflow(by: 100)
        let total = ticks.overflow ? UInt64.max : UInt64(ticks.partialValue) + UInt64((attoseconds + 9_999_999_999_999_999) / 10_000_000_000_000_000)
        return UInt32(min(UInt64(now) + max(total, 1), UInt64(UInt32.max - 1)))
    }

    // MARK: Keys

    @inline(__always)
    private func reader(_ key: UnsafeRawBufferPointer) -> (hash: UInt64, reader: UnsafeMutablePointer<ShardReader>) {
        let hash = mco_cache_hash(key.baseAddress, key.count)
        return (hash, readers + (Int(truncatingIfNeeded: hash >> 58) & shardMask))
    }

    private func locate(_ key: UnsafeRawBufferPointer) -> (hash: UInt64, shard: CacheShard) {
        let hash = mco_cache_hash(key.baseAddress, key.count)
        return (hash, shards[Int(truncatingIfNeeded: hash >> 58) & shardMask])
    }

    private func checkKey(_ key: UnsafeRawBufferPointer) throws(CacheError) {
        guard !key.isEmpty else { throw .emptyKey }
        guard key.count <= MemoryCacheConfiguration.maxKeyLength else {
            throw .keyTooLong(length: key.count, limit: MemoryCacheConfiguration.maxKeyLength)
        }
    }

    // MARK: Reading

    /// Copies the value for `key` into `buffer`. No allocation, no lock.
    @inline(__always)
    public func get(_ key: UnsafeRawBufferPointer, into buffer: UnsafeMutableRawBufferPointer) -> CacheRead {
        guard !key.isEmpty, key.count <= MemoryCacheConfiguration.maxKeyLength else { return .miss }
        let (hash, shard) = reader(key)
        let read = shard.pointee.read(hash: hash, key: key, now: nowTicks()) { item, keyLength, valueLength -> CacheRead in
            guard valueLength <= buffer.count else { return .bufferTooSmall(length: valueLength) }
            mco_item_copy_value(item, keyLength, buffer.baseAddress, valueLength)
            return .hit(length: valueLength)
        } ?? .miss
        mco_stripe_add(counters, read == .miss ? 1 : 0, 1)
        return read
    }

    /// The value for `key` as a new array (allocates; `get(_:into:)` does not).
    public func get(_ key: UnsafeRawBufferPointer) -> [UInt8]? {
        guard !key.isEmpty, key.count <= MemoryCacheConfiguration.maxKeyLength else { return nil }
        let (hash, shard) = reader(key)
        let value = shard.pointee.read(hash: hash, key: key, now: nowTicks()) { item, keyLength, valueLength in
            [UInt8](unsafeUninitializedCapacity: valueLength) { out, count in
                mco_item_copy_value(item, keyLength, out.baseAddress, valueLength)
                count = valueLength
            }
        }
        mco_stripe_add(counters, value == nil ? 1 : 0, 1)
        return value
    }

    public func get(_ key: [UInt8]) -> [UInt8]? { key.withUnsafeBytes { get($0) } }
    public func get(_ key: String) -> [UInt8]? { Array(key.utf8).withUnsafeBytes { get($0) } }

    /// Whether a live item exists for `key` (not counted as a hit or miss).
    public func contains(_ key: UnsafeRawBufferPointer) -> Bool {
        guard !key.isEmpty, key.count <= MemoryCacheConfiguration.maxKeyLength else { return false }
        let (hash, shard) = reader(key)
        return shard.pointee.read(hash: hash, key: key, now: nowTicks()) { _, _, _ in true } ?? false
    }

    // MARK: Writing

    /// The bytes an item of this key and value takes in a chunk (header, key, alignment, value).
    public static func itemSize(keyLength: Int, valueLength: Int) -> Int {
        mco_item_value_offset(keyLength) + valueLength
    }

    /// The chunk an item of `size` bytes (see `itemSize`) occupies in this cache's slabs, or nil
    /// when it is over the largest item.
    public func chunkSize(forItemSize size: Int) -> Int? {
        guard size <= maxItemSize, let sizeClass = geometry.sizeClass(for: size) else { return nil }
        return geometry.chunkSizes[sizeClass]
    }

    /// A ticket to take before fetching a value that will fill the cache; pass it to `set`,
    /// which then refuses the fill if `key` was invalidated meanwhile.
    public func ticket(for key: UnsafeRawBufferPointer) -> FillTicket {
        let (hash, shard) = locate(key)
        return shard.ticket(hash: hash, shard: Int(truncatingIfNeeded: hash >> 58) & shardMask)
    }

    public func ticket(for key: [UInt8]) -> FillTicket { key.withUnsafeBytes { ticket(for: $0) } }

    /// Stores `value` under `key`, replacing what was there.
    @discardableResult
    public func set(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, _ options: CacheItemOptions = .init(),
                    ticket: FillTicket? = nil) throws(CacheError) -> SetOutcome {
        try checkKey(key)
        let size = Self.itemSize(keyLength: key.count, valueLength: value.count)
        guard size <= maxItemSize, let sizeClass = geometry.sizeClass(for: size) else {
            throw .tooLarge(size: size, limit: maxItemSize)
        }
        let now = nowTicks()
        var header = mco_item()
        header.expiry = try expiryTicks(options, now: now)
        header.value_length = UInt32(value.count)
        header.key_length = UInt16(key.count)
        if let group = options.coherenceGroup { header.group = try names.group(group) }
        header.tag_set = try names.tagSet(options.tags)
        let (hash, shard) = locate(key)
        // A value pointer may be nil for an empty value; the copy then does nothing.
        return shard.store(hash: hash, key: key, value: value, header: header, sizeClass: sizeClass, ticket: ticket, now: now)
            ?? .invalidatedDuringFill
    }

    @discardableResult
    public func set(_ key: [UInt8], _ value: [UInt8], _ options: CacheItemOptions = .init(), ticket: FillTicket? = nil) throws(CacheError) -> SetOutcome {
        let outcome = key.withUnsafeBytes { k in
            value.withUnsafeBytes { v in Result { () throws(CacheError) in try set(k, v, options, ticket: ticket) } }
        }
        return try outcome.get()
    }

    @discardableResult
    public func set(_ key: String, _ value: [UInt8], _ options: CacheItemOptions = .init(), ticket: FillTicket? = nil) throws(CacheError) -> SetOutcome {
        try set(Array(key.utf8), value, options, ticket: ticket)
    }

    /// Pre-loads entries (warming); returns how many were stored. Items too large are skipped.
    @discardableResult
    public func preload(_ entries: [(key: [UInt8], value: [UInt8], options: CacheItemOptions)]) -> Int {
        var stored = 0
        for entry in entries {
            if (try? set(entry.key, entry.value, entry.options)) == .stored { stored += 1 }
        }
        return stored
    }

    // MARK: Invalidation

    /// Removes `key`. Returns whether it was cached.
    @discardableResult
    public func delete(_ key: UnsafeRawBufferPointer) -> Bool {
        guard !key.isEmpty, key.count <= MemoryCacheConfiguration.maxKeyLength else { return false }
        let (hash, shard) = locate(key)
        return shard.delete(hash: hash, key: key)
    }

    @discardableResult
    public func delete(_ key: [UInt8]) -> Bool { key.withUnsafeBytes { delete($0) } }
    @discardableResult
    public func delete(_ key: String) -> Bool { delete(Array(key.utf8)) }

    /// Removes every key matching a glob (`Read:/src/*`); returns how many items went.
    @discardableResult
    public func invalidate(pattern: String) -> Int {
        let glob = KeyPattern(pattern)
        if let key = glob.literalKey { return delete(key) ? 1 : 0 }
        return shards.reduce(0) { $0 + $1.invalidate { key, _, _ in glob.matches(key) } }
    }

    /// Removes every item of a coherence group.
    @discardableResult
    public func invalidateGroup(_ group: String) -> Int {
        let id = names.existingGroup(group)
        // Bump generations even for an unknown group: a fill may be about to create it.
        return shards.reduce(0) { $0 + $1.invalidate { _, itemGroup, _ in id != nil && itemGroup == id } }
    }

    /// Removes every item carrying `tag`.
    @discardableResult
    public func invalidateTag(_ tag: String) -> Int {
        let sets = names.tagSetsContaining(tag)
        return shards.reduce(0) { $0 + $1.invalidate { _, _, tagSet in Int(tagSet) < sets.count && sets[Int(tagSet)] } }
    }

    /// Removes everything.
    public func clear() {
        for shard in shards { shard.clear() }
    }

    // MARK: Expiry

    /// Removes expired items from the next `slotsPerShard` index slots of every shard (reads
    /// already ignore expired items; this gives their memory back). Returns how many went.
    @discardableResult
    public func sweepExpired(slotsPerShard: Int = 4096) -> Int {
        let now = nowTicks()
        for shard in shards { shard.reclaim() }
        return shards.reduce(0) { $0 + $1.sweepExpired(now: now, limit: slotsPerShard) }
    }

    /// Starts a background thread that sweeps expired items every `interval` (reads already
    /// treat them as misses; the sweep gives their memory back). It stops when the cache is
    /// released or `stopExpirySweeper` is called. Calling it again changes nothing.
    public func startExpirySweeper(every interval: Duration = .seconds(1)) {
        let start = sweeper.withLock { state -> Bool in
            guard !state.running else { return false }
            state.running = true
            return true
        }
        guard start else { return }
        let (seconds, attoseconds) = interval.components
        let micros = max(1_000, UInt32(clamping: seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
        let context = SweeperContext(cache: self, sleepMicros: micros)
        var thread = pthread_t()
        let box = Unmanaged.passRetained(context).toOpaque()
        if pthread_create(&thread, nil, { raw in
            let context = Unmanaged<SweeperContext>.fromOpaque(raw!).takeRetainedValue()
            context.run()
            return nil
        }, box) == 0 {
            pthread_detach(thread)
        } else {
            Unmanaged<SweeperContext>.fromOpaque(box).release()
            sweeper.withLock { $0.running = false }
        }
    }

    /// Stops the background sweeper (it finishes its current pass first).
    public func stopExpirySweeper() { sweeper.withLock { $0.running = false } }

    let sweeper = SweeperState()

    // MARK: Warming and stats

    /// The hottest keys, hottest first, for saving and re-fetching on the next start.
    public func hotKeys(limit: Int = 1000) -> [HotKey] {
        var all = shards.flatMap { $0.hotKeys() }
        all.sort { $0.accessCount > $1.accessCount }
        return Array(all.prefix(max(0, limit)))
    }

    public func stats() -> CacheStats {
        var stats = CacheStats()
        stats.hits = mco_stripe_sum(counters, 0)
        stats.misses = mco_stripe_sum(counters, 1)
        stats.memoryBudget = configuration.memoryBudget
        stats.pageSize = geometry.pageSize
        stats.shards = shards.count
        stats.pageSource = pages.name
        stats.classes = geometry.chunkSizes.map { SlabClassStats(chunkSize: $0, pages: 0, items: 0, bytesUsed: 0, payloadBytes: 0) }
        for shard in shards {
            shard.reclaim()
            shard.lock.withLock {
                stats.sets += shard.sets
                stats.evictions += shard.evictions
                stats.expirations += shard.expirations
                stats.invalidations += shard.invalidations
                stats.rejectedFills += shard.rejectedFills
                stats.rebalances += shard.rebalances
                stats.pageBytes += shard.pagesTaken * geometry.pageSize
                stats.overheadBytes += shard.overheadBytes
                for (index, cls) in shard.classes.enumerated() {
                    stats.classes[index].pages += cls.pages
                    stats.classes[index].items += cls.items
                    stats.classes[index].bytesUsed += cls.items * cls.chunkSize
                    stats.classes[index].payloadBytes += cls.payloadBytes
                }
            }
        }
        stats.items = stats.classes.reduce(0) { $0 + $1.items }
        stats.bytesUsed = stats.classes.reduce(0) { $0 + $1.bytesUsed }
        stats.overheadBytes += Int(MCO_STRIPES) * MemoryLayout<mco_stripe>.stride
        return stats
    }
}

/// Whether the background sweeper should keep going (shared with its thread).
final class SweeperState: @unchecked Sendable {
    private let lock = Lock()
    private var state = (running: false, ())
    func withLock<R>(_ body: (inout (running: Bool, Void)) -> R) -> R { lock.withLock { body(&state) } }
}

/// The sweeper thread's view of the cache: weak, so the thread never keeps a cache alive.
private final class SweeperContext: @unchecked Sendable {
    weak var cache: MemoryCache?
    let state: SweeperState
    let sleepMicros: UInt32

    init(cache: MemoryCache, sleepMicros: UInt32) {
        self.cache = cache
        state = cache.sweeper
        self.sleepMicros = sleepMicros
    }

    func run() {
        while state.withLock({ $0.running }) {
            usleep(sleepMicros)
            guard let cache else { return }
            // A whole pass over every shard's index, a bounded number of slots at a time.
            cache.sweepExpired(slotsPerShard: 1 << 30)
        }
    }
}
