import Glibc
import MCPOptJSON

/// Turns a JSON document into an `EngineConfig`, reporting problems with their paths.
struct ConfigDecoder {
    let sink: IssueSink

    static let topLevelKeys = ["mcpServers", "routing", "caching", "optimization", "coordination", "targets", "agents"]

    func decode(_ document: JSONValue) -> EngineConfig {
        var config = EngineConfig()
        guard var top = FieldReader(document, at: .root, sink: sink) else { return config }
        if let servers = top.child("mcpServers") { config.servers = decodeServers(servers) }
        if var r = top.child("routing") { config.routing = decodeRouting(&r) }
        if var c = top.child("caching") { config.caching = decodeCaching(&c) }
        if var o = top.child("optimization") { config.optimization = decodeOptimization(&o) }
        if var c = top.child("coordination") { config.coordination = decodeCoordination(&c) }
        if var t = top.child("targets") { config.targets = decodeTargets(&t) }
        if let agents = top.child("agents") { config.agents = decodeAgents(agents, servers: config.servers) }
        top.finish(known: Self.topLevelKeys)

        let active = config.activeServers.count
        if active > config.targets.maxServerCount {
            sink.report(ConfigPath.root.appending("mcpServers"), "\(active) servers configured, more than targets.maxServerCount (\(config.targets.maxServerCount))")
        }
        return config
    }

    // MARK: servers

    /// Names end up in namespaced tool names, which clients restrict to [A-Za-z0-9_-].
    static func isValidServerName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count) && name.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b == 0x2D || b == 0x2E
        }
    }

    func decodeServers(_ reader: FieldReader) -> [ServerConfig] {
        var out: [ServerConfig] = []
        var seen: Set<String> = []
        for member in reader.object.members where seen.insert(member.key).inserted {
            let path = reader.path.appending(member.key)
            if !Self.isValidServerName(member.key) {
                sink.report(path, "server name must be 1-64 characters of A-Z, a-z, 0-9, '_', '-' or '.'")
            }
            guard var server = FieldReader(member.value, at: path, sink: sink) else { continue }
            if let s = decodeServer(name: member.key, &server) { out.append(s) }
        }
        return out
    }

    private static let stdioKeys = ["command", "args", "env", "cwd"]
    private static let httpKeys = ["url", "headers", "caFile", "clientCert", "clientKey"]

    func decodeServer(name: String, _ r: inout FieldReader) -> ServerConfig? {
        let type = r.string("type")
        let hasCommand = r.object["command"] != nil
        let hasURL = r.object["url"] != nil
        var transport: ServerConfig.Transport?
        var caFile: String?
        var identity: (cert: String, key: String)?

        switch type {
        case nil, "stdio", "http", "streamable-http", "streamableHttp": break
        case "sse":
            r.report("type", "the legacy HTTP+SSE transport (2024-11-05) is not supported: use the server's Streamable HTTP endpoint")
        case let other?:
            r.report("type", "\"\(other)\" is not a transport: use \"stdio\" or \"http\"")
        }

        if hasCommand && hasURL {
            for key in Self.stdioKeys + Self.httpKeys { _ = r.value(key) }
            sink.report(r.path, "has both \"command\" and \"url\": a server is either stdio (command) or Streamable HTTP (url)")
        } else if !hasCommand && !hasURL {
            sink.report(r.path, "needs \"command\" (a stdio server) or \"url\" (a Streamable HTTP server)")
        } else if hasCommand {
            if let type, type != "stdio", type != "sse" { r.report("type", "\"\(type)\" does not match \"command\": a server with a command is \"stdio\"") }
            for key in Self.httpKeys where r.object[key] != nil { _ = r.value(key); r.report(key, "only applies to http servers (this one has a command)") }
            let command = r.nonEmptyString("command")
            let args = r.stringArray("args") ?? []
            let env = (r.stringMap("env") ?? []).map { ServerConfig.EnvVar(name: $0.0, value: $0.1) }
            for variable in env where variable.name.isEmpty || variable.name.contains("=") || variable.name.utf8.contains(0) {
                r.report("env", "variable name \"\(variable.name)\" is not valid: it must be non-empty and contain no '='")
            }
            let cwd = r.nonEmptyString("cwd")
            if let command { transport = .stdio(command: command, args: args, env: env, cwd: cwd) }
        } else {
            if let type, type == "stdio" { r.report("type", "\"stdio\" does not match \"url\": a server with a url is \"http\"") }
            for key in Self.stdioKeys where r.object[key] != nil { _ = r.value(key); r.report(key, "only applies to stdio servers (this one has a url)") }
            var url: HTTPURL?
            if let text = r.nonEmptyString("url") {
                switch HTTPURL.parse(text) {
                case .success(let u): url = u
                case .failure(let problem): r.report("url", "\"\(text)\" \(problem.message)")
                }
            }
            let headers = (r.stringMap("headers") ?? []).map { ServerConfig.Header(name: $0.0, value: $0.1) }
            for header in headers {
                if !Self.isHeaderToken(header.name) {
                    r.report("headers", "\"\(header.name)\" is not a valid HTTP header name")
                } else if header.value.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) {
                    sink.report(r.path.appending("headers").appending(header.name), "header value must not contain CR, LF or NUL")
                }
            }
            if let url { transport = .http(url: url, headers: headers) }
            caFile = Self.caFile(&r, usable: url?.tls != false, otherwise: "only applies to https:// servers")
            identity = Self.clientIdentity(&r, usable: url?.tls != false, otherwise: "only applies to https:// servers")
        }

        let group = r.nonEmptyString("group")
        let weight = r.positiveDouble("weight", default: 1)
        let tags = r.stringArray("tags") ?? []
        let disabled = r.bool("disabled", default: false)
        let trust = r.bool("trustAnnotations", default: false)
        let stateful = r.bool("stateful", default: false)
        let concurrency = r.object["maxConcurrency"] != nil ? r.integer("maxConcurrency", default: 16, in: 1...100_000) : nil
        let era = r.enumeration("protocol", default: ProtocolPreference.auto)
        r.finish(known: Self.stdioKeys + Self.httpKeys + ["type", "group", "weight", "tags", "disabled", "trustAnnotations", "stateful", "maxConcurrency", "protocol"])
        guard let transport else { return nil }
        var server = ServerConfig(name: name, transport: transport, group: group, weight: weight, tags: tags, disabled: disabled)
        server.trustAnnotations = trust
        server.stateful = stateful
        server.protocolEra = era
        if let concurrency { server.maxConcurrency = concurrency }
        server.caFile = caFile
        server.clientCert = identity?.cert
        server.clientKey = identity?.key
        return server
    }

    /// A `caFile` field: a CA bundle to trust, readable now; `otherwise` is reported when the
    /// URL beside it speaks no TLS (`usable` false).
    private static func caFile(_ r: inout FieldReader, usable: Bool, otherwise: String) -> String? {
        guard let caFile = r.nonEmptyString("caFile") else { return nil }
        if !usable {
            r.report("caFile", otherwise)
        } else if access(caFile, R_OK) != 0 {
            r.report("caFile", "cannot read \"\(caFile)\": \(String(cString: strerror(errno)))")
        }
        return caFile
    }

    /// `clientCert` and `clientKey`: a certificate to present (mutual TLS), both given and
    /// readable now, or neither.
    private static func clientIdentity(_ r: inout FieldReader, usable: Bool, otherwise: String) -> (cert: String, key: String)? {
        let cert = r.nonEmptyString("clientCert"), key = r.nonEmptyString("clientKey")
        guard cert != nil || key != nil else { return nil }
        guard usable else {
            for (field, value) in [("clientCert", cert), ("clientKey", key)] where value != nil { r.report(field, otherwise) }
            return nil
        }
        guard let cert, let key else {
            r.report(cert == nil ? "clientCert" : "clientKey", "\(cert == nil ? "clientKey" : "clientCert") needs it: a client certificate goes with its key")
            return nil
        }
        for (field, path) in [("clientCert", cert), ("clientKey", key)] where access(path, R_OK) != 0 {
            r.report(field, "cannot read \"\(path)\": \(String(cString: strerror(errno)))")
        }
        return (cert, key)
    }

    static func isHeaderToken(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || "!#$%&'*+-.^_`|~".utf8.contains(b)
        }
    }

    // MARK: option groups

    func decodeRouting(_ r: inout FieldReader) -> RoutingOptions {
        var o = RoutingOptions()
        o.enablePredictiveRouting = r.bool("enablePredictiveRouting", default: o.enablePredictiveRouting)
        o.enableAdaptiveRouting = r.bool("enableAdaptiveRouting", default: o.enableAdaptiveRouting)
        o.maxDecisionTime = r.duration("maxDecisionTime", default: o.maxDecisionTime, in: .microseconds(1)...(.seconds(10)))
        o.predictionWindow = r.duration("predictionWindow", default: o.predictionWindow, in: .seconds(1)...(.seconds(86400)))
        o.minConfidence = r.double("minConfidence", default: o.minConfidence, in: 0...1)
        r.finish()
        return o
    }

    func decodeCaching(_ r: inout FieldReader) -> CachingOptions {
        var o = CachingOptions()
        o.enableMultiLevel = r.bool("enableMultiLevel", default: o.enableMultiLevel)
        o.memoryCacheSize = r.size("memoryCacheSize", default: o.memoryCacheSize, in: (64 << 10)...(1 << 40))
        o.coherenceTimeout = r.duration("coherenceTimeout", default: o.coherenceTimeout, in: .zero...(.seconds(86400)))
        o.defaultTTL = r.duration("defaultTTL", default: o.defaultTTL, in: .milliseconds(1)...(.seconds(86400 * 30)))
        o.warmingStrategy = r.enumeration("warmingStrategy", default: o.warmingStrategy)
        o.hotSetFile = r.nonEmptyString("hotSetFile")
        o.hotSetSize = r.integer("hotSetSize", default: o.hotSetSize, in: 1...100_000)
        o.enableIntelligentInvalidation = r.bool("enableIntelligentInvalidation", default: o.enableIntelligentInvalidation)
        if let v = r.value("distributed") { o.distributed = decodeDistributed(v, at: r.path.appending("distributed")) }
        if let tools = r.child("tools") { o.tools = decodeToolRules(tools) }
        if let v = r.value("invalidationRules") { o.invalidationRules = decodeInvalidationRules(v, at: r.path.appending("invalidationRules")) }
        o.staleIfError = r.duration("staleIfError", default: o.staleIfError, in: .zero...(.seconds(86400 * 7)))
        r.finish()
        return o
    }

    /// `"tools": {"git/git_status": "30s", "read_file": true, "search": false}`.
    func decodeToolRules(_ reader: FieldReader) -> [ToolCacheRule] {
        var out: [ToolCacheRule] = []
        for member in reader.object.members {
            let path = reader.path.appending(member.key)
            if member.key.isEmpty { sink.report(path, "tool name must not be empty") }
            switch member.value {
            case .bool(true): out.append(ToolCacheRule(tool: member.key, policy: .defaultTTL))
            case .bool(false): out.append(ToolCacheRule(tool: member.key, policy: .never))
            case .string(let text):
                if let d = parseDuration(text), d > .zero, d <= .seconds(86400 * 30) {
                    out.append(ToolCacheRule(tool: member.key, policy: .ttl(d)))
                } else {
                    sink.report(path, "\"\(text)\" is not a duration between 1ms and 30d (e.g. \"30s\")")
                }
            case .int(let ms) where ms > 0: out.append(ToolCacheRule(tool: member.key, policy: .ttl(.milliseconds(ms))))
            default: sink.report(path, "expected true (the default TTL), false (never cache) or a TTL such as \"30s\"")
            }
        }
        return out
    }

    func decodeInvalidationRules(_ value: JSONValue, at path: ConfigPath) -> [InvalidationRule] {
        guard let items = value.arrayValue else {
            sink.report(path, "expected an array of {\"tool\", \"invalidates\", \"arguments\"}, got \(value.typeName)")
            return []
        }
        var out: [InvalidationRule] = []
        for (i, item) in items.enumerated() {
            guard var r = FieldReader(item, at: path.appending(index: i), sink: sink) else { continue }
            let tool = r.nonEmptyString("tool")
            let targets = r.stringArray("invalidates")
            let arguments = r.stringArray("arguments") ?? []
            if r.object["tool"] == nil { sink.report(r.path, "needs \"tool\" (the writing tool)") }
            if targets == nil, r.object["invalidates"] == nil { sink.report(r.path, "needs \"invalidates\" (the tools whose results it makes stale)") }
            r.finish()
            if let tool, let targets { out.append(InvalidationRule(tool: tool, invalidates: targets, arguments: arguments)) }
        }
        return out
    }

    /// `distributed` is a URL string, or an object with `url` and connection options.
    func decodeDistributed(_ value: JSONValue, at path: ConfigPath) -> DistributedCacheOptions? {
        if case .string(let url) = value {
            return validRedisURL(url, at: path) ? DistributedCacheOptions(url: url) : nil
        }
        guard var r = FieldReader(value, at: path, sink: sink) else { return nil }
        var o: DistributedCacheOptions?
        if let url = r.nonEmptyString("url") {
            if validRedisURL(url, at: path.appending("url")) { o = DistributedCacheOptions(url: url) }
        } else if r.object["url"] == nil {
            sink.report(path, "needs \"url\" (redis://host:port/db)")
        }
        var d = o ?? DistributedCacheOptions(url: "")
        d.username = r.nonEmptyString("username")
        d.password = r.string("password")
        d.keyPrefix = r.string("keyPrefix") ?? d.keyPrefix
        d.connectTimeout = r.duration("connectTimeout", default: d.connectTimeout, in: .milliseconds(1)...(.seconds(60)))
        d.commandTimeout = r.duration("commandTimeout", default: d.commandTimeout, in: .milliseconds(1)...(.seconds(60)))
        d.poolSize = r.integer("poolSize", default: d.poolSize, in: 1...256)
        let tls = o?.url.lowercased().hasPrefix("rediss://") != false
        d.caFile = Self.caFile(&r, usable: tls, otherwise: "only applies to rediss:// (TLS)")
        let identity = Self.clientIdentity(&r, usable: tls, otherwise: "only applies to rediss:// (TLS)")
        d.clientCert = identity?.cert
        d.clientKey = identity?.key
        r.finish()
        return o == nil ? nil : d
    }

    private func validRedisURL(_ url: String, at path: ConfigPath) -> Bool {
        let lower = url.lowercased()
        guard lower.hasPrefix("redis://") || lower.hasPrefix("rediss://") || lower.hasPrefix("unix://") else {
            sink.report(path, "\"\(url)\" is not a Redis URL: use redis://host:port/db, rediss:// (TLS) or unix:///path/to/socket")
            return false
        }
        return true
    }

    func decodeOptimization(_ r: inout FieldReader) -> OptimizationOptions {
        var o = OptimizationOptions()
        o.enableBatching = r.bool("enableBatching", default: o.enableBatching)
        o.maxBatchSize = r.integer("maxBatchSize", default: o.maxBatchSize, in: 1...10_000)
        o.batchTimeout = r.duration("batchTimeout", default: o.batchTimeout, in: .zero...(.seconds(60)))
        o.enableConnectionPooling = r.bool("enableConnectionPooling", default: o.enableConnectionPooling)
        o.enableAdaptiveTimeouts = r.bool("enableAdaptiveTimeouts", default: o.enableAdaptiveTimeouts)
        o.relayServerRequests = r.bool("relayServerRequests", default: o.relayServerRequests)
        o.requestTimeout = r.duration("requestTimeout", default: o.requestTimeout, in: .milliseconds(1)...(.seconds(3600)))
        o.busyPoll = r.duration("busyPoll", default: o.busyPoll, in: .zero...(.milliseconds(10)))
        r.finish()
        return o
    }

    func decodeCoordination(_ r: inout FieldReader) -> CoordinationOptions {
        var o = CoordinationOptions()
        o.enableStateSynchronization = r.bool("enableStateSynchronization", default: o.enableStateSynchronization)
        o.enableDistributedTransactions = r.bool("enableDistributedTransactions", default: o.enableDistributedTransactions)
        o.consistencyModel = r.enumeration("consistencyModel", default: o.consistencyModel)
        o.syncInterval = r.duration("syncInterval", default: o.syncInterval, in: .milliseconds(1)...(.seconds(3600)))
        o.transactionTimeout = r.duration("transactionTimeout", default: o.transactionTimeout, in: .milliseconds(1)...(.seconds(3600)))
        o.transactionLog = r.nonEmptyString("transactionLog") ?? o.transactionLog
        o.coordinatorId = r.nonEmptyString("coordinatorId")
        o.fanOutConcurrency = r.integer("fanOutConcurrency", default: o.fanOutConcurrency, in: 1...10_000)
        o.redisUrl = r.nonEmptyString("redisUrl")
        r.finish()
        return o
    }

    func decodeTargets(_ r: inout FieldReader) -> Targets {
        var o = Targets()
        o.latencyReduction = r.double("latencyReduction", default: o.latencyReduction, in: 0...1)
        o.maxResponseTime = r.duration("maxResponseTime", default: o.maxResponseTime, in: .microseconds(1)...(.seconds(3600)))
        o.minSuccessRate = r.double("minSuccessRate", default: o.minSuccessRate, in: 0...1)
        o.maxServerCount = r.integer("maxServerCount", default: o.maxServerCount, in: 1...100_000)
        r.finish()
        return o
    }

    func decodeRequirements(_ r: inout FieldReader) -> Requirements {
        var o = Requirements()
        if r.object["maxResponseTime"] != nil {
            o.maxResponseTime = r.duration("maxResponseTime", default: .seconds(2), in: .microseconds(1)...(.seconds(3600)))
        }
        if r.object["minSuccessRate"] != nil {
            o.minSuccessRate = r.double("minSuccessRate", default: 0, in: 0...1)
        }
        r.finish()
        return o
    }

    func decodeAgents(_ reader: FieldReader, servers: [ServerConfig]) -> [AgentProfile] {
        let known = Set(servers.map(\.name) + servers.map(\.group))
        var out: [AgentProfile] = []
        var seen: Set<String> = []
        for member in reader.object.members where seen.insert(member.key).inserted {
            let path = reader.path.appending(member.key)
            if member.key.isEmpty { sink.report(path, "agent id must not be empty") }
            guard var r = FieldReader(member.value, at: path, sink: sink) else { continue }
            var agent = AgentProfile(id: member.key)
            if let allowed = r.stringArray("allowedServers") {
                for (i, name) in allowed.enumerated() where !known.contains(name) {
                    var message = "\"\(name)\" is not a server or group in mcpServers"
                    if let guess = FieldReader.closest(to: name, in: Array(known)) { message += " (did you mean \"\(guess)\"?)" }
                    sink.report(path.appending("allowedServers").appending(index: i), message)
                }
                agent.allowedServers = allowed
            }
            if let tools = r.stringArray("allowedTools") {
                for (i, pattern) in tools.enumerated() where pattern.isEmpty {
                    sink.report(path.appending("allowedTools").appending(index: i), "tool pattern must not be empty")
                }
                agent.allowedTools = tools
            }
            if var req = r.child("requirements") { agent.requirements = decodeRequirements(&req) }
            agent.priority = r.enumeration("priority", default: agent.priority)
            r.finish()
            out.append(agent)
        }
        return out
    }
}
