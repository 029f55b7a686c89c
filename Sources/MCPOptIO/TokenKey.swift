/// A dictionary key for tokens this process counts out itself (operation tokens, request ids),
/// hashed with a few multiplications and shifts instead of the standard library's seeded
/// SipHash: the stored keys are never a client's choice, so seeded hashing buys nothing here,
/// and it cost about 90 instructions a lookup, several lookups a request (BENCHMARKS.md).
struct TokenKey: Hashable {
    let raw: UInt64
    init(_ raw: UInt64) { self.raw = raw }

    func hash(into hasher: inout Hasher) { hasher.combine(raw) }

    /// SplitMix64's finalizer (every bit of the token reaches the low bits a table uses),
    /// mixed with the table's seed.
    func _rawHashValue(seed: Int) -> Int {
        var z = raw ^ UInt64(truncatingIfNeeded: seed)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Int(truncatingIfNeeded: z ^ (z >> 31))
    }
}
