import MCPOptSync

/// Coherence groups and tag sets, interned to the 16-bit ids items carry in their headers.
/// Touched by writers and invalidations only, never on the read path.
final class NameTable: @unchecked Sendable {
    static let limit = Int(UInt16.max)
    private let lock = Lock()
    private var groupIDs: [String: UInt16] = [:]
    private var tagIDs: [String: Int] = [:]
    private var tagSetIDs: [[Int]: UInt16] = [:]
    /// Each tag set's tags, by tag set id (index 0: no tags).
    private var tagSets: [[Int]] = [[]]
    /// Tag lists as given (order, repeats) to their set's id: a fill with the tags seen before
    /// is one lookup, not an interning, dedup and sort. Bounded; past it lists are interned anew.
    private var listIDs: [[String]: UInt16] = [:]
    /// The list asked for last: fills of one tool repeat it, and comparing short strings is
    /// cheaper than hashing them.
    private var lastList: (tags: [String], id: UInt16)?
    static let listLimit = 4096

    func group(_ name: String) throws(CacheError) -> UInt16 {
        try lock.withLock { () throws(CacheError) -> UInt16 in
            if let id = groupIDs[name] { return id }
            guard groupIDs.count < Self.limit else { throw .tooManyGroups(limit: Self.limit) }
            let id = UInt16(groupIDs.count + 1)
            groupIDs[name] = id
            return id
        }
    }

    /// The id of an existing group (nil: no item was ever stored in it).
    func existingGroup(_ name: String) -> UInt16? { lock.withLock { groupIDs[name] } }

    func tagSet(_ tags: [String]) throws(CacheError) -> UInt16 {
        guard !tags.isEmpty else { return 0 }
        return try lock.withLock { () throws(CacheError) -> UInt16 in
            if let last = lastList, last.tags == tags { return last.id }
            if let id = listIDs[tags] {
                lastList = (tags, id)
                return id
            }
            var ids: [Int] = []
            for tag in tags {
                if let id = tagIDs[tag] { ids.append(id) } else {
                    let id = tagIDs.count
                    tagIDs[tag] = id
                    ids.append(id)
                }
            }
            ids = Array(Set(ids)).sorted()
            let id: UInt16
            if let known = tagSetIDs[ids] {
                id = known
            } else {
                guard tagSets.count <= Self.limit else { throw .tooManyTagSets(limit: Self.limit) }
                id = UInt16(tagSets.count)
                tagSets.append(ids)
                tagSetIDs[ids] = id
            }
            if listIDs.count < Self.listLimit { listIDs[tags] = id }
            lastList = (tags, id)
            return id
        }
    }

    /// Which tag sets contain `tag`, as a lookup by tag set id.
    func tagSetsContaining(_ tag: String) -> [Bool] {
        lock.withLock {
            guard let id = tagIDs[tag] else { return [] }
            return tagSets.map { $0.contains(id) }
        }
    }
}
