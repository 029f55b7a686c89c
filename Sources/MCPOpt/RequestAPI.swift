import Dispatch
import Glibc
import MCPOptEngine
import MCPOptJSON
import MCPOptProtocol
import MCPOptSync

// mcpopt_engine_start/stop, mcpopt_optimize_request, metrics, health and events through the C
// interface (include/mcpopt.h). The request path is async inside; these calls block the calling
// thread (never one of the engine's) until the answer is ready.

/// Runs async engine work from a host thread and waits for it.
func blocking<T: Sendable>(_ work: @escaping @Sendable () async -> T) -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        box.value = await work()
        done.signal()
    }
    done.wait()
    return box.value!
}

private final class ResultBox<T>: @unchecked Sendable {
    var value: T?
}

@_cdecl("mcpopt_engine_start")
public func mcpopt_engine_start(_ handle: OpaquePointer?) -> Int32 {
    guard let engine = liveEngine(handle) else { return mcpopt_last_status() }
    blocking { await engine.start() }
    return LastError.succeed()
}

@_cdecl("mcpopt_engine_stop")
public func mcpopt_engine_stop(_ handle: OpaquePointer?) -> Int32 {
    guard let engine = liveEngine(handle) else { return mcpopt_last_status() }
    blocking { await engine.stop() }
    return LastError.succeed()
}

/// `{"agent", "partition", "servers", "bypassCache", "timeoutMs", "session"}`, every key optional.
private func requestOptions(_ pointer: UnsafePointer<CChar>?, _ length: Int) -> OptimizeOptions? {
    guard pointer != nil || length != 0 else { return OptimizeOptions() }
    guard let bytes = TextInput.bytes(pointer, length, name: "options_json") else { return nil }
    if bytes.isEmpty { return OptimizeOptions() }
    let value: JSONValue
    do {
        value = try JSONParser.parse(bytes)
    } catch {
        _ = LastError.fail(error.kind == .invalidUTF8 ? .invalidUTF8 : .malformedJSON, "options_json: \(error.detail)")
        return nil
    }
    guard case .object(let o) = value else {
        _ = LastError.fail(.invalidArgument, "options_json must be a JSON object")
        return nil
    }
    var options = OptimizeOptions()
    for (key, v) in o.members {
        switch (key, v) {
        case ("agent", .string(let s)): options.agent = s
        case ("partition", .string(let s)): options.partition = s
        case ("session", .string(let s)): options.session = s
        case ("bypassCache", .bool(let b)): options.bypassCache = b
        case ("servers", .array(let items)) where items.allSatisfy({ $0.stringValue != nil }): options.servers = items.compactMap(\.stringValue)
        case ("timeoutMs", _) where (v.doubleValue ?? 0) > 0: options.timeout = .milliseconds(Int64(v.doubleValue!))
        case ("agent", .null), ("partition", .null), ("servers", .null), ("session", .null): break
        default:
            let known = ["agent", "partition", "servers", "bypassCache", "timeoutMs", "session"]
            _ = LastError.fail(.invalidArgument, known.contains(key) ? "options_json.\(key) has the wrong type (\(v.typeName))"
                                                                     : "options_json has an unknown key \"\(key)\" (known: \(known.joined(separator: ", ")))")
            return nil
        }
    }
    return options
}

/// A request that passed the checks, ready to run (shared by the blocking and the callback forms).
private func checkedRequest(_ handle: OpaquePointer?, _ request: UnsafePointer<CChar>?, _ length: Int,
                            _ optionsJSON: UnsafePointer<CChar>?, _ optionsLength: Int) -> (Engine, [UInt8], OptimizeOptions)? {
    guard let engine = liveEngine(handle) else { return nil }
    guard let raw = TextInput.bytes(request, length, name: "request_json") else { return nil }
    guard let options = requestOptions(optionsJSON, optionsLength) else { return nil }
    // Input that is not a JSON-RPC request is the caller's mistake: a status, not a response.
    guard JSONParser.isValidUTF8(raw) else {
        _ = LastError.fail(.invalidUTF8, "request_json is not valid UTF-8")
        return nil
    }
    let problem: (ABIStatus, String)? = MessageDecoder.withPooled { decoder -> (ABIStatus, String)? in
        do {
            let view = try decoder.decode(raw)
            return view.kind == .request ? nil : (.invalidArgument, "request_json is a JSON-RPC \(view.kind), not a request (with an id and a method)")
        } catch let error as DecodeError {
            return (error.kind == .notJSON ? .malformedJSON : .invalidArgument, "request_json: \(error.detail)")
        } catch {
            return (.invalidArgument, "request_json: \(error)")
        }
    }
    if let (status, message) = problem {
        _ = LastError.fail(status, message)
        return nil
    }
    return (engine, Array(raw), options)
}

/// The answer of mcpopt_optimize_request as the header describes it.
/// The response is spliced in as the engine encoded it (valid JSON: it built or checked it);
/// parsing and printing it again cost most of a cache hit's time through this interface.
private func answerJSON(_ response: OptimizedResponse) -> String {
    let summary = response.summary.jsonString
    guard summary.utf8.count > 2, !response.message.isEmpty else {
        var o = response.summary.objectValue ?? [:]
        o.members.insert((key: "response", value: (try? JSONParser.parse(response.message)) ?? .null), at: 0)
        return JSONValue.object(o).jsonString
    }
    return #"{"response":"# + String(decoding: response.message, as: UTF8.self) + "," + summary.dropFirst()
}

private struct RequestCallback: @unchecked Sendable {
    let function: @convention(c) (UnsafeMutableRawPointer?, Int32, UnsafePointer<CChar>?, Int) -> Void
    let userData: UnsafeMutableRawPointer?
}

@_cdecl("mcpopt_optimize_request_async")
public func mcpopt_optimize_request_async(_ handle: OpaquePointer?, _ request: UnsafePointer<CChar>?, _ length: Int,
                                          _ optionsJSON: UnsafePointer<CChar>?, _ optionsLength: Int,
                                          _ callback: (@convention(c) (UnsafeMutableRawPointer?, Int32, UnsafePointer<CChar>?, Int) -> Void)?,
                                          _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let callback else { return LastError.fail(.invalidArgument, "callback is NULL") }
    guard let (engine, bytes, options) = checkedRequest(handle, request, length, optionsJSON, optionsLength) else { return mcpopt_last_status() }
    let target = RequestCallback(function: callback, userData: userData)
    Task {
        let text = answerJSON(await engine.optimizeRequest(bytes, options))
        text.withCString { target.function(target.userData, ABIStatus.ok.rawValue, $0, text.utf8.count) }
    }
    return LastError.succeed()
}

@_cdecl("mcpopt_optimize_request")
public func mcpopt_optimize_request(_ handle: OpaquePointer?, _ request: UnsafePointer<CChar>?, _ length: Int,
                                    _ optionsJSON: UnsafePointer<CChar>?, _ optionsLength: Int,
                                    _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ outLength: UnsafeMutablePointer<Int>?) -> Int32 {
    guard let out else { return LastError.fail(.invalidArgument, "out_json is NULL") }
    out.pointee = nil
    guard let (engine, bytes, options) = checkedRequest(handle, request, length, optionsJSON, optionsLength) else { return mcpopt_last_status() }
    // What needs no I/O (a cache hit, an aggregated list, an error) is answered on the calling
    // thread; a task and a wait only for work that waits on a server.
    let response: OptimizedResponse
    switch engine.prepareRequest(bytes, options) {
    case .answered(let answer)?: response = answer
    case .pending(let pending)?: response = blocking { await engine.completeRequest(pending) }
    case nil: response = blocking { await engine.optimizeRequest(bytes, options) }
    }
    return TextOutput.write(answerJSON(response), to: out, length: outLength)
}

@_cdecl("mcpopt_metrics")
public func mcpopt_metrics(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ outLength: UnsafeMutablePointer<Int>?) -> Int32 {
    guard let out else { return LastError.fail(.invalidArgument, "out_json is NULL") }
    out.pointee = nil
    guard let engine = liveEngine(handle) else { return mcpopt_last_status() }
    return TextOutput.write(engine.getOptimizationMetrics().jsonString, to: out, length: outLength)
}

@_cdecl("mcpopt_metrics_prometheus")
public func mcpopt_metrics_prometheus(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ outLength: UnsafeMutablePointer<Int>?) -> Int32 {
    guard let out else { return LastError.fail(.invalidArgument, "out_text is NULL") }
    out.pointee = nil
    guard let engine = liveEngine(handle) else { return mcpopt_last_status() }
    return TextOutput.write(engine.prometheusText(), to: out, length: outLength)
}

@_cdecl("mcpopt_health_check")
public func mcpopt_health_check(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ outLength: UnsafeMutablePointer<Int>?) -> Int32 {
    guard let out else { return LastError.fail(.invalidArgument, "out_json is NULL") }
    out.pointee = nil
    guard let engine = liveEngine(handle) else { return mcpopt_last_status() }
    let health = blocking { await engine.performHealthCheck() }
    return TextOutput.write(health.jsonString, to: out, length: outLength)
}

private struct EventCallback: @unchecked Sendable {
    let function: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, UnsafePointer<CChar>?, Int) -> Void
    let userData: UnsafeMutableRawPointer?
}

@_cdecl("mcpopt_events_subscribe")
public func mcpopt_events_subscribe(_ handle: OpaquePointer?,
                                    _ callback: (@convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, UnsafePointer<CChar>?, Int) -> Void)?,
                                    _ userData: UnsafeMutableRawPointer?, _ outSubscription: UnsafeMutablePointer<UInt64>?) -> Int32 {
    guard let callback else { return LastError.fail(.invalidArgument, "callback is NULL") }
    guard let outSubscription else { return LastError.fail(.invalidArgument, "out_subscription is NULL") }
    guard let engine = liveEngine(handle) else { return mcpopt_last_status() }
    let target = EventCallback(function: callback, userData: userData)
    outSubscription.pointee = engine.events.subscribe { event in
        let data = event.data.jsonString
        event.name.rawValue.withCString { name in
            data.withCString { target.function(target.userData, name, $0, data.utf8.count) }
        }
    }
    return LastError.succeed()
}

@_cdecl("mcpopt_events_unsubscribe")
public func mcpopt_events_unsubscribe(_ handle: OpaquePointer?, _ subscription: UInt64) -> Int32 {
    guard let engine = liveEngine(handle) else { return mcpopt_last_status() }
    guard engine.events.unsubscribe(subscription) else { return LastError.fail(.notFound, "no event subscription \(subscription)") }
    return LastError.succeed()
}
