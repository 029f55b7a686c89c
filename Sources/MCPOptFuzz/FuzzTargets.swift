import MCPOptCache
import MCPOptConfig
import MCPOptJSON
import MCPOptProtocol

/// Fuzz targets: each takes arbitrary bytes, must not crash, and checks the invariants that
/// hold for every input. A broken invariant traps, which libFuzzer reports with the input.
enum FuzzTargets {
    static let all: [String: @Sendable (UnsafeRawBufferPointer) -> Void] = [
        "json": json,
        "config": config,
        "rpc": rpc,
        "http": http,
        "sse": sse,
        "cache": cache,
        "repeat": repeatMemo,
    ]

    /// The bytes as operations on a small cache beside a plain dictionary: whatever the input,
    /// the cache never crashes, never exceeds its budget, and a read returns the latest value
    /// or nothing. Glob patterns come from the input too (a pattern names the keys it removes).
    static func cache(_ bytes: UnsafeRawBufferPointer) {
        guard let cache = try? MemoryCache(MemoryCacheConfiguration(memoryBudget: 64 << 10)) else { fatalError("cache setup") }
        var model: [[UInt8]: [UInt8]] = [:]
        var offset = 0
        func take(_ count: Int) -> [UInt8] {
            let end = min(bytes.count, offset + count)
            defer { offset = end }
            return Array(bytes[offset..<end])
        }
        while offset < bytes.count {
            let op = take(1)[0]
            let key = take(Int(op >> 4) % 6 + 1)
            switch op & 7 {
            case 0, 1:
                let value = take(Int(op) * 37 % 3000)
                do {
                    // Refused before anything changes (too large, empty key): the old value stays.
                    model[key] = try cache.set(key, value) == .stored ? value : nil
                } catch {}
            case 2:
                cache.delete(key)
                model[key] = nil
            case 3:
                let pattern = String(decoding: take(Int(op >> 3) % 5), as: UTF8.self)
                let glob = KeyPattern(pattern)
                cache.invalidate(pattern: pattern)
                model = model.filter { !glob.matches($0.key) }
            case 4:
                cache.sweepExpired(slotsPerShard: 64)
            default:
                if let got = cache.get(key), got != model[key] { fatalError("a read returned a value that is not the latest for \(key)") }
            }
        }
        let stats = cache.stats()
        guard stats.pageBytes <= 64 << 10 else { fatalError("budget exceeded: \(stats.pageBytes)") }
    }

    /// Parses a stream (the first byte picks response or request) whole and byte by byte, and
    /// whole with http-parser alone: all three must agree on every message (the fast path for
    /// plain heads reads exactly what http-parser reads).
    static func http(_ bytes: UnsafeRawBufferPointer) {
        guard let first = bytes.first else { return }
        let kind: HTTPParser.Kind = first & 1 == 0 ? .response : .request
        let stream = UnsafeRawBufferPointer(rebasing: bytes[1...])
        func parse(chunk: Int, fastPath: Bool) -> [String] {
            HTTPParser.transcript(stream, kind: kind, chunk: chunk, fastPath: fastPath, maxHeadBytes: 4096, maxHeaders: 32)
        }
        let whole = parse(chunk: Int.max / 2, fastPath: true)
        let slow = parse(chunk: Int.max / 2, fastPath: false)
        guard whole == slow else { fatalError("the fast path read differently from http-parser: \(whole) vs \(slow)") }
        let bytewise = parse(chunk: 1, fastPath: true)
        guard whole == bytewise else { fatalError("chunking changed the parse: \(whole) vs \(bytewise)") }
    }

    /// Events do not depend on where the stream is split.
    static func sse(_ bytes: UnsafeRawBufferPointer) {
        func events(split: Int) -> [SSEEvent]? {
            var parser = SSEParser(maxEventBytes: 1 << 16)
            var out: [SSEEvent] = []
            do {
                try parser.feed(UnsafeRawBufferPointer(rebasing: bytes[..<split])) { out.append($0) }
                try parser.feed(UnsafeRawBufferPointer(rebasing: bytes[split...])) { out.append($0) }
            } catch { return nil }
            return out
        }
        guard bytes.count > 3 else { return }
        let whole = events(split: bytes.count)
        let halves = events(split: 3 + (bytes.count - 3) / 2)
        guard whole == halves else { fatalError("splitting changed the events") }
    }

    nonisolated(unsafe) static let decoder = MessageDecoder()
    nonisolated(unsafe) static let checker = MessageDecoder()

    /// A message that decodes keeps its kind, method and arguments when its id is replaced, and
    /// its canonical arguments are a fixed point of canonicalization.
    static func rpc(_ bytes: UnsafeRawBufferPointer) {
        guard let view = try? decoder.decode(bytes) else { return }
        let renumbered = MessageEncoder.replacingID(in: view, with: Array("\"fz\"".utf8))
        if view.idRaw.isPresent {
            guard let again = try? checker.decodeOwned(renumbered) else { fatalError("renumbered message does not decode") }
            guard again.kind == view.kind, again.method == view.method.string, again.argumentsHash == view.argumentsHash,
                again.id == .string("fz")
            else { fatalError("renumbering changed the message") }
        }
        if view.canonicalArguments.isPresent {
            guard let (canonical, hash) = try? checker.canonicalize(view.canonicalArguments.buffer) else { fatalError("canonical arguments do not parse") }
            guard canonical == view.canonicalArguments.bytes!, hash == view.argumentsHash else { fatalError("canonical form is not stable") }
        }
    }

    /// What a request decodes to, apart from its id: the memo's promise is that a match
    /// decodes as the kept request did.
    final class Decoded {
        let kind: MessageKind
        let method: [UInt8]?
        let params: [UInt8]?
        let arguments: UInt64
        let id: Range<Int>
        init?(_ bytes: UnsafeRawBufferPointer) {
            guard let view = try? checker.decode(bytes), view.idRaw.isPresent, let offset = view.offset(of: view.idRaw) else { return nil }
            kind = view.kind
            method = view.method.bytes
            params = view.params.bytes
            arguments = view.argumentsHash
            id = offset..<(offset + view.idRaw.count)
        }
        func sameApartFromID(_ other: Decoded) -> Bool {
            kind == other.kind && method == other.method && params == other.params && arguments == other.arguments
        }
    }

    static let repeatSeeds = [
        #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":1}}}"#,
        #"{"method":"tools/call","params":{"name":"b","arguments":{"id":2}},"jsonrpc":"2.0","id":"ab"}"#,
        #"{"id":-5 , "jsonrpc":"2.0","method":"ping"}"#,
    ]

    /// The repeat memo (`RepeatMemo`): the input is looked up among kept seed requests, and a
    /// match must decode as its kept request did, with its id where the memo says; the input
    /// itself, kept when it is a request, must match with its id replaced by any plain token,
    /// and decode with that token as its id.
    static func repeatMemo(_ bytes: UnsafeRawBufferPointer) {
        let memo = RepeatMemo()
        var kept: [Decoded] = []
        var lastEntry: RepeatMemo.Entry?
        func keep(_ raw: UnsafeRawBufferPointer) -> Bool {
            guard let decoded = Decoded(raw) else { return false }
            let before = memo.count
            lastEntry = memo.remember(raw, bodyStart: 0, id: decoded.id, value: decoded, footprint: 0, epoch: 0) ?? lastEntry
            kept.append(decoded)
            return memo.count > before
        }
        for seed in repeatSeeds { _ = Array(seed.utf8).withUnsafeBytes(keep) }
        func check(_ raw: UnsafeRawBufferPointer) {
            if let last = lastEntry, let id = RepeatMemo.repeatAt(last, in: raw, epoch: 0) {
                // A repeat found at the start of the bytes: what follows its length is another
                // message's; the repeat itself decodes as the kept request.
                let length = last.requestLength
                let own = Array(raw[..<length])
                let at = raw.baseAddress!.distance(to: id.baseAddress!)
                own.withUnsafeBytes { message in
                    guard let decoded = Decoded(message), decoded.id == at..<(at + id.count),
                          decoded.sameApartFromID(last.value as! Decoded) else { fatalError("a repeat found before parsing decodes differently") }
                }
            }
            guard let (entry, id) = memo.find(raw, bodyStart: 0, epoch: 0) else { return }
            let value = entry.value
            guard let decoded = Decoded(raw) else { fatalError("a match that does not decode") }
            let at = raw.baseAddress!.distance(to: id.baseAddress!)
            guard decoded.id == at..<(at + id.count) else { fatalError("the memo's id is not where the decoder reads it") }
            guard decoded.sameApartFromID(value as! Decoded) else { fatalError("a match decodes differently from its kept request") }
        }
        check(bytes)
        guard bytes.count < 4096, keep(bytes), let own = kept.last else { return }
        for token in ["7", "\"k\"", "-12", "\"\"", "123456789012345"] {
            let repeated = Array(bytes[..<own.id.lowerBound]) + Array(token.utf8) + Array(bytes[own.id.upperBound...])
            repeated.withUnsafeBytes { raw in
                guard memo.find(raw, bodyStart: 0, epoch: 0) != nil else { fatalError("a repeat of a kept request with id \(token) does not match") }
                if token.utf8.count == own.id.count, let entry = lastEntry, RepeatMemo.repeatAt(entry, in: raw, epoch: 0) == nil {
                    fatalError("a repeat with an id of the kept length is not found at the start")
                }
                check(raw)
            }
        }
    }

    /// Whatever parses writes back to text that parses to the same value, and canonical text is stable.
    static func json(_ bytes: UnsafeRawBufferPointer) {
        guard let value = try? JSONParser.parse(bytes) else { return }
        let text = value.jsonString
        guard let again = try? JSONParser.parse(text) else { fatalError("written JSON does not parse: \(text)") }
        let canonical = value.canonicalJSONString
        guard again.canonicalJSONString == canonical else { fatalError("round trip changed the value: \(text)") }
    }

    /// A configuration either fails with issues that name paths, or its effective form
    /// describes the same configuration.
    static func config(_ bytes: UnsafeRawBufferPointer) {
        do {
            let config = try EngineConfig.parse(bytes)
            let effective = config.effectiveJSON(redactingSecrets: false).jsonString
            guard (try? EngineConfig.parse(effective)) == config else { fatalError("effective config does not reparse to itself: \(effective)") }
        } catch {
            guard !error.issues.isEmpty, error.issues.allSatisfy({ $0.path.description.hasPrefix("$") && !$0.message.isEmpty }) else {
                fatalError("error without usable issues: \(error)")
            }
        }
    }
}
