import Glibc
import MCPOptCache
import MCPOptConfig
import MCPOptIO
import MCPOptJSON
import MCPOptMetrics
import MCPOptRedis
import MCPOptSync

/// The shared (L2) cache in Redis, behind the in-process L1, for several engine instances
/// (gateways, hosts) that must behave as one cache.
///
/// - Read: after an L1 miss, `GET` + `PTTL` in one round trip (bounded by `commandTimeout`);
///   a hit is promoted to L1 with the time it has left.
/// - Fill: written after the L1 fill, without waiting (never on a request's critical path):
///   `SET ... PX ttl`, plus the key in a set per tag, so a tag invalidation reaches L2 too.
/// - Invalidate: one Lua script deletes every key of the tags, increments an epoch and
///   publishes the tags; every instance applies them to its L1 (its own it has already).
/// - Coherence: an instance that may have missed messages never serves what could be stale:
///   a gap in the epochs, or an epoch changed while it was away, clears its L1; and while it is
///   not subscribed, its L1 is cleared once `coherenceTimeout` has passed.
/// - Degradation: when Redis is down, slow or restarted, L2 is bypassed (reads miss at once,
///   writes and publishes are dropped and counted) and reconnection goes on with backoff.
final class SharedCache: @unchecked Sendable {
    struct Hit {
        var value: [UInt8]
        var ttl: Duration?
        var tags: [String]
    }

    let options: DistributedCacheOptions
    let endpoint: RedisEndpoint
    let instance: String
    private let loop: EventLoop
    private let l1: MemoryCache
    private let events: EventBus
    private let coherenceTimeout: Duration
    private let channel: [UInt8]
    private let epochKey: [UInt8]

    // Figures.
    let hits = AtomicCounter(), misses = AtomicCounter(), errors = AtomicCounter(), bypassed = AtomicCounter()
    let writes = AtomicCounter(), invalidationsSent = AtomicCounter(), invalidationsReceived = AtomicCounter()
    let l1Clears = AtomicCounter()
    let latency = LatencyHistogram(), coherenceLag = LatencyHistogram()

    private let lock = Lock()
    private var pool: [RedisConnection] = []       // guarded by lock
    private var nextConnection = 0                 // guarded by lock
    private var subscribed = false                 // guarded by lock
    private var lastEpoch: Int64?                  // guarded by lock
    private var unsubscribedSince: UInt64? = 0     // guarded by lock (monotonic ns; 0: never subscribed)
    private var lastError = ""                     // guarded by lock
    private var stopped = false                    // guarded by lock
    private var reported: Bool?                    // guarded by lock (last up/down event)
    private var maintainer: Task<Void, Never>?

    init?(options: DistributedCacheOptions, loop: EventLoop, l1: MemoryCache, events: EventBus, coherenceTimeout: Duration) {
        guard let endpoint = RedisEndpoint(options) else { return nil }
        self.options = options
        self.endpoint = endpoint
        self.loop = loop
        self.l1 = l1
        self.events = events
        self.coherenceTimeout = coherenceTimeout
        var random = SystemRandomNumberGenerator()
        instance = String(random.next(), radix: 36)
        channel = Array((options.keyPrefix + "invalidations").utf8)
        epochKey = Array((options.keyPrefix + "epoch").utf8)
    }

    var isUp: Bool { lock.withLock { !pool.isEmpty && subscribed } }

    /// Connects in the background and keeps reconnecting (backoff 100 ms to 5 s) until `stop`.
    func start() {
        maintainer = Task.detached { [weak self] in
            var backoff: Duration = .milliseconds(100)
            while let self, !self.lock.withLock({ self.stopped }) {
                let healthy = await self.maintain()
                self.checkCoherenceDeadline()
                if healthy { backoff = .milliseconds(100) }
                try? await Task.sleep(for: healthy ? .milliseconds(200) : backoff)
                if !healthy { backoff = min(backoff * 2, .seconds(5)) }
            }
        }
    }

    func stop() {
        let (all, task): ([RedisConnection], Task<Void, Never>?) = lock.withLock {
            stopped = true
            defer { pool.removeAll() }
            return (pool + (subscriber.map { [$0] } ?? []), maintainer)
        }
        task?.cancel()
        for c in all { c.close() }
    }

    private var subscriber: RedisConnection?       // guarded by lock

    // MARK: read and fill

    /// The shared copy of `key`, or nil (a miss, or L2 unavailable: never an error).
    func get(_ key: [UInt8]) async -> Hit? {
        guard let connection = pick() else {
            bypassed.add()
            return nil
        }
        let k = redisKey(key)
        let started = monotonicNanos()
        do throws(RedisError) {
            let replies = try await connection.pipeline([[cmdGET, k], [cmdPTTL, k]], timeout: options.commandTimeout)
            latency.record(nanoseconds: monotonicNanos() &- started)
            guard case .bulk(let stored?) = replies[0], let decoded = Self.decode(stored) else {
                misses.add()
                return nil
            }
            hits.add()
            var ttl: Duration?
            if case .integer(let ms) = replies[1], ms > 0 { ttl = .milliseconds(ms) }
            return Hit(value: decoded.value, ttl: ttl, tags: decoded.tags)
        } catch {
            failed(connection, error)
            return nil
        }
    }

    /// Writes a filled entry to L2 (not waited for).
    func store(_ key: [UInt8], value: [UInt8], ttl: Duration?, tags: [String]) {
        guard let connection = pick() else {
            bypassed.add()
            return
        }
        let k = redisKey(key)
        var commands: [[[UInt8]]] = []
        if let ttl, let ms = Self.milliseconds(ttl) {
            commands.append([cmdSET, k, Self.encode(value, tags: tags), px, Array(String(ms).utf8)])
        } else {
            commands.append([cmdSET, k, Self.encode(value, tags: tags)])
        }
        // Tag sets outlive their members (NX sets a first expiry, GT only lengthens it).
        let setTTL = Array(String(max(Self.milliseconds(ttl ?? .seconds(86_400)) ?? 86_400_000, 60_000)).utf8)
        for tag in tags {
            let t = tagKey(tag)
            commands.append([sadd, t, k])
            commands.append([pexpire, t, setTTL, nx])
            commands.append([pexpire, t, setTTL, gt])
        }
        send(connection, commands, counting: writes)
    }

    /// Invalidates `tags` in L2 and in every other instance's L1 (not waited for).
    func invalidate(tags: [String]) {
        guard !tags.isEmpty else { return }
        guard let connection = pick() else {
            bypassed.add()
            return
        }
        let payload: JSONValue = ["i": .string(instance), "ts": .int(Int64(Self.realtimeNanos())), "t": .array(tags.map { .string($0) })]
        var command: [[UInt8]] = [eval, invalidateScript, Array(String(tags.count + 1).utf8)]
        command += tags.map(tagKey)
        command.append(epochKey)
        command.append(channel)
        command.append(Array(payload.jsonString.utf8))
        send(connection, [command], counting: invalidationsSent)
    }

    /// Tells every other instance to drop these from its L1: keys, glob patterns over keys,
    /// coherence groups (not waited for). Entries the engine itself fills go by tags
    /// (`invalidate(tags:)`), which also reach their L2 copies.
    func publish(keys: [[UInt8]] = [], patterns: [String] = [], groups: [String] = []) {
        guard !(keys.isEmpty && patterns.isEmpty && groups.isEmpty) else { return }
        guard let connection = pick() else {
            bypassed.add()
            return
        }
        var o: JSONObject = ["i": .string(instance), "ts": .int(Int64(Self.realtimeNanos()))]
        if !keys.isEmpty { o["kx"] = .array(keys.map { .string(Self.hex($0)) }) }
        if !patterns.isEmpty { o["p"] = .array(patterns.map { .string($0) }) }
        if !groups.isEmpty { o["g"] = .array(groups.map { .string($0) }) }
        // No tag sets: the script only counts the epoch and publishes.
        let command: [[UInt8]] = [eval, invalidateScript, Array("1".utf8), epochKey, channel, Array(JSONValue.object(o).jsonString.utf8)]
        var commands = [command]
        for key in keys { commands.append([Array("DEL".utf8), redisKey(key)]) }
        send(connection, commands, counting: invalidationsSent)
        for pattern in patterns { deleteMatching(pattern, on: connection) }
    }

    /// Deletes the L2 entries whose keys match a glob (ours: `*`, `?`, `\`; Redis's also has
    /// `[...]`, so brackets are escaped), with SCAN in batches: rare, and never blocking Redis.
    private func deleteMatching(_ pattern: String, on connection: RedisConnection) {
        var match = Array(options.keyPrefix.utf8) + Array("v:".utf8)
        var escaped = false
        for b in pattern.utf8 {
            if !escaped, b == UInt8(ascii: "[") || b == UInt8(ascii: "]") { match.append(UInt8(ascii: "\\")) }
            escaped = !escaped && b == UInt8(ascii: "\\")
            match.append(b)
        }
        let timeout = options.commandTimeout
        Task(executorPreference: loop) { [self] in
            var cursor = Array("0".utf8)
            for _ in 0..<100_000 {   // bounded: each round covers up to 1,000 slots
                let reply: RESPValue
                do throws(RedisError) {
                    reply = try await connection.command([Array("SCAN".utf8), cursor, Array("MATCH".utf8), match, Array("COUNT".utf8), Array("1000".utf8)],
                                                         timeout: timeout * 10)
                } catch {
                    failed(connection, error)
                    return
                }
                guard case .array(let parts) = reply, parts.count == 2, let next = parts[0].bytes, case .array(let found) = parts[1] else { return }
                let keys = found.compactMap(\.bytes)
                if !keys.isEmpty { _ = try? await connection.command([Array("DEL".utf8)] + keys, timeout: timeout) }
                if next == Array("0".utf8) { return }
                cursor = next
            }
        }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out += [digits[Int(b >> 4)], digits[Int(b & 15)]] }
        return String(decoding: out, as: UTF8.self)
    }

    static func unhex(_ text: String) -> [UInt8]? {
        let u = Array(text.utf8)
        guard u.count % 2 == 0 else { return nil }
        func v(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: c - 48
            case 97...102: c - 87
            default: nil
            }
        }
        var out: [UInt8] = []
        var i = 0
        while i < u.count {
            guard let h = v(u[i]), let l = v(u[i + 1]) else { return nil }
            out.append(h << 4 | l)
            i += 2
        }
        return out
    }

    // MARK: connections

    private func pick() -> RedisConnection? {
        lock.withLock {
            guard !pool.isEmpty, subscribed else { return nil }
            nextConnection = (nextConnection + 1) % pool.count
            return pool[nextConnection]
        }
    }

    /// Sends without waiting; `counter` counts it once Redis has acknowledged it (a figure that
    /// says "written" is true when read).
    private func send(_ connection: RedisConnection, _ commands: [[[UInt8]]], counting counter: AtomicCounter) {
        let timeout = options.commandTimeout
        Task(executorPreference: loop) { [self] in
            do throws(RedisError) {
                let replies = try await connection.pipeline(commands, timeout: timeout)
                if let e = replies.first(where: \.isError), case .error(let text) = e {
                    errors.add()
                    lock.withLock { lastError = text }
                } else {
                    counter.add()
                }
            } catch {
                failed(connection, error)
            }
        }
    }

    private func failed(_ connection: RedisConnection, _ error: RedisError) {
        errors.add()
        connection.close()
        lock.withLock {
            pool.removeAll { $0 === connection }
            lastError = error.message
        }
        reportState()
    }

    /// One round of upkeep: fills the pool and (re)subscribes. Returns whether all is up.
    private func maintain() async -> Bool {
        let missing = lock.withLock { options.poolSize - pool.count }
        for _ in 0..<max(0, missing) {
            let c = RedisConnection(endpoint: endpoint, loop: loop)
            do {
                // A connection that ends (Redis restarted, killed) leaves the pool at once.
                try await c.connect(timeout: options.connectTimeout, onClose: { [weak self, weak c] reason in
                    guard let self, let c else { return }
                    self.lock.withLock {
                        self.pool.removeAll { $0 === c }
                        self.lastError = reason
                    }
                    self.reportState()
                })
                lock.withLock { pool.append(c) }
            } catch {
                lock.withLock { lastError = error.message }
                break
            }
        }
        if !lock.withLock({ subscribed }) { await subscribe() }
        reportState()
        return lock.withLock { pool.count == options.poolSize && subscribed }
    }

    private func subscribe() async {
        guard let any = lock.withLock({ pool.first }) else { return }
        let c = RedisConnection(endpoint: endpoint, loop: loop)
        do throws(RedisError) {
            try await c.connect(timeout: options.connectTimeout, onMessage: { [weak self] _, payload in self?.received(payload) },
                                onClose: { [weak self] reason in self?.unsubscribed(reason) })
            let reply = try await c.command([subscribeWord, channel], timeout: options.connectTimeout)
            guard case .array = reply else { throw RedisError(.server, "SUBSCRIBE answered \(reply)") }
            // What was missed while away: compare the epoch with the last one seen.
            let epochReply = try await any.command([cmdGET, epochKey], timeout: options.commandTimeout)
            let epoch = epochReply.string.flatMap { Int64($0) } ?? 0
            let cleared: Bool = lock.withLock {
                let stale = lastEpoch.map { $0 != epoch } ?? (l1.stats().items > 0)
                lastEpoch = epoch
                subscribed = true
                subscriber = c
                unsubscribedSince = nil
                return stale
            }
            if cleared { clearL1() }
        } catch {
            c.close()
            lock.withLock { lastError = error.message }
        }
    }

    private func unsubscribed(_ reason: String) {
        lock.withLock {
            subscribed = false
            subscriber = nil
            lastError = "subscription lost: \(reason)"
            if unsubscribedSince == nil { unsubscribedSince = monotonicNanos() }
        }
        reportState()
    }

    /// Away from the invalidation stream for longer than `coherenceTimeout`: what L1 holds
    /// may have been invalidated elsewhere, so it goes.
    private func checkCoherenceDeadline() {
        let due: Bool = lock.withLock {
            guard let since = unsubscribedSince, since != 0 else { return false }
            guard monotonicNanos() &- since >= UInt64(coherenceTimeout.components.seconds) * 1_000_000_000 + UInt64(coherenceTimeout.components.attoseconds / 1_000_000_000) else {
                return false
            }
            unsubscribedSince = monotonicNanos()   // and again a timeout later, while still away
            return true
        }
        if due { clearL1() }
    }

    private func clearL1() {
        l1.clear()
        l1Clears.add()   // after: whoever reads the figure may rely on the clear being done
    }

    private func received(_ payload: [UInt8]) {
        guard let space = payload.firstIndex(of: 0x20), let epoch = Int64(String(decoding: payload[..<space], as: UTF8.self)),
              let message = try? JSONParser.parse(Array(payload[(space + 1)...])) else { return }
        let gap: Bool = lock.withLock {
            defer { lastEpoch = max(lastEpoch ?? epoch, epoch) }
            return lastEpoch.map { epoch > $0 + 1 } ?? false
        }
        if gap { clearL1() }
        guard message["i"]?.stringValue != instance else { return }
        defer { invalidationsReceived.add() }   // counted once applied
        if let ts = message["ts"]?.integerValue {
            let now = Self.realtimeNanos()
            if now > UInt64(max(0, ts)) { coherenceLag.record(nanoseconds: now - UInt64(ts)) }
        }
        for tag in message["t"]?.arrayValue ?? [] { if let t = tag.stringValue { _ = l1.invalidateTag(t) } }
        for key in message["kx"]?.arrayValue ?? [] { if let k = key.stringValue.flatMap(Self.unhex) { _ = l1.delete(k) } }
        for pattern in message["p"]?.arrayValue ?? [] { if let p = pattern.stringValue { _ = l1.invalidate(pattern: p) } }
        for group in message["g"]?.arrayValue ?? [] { if let g = group.stringValue { _ = l1.invalidateGroup(g) } }
    }

    private func reportState() {
        let (up, changed, reason): (Bool, Bool, String) = lock.withLock {
            let up = !pool.isEmpty && subscribed
            defer { reported = up }
            return (up, reported != up && !(reported == nil && !up && lastError.isEmpty), lastError)
        }
        guard changed else { return }
        if up {
            events.emit(.serverUp, ["server": .string(endpoint.description), "role": "sharedCache"])
        } else {
            events.emit(.serverDown, ["server": .string(endpoint.description), "role": "sharedCache", "reason": .string(reason)])
        }
    }

    /// For metrics.
    var summary: JSONValue {
        let (state, error, poolCount) = lock.withLock { (!pool.isEmpty && subscribed ? "up" : "down", lastError, pool.count) }
        let l = latency.summary, lag = coherenceLag.summary
        func us(_ n: UInt64) -> JSONValue { .double((Double(n) / 10).rounded() / 100) }
        func ms(_ n: UInt64) -> JSONValue { .double((Double(n) / 1e3).rounded() / 1e3) }
        return [
            "url": .string(endpoint.description), "state": .string(state), "connections": .int(Int64(poolCount)),
            "hits": .int(Int64(hits.load())), "misses": .int(Int64(misses.load())), "errors": .int(Int64(errors.load())),
            "bypassed": .int(Int64(bypassed.load())), "writes": .int(Int64(writes.load())),
            "latencyUs": ["p50": us(l.p50), "p99": us(l.p99)],
            "invalidationsSent": .int(Int64(invalidationsSent.load())), "invalidationsReceived": .int(Int64(invalidationsReceived.load())),
            "coherenceLagMs": ["p50": ms(lag.p50), "p99": ms(lag.p99)],
            "l1Clears": .int(Int64(l1Clears.load())),
            "lastError": error.isEmpty ? .null : .string(error),
        ]
    }

    // MARK: encoding

    private func redisKey(_ key: [UInt8]) -> [UInt8] { Array(options.keyPrefix.utf8) + Array("v:".utf8) + key }
    private func tagKey(_ tag: String) -> [UInt8] { Array(options.keyPrefix.utf8) + Array("t:".utf8) + Array(tag.utf8) }

    /// Stored values: a version byte, the tags (count, then length-prefixed), the L1 value.
    static func encode(_ value: [UInt8], tags: [String]) -> [UInt8] {
        var out: [UInt8] = [1]
        let count = UInt16(min(tags.count, Int(UInt16.max)))
        out += [UInt8(count & 0xFF), UInt8(count >> 8)]
        for tag in tags.prefix(Int(count)) {
            let bytes = Array(tag.utf8.prefix(Int(UInt16.max)))
            out += [UInt8(bytes.count & 0xFF), UInt8(bytes.count >> 8)]
            out += bytes
        }
        return out + value
    }

    static func decode(_ stored: [UInt8]) -> (value: [UInt8], tags: [String])? {
        guard stored.count >= 3, stored[0] == 1 else { return nil }
        let count = Int(stored[1]) | Int(stored[2]) << 8
        var offset = 3
        var tags: [String] = []
        for _ in 0..<count {
            guard offset + 2 <= stored.count else { return nil }
            let n = Int(stored[offset]) | Int(stored[offset + 1]) << 8
            offset += 2
            guard offset + n <= stored.count else { return nil }
            tags.append(String(decoding: stored[offset..<(offset + n)], as: UTF8.self))
            offset += n
        }
        return (Array(stored[offset...]), tags)
    }

    static func milliseconds(_ d: Duration) -> Int64? {
        let (s, atto) = d.components
        let ms = s * 1000 + atto / 1_000_000_000_000_000
        return ms > 0 ? ms : nil
    }

    static func realtimeNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

private let cmdGET = Array("GET".utf8), cmdPTTL = Array("PTTL".utf8), cmdSET = Array("SET".utf8), px = Array("PX".utf8)
private let sadd = Array("SADD".utf8), pexpire = Array("PEXPIRE".utf8), nx = Array("NX".utf8), gt = Array("GT".utf8)
private let eval = Array("EVAL".utf8), subscribeWord = Array("SUBSCRIBE".utf8)
/// KEYS: the tags' sets, then the epoch key; ARGV: the channel, the message. Deletes every
/// key of every tag, increments the epoch and publishes "<epoch> <message>".
private let invalidateScript = Array("""
    local n = 0
    for i = 1, #KEYS - 1 do
      local members = redis.call('SMEMBERS', KEYS[i])
      for j = 1, #members do n = n + redis.call('DEL', members[j]) end
      redis.call('DEL', KEYS[i])
    end
    local e = redis.call('INCR', KEYS[#KEYS])
    redis.call('PUBLISH', ARGV[1], e .. ' ' .. ARGV[2])
    return n
    """.utf8)

extension RedisEndpoint {
    /// The shared cache's Redis: its URL with the credentials and TLS material configured
    /// beside it (also where shared state goes when `coordination.redisUrl` is not set).
    init?(_ options: DistributedCacheOptions) {
        guard var endpoint = RedisEndpoint.parse(options.url) else { return nil }
        if let u = options.username { endpoint.username = u }
        if let p = options.password { endpoint.password = p }
        // rediss:// only
        endpoint.tls?.caFile = options.caFile
        endpoint.tls?.clientCertificate = options.clientCert
        endpoint.tls?.clientKey = options.clientKey
        self = endpoint
    }
}
