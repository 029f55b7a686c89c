import Glibc

/// An immutable snapshot of who serves what, built on every change and published atomically
/// (`Published`). The parts routing reads on every request are flat memory: a tool-name hash
/// table, the candidate servers of each tool and the stats cells they update; nothing on that
/// path is reference counted.
final class RoutingTable: @unchecked Sendable {
    let generation: UInt64
    /// Cold data: the servers as registered, by index.
    let servers: [ServerInfo]
    let serverIndex: [String: Int32]

    // Hot data, by server index.
    let serverCount: Int
    let serverCells: UnsafeMutablePointer<UnsafeMutablePointer<UInt64>>
    let serverWeights: UnsafeMutablePointer<Double>
    let serverUnhealthy: UnsafeMutablePointer<Bool>
    let serverSeeds: UnsafeMutablePointer<UInt64>

    // Tools: open addressing over name hashes (0 marks an empty slot).
    let toolCapacity: Int
    let toolHashes: UnsafeMutablePointer<UInt64>
    let toolStart: UnsafeMutablePointer<UInt32>
    let toolCount: UnsafeMutablePointer<UInt32>
    let toolNameStart: UnsafeMutablePointer<UInt32>
    let toolNameLength: UnsafeMutablePointer<UInt32>
    let names: UnsafeMutablePointer<UInt8>
    let namesLength: Int
    /// Candidates of every tool, one run per tool: server index and the (server, tool) cell.
    let candidates: UnsafeMutablePointer<Int32>
    let candidateCells: UnsafeMutablePointer<UnsafeMutablePointer<UInt64>>
    let candidateTotal: Int
    let toolTotal: Int

    /// FNV-1a over the name, then a finaliser so that similar names spread; never 0.
    @inline(__always)
    static func hash(_ name: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in name { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        h ^= h >> 33
        h = h &* 0xFF51_AFD7_ED55_8CCD
        h ^= h >> 33
        return h | 1
    }

    init(generation: UInt64, records: [ServerRecord]) {
        self.generation = generation
        servers = records.map(\.info)
        var index: [String: Int32] = [:]
        index.reserveCapacity(records.count)
        for (position, record) in records.enumerated() { index[record.info.id] = Int32(position) }
        serverIndex = index
        serverCount = records.count
        serverCells = .allocate(capacity: max(1, records.count))
        serverWeights = .allocate(capacity: max(1, records.count))
        serverUnhealthy = .allocate(capacity: max(1, records.count))
        serverSeeds = .allocate(capacity: max(1, records.count))
        for (position, record) in records.enumerated() {
            (serverCells + position).initialize(to: record.serverCell)
            (serverWeights + position).initialize(to: max(record.info.weight, 1e-9))
            (serverUnhealthy + position).initialize(to: record.info.health == .unhealthy)
            (serverSeeds + position).initialize(to: record.seed)
        }
        // Pass 1: number the tools (by name hash) and count their candidates.
        var toolOf: [UInt64: Int] = [:]
        var firstName: [(record: Int, tool: Int)] = []
        var counts: [Int] = []
        var pairs = 0
        for (position, record) in records.enumerated() {
            for (tool, hash) in record.toolHashes.enumerated() {
                if let existing = toolOf[hash] {
                    counts[existing] += 1
                } else {
                    toolOf[hash] = counts.count
                    firstName.append((position, tool))
                    counts.append(1)
                }
                pairs += 1
            }
        }
        toolTotal = counts.count
        var capacity = 16
        while capacity < counts.count * 2 { capacity *= 2 }
        toolCapacity = capacity
        toolHashes = .allocate(capacity: capacity)
        toolHashes.initialize(repeating: 0, count: capacity)
        toolStart = .allocate(capacity: capacity)
        toolStart.initialize(repeating: 0, count: capacity)
        toolCount = .allocate(capacity: capacity)
        toolCount.initialize(repeating: 0, count: capacity)
        toolNameStart = .allocate(capacity: capacity)
        toolNameStart.initialize(repeating: 0, count: capacity)
        toolNameLength = .allocate(capacity: capacity)
        toolNameLength.initialize(repeating: 0, count: capacity)
        candidateTotal = pairs
        candidates = .allocate(capacity: max(1, pairs))
        candidateCells = .allocate(capacity: max(1, pairs))
        var nameBytes = 0
        for first in firstName { nameBytes += records[first.record].toolNames[first.tool].count }
        namesLength = nameBytes
        names = .allocate(capacity: max(1, nameBytes))
        // Each tool's run of candidates starts where the previous tool's ended.
        var cursor = [Int](repeating: 0, count: counts.count)
        var start = 0, nextName = 0
        for tool in 0..<counts.count {
            cursor[tool] = start
            let first = firstName[tool]
            let hash = records[first.record].toolHashes[first.tool]
            let name = records[first.record].toolNames[first.tool]
            var slot = Int(truncatingIfNeeded: hash) & (capacity - 1)
            while toolHashes[slot] != 0 { slot = (slot + 1) & (capacity - 1) }
            toolHashes[slot] = hash
            toolStart[slot] = UInt32(start)
            toolCount[slot] = UInt32(counts[tool])
            toolNameStart[slot] = UInt32(nextName)
            toolNameLength[slot] = UInt32(name.count)
            name.withUnsafeBufferPointer { if let base = $0.baseAddress { (names + nextName).update(from: base, count: name.count) } }
            nextName += name.count
            start += counts[tool]
        }
        // Pass 2: the candidates, in registration order of the servers.
        for (position, record) in records.enumerated() {
            for (tool, hash) in record.toolHashes.enumerated() {
                let run = toolOf[hash]!
                (candidates + cursor[run]).initialize(to: Int32(position))
                (candidateCells + cursor[run]).initialize(to: record.toolCells[tool])
                cursor[run] += 1
            }
        }
    }

    deinit {
        serverCells.deallocate(); serverWeights.deallocate(); serverUnhealthy.deallocate(); serverSeeds.deallocate()
        toolHashes.deallocate(); toolStart.deallocate(); toolCount.deallocate()
        toolNameStart.deallocate(); toolNameLength.deallocate(); names.deallocate()
        candidates.deallocate(); candidateCells.deallocate()
    }

    /// The run of candidates for a tool name (UTF-8), or nil for a tool nobody offers.
    @inline(__always)
    func lookup(_ name: UnsafeRawBufferPointer) -> (start: Int, count: Int)? {
        let hash = Self.hash(name)
        var slot = Int(truncatingIfNeeded: hash) & (toolCapacity - 1)
        while true {
            let stored = toolHashes[slot]
            if stored == 0 { return nil }
            if stored == hash, Int(toolNameLength[slot]) == name.count,
               name.count == 0 || memcmp(names + Int(toolNameStart[slot]), name.baseAddress!, name.count) == 0 {
                return (Int(toolStart[slot]), Int(toolCount[slot]))
            }
            slot = (slot + 1) & (toolCapacity - 1)
        }
    }

    /// Bytes of the table's flat memory (the hot part).
    var flatBytes: Int {
        serverCount * (8 + 8 + 1 + 8) + toolCapacity * (8 + 4 * 4) + namesLength + candidateTotal * (4 + 8)
    }
}

/// A registered server as the router keeps it between table builds: what tables need is
/// computed once per change of the server (name hashes, stats cells), not on every build.
struct ServerRecord {
    let info: ServerInfo
    let serverCell: UnsafeMutablePointer<UInt64>
    let seed: UInt64
    let toolNames: [[UInt8]]
    let toolHashes: [UInt64]
    let toolCells: [UnsafeMutablePointer<UInt64>]

    /// The same server with a changed description but the same tools (health, weight...).
    init(reusing old: ServerRecord, info: ServerInfo) {
        self.info = info
        serverCell = old.serverCell
        seed = old.seed
        toolNames = old.toolNames
        toolHashes = old.toolHashes
        toolCells = old.toolCells
    }

    init(_ info: ServerInfo, stats: StatsStore) {
        self.info = info
        serverCell = stats.cell(server: info.id, tool: nil).words
        seed = Array(info.id.utf8).withUnsafeBytes { RoutingTable.hash($0) }
        // A tool listed twice by a server counts once.
        var seen = Set<String>()
        let unique = info.tools.filter { seen.insert($0.name).inserted }
        toolNames = unique.map { Array($0.name.utf8) }
        toolHashes = toolNames.map { name in name.withUnsafeBytes { RoutingTable.hash($0) } }
        toolCells = unique.map { stats.cell(server: info.id, tool: $0.name).words }
    }
}
