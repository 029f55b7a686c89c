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

    init(generation: UInt64, servers: [ServerInfo], stats: StatsStore) {
        self.generation = generation
        self.servers = servers
        var index: [String: Int32] = [:]
        for (position, server) in servers.enumerated() { index[server.id] = Int32(position) }
        serverIndex = index
        serverCount = servers.count
        serverCells = .allocate(capacity: max(1, servers.count))
        serverWeights = .allocate(capacity: max(1, servers.count))
        serverUnhealthy = .allocate(capacity: max(1, servers.count))
        serverSeeds = .allocate(capacity: max(1, servers.count))
        for (position, server) in servers.enumerated() {
            (serverCells + position).initialize(to: stats.cell(server: server.id, tool: nil).words)
            (serverWeights + position).initialize(to: max(server.weight, 1e-9))
            (serverUnhealthy + position).initialize(to: server.health == .unhealthy)
            let seed = Array(server.id.utf8).withUnsafeBytes { Self.hash($0) }
            (serverSeeds + position).initialize(to: seed)
        }
        // Group candidates by tool, in registration order of the servers.
        var byTool: [String: [Int32]] = [:]
        var order: [String] = []
        for (position, server) in servers.enumerated() {
            for tool in server.tools {
                if byTool[tool.name] == nil { order.append(tool.name) }
                byTool[tool.name, default: []].append(Int32(position))
            }
        }
        toolTotal = order.count
        var capacity = 16
        while capacity < order.count * 2 { capacity *= 2 }
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
        let totalCandidates = byTool.values.reduce(0) { $0 + $1.count }
        candidateTotal = totalCandidates
        candidates = .allocate(capacity: max(1, totalCandidates))
        candidateCells = .allocate(capacity: max(1, totalCandidates))
        let totalNameBytes = order.reduce(0) { $0 + $1.utf8.count }
        namesLength = totalNameBytes
        names = .allocate(capacity: max(1, totalNameBytes))
        var nextCandidate = 0, nextName = 0
        for name in order {
            let bytes = Array(name.utf8)
            let hash = bytes.withUnsafeBytes { Self.hash($0) }
            var slot = Int(truncatingIfNeeded: hash) & (capacity - 1)
            while toolHashes[slot] != 0 { slot = (slot + 1) & (capacity - 1) }
            toolHashes[slot] = hash
            toolStart[slot] = UInt32(nextCandidate)
            toolNameStart[slot] = UInt32(nextName)
            toolNameLength[slot] = UInt32(bytes.count)
            bytes.withUnsafeBufferPointer { (names + nextName).update(from: $0.baseAddress!, count: bytes.count) }
            nextName += bytes.count
            let serversOfTool = byTool[name]!
            toolCount[slot] = UInt32(serversOfTool.count)
            for server in serversOfTool {
                (candidates + nextCandidate).initialize(to: server)
                (candidateCells + nextCandidate).initialize(to: stats.cell(server: servers[Int(server)].id, tool: name).words)
                nextCandidate += 1
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
