import MCPOptCoordination
import MCPOptEngine
import MCPOptJSON

// mcpopt_coordinate_operation and mcpopt_transactions_recover: fan-out operations and two-phase
// commits across servers through the C interface (include/mcpopt.h). Both block the caller.

/// A coordination request in JSON: what the operation is, on which servers, how.
private struct CoordinationInput {
    var operation = ""
    var calls: [ServerCall] = []
    var options = CoordinationCallOptions()
}

private func invalid(_ message: String) -> CoordinationInput? {
    _ = LastError.fail(.invalidArgument, "request_json: \(message)")
    return nil
}

/// `{"operation", "servers" | "calls", "data", "mode", "policy", "quorum", "concurrency",
/// "timeoutMs", "transactionId", "agent"}` (include/mcpopt.h has the meanings).
private func coordinationInput(_ pointer: UnsafePointer<CChar>?, _ length: Int) -> CoordinationInput? {
    guard let bytes = TextInput.bytes(pointer, length, name: "request_json") else { return nil }
    let value: JSONValue
    do {
        value = try JSONParser.parse(bytes)
    } catch {
        _ = LastError.fail(error.kind == .invalidUTF8 ? .invalidUTF8 : .malformedJSON, "request_json: \(error.detail)")
        return nil
    }
    guard case .object(let o) = value else { return invalid("must be a JSON object") }
    let known = ["operation", "servers", "calls", "data", "mode", "policy", "quorum", "concurrency", "timeoutMs", "transactionId", "agent"]
    if let unknown = o.keys.first(where: { !known.contains($0) }) {
        return invalid("unknown key \"\(unknown)\" (known: \(known.joined(separator: ", ")))")
    }
    var input = CoordinationInput()
    guard let operation = o["operation"]?.stringValue, !operation.isEmpty else { return invalid("\"operation\" (a non-empty string) is required") }
    input.operation = operation
    let data = o["data"] ?? .object(JSONObject())
    switch (o["servers"], o["calls"]) {
    case (.array(let servers)?, nil):
        guard servers.allSatisfy({ $0.stringValue != nil }) else { return invalid("\"servers\" must be an array of server names") }
        input.calls = servers.map { ServerCall(server: $0.stringValue!, tool: operation, arguments: data) }
    case (nil, .array(let calls)?):
        for (i, call) in calls.enumerated() {
            guard let server = call["server"]?.stringValue else { return invalid("calls[\(i)].server (a string) is required") }
            let tool = call["tool"]?.stringValue ?? operation
            input.calls.append(ServerCall(server: server, tool: tool, arguments: call["arguments"] ?? data))
        }
    case (nil, nil): return invalid("\"servers\" (an array of names) or \"calls\" (an array of {server, tool, arguments}) is required")
    default: return invalid("give \"servers\" or \"calls\" (an array), not both")
    }
    if let mode = o["mode"] {
        guard let m = mode.stringValue.flatMap(CoordinationCallOptions.Mode.init(rawValue:)) else { return invalid("\"mode\" must be \"fanout\" or \"transaction\"") }
        input.options.mode = m
    }
    switch o["policy"]?.stringValue {
    case nil where o["policy"] == nil, "all"?: input.options.policy = .all
    case "first"?: input.options.policy = .firstSuccess
    case "quorum"?:
        guard let n = o["quorum"]?.doubleValue, n >= 1, n == n.rounded() else { return invalid("policy \"quorum\" needs \"quorum\": a whole number of servers, 1 or more") }
        input.options.policy = .quorum(Int(n))
    default: return invalid("\"policy\" must be \"all\", \"quorum\" or \"first\"")
    }
    if let c = o["concurrency"] {
        guard let n = c.doubleValue, n >= 1, n <= 10_000, n == n.rounded() else { return invalid("\"concurrency\" must be a whole number from 1 to 10000") }
        input.options.concurrency = Int(n)
    }
    if let t = o["timeoutMs"] {
        guard let ms = t.doubleValue, ms > 0, ms <= 3_600_000 else { return invalid("\"timeoutMs\" must be a number of milliseconds, above 0 and at most an hour") }
        input.options.timeout = .microseconds(Int64(ms * 1000))
    }
    if let id = o["transactionId"] {
        guard let s = id.stringValue, !s.isEmpty else { return invalid("\"transactionId\" must be a non-empty string") }
        input.options.transactionId = s
    }
    if let agent = o["agent"] {
        guard let s = agent.stringValue else { return invalid("\"agent\" must be a string") }
        input.options.agent = s
    }
    return input
}

private func fail(_ error: CoordinationError) -> Int32 {
    switch error.kind {
    case .invalidArgument: LastError.fail(.invalidArgument, error.description)
    case .disabled: LastError.fail(.unsupported, error.description)
    case .log: LastError.fail(.internal, error.description)
    }
}

@_cdecl("mcpopt_coordinate_operation")
public func mcpopt_coordinate_operation(_ handle: OpaquePointer?, _ request: UnsafePointer<CChar>?, _ length: Int,
                                        _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ outLength: UnsafeMutablePointer<Int>?) -> Int32 {
    guard let out else { return LastError.fail(.invalidArgument, "out_json is NULL") }
    out.pointee = nil
    guard let engine = liveEngine(handle) else { return mcpopt_last_status() }
    guard let input = coordinationInput(request, length) else { return mcpopt_last_status() }
    let result = blocking { () async -> Result<CoordinationReport, CoordinationError> in
        do throws(CoordinationError) {
            return .success(try await engine.coordinateMultiServerOperation(input.operation, calls: input.calls, options: input.options))
        } catch {
            return .failure(error)
        }
    }
    switch result {
    case .success(let report): return TextOutput.write(report.json.jsonString, to: out, length: outLength)
    case .failure(let error): return fail(error)
    }
}

@_cdecl("mcpopt_transactions_recover")
public func mcpopt_transactions_recover(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                                        _ outLength: UnsafeMutablePointer<Int>?) -> Int32 {
    guard let out else { return LastError.fail(.invalidArgument, "out_json is NULL") }
    out.pointee = nil
    guard let engine = liveEngine(handle) else { return mcpopt_last_status() }
    let result = blocking { () async -> Result<[TransactionOutcome], CoordinationError> in
        do throws(CoordinationError) {
            return .success(try await engine.recoverTransactions())
        } catch {
            return .failure(error)
        }
    }
    switch result {
    case .success(let outcomes):
        let json: JSONValue = ["recovered": .array(outcomes.map { t in
            ["transactionId": .string(t.id), "committed": .bool(t.committed), "unacknowledged": .array(t.unacknowledged.map { .string($0) })]
        })]
        return TextOutput.write(json.jsonString, to: out, length: outLength)
    case .failure(let error): return fail(error)
    }
}
