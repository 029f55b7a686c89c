/// How often keys were asked for recently: TinyLFU's doorkeeper and count-min sketch of 4-bit
/// counters.
///
/// Writer-only (under the shard lock). Half the memory is the doorkeeper, a Bloom filter (two
/// bits in one word) that takes a key's first access; later accesses go to the counters. Keys
/// seen once, such as those of a scan, so touch only the doorkeeper and leave the counters to
/// keys seen again. Counters live in 64-byte blocks of eight words; a key's four counters are
/// all in one block (one cache miss per update or estimate), one counter in each pair of words.
/// Updates are conservative (only the smallest of the four counters grow, which keeps one
/// key's counts from inflating its neighbours'). Every `sampleSize` accesses the counters are
/// halved and the doorkeeper cleared, so old popularity fades.
struct FrequencySketch {
    private let table: UnsafeMutablePointer<UInt64>
    private let blockMask: Int
    private let door: UnsafeMutablePointer<UInt64>
    private let doorMask: Int
    private var additions = 0

    /// `bytes`: a power of two, 128 or more; half counters, half doorkeeper.
    init(bytes: Int) {
        let words = max(16, bytes / 8) / 2
        table = .allocate(capacity: words)
        table.initialize(repeating: 0, count: words)
        blockMask = words / 8 - 1
        door = .allocate(capacity: words)
        door.initialize(repeating: 0, count: words)
        doorMask = words - 1
    }

    var bytes: Int { (blockMask + 1) * 64 + (doorMask + 1) * 8 }

    func deallocate() {
        table.deallocate()
        door.deallocate()
    }

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

    /// The key's doorkeeper word and its two bits.
    @inline(__always)
    private func doorBits(_ spread: UInt64) -> (word: Int, bits: UInt64) {
        let mixed = spread &* 0x9E37_79B9_7F4A_7C15
        return (Int(truncatingIfNeeded: mixed >> 20) & doorMask, 1 << (mixed >> 52 & 63) | 1 << (mixed >> 58))
    }

    /// The estimate: the smallest of the key's four counters, plus one if the doorkeeper
    /// knows the key (0...16).
    func frequency(_ hash: UInt64) -> Int {
        let s = Self.spread(hash)
        let (doorWord, bits) = doorBits(s)
        var least: UInt64 = 15
        for row in 0..<4 {
            let (word, shift) = spot(s, row)
            least = min(least, (table[word] >> shift) & 15)
        }
        return Int(least) + (door[doorWord] & bits == bits ? 1 : 0)
    }

    /// Counts one access; halves every counter (and clears the doorkeeper) once `sampleSize`
    /// accesses were counted.
    mutating func add(_ hash: UInt64, sampleSize: Int) {
        let s = Self.spread(hash)
        additions += 1
        if additions >= sampleSize { halve() }
        let (doorWord, bits) = doorBits(s)
        if door[doorWord] & bits != bits {
            door[doorWord] |= bits
            return
        }
        var least: UInt64 = 15
        for row in 0..<4 {
            let (word, shift) = spot(s, row)
            least = min(least, (table[word] >> shift) & 15)
        }
        guard least < 15 else { return }
        for row in 0..<4 {
            let (word, shift) = spot(s, row)
            if (table[word] >> shift) & 15 == least { table[word] += 1 << shift }
        }
    }

    /// Halves every counter and clears the doorkeeper (the sketch's aging).
    mutating func halve() {
        for word in 0...(blockMask * 8 + 7) { table[word] = (table[word] >> 1) & 0x7777_7777_7777_7777 }
        door.update(repeating: 0, count: doorMask + 1)
        additions /= 2
    }

    mutating func clear() {
        table.update(repeating: 0, count: (blockMask + 1) * 8)
        door.update(repeating: 0, count: doorMask + 1)
        additions = 0
    }
}
