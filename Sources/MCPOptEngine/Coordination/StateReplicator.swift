import Glibc
import MCPOptConfig
import MCPOptCoordination
import MCPOptIO
import MCPOptJSON
import MCPOptRedis
import MCPOptSync

/// Shares the engine's versioned state with other instances through Redis.
///
/// Redis holds one hash (`<prefix>state`: key -> encoded version, tombstones included) and one
/// channel (`<prefix>state:changes`). A single Lua script writes a version only if it is later
/// (HLC order) than the stored one (or, for compare-and-set, only if the stored stamp is the
/// expected one) and publishes it; so Redis always holds the last writer's version.
///
/// - `eventual`: writes are local at once and sent without waiting; other instances apply
///   what they receive with the store's conflict resolution (last writer wins, or the host's
///   merge). Every `syncInterval` an anti-entropy round reads the hash, applies what it missed
///   and sends what Redis lacks (writes made while Redis was away).
/// - `strong`: writes and reads go through Redis (one round trip): the script orders writes
///   per key, so they are linearizable; compare-and-set serializes read-modify-write.
final class StateReplicator: @unchecked Sendable {
    let strong: Bool
    let endpoint: RedisEndpoint
    private let store: StateStore
    private let loop: EventLoop
    private let interval: Duration
    private let commandTimeout: Duration
    private let events: EventBus
    private let hashKey: [UInt8]
    private let channel: [UInt8]

    let pushed = AtomicCounter(), received = AtomicCounter(), rounds = AtomicCounter(), failures = AtomicCounter()

    private let lock = Lock()
    private var connection: RedisConnection?       // guarded by lock
    private var subscriber: RedisConnection?       // guarded by lock
    private var maintainer: Task<Void, Never>?     // guarded by lock
    private var lastError = ""                     // guarded by lock
    private var stopped = false                    // guarded by lock

    init(endpoint: RedisEndpoint, keyPrefix: String, strong: Bool, interval: Duration, store: StateStore, loop: EventLoop, events: EventBus) {
        self.endpoint = endpoint
        self.strong = strong
        self.store = store
        self.loop = loop
        self.interval = interval
        self.commandTimeout = .seconds(2)
        self.events = events
        hashKey = Array((keyPrefix + "state").utf8)
        channel = Array((keyPrefix + "state:changes").utf8)
    }

    /// Connects (the first round is awaited, so strong reads and writes work once the engine
    /// has started), then keeps the connections up and runs anti-entropy every `interval`.
    func start() async {
        if !strong {
            store.onLocalWrite { [weak self] key, version in self?.send(key, version) }
        }
        await maintain()
        let task = Task.detached { [weak self] in
            while !Task.isCancelled {
                guard let interval = self?.interval else { return }
                try? await Task.sleep(for: interval)
                guard let self, !self.isStopped else { return }
                await self.maintain()
            }
        }
        lock.withLock { maintainer = task }
    }

    func stop() {
        store.onLocalWrite(nil)
        let (task, c, s) = lock.withLock { () -> (Task<Void, Never>?, RedisConnection?, RedisConnection?) in
            stopped = true
            defer { connection = nil; subscriber = nil; maintainer = nil }
            return (maintainer, connection, subscriber)
        }
        task?.cancel()
        c?.close()
        s?.close()
    }

    private var isStopped: Bool { lock.withLock { stopped } }

    var isConnected: Bool { lock.withLock { connection != nil && subscriber != nil } }

    var status: JSONValue {
        let (up, error) = lock.withLock { (connection != nil && subscriber != nil, lastError) }
        return ["redis": .string(endpoint.description), "consistencyModel": .string(strong ? "strong" : "eventual"),
                "connected": .bool(up), "pushed": .int(Int64(pushed.load())), "received": .int(Int64(received.load())),
                "antiEntropyRounds": .int(Int64(rounds.load())), "failures": .int(Int64(failures.load())),
                "lastError": error.isEmpty ? .null : .string(error)]
    }

    // MARK: writes and reads

    enum WriteMode { case ifNewer, compareAndSet(expected: HLCTimestamp?) }

    /// Runs the write script: (written, what Redis holds when not written).
    func write(_ key: String, _ version: VersionedValue, mode: WriteMode) async throws(StateSyncError) -> (Bool, VersionedValue?) {
        let c = try connected()
        var expected: [UInt8] = []
        var modeWord = Array("newer".utf8)
        if case .compareAndSet(let e) = mode {
            modeWord = Array("cas".utf8)
            expected = Array((e?.description ?? "").utf8)
        }
        let reply: RESPValue
        do {
            reply = try await c.command([evalWord, writeScript, oneWord, hashKey, Array(key.utf8), Self.encode(version), channel, modeWord, expected],
                                        timeout: commandTimeout)
        } catch {
            failed(error.message)
            throw StateSyncError(kind: .unavailable, description: "shared state: Redis at \(endpoint.description): \(error.message)")
        }
        guard case .array(let parts) = reply, parts.count == 2, case .integer(let written) = parts[0] else {
            throw StateSyncError(kind: .unavailable, description: "shared state: Redis answered the write with \(reply)")
        }
        pushed.add()
        return (written == 1, parts[1].bytes.flatMap { Self.decode($0) })
    }

    /// What Redis holds for `key` (tombstones included), or nil.
    func read(_ key: String) async throws(StateSyncError) -> VersionedValue? {
        let c = try connected()
        do {
            let reply = try await c.command([hgetWord, hashKey, Array(key.utf8)], timeout: commandTimeout)
            return reply.bytes.flatMap { Self.decode($0) }
        } catch {
            failed(error.message)
            throw StateSyncError(kind: .unavailable, description: "shared state: Redis at \(endpoint.description): \(error.message)")
        }
    }

    private func connected() throws(StateSyncError) -> RedisConnection {
        guard let c = lock.withLock({ connection }) else {
            let error = lock.withLock { lastError }
            throw StateSyncError(kind: .unavailable, description: "shared state: Redis at \(endpoint.description) is not connected\(error.isEmpty ? "" : ": \(error)")")
        }
        return c
    }

    /// Eventual mode: a local write goes out without waiting; a failure is left to anti-entropy.
    private func send(_ key: String, _ version: VersionedValue) {
        Task { [weak self] in _ = try? await self?.write(key, version, mode: .ifNewer) }
    }

    private func failed(_ message: String) {
        failures.add()
        lock.withLock { lastError = message }
    }

    // MARK: upkeep

    /// Connects and subscribes when needed, then one anti-entropy round.
    private func maintain() async {
        if lock.withLock({ connection == nil }) {
            let c = RedisConnection(endpoint: endpoint, loop: loop)
            do throws(RedisError) {
                try await c.connect(timeout: commandTimeout, onClose: { [weak self, weak c] reason in
                    guard let self else { return }
                    self.lock.withLock { if self.connection === c { self.connection = nil; self.lastError = reason } }
                })
                lock.withLock { connection = c }
            } catch {
                failed(error.message)
                return
            }
        }
        if lock.withLock({ subscriber == nil }) {
            let s = RedisConnection(endpoint: endpoint, loop: loop)
            do throws(RedisError) {
                try await s.connect(timeout: commandTimeout, onMessage: { [weak self] _, payload in self?.receive(payload) },
                                    onClose: { [weak self, weak s] reason in
                                        guard let self else { return }
                                        self.lock.withLock { if self.subscriber === s { self.subscriber = nil; self.lastError = reason } }
                                    })
                _ = try await s.command([subscribeWord, channel], timeout: commandTimeout)
                lock.withLock { subscriber = s }
            } catch {
                s.close()
                failed(error.message)
                return
            }
        }
        if !strong { await antiEntropy() }
    }

    /// Applies what Redis has that this instance missed; sends what Redis lacks.
    private func antiEntropy() async {
        guard let c = lock.withLock({ connection }) else { return }
        let reply: RESPValue
        do {
            reply = try await c.command([hgetallWord, hashKey], timeout: commandTimeout)
        } catch {
            failed(error.message)
            return
        }
        guard case .array(let items) = reply else { return }
        var remote: [String: VersionedValue] = [:]
        var i = 0
        while i + 1 < items.count {
            if let k = items[i].bytes.map({ String(decoding: $0, as: UTF8.self) }), let bytes = items[i + 1].bytes, let v = Self.decode(bytes) {
                remote[k] = v
            }
            i += 2
        }
        for (key, version) in remote { store.apply(key, version) }
        for (key, local) in store.snapshot() where remote[key].map({ $0.stamp < local.stamp }) ?? true {
            _ = try? await write(key, local, mode: .ifNewer)
        }
        rounds.add()
    }

    /// A published version: `<key length>:<key><encoded version>`.
    private func receive(_ payload: [UInt8]) {
        guard let colon = payload.firstIndex(of: UInt8(ascii: ":")),
              let length = Int(String(decoding: payload[..<colon], as: UTF8.self)), length >= 0,
              payload.count >= colon + 1 + length else { return }
        let key = String(decoding: payload[(colon + 1)..<(colon + 1 + length)], as: UTF8.self)
        guard let version = Self.decode(Array(payload[(colon + 1 + length)...])) else { return }
        if version.stamp.node == store.clock.node { return }   // our own write, already here
        received.add()
        if strong { store.adopt(key, version) } else { store.apply(key, version) }
    }

    // MARK: encoding

    /// `<stamp>\n<0|1 deleted>\n<value bytes>`.
    static func encode(_ v: VersionedValue) -> [UInt8] {
        Array("\(v.stamp.description)\n\(v.deleted ? 1 : 0)\n".utf8) + v.value
    }

    static func decode(_ bytes: [UInt8]) -> VersionedValue? {
        guard let newline = bytes.firstIndex(of: 10), bytes.count >= newline + 3, bytes[newline + 2] == 10,
              let stamp = HLCTimestamp(String(decoding: bytes[..<newline], as: UTF8.self)) else { return nil }
        return VersionedValue(value: Array(bytes[(newline + 3)...]), stamp: stamp, deleted: bytes[newline + 1] == UInt8(ascii: "1"))
    }
}

public struct StateSyncError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        /// Strong consistency needs Redis, and it cannot be reached.
        case unavailable
        /// Compare-and-set: the key is not at the expected version.
        case conflict
    }
    public let kind: Kind
    public let description: String
    /// What the key holds (a conflict), if anything.
    public var current: VersionedValue?
}

/// Writes `ARGV[2]` under field `ARGV[1]` of hash `KEYS[1]` if it is later than what is there
/// (HLC order: milliseconds, logical counter, node) and, in "cas" mode, only if the stored
/// stamp is `ARGV[5]` ("" for none or a tombstone); publishes `<len>:<field><version>` on `ARGV[3]`.
/// Returns {1, ""} when written, {0, what is stored} otherwise.
private let writeScript = Array("""
    local function parse(v)
      local ms, lg, node = string.match(v, "^(%d+)%.(%d+)@([^\\n]*)\\n")
      return tonumber(ms), tonumber(lg), node
    end
    local function later(a, b)
      local am, al, an = parse(a)
      local bm, bl, bn = parse(b)
      if am ~= bm then return am > bm end
      if al ~= bl then return al > bl end
      return an > bn
    end
    local cur = redis.call('HGET', KEYS[1], ARGV[1])
    if ARGV[4] == 'cas' then
      -- A deleted key (a tombstone) counts as absent: its expected stamp is "".
      local stamp = ''
      if cur then
        local s, deleted = string.match(cur, "^([^\\n]*)\\n(%d)\\n")
        if deleted ~= '1' then stamp = s end
      end
      if stamp ~= ARGV[5] then return {0, cur or ''} end
    end
    if cur and not later(ARGV[2], cur) then return {0, cur} end
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
    redis.call('PUBLISH', ARGV[3], string.len(ARGV[1]) .. ':' .. ARGV[1] .. ARGV[2])
    return {1, ''}
    """.utf8)

private let evalWord = Array("EVAL".utf8), oneWord = Array("1".utf8), hgetWord = Array("HGET".utf8)
private let hgetallWord = Array("HGETALL".utf8), subscribeWord = Array("SUBSCRIBE".utf8)
