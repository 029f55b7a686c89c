import MCPOptConfig
import MCPOptEngine

let engines = HandleRegistry<Engine>()

/// The engine behind a handle, or nil with the last error set.
/// Runs `body` with a live engine, borrowed (the hot paths: no reference counting, no lock),
/// or records why the handle is not live and returns nil.
@inline(__always)
func withLiveEngine<R>(_ handle: OpaquePointer?, _ body: (Engine) -> R) -> R? {
    guard let handle else {
        _ = LastError.fail(.invalidArgument, "engine is NULL")
        return nil
    }
    guard let result = engines.withObject(handle, body) else {
        _ = LastError.fail(.invalidHandle, "engine handle \(handle) is not live: it was destroyed, or never created by mcpopt_engine_create")
        return nil
    }
    return result
}

func liveEngine(_ handle: OpaquePointer?) -> Engine? {
    guard let handle else {
        _ = LastError.fail(.invalidArgument, "engine is NULL")
        return nil
    }
    guard let engine = engines.lookup(handle) else {
        _ = LastError.fail(.invalidHandle, "engine handle \(handle) is not live: it was destroyed, or never created by mcpopt_engine_create")
        return nil
    }
    return engine
}

@_cdecl("mcpopt_config_validate")
public func mcpopt_config_validate(_ json: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
    guard let bytes = TextInput.bytes(json, length, name: "json") else { return mcpopt_last_status() }
    do {
        _ = try EngineConfig.parse(bytes)
        return LastError.succeed()
    } catch {
        return LastError.fail(error)
    }
}

@_cdecl("mcpopt_engine_create")
public func mcpopt_engine_create(_ json: UnsafePointer<CChar>?, _ length: Int, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let out else { return LastError.fail(.invalidArgument, "out_engine is NULL") }
    out.pointee = nil
    guard let bytes = TextInput.bytes(json, length, name: "config_json") else { return mcpopt_last_status() }
    do {
        let config = try EngineConfig.parse(bytes)
        out.pointee = engines.insert(Engine(config: config))
        return LastError.succeed()
    } catch {
        return LastError.fail(error)
    }
}

@_cdecl("mcpopt_engine_destroy")
public func mcpopt_engine_destroy(_ handle: OpaquePointer?) -> Int32 {
    guard let handle else { return LastError.succeed() }
    // A started engine's servers are asked to exit (stdio children are not left behind). Also
    // when it never started: a start in progress on another thread then stops short, and the
    // engine's monitor never begins ticking (a host may exit right after).
    if let engine = engines.lookup(handle) { blocking { await engine.stop() } }
    guard engines.remove(handle) else {
        return LastError.fail(.invalidHandle, "engine handle \(handle) is not live: destroyed twice, or never created by mcpopt_engine_create")
    }
    return LastError.succeed()
}

@_cdecl("mcpopt_engine_describe")
public func mcpopt_engine_describe(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ length: UnsafeMutablePointer<Int>?) -> Int32 {
    guard let out else { return LastError.fail(.invalidArgument, "out_json is NULL") }
    out.pointee = nil
    guard let engine = liveEngine(handle) else { return mcpopt_last_status() }
    return TextOutput.write(engine.describe().jsonString, to: out, length: length)
}
