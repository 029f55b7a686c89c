import Glibc
import MCPOptCache
import MCPOptEngine
import MCPOptJSON

// mcpopt_cache_*: the engine's in-process cache through the C interface (include/mcpopt.h).

/// A byte-string argument (keys, values): may be empty only where `allowEmpty`.
private func bytesArgument(_ pointer: UnsafeRawPointer?, _ length: Int, name: String) -> UnsafeRawBufferPointer? {
    guard length >= 0 else {
        _ = LastError.fail(.invalidArgument, "\(name)_length \(length) is not a size")
        return nil
    }
    guard length == 0 || pointer != nil else {
        _ = LastError.fail(.invalidArgument, "\(name) is NULL but \(name)_length is \(length)")
        return nil
    }
    return UnsafeRawBufferPointer(start: pointer, count: length)
}

private func keyArgument(_ pointer: UnsafeRawPointer?, _ length: Int) -> UnsafeRawBufferPointer? {
    guard let key = bytesArgument(pointer, length, name: "key") else { return nil }
    guard !key.isEmpty else {
        _ = LastError.fail(.invalidArgument, "key is empty")
        return nil
    }
    guard key.count <= MemoryCacheConfiguration.maxKeyLength else {
        _ = LastError.fail(.tooLarge, "key is \(key.count) bytes, longer than the \(MemoryCacheConfiguration.maxKeyLength) accepted")
        return nil
    }
    return key
}

/// A NUL-terminated UTF-8 string field of an options struct.
private func textField(_ pointer: UnsafePointer<CChar>, name: String) -> String? {
    let bytes = UnsafeRawBufferPointer(start: pointer, count: strlen(pointer))
    guard let text = String(validating: bytes, as: UTF8.self) else {
        _ = LastError.fail(.invalidUTF8, "\(name) is not valid UTF-8")
        return nil
    }
    return text
}

/// Layout of mcpopt_cache_options (all fields 8 bytes wide on the 64-bit targets we build).
private enum OptionsLayout {
    static let ttlOffset = 8, groupOffset = 16, tagsOffset = 24, tagCountOffset = 32
    static let size = 40
    static let maxTags = 64
}

private func readOptions(_ raw: UnsafeRawPointer?) -> CacheItemOptions? {
    guard let raw else { return CacheItemOptions() }
    let size = raw.load(as: Int.self)
    guard size >= OptionsLayout.size else {
        _ = LastError.fail(.invalidArgument, "options->struct_size is \(size); set it to sizeof(mcpopt_cache_options) (\(OptionsLayout.size))")
        return nil
    }
    var options = CacheItemOptions()
    let ttl = raw.load(fromByteOffset: OptionsLayout.ttlOffset, as: Int64.self)
    guard ttl >= 0 else {
        _ = LastError.fail(.invalidArgument, "options->ttl_ms is \(ttl); use 0 for no expiry or a positive number of milliseconds")
        return nil
    }
    if ttl > 0 { options.ttl = .milliseconds(ttl) }
    if let group = raw.load(fromByteOffset: OptionsLayout.groupOffset, as: UnsafePointer<CChar>?.self) {
        guard let text = textField(group, name: "options->coherence_group") else { return nil }
        guard !text.isEmpty else {
            _ = LastError.fail(.invalidArgument, "options->coherence_group is empty; use NULL for no group")
            return nil
        }
        options.coherenceGroup = text
    }
    let tagCount = raw.load(fromByteOffset: OptionsLayout.tagCountOffset, as: Int.self)
    guard tagCount >= 0, tagCount <= OptionsLayout.maxTags else {
        _ = LastError.fail(.invalidArgument, "options->tag_count is \(tagCount); at most \(OptionsLayout.maxTags) tags")
        return nil
    }
    if tagCount > 0 {
        guard let tags = raw.load(fromByteOffset: OptionsLayout.tagsOffset, as: UnsafePointer<UnsafePointer<CChar>?>?.self) else {
            _ = LastError.fail(.invalidArgument, "options->tags is NULL but options->tag_count is \(tagCount)")
            return nil
        }
        for index in 0..<tagCount {
            guard let tag = tags[index] else {
                _ = LastError.fail(.invalidArgument, "options->tags[\(index)] is NULL")
                return nil
            }
            guard let text = textField(tag, name: "options->tags[\(index)]") else { return nil }
            options.tags.append(text)
        }
    }
    return options
}

private func fail(_ error: CacheError) -> Int32 {
    switch error {
    case .tooLarge, .keyTooLong: LastError.fail(.tooLarge, error.description)
    case .tooManyGroups, .tooManyTagSets: LastError.fail(.tooLarge, error.description)
    case .emptyKey, .invalidTTL, .invalidConfiguration: LastError.fail(.invalidArgument, error.description)
    }
}

@_cdecl("mcpopt_cache_set")
public func mcpopt_cache_set(_ handle: OpaquePointer?, _ key: UnsafeRawPointer?, _ keyLength: Int,
                             _ value: UnsafeRawPointer?, _ valueLength: Int, _ options: UnsafeRawPointer?) -> Int32 {
    guard let key = keyArgument(key, keyLength), let value = bytesArgument(value, valueLength, name: "value"),
          let options = readOptions(options) else { return mcpopt_last_status() }
    let outcome = withLiveEngine(handle) { engine in Result { () throws(CacheError) in try engine.cache.set(key, value, options) } }
    switch outcome {
    case nil: return mcpopt_last_status()
    case .success: return LastError.succeed()
    case .failure(let error): return fail(error)
    }
}

@_cdecl("mcpopt_cache_get")
public func mcpopt_cache_get(_ handle: OpaquePointer?, _ key: UnsafeRawPointer?, _ keyLength: Int,
                             _ buffer: UnsafeMutableRawPointer?, _ capacity: Int, _ outLength: UnsafeMutablePointer<Int>?) -> Int32 {
    guard let outLength else { return LastError.fail(.invalidArgument, "out_length is NULL") }
    outLength.pointee = 0
    guard let key = keyArgument(key, keyLength) else { return mcpopt_last_status() }
    guard capacity >= 0, buffer != nil || capacity == 0 else {
        return LastError.fail(.invalidArgument, "buffer is NULL or capacity \(capacity) is not a size")
    }
    // The hot path: the engine is borrowed, not retained (see HandleRegistry.withObject).
    let read = withLiveEngine(handle) { engine in
        engine.cache.get(key, into: UnsafeMutableRawBufferPointer(start: buffer, count: capacity))
    }
    switch read {
    case nil:
        return mcpopt_last_status()
    case .hit(let length):
        outLength.pointee = length
        return LastError.succeed()
    case .miss:
        return LastError.fail(.notFound, "not cached")
    case .bufferTooSmall(let length):
        outLength.pointee = length
        return LastError.fail(.bufferTooSmall, "the value is \(length) bytes; the buffer holds \(capacity)")
    }
}

@_cdecl("mcpopt_cache_get_copy")
public func mcpopt_cache_get_copy(_ handle: OpaquePointer?, _ key: UnsafeRawPointer?, _ keyLength: Int,
                                  _ outValue: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ outLength: UnsafeMutablePointer<Int>?) -> Int32 {
    guard let outValue, let outLength else { return LastError.fail(.invalidArgument, "out_value or out_length is NULL") }
    outValue.pointee = nil
    outLength.pointee = 0
    guard let engine = liveEngine(handle), let key = keyArgument(key, keyLength) else { return mcpopt_last_status() }
    guard let value = engine.cache.get(key) else { return LastError.fail(.notFound, "not cached") }
    guard let copy = malloc(max(value.count, 1)) else { return LastError.fail(.internal, "out of memory") }
    value.withUnsafeBytes { if let base = $0.baseAddress { copy.copyMemory(from: base, byteCount: $0.count) } }
    outValue.pointee = copy
    outLength.pointee = value.count
    return LastError.succeed()
}

@_cdecl("mcpopt_cache_delete")
public func mcpopt_cache_delete(_ handle: OpaquePointer?, _ key: UnsafeRawPointer?, _ keyLength: Int) -> Int32 {
    guard let engine = liveEngine(handle), let key = keyArgument(key, keyLength) else { return mcpopt_last_status() }
    return engine.invalidate(key: Array(key)) ? LastError.succeed() : LastError.fail(.notFound, "not cached")
}

/// The shared shape of the three invalidations: a UTF-8 selector and a count out.
private func invalidation(_ handle: OpaquePointer?, _ text: UnsafePointer<CChar>?, _ length: Int, name: String,
                          _ outRemoved: UnsafeMutablePointer<Int>?, _ body: (Engine, String) -> Int) -> Int32 {
    outRemoved?.pointee = 0
    guard let engine = liveEngine(handle), let bytes = TextInput.bytes(text, length, name: name) else { return mcpopt_last_status() }
    guard let selector = String(validating: bytes, as: UTF8.self) else { return LastError.fail(.invalidUTF8, "\(name) is not valid UTF-8") }
    guard !selector.isEmpty else { return LastError.fail(.invalidArgument, "\(name) is empty") }
    outRemoved?.pointee = body(engine, selector)
    return LastError.succeed()
}

@_cdecl("mcpopt_cache_invalidate")
public func mcpopt_cache_invalidate(_ handle: OpaquePointer?, _ pattern: UnsafePointer<CChar>?, _ length: Int, _ outRemoved: UnsafeMutablePointer<Int>?) -> Int32 {
    invalidation(handle, pattern, length, name: "pattern", outRemoved) { $0.invalidate(pattern: $1) }
}

@_cdecl("mcpopt_cache_invalidate_group")
public func mcpopt_cache_invalidate_group(_ handle: OpaquePointer?, _ group: UnsafePointer<CChar>?, _ length: Int, _ outRemoved: UnsafeMutablePointer<Int>?) -> Int32 {
    invalidation(handle, group, length, name: "group", outRemoved) { $0.invalidateGroup($1) }
}

@_cdecl("mcpopt_cache_invalidate_tag")
public func mcpopt_cache_invalidate_tag(_ handle: OpaquePointer?, _ tag: UnsafePointer<CChar>?, _ length: Int, _ outRemoved: UnsafeMutablePointer<Int>?) -> Int32 {
    invalidation(handle, tag, length, name: "tag", outRemoved) { $0.invalidateTag($1) }
}

@_cdecl("mcpopt_cache_clear")
public func mcpopt_cache_clear(_ handle: OpaquePointer?) -> Int32 {
    guard let engine = liveEngine(handle) else { return mcpopt_last_status() }
    engine.cache.clear()
    return LastError.succeed()
}

/// The cache's statistics as JSON (the shape documented in include/mcpopt.h).
func cacheStatsJSON(_ stats: CacheStats) -> JSONValue {
    func int(_ value: some BinaryInteger) -> JSONValue { .int(Int64(value)) }
    return [
        "hits": int(stats.hits), "misses": int(stats.misses), "hitRate": .double(stats.hitRate),
        "sets": int(stats.sets), "items": int(stats.items), "evictions": int(stats.evictions),
        "expirations": int(stats.expirations), "invalidations": int(stats.invalidations),
        "rejectedFills": int(stats.rejectedFills), "rebalances": int(stats.rebalances),
        "memoryBudget": int(stats.memoryBudget), "pageBytes": int(stats.pageBytes), "bytesUsed": int(stats.bytesUsed),
        "overheadBytes": int(stats.overheadBytes), "pageSize": int(stats.pageSize), "shards": int(stats.shards),
        "pageSource": .string(stats.pageSource),
        "classes": .array(stats.classes.filter { $0.pages > 0 || $0.items > 0 }.map {
            ["chunkSize": int($0.chunkSize), "pages": int($0.pages), "items": int($0.items),
             "bytesUsed": int($0.bytesUsed), "payloadBytes": int($0.payloadBytes)]
        }),
    ]
}

@_cdecl("mcpopt_cache_stats")
public func mcpopt_cache_stats(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ length: UnsafeMutablePointer<Int>?) -> Int32 {
    guard let out else { return LastError.fail(.invalidArgument, "out_json is NULL") }
    out.pointee = nil
    guard let engine = liveEngine(handle) else { return mcpopt_last_status() }
    return TextOutput.write(cacheStatsJSON(engine.cache.stats()).jsonString, to: out, length: length)
}

@_cdecl("mcpopt_cache_hot_keys")
public func mcpopt_cache_hot_keys(_ handle: OpaquePointer?, _ limit: Int, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ length: UnsafeMutablePointer<Int>?) -> Int32 {
    guard let out else { return LastError.fail(.invalidArgument, "out_json is NULL") }
    out.pointee = nil
    guard limit >= 0 else { return LastError.fail(.invalidArgument, "limit \(limit) is not a size") }
    guard let engine = liveEngine(handle) else { return mcpopt_last_status() }
    let keys: [JSONValue] = engine.cache.hotKeys(limit: limit).map { hot in
        if let text = String(validating: hot.key, as: UTF8.self) {
            return ["key": .string(text), "accessCount": .int(Int64(hot.accessCount))]
        }
        return ["keyHex": .string(hot.key.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()),
                "accessCount": .int(Int64(hot.accessCount))]
    }
    return TextOutput.write(JSONValue.array(keys).jsonString, to: out, length: length)
}
