import CMCPOptCache
import CMCPOptConcurrency
import Glibc
import MCPOptSync

/// "No item" in queue links and free lists.
let noRef: UInt32 = .max
/// Item flags (mco_item.flags): the chunk holds a live item; the item is in the main queue; the
/// item earned its place in main (admitted by the filter, or read while there), unlike items
/// put there while the cache was filling (what `hotKeys` counts as hot).
let itemLive: UInt8 = 1
let itemMain: UInt8 = 2
let itemEarned: UInt8 = 4

/// A doubly linked list of items through their headers: newest at `head`, oldest at `tail`.
/// `prev` points towards newer items, `next` towards older ones.
struct ItemList {
    var head = noRef
    var tail = noRef
    var count = 0
}

/// One size class of a shard: its pages, free chunks and S3-FIFO queues.
struct SizeClass {
    let chunkSize: Int
    var pages = 0
    var free = ItemList()
    var small = ItemList()
    var main = ItemList()
    var payloadBytes = 0
    /// Recent allocations (halved now and then): where the writes go, pages should follow.
    var demand = 0
    /// The class has had to evict since the cache started or was cleared (it has filled).
    var hasEvicted = false
    var items: Int { small.count + main.count }
}

/// Why an item leaves the cache, for the counters.
enum Removal { case replaced, deleted, evicted, expired, invalidated }

/// A shard: an index from key to item, and the slab memory holding the items.
///
/// Writers hold `lock` and bracket each change with the sequence lock; readers take no lock:
/// they read the index and the item optimistically and retry if a writer ran meanwhile
/// (`read`). Pages and index tables stay mapped until the shard is freed, so a reader that
/// lost a race reads stale but valid memory, never freed memory.
final class CacheShard: @unchecked Sendable {
    let lock = Lock()
    let geometry: SlabGeometry
    private let source: PageSource

    // Read concurrently (through CMCPOptCache's atomics and seqlock rules).
    /// Sequence count and the invalidation generation, on a cache line of their own.
    let control: UnsafeMutablePointer<UInt64>
    var seq: UnsafeMutablePointer<UInt64> { control }
    var allGeneration: UnsafeMutablePointer<UInt64> { control + 1 }
    /// The current index table: [capacity, entries...]; an entry is fingerprint << 32 | ref, 0
    /// empty. Any capacity (slots come from multiply-shift, not a mask), so it grows by half.
    let indexCell: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    let pageTable: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    /// Per-key generations (by hash) bumped by deletes, for fill tickets.
    static let keyGenerationCount = 1024
    let keyGenerations: UnsafeMutablePointer<UInt64>

    // Writer-only state (under `lock`: no dynamic exclusivity checks, ~20 a fill).
    private var table: UnsafeMutablePointer<UInt64>
    private var capacity: Int
    private var entryCount = 0
    /// Replaced index tables and the epoch after which no reader can still hold them.
    @exclusivity(unchecked) private var retiredTables: [(table: UnsafeMutablePointer<UInt64>, epoch: UInt64, bytes: Int)] = []
    /// How often keys were asked for recently (misses, and hits counted as the queues consume
    /// them): the admission filter into the main queues (see `evictOne`).
    @exclusivity(unchecked) private var sketch: FrequencySketch
    @exclusivity(unchecked) private(set) var classes: [SizeClass]
    @exclusivity(unchecked) private var pageClass: [Int32]
    @exclusivity(unchecked) private var pageLive: [Int32]
    @exclusivity(unchecked) private var sparePages: [Int] = []
    private(set) var pagesTaken = 0
    private var allocations = 0
    private var rebalanceCheck = 0
    private var sweepCursor = 0
    // Counters (writer-only).
    var sets: UInt64 = 0
    var evictions: UInt64 = 0
    var expirations: UInt64 = 0
    var invalidations: UInt64 = 0
    var rejectedFills: UInt64 = 0
    var rebalances: UInt64 = 0

    init(geometry: SlabGeometry, source: PageSource) {
        self.geometry = geometry
        self.source = source
        control = mco_cache_line_alloc(64)!.bindMemory(to: UInt64.self, capacity: 8)
        control.initialize(repeating: 0, count: 8)
        indexCell = .allocate(capacity: 1)
        pageTable = .allocate(capacity: geometry.pagesPerShard)
        pageTable.initialize(repeating: nil, count: geometry.pagesPerShard)
        keyGenerations = .allocate(capacity: Self.keyGenerationCount)
        keyGenerations.initialize(repeating: 0, count: Self.keyGenerationCount)
        capacity = 1024
        table = Self.newTable(capacity: capacity)
        indexCell.initialize(to: UnsafeMutableRawPointer(table))
        sketch = FrequencySketch(bytes: Self.sketchBytes(indexCapacity: capacity))
        classes = geometry.chunkSizes.map { SizeClass(chunkSize: $0) }
        pageClass = Array(repeating: -1, count: geometry.pagesPerShard)
        pageLive = Array(repeating: 0, count: geometry.pagesPerShard)
    }

    deinit {
        table.deallocate()
        for retired in retiredTables { retired.table.deallocate() }
        sketch.deallocate()
        keyGenerations.deallocate()
        pageTable.deallocate()
        indexCell.deallocate()
        free(control)
    }

    private static func newTable(capacity: Int) -> UnsafeMutablePointer<UInt64> {
        let table = UnsafeMutablePointer<UInt64>.allocate(capacity: capacity + 1)
        table.initialize(repeating: 0, count: capacity + 1)
        table[0] = UInt64(capacity)
        return table
    }

    /// A key's home slot: the low 32 hash bits scaled to the capacity (multiply-shift).
    @inline(__always)
    static func home(_ hash: UInt64, _ capacity: Int) -> Int {
        Int(truncatingIfNeeded: ((hash & 0xFFFF_FFFF) &* UInt64(capacity)) >> 32)
    }

    // MARK: Addresses

    @inline(__always)
    static func fingerprint(_ hash: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: hash >> 20) | 1 }

    @inline(__always)
    func item(_ ref: UInt32) -> UnsafeMutablePointer<mco_item> {
        let page = pageTable[Int(ref >> 17)].unsafelyUnwrapped
        return (page + Int(ref & 0x1_FFFF) << 3).assumingMemoryBound(to: mco_item.self)
    }

    @inline(__always)
    private func ref(page: Int, offset: Int) -> UInt32 { UInt32(page << 17 | offset >> 3) }

    @inline(__always)
    private func page(of ref: UInt32) -> Int { Int(ref >> 17) }

    private func keyBytes(_ item: UnsafeMutablePointer<mco_item>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: mco_item_key(item), count: Int(item.pointee.key_length))
    }

    private func hash(of ref: UInt32) -> UInt64 {
        let key = keyBytes(item(ref))
        return mco_cache_hash(key.baseAddress, key.count)
    }

    /// What readers need, as plain pointers: reading through this struct touches no reference
    /// count (a retain on a shared object would bounce its cache line between cores).
    var reader: ShardReader {
        ShardReader(seq: seq, indexCell: indexCell, pageTable: pageTable, pageSize: geometry.pageSize)
    }

    // MARK: Index (writer)

    private func findSlot(hash: UInt64, key: UnsafeRawBufferPointer) -> Int? {
        let fingerprint = Self.fingerprint(hash)
        var slot = Self.home(hash, capacity)
        for _ in 0..<capacity {
            let entry = table[1 + slot]
            if entry == 0 { return nil }
            if UInt32(truncatingIfNeeded: entry >> 32) == fingerprint {
                let candidate = item(UInt32(truncatingIfNeeded: entry))
                if Int(candidate.pointee.key_length) == key.count,
                   mco_item_key_equals(candidate, key.baseAddress, key.count) != 0 { return slot }
            }
            slot = slot + 1 == capacity ? 0 : slot + 1
        }
        return nil
    }

    private func slot(of ref: UInt32) -> Int? {
        var slot = Self.home(hash(of: ref), capacity)
        for _ in 0..<capacity {
            let entry = table[1 + slot]
            if entry == 0 { return nil }
            if UInt32(truncatingIfNeeded: entry) == ref { return slot }
            slot = slot + 1 == capacity ? 0 : slot + 1
        }
        return nil
    }

    private func insertEntry(hash: UInt64, ref: UInt32) {
        if (entryCount + 1) * 5 > capacity * 4 { grow() }
        var slot = Self.home(hash, capacity)
        while table[1 + slot] != 0 { slot = slot + 1 == capacity ? 0 : slot + 1 }
        mco_store64(table + 1 + slot, UInt64(Self.fingerprint(hash)) << 32 | UInt64(ref))
        entryCount += 1
    }

    /// Backward-shift deletion: no tombstones, so probes stay short.
    private func removeEntry(at removed: Int) {
        var hole = removed
        func distance(_ from: Int, _ to: Int) -> Int { to >= from ? to - from : to + capacity - from }
        var slot = removed + 1 == capacity ? 0 : removed + 1
        while true {
            let entry = table[1 + slot]
            if entry == 0 { break }
            let home = Self.home(hash(of: UInt32(truncatingIfNeeded: entry)), capacity)
            // Move the entry into the hole unless its home lies cyclically in (hole, slot].
            if distance(home, slot) >= distance(hole, slot) {
                mco_store64(table + 1 + hole, entry)
                hole = slot
            }
            slot = slot + 1 == capacity ? 0 : slot + 1
        }
        mco_store64(table + 1 + hole, 0)
        entryCount -= 1
    }

    /// A table half as large again (so the load stays between 0.53 and 0.8); the old one is
    /// kept until no reader can hold it (`reclaimTables`).
    private func grow() {
        let newCapacity = capacity + capacity / 2
        let newTable = Self.newTable(capacity: newCapacity)
        for slot in 0..<capacity {
            let entry = table[1 + slot]
            if entry == 0 { continue }
            var target = Self.home(hash(of: UInt32(truncatingIfNeeded: entry)), newCapacity)
            while newTable[1 + target] != 0 { target = target + 1 == newCapacity ? 0 : target + 1 }
            newTable[1 + target] = entry
        }
        let old = table, oldBytes = (capacity + 1) * 8
        table = newTable
        capacity = newCapacity
        mco_store_pointer(indexCell, UnsafeMutableRawPointer(newTable))
        retiredTables.append((old, mco_epoch_advance(), oldBytes))
        // The sketch follows the index's size (it starts afresh: what it forgets is soon
        // relearnt, and a larger cache needs more counters to tell keys apart).
        let sketchBytes = Self.sketchBytes(indexCapacity: newCapacity)
        if sketchBytes != sketch.bytes {
            sketch.deallocate()
            sketch = FrequencySketch(bytes: sketchBytes)
        }
    }

    /// The sketch's size: 2 bytes per index slot (two 4-bit counters and 8 doorkeeper bits),
    /// the slots rounded up to a power of two: 2.5 to 5 bytes per item, the memory of the
    /// ghost filter it replaced.
    static func sketchBytes(indexCapacity: Int) -> Int {
        var slots = 512
        while slots < indexCapacity { slots *= 2 }
        return slots * 2
    }

    /// Counters are halved after ten accesses per item were counted (TinyLFU's sample).
    private func countAccess(_ hash: UInt64) { sketch.add(hash, sampleSize: 10 * max(entryCount, 512)) }

    /// Frees replaced tables no reader can still be using (called by writers now and then).
    private func reclaimTables() {
        retiredTables.removeAll { retired in
            guard mco_epoch_quiescent(retired.epoch) != 0 else { return false }
            retired.table.deallocate()
            return true
        }
    }

    var overheadBytes: Int {
        (capacity + 1) * 8 + retiredTables.reduce(0) { $0 + $1.bytes } + sketch.bytes + geometry.pagesPerShard * (8 + 8)
            + Self.keyGenerationCount * 8 + 64 + classes.count * MemoryLayout<SizeClass>.stride
    }

    // MARK: Lists (writer)

    private func pushHead(_ list: inout ItemList, _ ref: UInt32) {
        let entry = item(ref)
        entry.pointee.prev = noRef
        entry.pointee.next = list.head
        if list.head != noRef { item(list.head).pointee.prev = ref } else { list.tail = ref }
        list.head = ref
        list.count += 1
    }

    private func unlink(_ list: inout ItemList, _ ref: UInt32) {
        let entry = item(ref)
        let newer = entry.pointee.prev, older = entry.pointee.next
        if newer != noRef { item(newer).pointee.next = older } else { list.head = older }
        if older != noRef { item(older).pointee.prev = newer } else { list.tail = newer }
        list.count -= 1
    }

    // MARK: Slab (writer)

    private func takePage() -> Int? {
        if let page = sparePages.popLast() { return page }
        guard pagesTaken < geometry.pagesPerShard, let memory = source.allocate() else { return nil }
        mco_store_pointer(pageTable + pagesTaken, memory)
        pagesTaken += 1
        return pagesTaken - 1
    }

    private func assign(page: Int, to sizeClass: Int) {
        let chunk = classes[sizeClass].chunkSize
        pageClass[page] = Int32(sizeClass)
        pageLive[page] = 0
        var offset = (geometry.pageSize / chunk - 1) * chunk
        while offset >= 0 {
            let chunkRef = ref(page: page, offset: offset)
            item(chunkRef).pointee.flags = 0
            pushHead(&classes[sizeClass].free, chunkRef)
            offset -= chunk
        }
        classes[sizeClass].pages += 1
    }

    private func popFree(_ sizeClass: Int) -> UInt32? {
        let chunkRef = classes[sizeClass].free.tail
        guard chunkRef != noRef else { return nil }
        unlink(&classes[sizeClass].free, chunkRef)
        pageLive[page(of: chunkRef)] += 1
        return chunkRef
    }

    /// A chunk for a new item of `sizeClass`: a free one, a new page, a page moved from a class
    /// that needs it less, or room made by evicting in this class.
    private func allocate(_ sizeClass: Int, now: UInt32) -> UInt32? {
        noteDemand(sizeClass)
        if let chunk = popFree(sizeClass) { return chunk }
        if let page = takePage() {
            assign(page: page, to: sizeClass)
            return popFree(sizeClass)
        }
        if classes[sizeClass].pages == 0 || shouldRebalance(toward: sizeClass) {
            if movePage(to: sizeClass) { return popFree(sizeClass) }
        }
        var budget = 4 * classes[sizeClass].items + 4
        if classes[sizeClass].items > 0 { classes[sizeClass].hasEvicted = true }
        while classes[sizeClass].free.count == 0 && classes[sizeClass].items > 0 && budget > 0 {
            evictOne(sizeClass, now: now)
            budget -= 1
        }
        if classes[sizeClass].free.count == 0 { _ = movePage(to: sizeClass) }
        return popFree(sizeClass)
    }

    private func noteDemand(_ sizeClass: Int) {
        classes[sizeClass].demand += 1
        allocations += 1
        if allocations >= 8192 {
            allocations = 0
            for index in classes.indices { classes[index].demand /= 2 }
        }
    }

    /// Whether `sizeClass` holds a page less than its share of recent write bytes while another
    /// class holds a page more (checked every 16th eviction: it walks the classes).
    private func shouldRebalance(toward sizeClass: Int) -> Bool {
        rebalanceCheck += 1
        guard rebalanceCheck & 15 == 0 else { return false }
        return rebalanceVictim(for: sizeClass) != nil
    }

    private func rebalanceVictim(for sizeClass: Int) -> Int? {
        var totalDemand = 0.0
        for cls in classes { totalDemand += Double(cls.demand * cls.chunkSize) }
        guard totalDemand > 0 else { return nil }
        let pages = Double(pagesTaken)
        func share(_ index: Int) -> Double { Double(classes[index].demand * classes[index].chunkSize) / totalDemand * pages }
        guard Double(classes[sizeClass].pages) + 1 <= share(sizeClass) else { return nil }
        var victim: Int? = nil
        var surplus = 1.0
        for index in classes.indices where index != sizeClass && classes[index].pages > 0 {
            let extra = Double(classes[index].pages) - share(index)
            if extra >= surplus { surplus = extra; victim = index }
        }
        return victim
    }

    /// Moves one page to `sizeClass` from the class that can best spare it, evicting the items
    /// on it (the page with the fewest).
    private func movePage(to sizeClass: Int) -> Bool {
        var victim = rebalanceVictim(for: sizeClass)
        if victim == nil {
            // A class with no pages at all takes one from the class with the most.
            var most = 0
            for index in classes.indices where index != sizeClass && classes[index].pages > most {
                most = classes[index].pages
                victim = index
            }
        }
        guard let victim else { return false }
        var chosen = -1
        for page in 0..<pagesTaken where pageClass[page] == Int32(victim) {
            if chosen < 0 || pageLive[page] < pageLive[chosen] { chosen = page }
        }
        guard chosen >= 0 else { return false }
        let chunk = classes[victim].chunkSize
        var offset = 0
        while offset + chunk <= geometry.pageSize {
            let chunkRef = ref(page: chosen, offset: offset)
            if item(chunkRef).pointee.flags & itemLive != 0 {
                remove(chunkRef, reason: .evicted)
            }
            unlink(&classes[victim].free, chunkRef)
            offset += chunk
        }
        classes[victim].pages -= 1
        rebalances += 1
        assign(page: chosen, to: sizeClass)
        return true
    }

    /// One eviction step in a class (S3-FIFO with a TinyLFU filter into main). When the small
    /// queue holds its share (10%), its oldest item is a candidate for the main queue if it
    /// was read since it came in, or if the sketch says its key was asked for before; a
    /// candidate enters main only if its key was asked for more often than main's next victim
    /// (which then leaves), else it is evicted. Otherwise main's oldest item goes round again
    /// while it has credit (each read since it last went round counts in the sketch), else it
    /// is evicted.
    private func evictOne(_ sizeClass: Int, now: UInt32) {
        let cls = classes[sizeClass]
        let fromSmall = cls.small.count > 0 && (cls.small.count * 10 >= cls.items || cls.main.count == 0)
        guard fromSmall else {
            evictFromMain(sizeClass, now: now)
            return
        }
        let victim = cls.small.tail
        let entry = item(victim)
        let expiry = entry.pointee.expiry
        if expiry != 0 && expiry <= now {
            remove(victim, reason: .expired)
            return
        }
        let victimHash = hash(of: victim)
        let reads = Int(entry.pointee.freq)
        for _ in 0..<reads { countAccess(victimHash) }
        // Its own miss counted once; 2 or more: asked for before.
        var admit = reads > 0 || sketch.frequency(victimHash) >= 2
        if admit && cls.main.count > 0 && (cls.main.count + 2) * 10 >= cls.items * 9 {
            // Main is full: the candidate must displace main's next victim.
            if let other = mainVictim(sizeClass, now: now) {
                let otherEntry = item(other)
                let otherExpiry = otherEntry.pointee.expiry
                if otherExpiry != 0 && otherExpiry <= now {
                    remove(other, reason: .expired)
                } else if sketch.frequency(victimHash) > sketch.frequency(hash(of: other)) {
                    remove(other, reason: .evicted)
                } else {
                    admit = false
                }
            }
        }
        if admit {
            unlink(&classes[sizeClass].small, victim)
            entry.pointee.freq = 0
            entry.pointee.flags |= itemMain | itemEarned
            pushHead(&classes[sizeClass].main, victim)
        } else {
            remove(victim, reason: .evicted)
        }
    }

    /// Turns main's clock until its oldest item has no credit left (or has expired), and
    /// returns it without removing it.
    private func mainVictim(_ sizeClass: Int, now: UInt32) -> UInt32? {
        // Credits are at most 3, so 4 turns of the queue always end.
        var budget = 4 * classes[sizeClass].main.count + 4
        while budget > 0 {
            budget -= 1
            let victim = classes[sizeClass].main.tail
            guard victim != noRef else { return nil }
            let entry = item(victim)
            let expiry = entry.pointee.expiry
            if expiry != 0 && expiry <= now { return victim }
            guard entry.pointee.freq > 0 else { return victim }
            entry.pointee.freq -= 1
            entry.pointee.flags |= itemEarned
            countAccess(hash(of: victim))
            unlink(&classes[sizeClass].main, victim)
            pushHead(&classes[sizeClass].main, victim)
        }
        return nil
    }

    private func evictFromMain(_ sizeClass: Int, now: UInt32) {
        let victim = classes[sizeClass].main.tail
        let entry = item(victim)
        let expiry = entry.pointee.expiry
        if expiry != 0 && expiry <= now {
            remove(victim, reason: .expired)
        } else if entry.pointee.freq > 0 {
            entry.pointee.freq -= 1
            entry.pointee.flags |= itemEarned
            countAccess(hash(of: victim))
            unlink(&classes[sizeClass].main, victim)
            pushHead(&classes[sizeClass].main, victim)
        } else {
            remove(victim, reason: .evicted)
        }
    }

    /// Takes a live item out: index, queue, class counts; its chunk goes back to the free list.
    private func remove(_ victim: UInt32, reason: Removal, slot knownSlot: Int? = nil) {
        if let slot = knownSlot ?? slot(of: victim) { removeEntry(at: slot) }
        let entry = item(victim)
        let sizeClass = Int(pageClass[page(of: victim)])
        if entry.pointee.flags & itemMain != 0 {
            unlink(&classes[sizeClass].main, victim)
        } else {
            unlink(&classes[sizeClass].small, victim)
        }
        classes[sizeClass].payloadBytes -= mco_item_value_offset(Int(entry.pointee.key_length)) + Int(entry.pointee.value_length)
        entry.pointee.flags = 0
        pushHead(&classes[sizeClass].free, victim)
        pageLive[page(of: victim)] -= 1
        switch reason {
        case .evicted: evictions += 1
        case .expired: expirations += 1
        case .invalidated, .deleted: invalidations += 1
        case .replaced: break
        }
    }

    // MARK: Writing

    /// Stores an item (the caller checked its size and holds no lock). Returns false when no
    /// memory could be found for it.
    func store(hash: UInt64, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, header: mco_item,
               sizeClass: Int, ticket: FillTicket?, now: UInt32) -> SetOutcome? {
        lock.withLock { () -> SetOutcome? in
            if let ticket, mco_load64(allGeneration) != ticket.all
                || mco_load64(keyGenerations + keyGenerationSlot(hash)) != ticket.key {
                rejectedFills += 1
                return .invalidatedDuringFill
            }
            mco_seq_write_begin(seq)
            defer { mco_seq_write_end(seq) }
            if let slot = findSlot(hash: hash, key: key) { remove(UInt32(truncatingIfNeeded: table[1 + slot]), reason: .replaced, slot: slot) }
            guard let chunk = allocate(sizeClass, now: now) else { return nil }
            var header = header
            countAccess(hash)
            // New items enter the small queue, except while the class is first filling (it has
            // never evicted, has free chunks left) and small holds its share: then main (a
            // cache filled only through small would keep most of its memory in a FIFO for long;
            // after the fill, chunks freed by expiry or deletes do not open a way round the
            // filter).
            let cls = classes[sizeClass]
            let toMain = !cls.hasEvicted && cls.free.count > 0
                && cls.small.count * 10 >= cls.pages * (geometry.pageSize / cls.chunkSize)
            header.flags = itemLive | (toMain ? itemMain : 0)
            let entry = item(chunk)
            let links = (entry.pointee.prev, entry.pointee.next)
            header.prev = links.0
            header.next = links.1
            mco_item_write(entry, &header, key.baseAddress, value.baseAddress)
            if toMain { pushHead(&classes[sizeClass].main, chunk) } else { pushHead(&classes[sizeClass].small, chunk) }
            classes[sizeClass].payloadBytes += mco_item_value_offset(key.count) + value.count
            insertEntry(hash: hash, ref: chunk)
            sets += 1
            if !retiredTables.isEmpty { reclaimTables() }
            return .stored
        }
    }

    @inline(__always)
    func keyGenerationSlot(_ hash: UInt64) -> Int { Int(truncatingIfNeeded: hash >> 40) & (Self.keyGenerationCount - 1) }

    func ticket(hash: UInt64, shard: Int) -> FillTicket {
        // Both read under the lock's ordering-free atomics; a writer bumps them under the lock.
        FillTicket(shard: shard, all: mco_load64(allGeneration), key: mco_load64(keyGenerations + keyGenerationSlot(hash)))
    }

    /// Removes `key`; bumps its generation even when absent, so an in-flight fill is refused.
    func delete(hash: UInt64, key: UnsafeRawBufferPointer) -> Bool {
        lock.withLock {
            mco_add64(keyGenerations + keyGenerationSlot(hash), 1)
            guard let slot = findSlot(hash: hash, key: key) else { return false }
            mco_seq_write_begin(seq)
            defer { mco_seq_write_end(seq) }
            remove(UInt32(truncatingIfNeeded: table[1 + slot]), reason: .deleted, slot: slot)
            return true
        }
    }

    /// Removes every item `matches` selects (called with the key, group and tag set).
    func invalidate(where matches: (UnsafeRawBufferPointer, UInt16, UInt16) -> Bool) -> Int {
        lock.withLock {
            mco_add64(allGeneration, 1)
            var victims: [UInt32] = []
            for slot in 0..<capacity {
                let entry = table[1 + slot]
                if entry == 0 { continue }
                let ref = UInt32(truncatingIfNeeded: entry)
                let candidate = item(ref)
                if matches(keyBytes(candidate), candidate.pointee.group, candidate.pointee.tag_set) { victims.append(ref) }
            }
            guard !victims.isEmpty else { return 0 }
            mco_seq_write_begin(seq)
            defer { mco_seq_write_end(seq) }
            for victim in victims { remove(victim, reason: .invalidated) }
            return victims.count
        }
    }

    /// Removes the expired items among the next `limit` index slots, resuming where the last
    /// call ended (background expiry; readers already treat expired items as misses).
    func sweepExpired(now: UInt32, limit: Int) -> Int {
        lock.withLock {
            var expired: [UInt32] = []
            for _ in 0..<min(limit, capacity) {
                sweepCursor = sweepCursor + 1 >= capacity ? 0 : sweepCursor + 1
                let entry = table[1 + sweepCursor]
                if entry == 0 { continue }
                let ref = UInt32(truncatingIfNeeded: entry)
                let expiry = item(ref).pointee.expiry
                if expiry != 0 && expiry <= now { expired.append(ref) }
            }
            guard !expired.isEmpty else { return 0 }
            mco_seq_write_begin(seq)
            defer { mco_seq_write_end(seq) }
            for ref in expired { remove(ref, reason: .expired) }
            return expired.count
        }
    }

    /// Drops every item; pages stay with the shard, ready for any class.
    func clear() {
        lock.withLock {
            mco_add64(allGeneration, 1)
            mco_seq_write_begin(seq)
            defer { mco_seq_write_end(seq) }
            for slot in 0..<capacity { mco_store64(table + 1 + slot, 0) }
            entryCount = 0
            // Chunks are re-carved (and marked free) when a page is next assigned; until then
            // no index entry leads to them.
            for page in 0..<pagesTaken {
                pageClass[page] = -1
                pageLive[page] = 0
            }
            sparePages = Array((0..<pagesTaken).reversed())
            for index in classes.indices { classes[index] = SizeClass(chunkSize: classes[index].chunkSize) }
            sketch.clear()
        }
    }

    /// Items in this shard, hottest first within each class: (key, estimated access count).
    func hotKeys() -> [HotKey] {
        lock.withLock {
            var result: [HotKey] = []
            for cls in classes {
                for list in [cls.main, cls.small] {
                    var ref = list.head
                    while ref != noRef {
                        let entry = item(ref)
                        let earned = entry.pointee.flags & itemEarned != 0
                        let score = Int(entry.pointee.freq) + (earned ? 4 : 0)
                        if score > 0 { result.append(HotKey(key: Array(keyBytes(entry)), accessCount: score)) }
                        ref = entry.pointee.next
                    }
                }
            }
            return result
        }
    }

    var itemCount: Int { lock.withLock { entryCount } }

    /// Frees replaced index tables once readers are done with them (stats and sweeps call it).
    func reclaim() { lock.withLock { if !retiredTables.isEmpty { reclaimTables() } } }
}

/// The lock-free read side of a shard (see `CacheShard`).
struct ShardReader {
    let seq: UnsafeMutablePointer<UInt64>
    let indexCell: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    let pageTable: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    let pageSize: Int

    /// Finds a live, unexpired item for `key` and hands it to `body`, retrying until no writer
    /// interfered. `body` may run more than once and must only copy.
    @inline(__always)
    func read<R>(hash: UInt64, key: UnsafeRawBufferPointer, now: UInt32,
                 _ body: (UnsafeMutablePointer<mco_item>, Int, Int) -> R) -> R? {
        let fingerprint = CacheShard.fingerprint(hash)
        var spins = 0
        let epoch = mco_reader_self()!
        mco_read_enter(epoch)
        defer { mco_read_exit(epoch) }
        while true {
            let start = mco_seq_read_begin(seq)
            var result: R? = nil
            var found: UnsafeMutablePointer<mco_item>? = nil
            if start & 1 == 0, let raw = mco_load_pointer(indexCell) {
                let entries = raw.assumingMemoryBound(to: UInt64.self)
                let capacity = Int(truncatingIfNeeded: mco_load64(entries))
                var slot = CacheShard.home(hash, capacity)
                for _ in 0..<capacity {
                    let entry = mco_load64(entries + 1 + slot)
                    if entry == 0 { break }
                    if UInt32(truncatingIfNeeded: entry >> 32) == fingerprint {
                        let ref = UInt32(truncatingIfNeeded: entry)
                        if let page = mco_load_pointer(pageTable + Int(ref >> 17)) {
                            let offset = Int(ref & 0x1_FFFF) << 3
                            let candidate = (page + offset).assumingMemoryBound(to: mco_item.self)
                            mco_item_prefetch(candidate)
                            var keyLength: UInt32 = 0, valueLength: UInt32 = 0, expiry: UInt32 = 0, flags: UInt32 = 0
                            mco_item_peek(candidate, &keyLength, &valueLength, &expiry, &flags)
                            // Lengths are checked against the page before use: a torn header
                            // must not send the copy out of bounds.
                            if Int(keyLength) == key.count, flags & UInt32(itemLive) != 0,
                               offset + mco_item_value_offset(Int(keyLength)) + Int(valueLength) <= pageSize,
                               mco_item_key_equals(candidate, key.baseAddress, key.count) != 0 {
                                if expiry == 0 || expiry > now {
                                    found = candidate
                                    result = body(candidate, Int(keyLength), Int(valueLength))
                                }
                                break
                            }
                        }
                    }
                    slot = slot + 1 == capacity ? 0 : slot + 1
                }
            }
            if mco_seq_read_retry(seq, start) == 0 {
                if let found { mco_item_touch(found) }
                return result
            }
            spins += 1
            if spins & 63 == 0 { sched_yield() }
        }
    }
}
