import Glibc
import MCPOptConfig
import MCPOptEngine
import MCPOptJSON
import MCPOptRouting

// mcpopt_route_*: the engine's router through the C interface (include/mcpopt.h). Requests,
// servers and decisions are JSON; bad fields are reported with their JSON path.

/// A JSON argument parsed, or nil with the last error set.
private func jsonArgument(_ pointer: UnsafePointer<CChar>?, _ length: Int, name: String) -> JSONValue? {
    guard let bytes = TextInput.bytes(pointer, length, name: name) else { return nil }
    do {
        return try JSONParser.parse(bytes)
    } catch {
        _ = LastError.fail(error.kind == .invalidUTF8 ? .invalidUTF8 : .malformedJSON, "\(name): \(error.detail)")
        return nil
    }
}

private func textArgument(_ pointer: UnsafePointer<CChar>?, _ length: Int, name: String) -> String? {
    guard let bytes = TextInput.bytes(pointer, length, name: name) else { return nil }
    guard let text = String(validating: bytes, as: UTF8.self) else {
        _ = LastError.fail(.invalidUTF8, "\(name) is not valid UTF-8")
        return nil
    }
    guard !text.isEmpty else {
        _ = LastError.fail(.invalidArgument, "\(name) is empty")
        return nil
    }
    return text
}

/// A field problem, reported as MCPOPT_ERR_INVALID_ARGUMENT with the field's path as an issue.
private struct FieldError: Error {
    let path: String
    let message: String
    func report() -> Int32 { LastError.fail(.invalidArgument, "\(path): \(message)", issues: [(path, message)]) }
}

private func string(_ value: JSONValue?, _ path: String, required: Bool = false) throws(FieldError) -> String? {
    guard let value, value != .null else {
        if required { throw FieldError(path: path, message: "required") }
        return nil
    }
    guard let text = value.stringValue else { throw FieldError(path: path, message: "expected a string, not \(value.typeName)") }
    return text
}

private func duration(_ value: JSONValue?, _ path: String) throws(FieldError) -> Duration? {
    guard let value, value != .null else { return nil }
    if let ms = value.doubleValue, ms >= 0, ms.isFinite { return .nanoseconds(Int64(ms * 1e6)) }
    if let text = value.stringValue, let parsed = parseDuration(text) { return parsed }
    throw FieldError(path: path, message: "expected a duration (\"250ms\", \"2s\" or a number of milliseconds)")
}

private func requirements(_ value: JSONValue?, _ path: String) throws(FieldError) -> MCPOptRouting.Requirements {
    var result = MCPOptRouting.Requirements()
    guard let value, value != .null else { return result }
    guard let object = value.objectValue else { throw FieldError(path: path, message: "expected an object, not \(value.typeName)") }
    for (key, field) in object.members {
        let fieldPath = "\(path).\(key)"
        switch key {
        case "maxResponseTime": result.maxResponseTime = try duration(field, fieldPath)
        case "minSuccessRate":
            guard let rate = field.doubleValue, (0...1).contains(rate) else { throw FieldError(path: fieldPath, message: "expected a number from 0 to 1") }
            result.minSuccessRate = rate
        case "strategy":
            guard let name = field.stringValue, let strategy = RoutingStrategy(rawValue: name) else {
                throw FieldError(path: fieldPath, message: "expected one of \(RoutingStrategy.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            result.strategy = strategy
        case "affinityKey": result.affinityKey = try string(field, fieldPath)
        case "allowedServers":
            guard let names = field.arrayValue?.compactMap(\.stringValue), names.count == field.arrayValue?.count else {
                throw FieldError(path: fieldPath, message: "expected an array of server names")
            }
            result.allowedServers = Set(names)
        default: throw FieldError(path: fieldPath, message: "unknown field")
        }
    }
    return result
}

/// Tools as a tools/list result ({"tools": [...]}) or a bare array of tool objects.
private func tools(_ value: JSONValue?, _ path: String) throws(FieldError) -> [ToolInfo] {
    guard let value, value != .null else { return [] }
    let list: [JSONValue]
    var listPath = path
    if let array = value.arrayValue {
        list = array
    } else if let array = value["tools"]?.arrayValue {
        list = array
        listPath += ".tools"
    } else {
        throw FieldError(path: path, message: "expected an array of tools or a tools/list result")
    }
    var result: [ToolInfo] = []
    for (index, tool) in list.enumerated() {
        let toolPath = "\(listPath)[\(index)]"
        guard let name = try string(tool["name"], toolPath + ".name", required: true), !name.isEmpty else {
            throw FieldError(path: toolPath + ".name", message: "must not be empty")
        }
        var annotations = ToolAnnotations()
        if let hints = tool["annotations"], hints != .null {
            guard hints.objectValue != nil else { throw FieldError(path: toolPath + ".annotations", message: "expected an object") }
            func hint(_ key: String) throws(FieldError) -> Bool? {
                guard let value = hints[key], value != .null else { return nil }
                guard let flag = value.boolValue else { throw FieldError(path: "\(toolPath).annotations.\(key)", message: "expected a boolean") }
                return flag
            }
            annotations = ToolAnnotations(readOnly: try hint("readOnlyHint"), idempotent: try hint("idempotentHint"),
                                          destructive: try hint("destructiveHint"), openWorld: try hint("openWorldHint"))
        }
        result.append(ToolInfo(name: name, annotations: annotations))
    }
    return result
}

private func decisionJSON(_ decision: RoutingDecision) -> JSONValue {
    var object: JSONObject = [
        "outcome": .string(decision.outcome.rawValue),
        "server": decision.server.map { .string($0) } ?? .null,
        "fallbacks": .array(decision.fallbacks.map { .string($0) }),
        "confidence": .double(decision.confidence),
        "strategy": .string(decision.strategy.rawValue),
        "probe": .bool(decision.probe),
        "reasoning": .string(decision.reasoning),
        "decisionTimeNs": .int(Int64(decision.decisionNanos)),
    ]
    object["predictedLatencyMs"] = decision.predictedLatency.map { .double(($0.nanoseconds / 1e3).rounded() / 1e3) } ?? .null
    return .object(object)
}

@_cdecl("mcpopt_route")
public func mcpopt_route(_ handle: OpaquePointer?, _ request: UnsafePointer<CChar>?, _ length: Int,
                         _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ outLength: UnsafeMutablePointer<Int>?) -> Int32 {
    guard let out else { return LastError.fail(.invalidArgument, "out_json is NULL") }
    out.pointee = nil
    guard let engine = liveEngine(handle), let json = jsonArgument(request, length, name: "request") else { return mcpopt_last_status() }
    do throws(FieldError) {
        guard json.objectValue != nil else { throw FieldError(path: "$", message: "expected an object, not \(json.typeName)") }
        // Either {"tool": ...} or an MCP tools/call request ({"method": "tools/call", "params": {"name": ...}}).
        let tool: String
        if let method = json["method"] {
            guard method.stringValue == "tools/call" else { throw FieldError(path: "$.method", message: "only tools/call requests are routed") }
            guard let name = try string(json["params"]?["name"], "$.params.name", required: true) else { throw FieldError(path: "$.params.name", message: "required") }
            tool = name
        } else {
            guard let name = try string(json["tool"], "$.tool", required: true) else { throw FieldError(path: "$.tool", message: "required") }
            tool = name
        }
        let wanted = try requirements(json["requirements"], "$.requirements")
        let agent = try string(json["agent"], "$.agent")
        var maxFallbacks = 3
        if let value = json["maxFallbacks"], value != .null {
            guard let count = value.integerValue, (0...64).contains(count) else { throw FieldError(path: "$.maxFallbacks", message: "expected an integer from 0 to 64") }
            maxFallbacks = Int(count)
        }
        let routed = Result { () throws(RouteRefusal) in try engine.route(tool: tool, requirements: wanted, agent: agent, maxFallbacks: maxFallbacks) }
        switch routed {
        case .success(let decision):
            return TextOutput.write(decisionJSON(decision).jsonString, to: out, length: outLength)
        case .failure(let refusal):
            switch refusal {
            case .unknownAgent: return LastError.fail(.notFound, refusal.description)
            case .toolNotAllowed: return LastError.fail(.invalidArgument, refusal.description)
            }
        }
    } catch {
        return error.report()
    }
}

@_cdecl("mcpopt_route_register_server")
public func mcpopt_route_register_server(_ handle: OpaquePointer?, _ server: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
    guard let engine = liveEngine(handle), let json = jsonArgument(server, length, name: "server") else { return mcpopt_last_status() }
    do throws(FieldError) {
        guard let object = json.objectValue else { throw FieldError(path: "$", message: "expected an object, not \(json.typeName)") }
        let known: Set<String> = ["id", "transport", "group", "weight", "tags", "tools", "resources", "prompts", "health"]
        if let unknown = object.keys.first(where: { !known.contains($0) }) { throw FieldError(path: "$.\(unknown)", message: "unknown field") }
        guard let id = try string(json["id"], "$.id", required: true), !id.isEmpty else { throw FieldError(path: "$.id", message: "must not be empty") }
        var info = ServerInfo(id: id, transport: try string(json["transport"], "$.transport") ?? "stdio", group: try string(json["group"], "$.group"))
        if let weight = json["weight"], weight != .null {
            guard let value = weight.doubleValue, value > 0, value.isFinite else { throw FieldError(path: "$.weight", message: "expected a positive number") }
            info.weight = value
        }
        func names(_ key: String) throws(FieldError) -> [String] {
            guard let value = json[key], value != .null else { return [] }
            guard let array = value.arrayValue, let texts = Optional(array.compactMap(\.stringValue)), texts.count == array.count else {
                throw FieldError(path: "$.\(key)", message: "expected an array of strings")
            }
            return texts
        }
        info.tags = try names("tags")
        info.resources = try names("resources")
        info.prompts = try names("prompts")
        info.tools = try tools(json["tools"], "$.tools")
        if let health = json["health"], health != .null {
            guard let name = health.stringValue, let value = ServerHealth(rawValue: name) else {
                throw FieldError(path: "$.health", message: "expected one of \(ServerHealth.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            info.health = value
        }
        engine.router.upsert(info)
        return LastError.succeed()
    } catch {
        return error.report()
    }
}

@_cdecl("mcpopt_route_set_tools")
public func mcpopt_route_set_tools(_ handle: OpaquePointer?, _ server: UnsafePointer<CChar>?, _ serverLength: Int,
                                   _ toolsJSON: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
    guard let engine = liveEngine(handle), let id = textArgument(server, serverLength, name: "server"),
          let json = jsonArgument(toolsJSON, length, name: "tools") else { return mcpopt_last_status() }
    do throws(FieldError) {
        let list = try tools(json, "$")
        return engine.router.setTools(server: id, list) ? LastError.succeed() : LastError.fail(.notFound, "no server \"\(id)\" is registered")
    } catch {
        return error.report()
    }
}

@_cdecl("mcpopt_route_remove_server")
public func mcpopt_route_remove_server(_ handle: OpaquePointer?, _ server: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
    guard let engine = liveEngine(handle), let id = textArgument(server, length, name: "server") else { return mcpopt_last_status() }
    return engine.router.remove(server: id) ? LastError.succeed() : LastError.fail(.notFound, "no server \"\(id)\" is registered")
}

@_cdecl("mcpopt_route_record")
public func mcpopt_route_record(_ handle: OpaquePointer?, _ server: UnsafePointer<CChar>?, _ serverLength: Int,
                                _ tool: UnsafePointer<CChar>?, _ toolLength: Int, _ latencyMicros: Int64, _ success: Int32) -> Int32 {
    guard let engine = liveEngine(handle), let id = textArgument(server, serverLength, name: "server"),
          let toolName = textArgument(tool, toolLength, name: "tool") else { return mcpopt_last_status() }
    guard latencyMicros >= 0 else { return LastError.fail(.invalidArgument, "latency_us is \(latencyMicros); it must not be negative") }
    guard engine.router.record(server: id, tool: toolName, latency: .microseconds(latencyMicros), success: success != 0) else {
        return LastError.fail(.notFound, "no server \"\(id)\" is registered")
    }
    return LastError.succeed()
}

@_cdecl("mcpopt_route_stats")
public func mcpopt_route_stats(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ outLength: UnsafeMutablePointer<Int>?) -> Int32 {
    guard let out else { return LastError.fail(.invalidArgument, "out_json is NULL") }
    out.pointee = nil
    guard let engine = liveEngine(handle) else { return mcpopt_last_status() }
    func ms(_ duration: Duration) -> JSONValue { .double((duration.nanoseconds / 1e3).rounded() / 1e3) }
    let info = engine.router.tableInfo
    let servers: [JSONValue] = engine.router.serverStats().map { server in
        [
            "id": .string(server.id), "group": .string(server.group), "health": .string(server.health.rawValue),
            "circuit": .string(server.circuit.rawValue), "latencyEwmaMs": ms(server.latencyEWMA), "latencyStdDevMs": ms(server.latencyStdDev),
            "successRate": .double(server.successRate), "inFlight": .int(Int64(server.inFlight)), "samples": .int(Int64(server.samples)),
            "lastError": server.lastError.map { .string($0) } ?? .null,
            "tools": .array(server.tools.map { tool in
                ["tool": .string(tool.tool), "latencyEwmaMs": ms(tool.latencyEWMA), "successRate": .double(tool.successRate),
                 "inFlight": .int(Int64(tool.inFlight)), "samples": .int(Int64(tool.samples))]
            }),
        ]
    }
    let result: JSONValue = [
        "generation": .int(Int64(info.generation)), "servers": .array(servers), "tools": .int(Int64(info.tools)),
        "defaultStrategy": .string(engine.router.settings.defaultStrategy.rawValue),
    ]
    return TextOutput.write(result.jsonString, to: out, length: outLength)
}

private extension Duration {
    var nanoseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1e9 + Double(attoseconds) / 1e9
    }
}
