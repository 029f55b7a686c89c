import MCPOptJSON

extension EngineConfig {
    /// The configuration in force, every default filled in, in the document's own shape
    /// (durations in milliseconds, sizes in bytes). With `redactingSecrets`, environment
    /// values, header values and passwords read "<redacted>", so the result can be logged.
    public func effectiveJSON(redactingSecrets: Bool = true) -> JSONValue {
        func secret(_ s: String) -> JSONValue { .string(redactingSecrets ? "<redacted>" : s) }
        func ms(_ d: Duration) -> JSONValue { .double(d.milliseconds) }

        var serverObject = JSONObject()
        for s in servers {
            var o = JSONObject()
            switch s.transport {
            case .stdio(let command, let args, let env, let cwd):
                o["type"] = "stdio"
                o["command"] = .string(command)
                o["args"] = .array(args.map { .string($0) })
                o["env"] = .object(JSONObject(env.map { (key: $0.name, value: secret($0.value)) }))
                if let cwd { o["cwd"] = .string(cwd) }
            case .http(let url, let headers):
                o["type"] = "http"
                o["url"] = .string(url.description)
                o["headers"] = .object(JSONObject(headers.map { (key: $0.name, value: secret($0.value)) }))
                if let caFile = s.caFile { o["caFile"] = .string(caFile) }
                if let cert = s.clientCert, let key = s.clientKey { o["clientCert"] = .string(cert); o["clientKey"] = .string(key) }
            }
            o["group"] = .string(s.group)
            o["weight"] = .double(s.weight)
            o["tags"] = .array(s.tags.map { .string($0) })
            o["disabled"] = .bool(s.disabled)
            o["trustAnnotations"] = .bool(s.trustAnnotations)
            o["stateful"] = .bool(s.stateful)
            o["protocol"] = .string(s.protocolEra.rawValue)
            o["maxConcurrency"] = .int(Int64(s.maxConcurrency))
            serverObject[s.name] = .object(o)
        }

        var distributed: JSONValue = .null
        if let d = caching.distributed {
            var o: JSONObject = [
                "url": .string(d.url), "keyPrefix": .string(d.keyPrefix),
                "connectTimeout": ms(d.connectTimeout), "commandTimeout": ms(d.commandTimeout),
                "poolSize": .int(Int64(d.poolSize)),
            ]
            if let u = d.username { o["username"] = .string(u) }
            if let p = d.password { o["password"] = secret(p) }
            if let caFile = d.caFile { o["caFile"] = .string(caFile) }
            if let cert = d.clientCert, let key = d.clientKey { o["clientCert"] = .string(cert); o["clientKey"] = .string(key) }
            distributed = .object(o)
        }

        var agentsObject = JSONObject()
        for a in agents {
            var o = JSONObject()
            o["allowedServers"] = a.allowedServers.map { .array($0.map { .string($0) }) } ?? .null
            o["allowedTools"] = a.allowedTools.map { .array($0.map { .string($0) }) } ?? .null
            var req = JSONObject()
            if let t = a.requirements.maxResponseTime { req["maxResponseTime"] = ms(t) }
            if let r = a.requirements.minSuccessRate { req["minSuccessRate"] = .double(r) }
            o["requirements"] = .object(req)
            o["priority"] = .string(a.priority.rawValue)
            agentsObject[a.id] = .object(o)
        }

        return .object([
            "mcpServers": .object(serverObject),
            "routing": [
                "enablePredictiveRouting": .bool(routing.enablePredictiveRouting),
                "enableAdaptiveRouting": .bool(routing.enableAdaptiveRouting),
                "maxDecisionTime": ms(routing.maxDecisionTime),
                "predictionWindow": ms(routing.predictionWindow),
                "minConfidence": .double(routing.minConfidence),
            ],
            "caching": [
                "enableMultiLevel": .bool(caching.enableMultiLevel),
                "memoryCacheSize": .int(Int64(caching.memoryCacheSize)),
                "coherenceTimeout": ms(caching.coherenceTimeout),
                "defaultTTL": ms(caching.defaultTTL),
                "warmingStrategy": .string(caching.warmingStrategy.rawValue),
                "hotSetFile": caching.hotSetFile.map { .string($0) } ?? .null,
                "hotSetSize": .int(Int64(caching.hotSetSize)),
                "enableIntelligentInvalidation": .bool(caching.enableIntelligentInvalidation),
                "tools": .object(JSONObject(caching.tools.map { rule in
                    switch rule.policy {
                    case .defaultTTL: (key: rule.tool, value: JSONValue.bool(true))
                    case .never: (key: rule.tool, value: JSONValue.bool(false))
                    case .ttl(let d): (key: rule.tool, value: ms(d))
                    }
                })),
                "staleIfError": ms(caching.staleIfError),
                "invalidationRules": .array(caching.invalidationRules.map {
                    ["tool": .string($0.tool), "invalidates": .array($0.invalidates.map { .string($0) }), "arguments": .array($0.arguments.map { .string($0) })]
                }),

                "distributed": distributed,
            ],
            "optimization": [
                "enableBatching": .bool(optimization.enableBatching),
                "maxBatchSize": .int(Int64(optimization.maxBatchSize)),
                "batchTimeout": ms(optimization.batchTimeout),
                "enableConnectionPooling": .bool(optimization.enableConnectionPooling),
                "enableAdaptiveTimeouts": .bool(optimization.enableAdaptiveTimeouts),
                "relayServerRequests": .bool(optimization.relayServerRequests),
                "requestTimeout": ms(optimization.requestTimeout),
                "busyPoll": ms(optimization.busyPoll),
            ],
            "coordination": [
                "enableStateSynchronization": .bool(coordination.enableStateSynchronization),
                "enableDistributedTransactions": .bool(coordination.enableDistributedTransactions),
                "consistencyModel": .string(coordination.consistencyModel.rawValue),
                "syncInterval": ms(coordination.syncInterval),
                "transactionTimeout": ms(coordination.transactionTimeout),
                "transactionLog": .string(coordination.transactionLog),
                "coordinatorId": coordination.coordinatorId.map { .string($0) } ?? .null,
                "fanOutConcurrency": .int(Int64(coordination.fanOutConcurrency)),
                "redisUrl": coordination.redisUrl.map { url in url.contains("@") ? secret(url) : .string(url) } ?? .null,
            ],
            "targets": [
                "latencyReduction": .double(targets.latencyReduction),
                "maxResponseTime": ms(targets.maxResponseTime),
                "minSuccessRate": .double(targets.minSuccessRate),
                "maxServerCount": .int(Int64(targets.maxServerCount)),
            ],
            "agents": .object(agentsObject),
        ])
    }

}
