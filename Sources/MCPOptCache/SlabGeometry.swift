/// How a shard's memory is cut: page size, size classes (growth factor 1.25, 8-byte multiples,
/// from 64 bytes up to a whole page), and how many pages the shard may take.
struct SlabGeometry: Sendable {
    static let growthFactor = 1.25
    static let smallestChunk = 64
    /// Refs are page:offset/8 in 15:17 bits, so pages are at most 1 MiB and 32,768 per shard.
    static let largestPage = 1 << 20
    static let smallestPage = 4 << 10
    static let maxPagesPerShard = 1 << 15

    let pageSize: Int
    let pagesPerShard: Int
    let chunkSizes: [Int]

    init(shardBudget: Int) {
        // About 32 pages per shard at least, so pages can follow the value-size mix.
        var page = Self.largestPage
        while page > Self.smallestPage && page * 32 > shardBudget { page >>= 1 }
        while shardBudget / page > Self.maxPagesPerShard { page <<= 1 }
        pageSize = page
        pagesPerShard = shardBudget / page
        var sizes: [Int] = []
        var size = Self.smallestChunk
        while size < page {
            sizes.append(size)
            size = max(size + 8, (Int(Double(size) * Self.growthFactor) + 7) & ~7)
        }
        sizes.append(page)
        chunkSizes = sizes
    }

    /// The smallest class whose chunks hold `size` bytes (nil: over a page).
    func sizeClass(for size: Int) -> Int? {
        guard size <= pageSize else { return nil }
        var low = 0, high = chunkSizes.count - 1
        while low < high {
            let middle = (low + high) / 2
            if chunkSizes[middle] >= size { high = middle } else { low = middle + 1 }
        }
        return low
    }
}
