import Glibc
import MCPOptCoordination
import MCPOptEngine

// mcpopt_state_*: the engine's shared state through the C interface (include/mcpopt.h).

/// A text key argument: UTF-8, non-empty.
private func keyArgument(_ pointer: UnsafePointer<CChar>?, _ length: Int, name: String, allowEmpty: Bool = false) -> String? {
    guard let bytes = TextInput.bytes(pointer, length, name: name) else { return nil }
    guard allowEmpty || !bytes.isEmpty else {
        _ = LastError.fail(.invalidArgument, "\(name) is empty")
        return nil
    }
    guard let text = String(validating: bytes, as: UTF8.self) else {
        _ = LastError.fail(.invalidUTF8, "\(name) is not valid UTF-8")
        return nil
    }
    return text
}

/// A malloc'ed copy the caller frees with mcpopt_free.
private func copyOut(_ bytes: [UInt8]) -> UnsafeMutableRawPointer? {
    guard let buffer = malloc(max(bytes.count, 1)) else { return nil }
    bytes.withUnsafeBytes { if let base = $0.baseAddress { buffer.copyMemory(from: base, byteCount: $0.count) } }
    return buffer
}

private func writeVersion(_ version: VersionedValue, to out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Bool {
    guard let out else { return true }
    out.pointee = strdup(version.stamp.description)
    return out.pointee != nil
}

@_cdecl("mcpopt_state_put")
public func mcpopt_state_put(_ handle: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ keyLength: Int,
                             _ value: UnsafeRawPointer?, _ valueLength: Int, _ outVersion: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    outVersion?.pointee = nil
    guard let engine = liveEngine(handle), let key = keyArgument(key, keyLength, name: "key") else { return mcpopt_last_status() }
    guard valueLength >= 0, value != nil || valueLength == 0 else { return LastError.fail(.invalidArgument, "value is NULL or its length is not a size") }
    guard valueLength <= StateLimits.maxValueBytes else { return LastError.fail(.tooLarge, "value is \(valueLength) bytes, more than the \(StateLimits.maxValueBytes) accepted") }
    let bytes = Array(UnsafeRawBufferPointer(start: value, count: valueLength))
    let stored: VersionedValue
    if engine.stateIsStrong {
        let result = blocking({ () async -> StateOutcome in
            do throws(StateSyncError) { return StateOutcome(version: try await engine.putState(key, bytes)) } catch { return StateOutcome(error) }
        })
        guard let v = result.version, result.status == .ok else { return LastError.fail(result.status, result.message) }
        stored = v
    } else {
        stored = engine.state.put(key, bytes)
    }
    guard writeVersion(stored, to: outVersion) else { return LastError.fail(.internal, "out of memory") }
    return LastError.succeed()
}

@_cdecl("mcpopt_state_get")
public func mcpopt_state_get(_ handle: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ keyLength: Int,
                             _ outValue: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ outLength: UnsafeMutablePointer<Int>?,
                             _ outVersion: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    outVersion?.pointee = nil
    guard let outValue, let outLength else { return LastError.fail(.invalidArgument, "out_value or out_length is NULL") }
    outValue.pointee = nil
    outLength.pointee = 0
    guard let engine = liveEngine(handle), let key = keyArgument(key, keyLength, name: "key") else { return mcpopt_last_status() }
    var found = engine.state.get(key)
    if engine.stateIsStrong {
        let result = blocking({ () async -> StateOutcome in
            do throws(StateSyncError) { return StateOutcome(version: try await engine.getState(key)) } catch { return StateOutcome(error) }
        })
        guard result.status == .ok else { return LastError.fail(result.status, result.message) }
        found = result.version
    }
    guard let version = found else { return LastError.fail(.notFound, "no state under key \"\(key)\"") }
    guard let copy = copyOut(version.value), writeVersion(version, to: outVersion) else { return LastError.fail(.internal, "out of memory") }
    outValue.pointee = copy
    outLength.pointee = version.value.count
    return LastError.succeed()
}

@_cdecl("mcpopt_state_delete")
public func mcpopt_state_delete(_ handle: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ keyLength: Int) -> Int32 {
    guard let engine = liveEngine(handle), let key = keyArgument(key, keyLength, name: "key") else { return mcpopt_last_status() }
    if engine.stateIsStrong {
        let result = blocking({ () async -> StateOutcome in
            do throws(StateSyncError) { return StateOutcome(version: try await engine.deleteState(key)) } catch { return StateOutcome(error) }
        })
        guard result.status == .ok else { return LastError.fail(result.status, result.message) }
        guard result.version != nil else { return LastError.fail(.notFound, "no state under key \"\(key)\"") }
        return LastError.succeed()
    }
    guard engine.state.get(key) != nil else { return LastError.fail(.notFound, "no state under key \"\(key)\"") }
    engine.state.delete(key)
    return LastError.succeed()
}

@_cdecl("mcpopt_state_compare_and_set")
public func mcpopt_state_compare_and_set(_ handle: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ keyLength: Int,
                                         _ expectedVersion: UnsafePointer<CChar>?, _ value: UnsafeRawPointer?, _ valueLength: Int,
                                         _ outVersion: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    outVersion?.pointee = nil
    guard let engine = liveEngine(handle), let key = keyArgument(key, keyLength, name: "key") else { return mcpopt_last_status() }
    guard valueLength >= 0, value != nil || valueLength == 0 else { return LastError.fail(.invalidArgument, "value is NULL or its length is not a size") }
    guard valueLength <= StateLimits.maxValueBytes else { return LastError.fail(.tooLarge, "value is \(valueLength) bytes, more than the \(StateLimits.maxValueBytes) accepted") }
    var expected: HLCTimestamp?
    if let expectedVersion {
        let length = strlen(expectedVersion)
        guard let text = keyArgument(expectedVersion, length, name: "expected_version") else { return mcpopt_last_status() }
        guard let stamp = HLCTimestamp(text) else { return LastError.fail(.invalidArgument, "expected_version \"\(text)\" is not a version stamp (<ms>.<counter>@<node>)") }
        expected = stamp
    }
    let bytes = Array(UnsafeRawBufferPointer(start: value, count: valueLength))
    let expectedStamp = expected
    let result = blocking({ () async -> StateOutcome in
        do throws(StateSyncError) { return StateOutcome(version: try await engine.compareAndSetState(key, expected: expectedStamp, bytes)) } catch { return StateOutcome(error) }
    })
    guard let stored = result.version, result.status == .ok else { return LastError.fail(result.status, result.message) }
    guard writeVersion(stored, to: outVersion) else { return LastError.fail(.internal, "out of memory") }
    return LastError.succeed()
}

/// A state call's outcome in plain values: the error mapped to its status at once.
private struct StateOutcome: Sendable {
    var version: VersionedValue?
    var status = ABIStatus.ok
    var message = ""
    init(version: VersionedValue?) { self.version = version }
    init(_ error: StateSyncError) {
        status = error.kind == .conflict ? .conflict : .unavailable
        message = error.description
    }
}

/// The C callback and its user data, carried into the Swift watcher.
private struct StateCallback: @unchecked Sendable {
    let function: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, Int, UnsafeRawPointer?, Int, UnsafePointer<CChar>?, Int32) -> Void
    let userData: UnsafeMutableRawPointer?
}

@_cdecl("mcpopt_state_watch")
public func mcpopt_state_watch(_ handle: OpaquePointer?, _ prefix: UnsafePointer<CChar>?, _ prefixLength: Int,
                               _ callback: (@convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, Int, UnsafeRawPointer?, Int, UnsafePointer<CChar>?, Int32) -> Void)?,
                               _ userData: UnsafeMutableRawPointer?, _ outWatch: UnsafeMutablePointer<UInt64>?) -> Int32 {
    guard let callback, let outWatch else { return LastError.fail(.invalidArgument, "callback or out_watch is NULL") }
    outWatch.pointee = 0
    guard let engine = liveEngine(handle), let prefix = keyArgument(prefix, prefixLength, name: "prefix", allowEmpty: true) else { return mcpopt_last_status() }
    let target = StateCallback(function: callback, userData: userData)
    outWatch.pointee = engine.state.watch(prefix: prefix) { key, version in
        var key = key
        let stamp = version.stamp.description
        key.withUTF8 { k in
            version.value.withUnsafeBytes { v in
                stamp.withCString { s in
                    k.withMemoryRebound(to: CChar.self) { kc in
                        target.function(target.userData, kc.baseAddress, kc.count, v.baseAddress, v.count, s, version.deleted ? 1 : 0)
                    }
                }
            }
        }
    }
    return LastError.succeed()
}

@_cdecl("mcpopt_state_unwatch")
public func mcpopt_state_unwatch(_ handle: OpaquePointer?, _ watch: UInt64) -> Int32 {
    guard let engine = liveEngine(handle) else { return mcpopt_last_status() }
    guard engine.state.unwatch(watch) else { return LastError.fail(.notFound, "no watch \(watch) on this engine") }
    return LastError.succeed()
}

enum StateLimits {
    static let maxValueBytes = 64 << 20
}

/// Where a host's merge callback puts its answer (`mcpopt_merge_result_set`).
final class MergeResult {
    var value: [UInt8]?
}

private struct MergeCallback: @unchecked Sendable {
    let function: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, Int, UnsafeRawPointer?, Int, UnsafeRawPointer?, Int, OpaquePointer?) -> Void
    let userData: UnsafeMutableRawPointer?
}

@_cdecl("mcpopt_merge_result_set")
public func mcpopt_merge_result_set(_ result: OpaquePointer?, _ value: UnsafeRawPointer?, _ length: Int) -> Int32 {
    guard let result else { return LastError.fail(.invalidArgument, "result is NULL") }
    guard length >= 0, value != nil || length == 0 else { return LastError.fail(.invalidArgument, "value is NULL or its length is not a size") }
    guard length <= StateLimits.maxValueBytes else { return LastError.fail(.tooLarge, "value is \(length) bytes, more than the \(StateLimits.maxValueBytes) accepted") }
    Unmanaged<MergeResult>.fromOpaque(UnsafeRawPointer(result)).takeUnretainedValue().value = Array(UnsafeRawBufferPointer(start: value, count: length))
    return LastError.succeed()
}

@_cdecl("mcpopt_state_set_merge")
public func mcpopt_state_set_merge(_ handle: OpaquePointer?,
                                   _ callback: (@convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, Int, UnsafeRawPointer?, Int, UnsafeRawPointer?, Int, OpaquePointer?) -> Void)?,
                                   _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let engine = liveEngine(handle) else { return mcpopt_last_status() }
    guard let callback else {
        engine.setStateMerge(nil)
        return LastError.succeed()
    }
    let target = MergeCallback(function: callback, userData: userData)
    engine.setStateMerge { key, older, newer in
        let result = MergeResult()
        var key = key
        key.withUTF8 { k in
            k.withMemoryRebound(to: CChar.self) { kc in
                older.value.withUnsafeBytes { o in
                    newer.value.withUnsafeBytes { n in
                        target.function(target.userData, kc.baseAddress, kc.count, o.baseAddress, o.count, n.baseAddress, n.count,
                                        OpaquePointer(Unmanaged.passUnretained(result).toOpaque()))
                    }
                }
            }
        }
        // No answer from the host: the newer value stands (last writer wins for this merge).
        return result.value ?? newer.value
    }
    return LastError.succeed()
}
