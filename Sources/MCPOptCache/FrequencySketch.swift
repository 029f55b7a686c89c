/// A count-min sketch of 4-bit counters (TinyLFU's): how often a key was asked for recently.
///
/// Writer-only (under the shard lock). Counters live in 64-byte blocks of eight words; a key's
/// four counters are all in one block (one cache miss per update or estimate), one counter in
/// each pair of words. Updates are conservative (only the smallest of the four counters grow,
/// which keeps one key's counts from inflating its neighbours'), and every `sampleSize`
/// additions all counters are halved, so old popularity fades.
struct FrequencySketch {
    private(set) var table: UnsafeMutablePointer<UInt64>
    private var blockMask: Int
    private var additions = 0

    /// `bytes`: a power of two, 64 or more.
    init(bytes: Int) {
        let words = max(8, bytes / 8)
        table = .allocate(capacity: words)
        table.initialize(repeating: 0, count: words)
        blockMask = words / 8 - 1
    }

    var bytes: Int { (blockMask + 1) * 64 }

    func deallocate() { table.deallocate() }

    /// The spread of a key hash the sketch uses (SplitMix64's finalizer, so its bits are
    /// independent of the bits that chose the shard, slot and fingerprint).
    @inline(__always)
    private static func spread(_ hash: UInt64) -> UInt64 {
        var z = hash
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Word index and bit shift of the key's counter in row `row`.
    @inline(__always)
    private func spot(_ spread: UInt64, _ row: Int) -> (word: Int, shift: UInt64) {
        let block = Int(truncatingIfNeeded: spread >> 40) & blockMask
        let bits = spread >> UInt64(row * 8)
        return (block * 8 + row * 2 + Int(bits & 1), ((bits >> 1) & 15) * 4)
    }

    /// The estimate: the smallest of the key's four counters (0...15).
    func frequency(_ hash: UInt64) -> Int {
        let s = Self.spread(hash)
        var least: UInt64 = 15
        for row in 0..<4 {
            let (word, shift) = spot(s, row)
            least = min(least, (table[word] >> shift) & 15)
        }
        return Int(least)
    }

    /// Counts one access; halves every counter once `sampleSize` accesses were counted.
    mutating func add(_ hash: UInt64, sampleSize: Int, conservative: Bool = true) {
        let s = Self.spread(hash)
        var least: UInt64 = 15
        for row in 0..<4 {
            let (word, shift) = spot(s, row)
            least = min(least, (table[word] >> shift) & 15)
        }
        guard least < 15 else { return }
        for row in 0..<4 {
            let (word, shift) = spot(s, row)
            let value = (table[word] >> shift) & 15
            if value == least || (!conservative && value < 15) { table[word] += 1 << shift }
        }
        additions += 1
        if additions >= sampleSize { halve() }
    }

    /// Halves every counter (the sketch's aging).
    mutating func halve() {
        for word in 0...(blockMask * 8 + 7) { table[word] = (table[word] >> 1) & 0x7777_7777_7777_7777 }
        additions /= 2
    }

    mutating func clear() {
        table.update(repeating: 0, count: (blockMask + 1) * 8)
        additions = 0
    }
}
