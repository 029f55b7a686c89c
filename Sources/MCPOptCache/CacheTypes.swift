/// The memory cache's settings. Sizes are bytes; everything else has a sane default.
public struct MemoryCacheConfiguration: Sendable, Equatable {
    /// Bytes of slab pages the cache may hold (items, their headers and slab rounding).
    public var memoryBudget: Int = 100 << 20
    /// Largest item (header + key + value) accepted; capped by the slab page size.
    public var maxItemSize: Int = 1 << 20
    /// Longest an item of a coherence group lives, whatever its own TTL (nil: no bound).
    public var coherenceTimeout: Duration? = nil
    /// Index shards (a power of two); nil chooses from the budget.
    public var shards: Int? = nil
    /// Take pages from mmap even when the process runs jemalloc (for comparison and tests).
    public var forceMmap = false

    public init(memoryBudget: Int = 100 << 20) {
        self.memoryBudget = memoryBudget
    }

    /// Smallest budget accepted: one 4 KiB page per size class would not fit below this.
    public static let minimumBudget = 64 << 10
    /// Longest key accepted (keys are hashed, compared and stored inline with the value).
    public static let maxKeyLength = 4096
}

/// Why the cache refused something. Each case says what was wrong in its description.
public enum CacheError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidConfiguration(String)
    case emptyKey
    case keyTooLong(length: Int, limit: Int)
    /// The item (header, key and value) is over the largest the cache keeps.
    case tooLarge(size: Int, limit: Int)
    case tooManyGroups(limit: Int)
    case tooManyTagSets(limit: Int)
    case invalidTTL(String)

    public var description: String {
        switch self {
        case .invalidConfiguration(let why): "invalid cache configuration: \(why)"
        case .emptyKey: "the key is empty"
        case .keyTooLong(let length, let limit): "the key is \(length) bytes, longer than the \(limit) accepted"
        case .tooLarge(let size, let limit): "too large to cache: the item needs \(size) bytes, more than the \(limit)-byte maximum item size"
        case .tooManyGroups(let limit): "too many coherence groups (at most \(limit))"
        case .tooManyTagSets(let limit): "too many distinct tag sets (at most \(limit))"
        case .invalidTTL(let why): "invalid ttl: \(why)"
        }
    }
}

/// How an item is stored.
public struct CacheItemOptions: Sendable, Equatable {
    /// Time to live; nil keeps the item until it is evicted or invalidated.
    public var ttl: Duration?
    /// The coherence group the item belongs to (invalidated together; bounded staleness).
    public var coherenceGroup: String?
    /// Tags, each of which can invalidate the item.
    public var tags: [String]

    public init(ttl: Duration? = nil, coherenceGroup: String? = nil, tags: [String] = []) {
        self.ttl = ttl
        self.coherenceGroup = coherenceGroup
        self.tags = tags
    }
}

/// A snapshot of the invalidation generations covering a key, taken before fetching the value
/// that will fill the cache: the fill is refused if an invalidation ran in between.
public struct FillTicket: Sendable, Equatable {
    let shard: Int
    let all: UInt64
    let key: UInt64
}

public enum SetOutcome: Sendable, Equatable {
    case stored
    /// An invalidation covering the key ran after the ticket was taken; nothing was stored.
    case invalidatedDuringFill
}

/// What a copy-out read found.
public enum CacheRead: Sendable, Equatable {
    case hit(length: Int)
    case miss
    /// The value is `length` bytes, more than the buffer holds; nothing was copied.
    case bufferTooSmall(length: Int)
}

/// One size class of the slab allocator.
public struct SlabClassStats: Sendable, Equatable {
    public var chunkSize: Int
    public var pages: Int
    public var items: Int
    /// Bytes of chunks holding items (what the class uses of its pages).
    public var bytesUsed: Int
    /// Header, key and value bytes of its items (bytesUsed less slab rounding).
    public var payloadBytes: Int
}

public struct CacheStats: Sendable, Equatable {
    public var hits: UInt64 = 0
    public var misses: UInt64 = 0
    public var sets: UInt64 = 0
    public var items = 0
    public var evictions: UInt64 = 0
    public var expirations: UInt64 = 0
    public var invalidations: UInt64 = 0
    /// Fills refused because an invalidation raced with them.
    public var rejectedFills: UInt64 = 0
    /// Page moves between size classes (slab rebalancing).
    public var rebalances: UInt64 = 0
    public var memoryBudget = 0
    /// Bytes of slab pages taken (never above the budget).
    public var pageBytes = 0
    /// Bytes of chunks holding items.
    public var bytesUsed = 0
    /// Memory beside the pages: index tables, frequency sketch, page tables, generations.
    public var overheadBytes = 0
    public var pageSize = 0
    public var shards = 0
    /// "jemalloc" or "mmap".
    public var pageSource = ""
    public var classes: [SlabClassStats] = []

    public var hitRate: Double {
        let lookups = hits + misses
        return lookups == 0 ? 0 : Double(hits) / Double(lookups)
    }
}

/// A hot key for warming: the key and an estimate of how often it was read (S3-FIFO's
/// saturating count, plus 4 for items that earned their place in the main queue).
public struct HotKey: Sendable, Equatable {
    public var key: [UInt8]
    public var accessCount: Int
    public init(key: [UInt8], accessCount: Int) {
        self.key = key
        self.accessCount = accessCount
    }
}
