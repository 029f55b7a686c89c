import MCPOptCache
import MCPOptIO
import MCPOptJSON
import MCPOptMetrics
import MCPOptRouting
import MCPOptUpstream

extension Engine {
    // MARK: invalidation across instances

    /// Deletes `key` from the cache, in this instance and (with `caching.distributed`) in every
    /// instance sharing its Redis. `cache.delete` alone is local.
    @discardableResult
    public func invalidate(key: [UInt8]) -> Bool {
        runtime.shared?.publish(keys: [key])
        return cache.delete(key)
    }

    /// Invalidates the keys matching a glob pattern, here and in every instance sharing Redis.
    @discardableResult
    public func invalidate(pattern: String) -> Int {
        runtime.shared?.publish(patterns: [pattern])
        return cache.invalidate(pattern: pattern)
    }

    /// Invalidates a coherence group, here and in every instance sharing Redis.
    @discardableResult
    public func invalidateGroup(_ group: String) -> Int {
        runtime.shared?.publish(groups: [group])
        return cache.invalidateGroup(group)
    }

    /// Invalidates a tag, here, in every instance sharing Redis, and the tag's L2 entries.
    @discardableResult
    public func invalidateTag(_ tag: String) -> Int {
        runtime.shared?.invalidate(tags: [tag])
        return cache.invalidateTag(tag)
    }

    /// The request path's figures, in the original brief's shape: routing, cache, system,
    /// coordination. Latency reduction compares what requests cost with what they would have
    /// cost unoptimized (docs/METRICS.md): a request served by a server would have cost the
    /// same; a cache hit would have cost the origin call that filled its entry; a merged request
    /// would have cost the call it was merged into.
    public func getOptimizationMetrics() -> JSONValue {
        let m = runtime.metrics
        let decided = coordination.transactionsCommitted.load() + coordination.transactionsAborted.load()
        let transactionSuccessRate: JSONValue = decided == 0 ? .null : .double(Double(coordination.transactionsCommitted.load()) / Double(decided))
        let latency = m.latency.summary, upstream = m.upstreamLatency.summary, decisions = m.decisionLatency.summary
        let requests = m.requests.load(), succeeded = m.succeeded.load()
        let hits = m.cacheHits.load(), misses = m.cacheMisses.load()
        let baseline = Double(m.baselineNanos.load()), actual = Double(m.actualNanos.load())
        let uptime = Double(monotonicNanos() &- m.startedNanos) / 1e9
        let calls = m.upstreamCalls.load()
        let cacheStats = cache.stats()
        let active = runtime.catalogs.filter { $0.error == nil }.count
        func ms(_ nanos: UInt64) -> JSONValue { .double((Double(nanos) / 1e3).rounded() / 1e3) }
        func us(_ nanos: UInt64) -> JSONValue { .double((Double(nanos) / 10).rounded() / 100) }
        func ratio(_ a: Double, _ b: Double) -> JSONValue { b > 0 ? .double(a / b) : .null }
        return [
            "routing": [
                "decisions": .int(Int64(decisions.count)),
                "decisionTimeP50Us": us(decisions.p50), "decisionTimeP99Us": us(decisions.p99),
                "errors": .int(Int64(m.routingErrors.load())),
                // Share of upstream attempts that were a retry or went to an alternative.
                "fallbackRate": ratio(Double(m.retries.load()), Double(calls)),
                // Share of routed requests whose first choice answered.
                "accuracy": calls > 0 ? .double(1 - Double(m.retries.load()) / Double(calls)) : .null,
            ],
            "cache": [
                "hits": .int(Int64(hits)), "misses": .int(Int64(misses)),
                "hitRate": ratio(Double(hits), Double(hits + misses)),
                "coalesced": .int(Int64(m.coalesced.load())),
                "invalidations": .int(Int64(m.invalidations.load())),
                // Fills refused because an invalidation raced them (a stale result not stored).
                "coherenceConflicts": .int(Int64(cacheStats.rejectedFills)),
                "items": .int(Int64(cacheStats.items)), "bytesUsed": .int(Int64(cacheStats.bytesUsed)),
                // Refresh-ahead (warmingStrategy): share of refreshed entries hit again.
                "warmingEfficiency": runtime.warming.efficiency.map { .double($0) } ?? .null,
                "refreshes": .int(Int64(runtime.warming.started.load())),
                "refreshesFailed": .int(Int64(runtime.warming.failed.load())),
                "hotSetRestored": .int(Int64(m.hotSetRestored.load())),
                // The shared tier in Redis (null when not configured).
                "l2": runtime.shared?.summary ?? .null,
            ],
            "system": [
                "requests": .int(Int64(requests)), "succeeded": .int(Int64(succeeded)), "failed": .int(Int64(m.failed.load())),
                "successRate": ratio(Double(succeeded), Double(requests)),
                "latencyMs": ["mean": .double((latency.mean / 1e3).rounded() / 1e3), "p50": ms(latency.p50), "p99": ms(latency.p99), "max": ms(latency.max)],
                "upstreamLatencyMs": ["mean": .double((upstream.mean / 1e3).rounded() / 1e3), "p50": ms(upstream.p50), "p99": ms(upstream.p99)],
                "latencyReduction": baseline > 0 ? .double(max(0, 1 - actual / baseline)) : .null,
                "throughputImprovement": actual > 0 ? .double(baseline / actual) : .null,
                "throughputRps": uptime > 0 ? .double(Double(requests) / uptime) : .null,
                "upstreamCalls": .int(Int64(calls)), "retries": .int(Int64(m.retries.load())), "failovers": .int(Int64(m.failovers.load())),
                "overloads": .int(Int64(m.overloads.load())),
                "batches": .int(Int64(m.batches.load())), "batchedRequests": .int(Int64(m.batchedRequests.load())),
                "hedges": .int(Int64(m.hedges.load())), "hedgeWins": .int(Int64(m.hedgeWins.load())),
                "staleServed": .int(Int64(m.staleServed.load())),
                "uptimeSeconds": .double(uptime.rounded()),
                "ioBackend": runtime.ioBackend.map { .string($0) } ?? .null,
                "ioFeatures": runtime.ioFeatures.map { .array($0.map { .string($0) }) } ?? .null,
            ],
            "coordination": [
                "activeServers": .int(Int64(active)),
                "configuredServers": .int(Int64(config.activeServers.count)),
                "syncOperations": .int(Int64(coordination.fanOuts.load() + coordination.transactionsStarted.load())),
                "fanOutOperations": .int(Int64(coordination.fanOuts.load())),
                "fanOutCalls": .int(Int64(coordination.fanOutCalls.load())),
                "transactions": [
                    "started": .int(Int64(coordination.transactionsStarted.load())),
                    "committed": .int(Int64(coordination.transactionsCommitted.load())),
                    "aborted": .int(Int64(coordination.transactionsAborted.load())),
                    "inDoubt": .int(Int64(coordination.transactionsInDoubt.load())),
                    "recovered": .int(Int64(coordination.recovered.load())),
                ],
                "transactionSuccessRate": transactionSuccessRate,
                "stateSync": coordination.replicator?.status ?? ["consistencyModel": .string("local")],
            ],
        ]
    }

    /// The metrics in the Prometheus text exposition format (for `/metrics`).
    public func prometheusText() -> String {
        let m = runtime.metrics
        var p = PrometheusText()
        p.counter("mcpopt_requests_total", help: "Requests through optimizeRequest.", value: Double(m.requests.load()))
        p.counter("mcpopt_requests_failed_total", help: "Requests answered with an error.", value: Double(m.failed.load()))
        p.counter("mcpopt_cache_hits_total", help: "Requests answered from the in-process cache.", value: Double(m.cacheHits.load()))
        p.counter("mcpopt_cache_misses_total", help: "Cacheable requests not in the cache.", value: Double(m.cacheMisses.load()))
        p.counter("mcpopt_coalesced_total", help: "Requests merged into an identical one in flight.", value: Double(m.coalesced.load()))
        p.counter("mcpopt_upstream_calls_total", help: "Requests sent to servers (attempts).", value: Double(m.upstreamCalls.load()))
        p.counter("mcpopt_retries_total", help: "Attempts after a failed one.", value: Double(m.retries.load()))
        p.counter("mcpopt_failovers_total", help: "Retries that went to another server.", value: Double(m.failovers.load()))
        p.counter("mcpopt_invalidations_total", help: "Cached results dropped by writes and notifications.", value: Double(m.invalidations.load()))
        p.counter("mcpopt_hedges_total", help: "Hedged attempts (a second server asked after the first was slow).", value: Double(m.hedges.load()))
        p.counter("mcpopt_hedge_wins_total", help: "Hedged attempts that answered first.", value: Double(m.hedgeWins.load()))
        p.counter("mcpopt_routing_errors_total", help: "Requests no server could take.", value: Double(m.routingErrors.load()))
        p.summary("mcpopt_request_latency_nanoseconds", help: "optimizeRequest latency.", m.latency.summary)
        p.summary("mcpopt_upstream_latency_nanoseconds", help: "Latency of successful server calls.", m.upstreamLatency.summary)
        p.summary("mcpopt_routing_decision_nanoseconds", help: "Routing decision time.", m.decisionLatency.summary)
        for s in router.serverStats() {
            let labels = [("server", s.id), ("group", s.group)]
            p.gauge("mcpopt_server_up", help: "1 when the server answered its last listing or probe.", value: s.health == .unhealthy ? 0 : 1, labels: labels)
            p.gauge("mcpopt_server_circuit_open", help: "1 while the server's circuit breaker is open.", value: s.circuit == .open ? 1 : 0, labels: labels)
            p.gauge("mcpopt_server_success_rate", help: "Recent success rate.", value: s.successRate, labels: labels)
            p.gauge("mcpopt_server_in_flight", help: "Requests in flight.", value: Double(s.inFlight), labels: labels)
        }
        if let l2 = runtime.shared {
            p.gauge("mcpopt_l2_up", help: "1 while the shared cache (Redis) is reachable and subscribed.", value: l2.isUp ? 1 : 0)
            p.counter("mcpopt_l2_hits_total", help: "Shared-cache hits.", value: Double(l2.hits.load()))
            p.counter("mcpopt_l2_misses_total", help: "Shared-cache misses.", value: Double(l2.misses.load()))
            p.counter("mcpopt_l2_errors_total", help: "Shared-cache commands that failed or timed out.", value: Double(l2.errors.load()))
            p.counter("mcpopt_l2_bypassed_total", help: "Shared-cache operations skipped while it was down.", value: Double(l2.bypassed.load()))
            p.counter("mcpopt_l2_invalidations_sent_total", help: "Invalidations published.", value: Double(l2.invalidationsSent.load()))
            p.counter("mcpopt_l2_invalidations_received_total", help: "Invalidations received from other instances.", value: Double(l2.invalidationsReceived.load()))
        }
        return p.text
    }

    /// Reads the TLS files of https:// servers again (`caFile`, `clientCert`, `clientKey`: a
    /// renewed certificate, a rotated CA) for the connections opened from now on. Returns the
    /// problems, "server: reason", of those whose files did not load: they keep what they had.
    /// The shared cache's Redis connections keep theirs until the engine restarts.
    public func reloadServerCertificates() async -> [String] {
        var problems: [String] = []
        for backend in runtime.allBackends {
            guard let upstream = backend.upstream as? HTTPUpstream, let problem = await upstream.reloadTLS() else { continue }
            problems.append("\(backend.name): \(problem)")
        }
        return problems.sorted()
    }

    /// Probes every server (`ping` on handshake-era sessions, `server/discover` on modern ones,
    /// which have no ping) within `timeout`, in parallel. healthy: every server answered;
    /// degraded: some did; unhealthy: none did (or none is configured).
    public func performHealthCheck(timeout: Duration = .seconds(2)) async -> JSONValue {
        if !runtime.isReady { await start() }
        let backends = runtime.backends
        let results = await withTaskGroup(of: (String, Bool, Double, String?).self) { group in
            for backend in backends {
                group.addTask {
                    let method = backend.version?.era == .modern ? "server/discover" : "ping"
                    let started = monotonicNanos()
                    do {
                        _ = try await backend.request(UpstreamRequest(method: method, params: method == "ping" ? nil : Array("{}".utf8)), timeout: timeout)
                        return (backend.name, true, Double(monotonicNanos() &- started) / 1e6, nil)
                    } catch {
                        return (backend.name, false, Double(monotonicNanos() &- started) / 1e6, (error as? UpstreamError)?.message ?? "\(error)")
                    }
                }
            }
            var all: [(String, Bool, Double, String?)] = []
            for await r in group { all.append(r) }
            return all
        }
        for (name, up, _, _) in results {
            _ = router.setHealth(server: name, up ? .healthy : .unhealthy)
            if runtime.markUp(name, up) { runtime.events.emit(up ? .serverUp : .serverDown, ["server": .string(name)]) }
        }
        let upCount = results.filter { $0.1 }.count
        let status = upCount == results.count && !results.isEmpty ? "healthy" : upCount > 0 ? "degraded" : "unhealthy"
        let servers: [JSONValue] = config.activeServers.compactMap { s in
            guard let r = results.first(where: { $0.0 == s.name }) else { return nil }
            var o: JSONObject = ["name": .string(s.name), "group": .string(s.group), "transport": .string(s.transport.name),
                                 "up": .bool(r.1), "probeMs": .double((r.2 * 1000).rounded() / 1000),
                                 "circuit": .string(router.circuitState(server: s.name)?.rawValue ?? "closed")]
            if let e = r.3 { o["error"] = .string(e) }
            if let v = runtime.backend(s.name)?.version { o["protocolVersion"] = .string(v.rawValue) }
            return .object(o)
        }
        return ["status": .string(status), "servers": .array(servers)]
    }
}
