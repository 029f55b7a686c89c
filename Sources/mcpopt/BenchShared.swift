import ArgumentParser
import Dispatch
import Glibc
import MCPOptEngine
import MCPOptIO
import MCPOptJSON
import MCPOptRedis
import MCPOptSync

/// `mcpopt bench shared`: what the shared (L2) tier costs against a running Redis: an L2 read
/// as the engine makes it (`GET` + `PTTL` pipelined, on an event loop) one at a time and 8 in
/// flight, and the coherence lag (publish on one connection to delivery on a subscribed one).
/// scripts/bench-shared starts Redis and runs `redis-benchmark` GET beside it as the floor.
struct BenchShared: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "shared", abstract: "L2 (Redis) read latency and coherence lag against a running Redis.")

    @Option(help: "The Redis to measure against.")
    var url = "redis://127.0.0.1:6379"

    @Option(help: "rediss://: a PEM bundle of the CAs to trust instead of the system's.")
    var caFile: String?

    @Option(help: "Reads per measurement.")
    var requests = 50_000

    @Flag(help: "Print machine-readable JSON instead of a table.")
    var json = false

    func run() throws {
        guard var parsed = RedisEndpoint.parse(url) else { throw ValidationError("--url must be redis://host:port[/db], rediss://host:port[/db] or unix:///path") }
        if let caFile {
            guard parsed.tls != nil else { throw ValidationError("--ca-file applies to rediss:// only") }
            parsed.tls?.caFile = caFile
        }
        let endpoint = parsed
        let result = Cell<Result<JSONValue, RedisError>>()
        let requests = self.requests
        blockOn {
            do throws(RedisError) { result.value = .success(try await Self.measure(endpoint, requests: requests)) } catch { result.value = .failure(error) }
        }
        var rows: JSONValue
        switch result.value! {
        case .failure(let error): throw ValidationError("cannot measure: \(error.message)")
        case .success(let r): rows = r
        }
        // Between two engine instances: writes through one, the other's L1 told.
        let lag = Cell<JSONValue>()
        let url = self.url, caFile = self.caFile
        blockOn { lag.value = await Self.measureInstances(url: url, caFile: caFile, writes: min(2_000, requests)) }
        if case .object(var o) = rows, case .array(var list)? = o["rows"], let row = lag.value {
            list.append(row)
            o["rows"] = .array(list)
            rows = .object(o)
        }
        if json {
            print(rows.jsonString)
            return
        }
        func n(_ value: JSONValue?) -> String { JSONWriter.number(value?.doubleValue ?? .nan) }
        print("shared tier against \(endpoint.description), \(requests) reads per row (256-byte values)")
        for row in rows["rows"]?.arrayValue ?? [] {
            print((row["what"]?.stringValue ?? "").padding(34) + n(row["perSecond"]).leftPad(10) + "/s" + n(row["p50Us"]).leftPad(10) + " us p50"
                + n(row["p99Us"]).leftPad(10) + " us p99")
        }
    }

    static func measure(_ endpoint: RedisEndpoint, requests: Int) async throws(RedisError) -> JSONValue {
        let loop: EventLoop
        do { loop = try EventLoop() } catch { throw RedisError(.connect, error.message) }
        defer { loop.shutdown() }
        var connections: [RedisConnection] = []
        for _ in 0..<8 {
            let c = RedisConnection(endpoint: endpoint, loop: loop)
            try await c.connect(timeout: .seconds(2))
            connections.append(c)
        }
        let key = Array("mcpopt:bench:v:key".utf8), value = [UInt8](repeating: 0x61, count: 256)
        _ = try await connections[0].command([Array("SET".utf8), key, value, Array("PX".utf8), Array("600000".utf8)], timeout: .seconds(1))
        let read: [[[UInt8]]] = [[Array("GET".utf8), key], [Array("PTTL".utf8), key]]
        var rows: [JSONValue] = []
        for inFlight in [1, 8] {
            let latencies = Cell<[UInt64]>()
            latencies.value = []
            let started = BenchClock.nanos()
            let failure = Cell<RedisError>()
            await withTaskGroup(of: [UInt64].self) { group in
                for lane in 0..<inFlight {
                    let c = connections[lane]
                    // As in the gateway: the request's task runs on the loop its I/O uses.
                    group.addTask(executorPreference: loop) {
                        var mine: [UInt64] = []
                        mine.reserveCapacity(requests / inFlight)
                        for _ in 0..<(requests / inFlight) {
                            let t0 = BenchClock.nanos()
                            do throws(RedisError) { _ = try await c.pipeline(read, timeout: .seconds(1)) } catch {
                                failure.value = error
                                break
                            }
                            mine.append(BenchClock.nanos() - t0)
                        }
                        return mine
                    }
                }
                for await lane in group { latencies.value! += lane }
            }
            if let error = failure.value { throw error }
            let elapsed = Double(BenchClock.nanos() - started) / 1e9
            let sorted = latencies.value!.sorted()
            rows.append(["what": .string("L2 read (GET+PTTL), \(inFlight) in flight"), "perSecond": .double((Double(sorted.count) / elapsed).rounded()),
                         "p50Us": .double(Double(quantile(sorted, 0.5)) / 1000), "p99Us": .double(Double(quantile(sorted, 0.99)) / 1000)])
        }
        // Coherence lag: publish, then wait for the subscriber to see it (one at a time).
        let subscriber = RedisConnection(endpoint: endpoint, loop: loop)
        let arrivals = Cell<(lock: Lock, times: [UInt64])>()
        arrivals.value = (Lock(), [])
        let box = arrivals
        try await subscriber.connect(timeout: .seconds(2), onMessage: { _, _ in
            let now = BenchClock.nanos()
            box.value!.lock.withLock { box.value!.times.append(now) }
        })
        _ = try await subscriber.command([Array("SUBSCRIBE".utf8), Array("mcpopt:bench:ch".utf8)], timeout: .seconds(1))
        var lags: [UInt64] = []
        let messages = min(5_000, requests)
        for i in 0..<messages {
            let t0 = BenchClock.nanos()
            _ = try await connections[0].command([Array("PUBLISH".utf8), Array("mcpopt:bench:ch".utf8), Array("tags".utf8)], timeout: .seconds(1))
            // Bounded wait for the delivery.
            var spins = 0
            while box.value!.lock.withLock({ box.value!.times.count }) <= i, spins < 100_000 {
                spins += 1
                await Task.yield()
            }
            if let arrived = box.value!.lock.withLock({ box.value!.times.count > i ? box.value!.times[i] : nil }) { lags.append(arrived - t0) }
        }
        lags.sort()
        rows.append(["what": .string("coherence lag (publish -> delivered)"), "perSecond": .null,
                     "p50Us": .double(Double(quantile(lags, 0.5)) / 1000), "p99Us": .double(Double(quantile(lags, 0.99)) / 1000)])
        for c in connections + [subscriber] { c.close() }
        return ["benchmark": "shared", "url": .string(endpoint.description), "requests": .int(Int64(requests)), "rows": .array(rows)]
    }
}

extension BenchShared {
    /// Two engines sharing the Redis, each with a stdio mock server whose write answers at once:
    /// `writes` writes through the first; the second's coherence lag (publish to its L1).
    static func measureInstances(url: String, caFile: String?, writes: Int) async -> JSONValue {
        let profile = "/tmp/mcpopt-bench-shared-\(getpid()).json"
        let text = #"{"name": "records", "tools": [{"name": "update_record", "kind": "write", "argument": "id", "medianMs": 0, "p99Ms": 0}]}"#
        guard let file = fopen(profile, "w") else { return ["what": "coherence lag between two engines", "error": .string("cannot write \(profile)")] }
        fputs(text, file)
        fclose(file)
        defer { unlink(profile) }
        let config = #"""
            {"mcpServers": {"records": {"command": "\#(Demo.executablePath())", "args": ["mock-server", "--profile", "\#(profile)"], "trustAnnotations": true}},
             "caching": {"distributed": {"url": "\#(url)"\#(caFile.map { #", "caFile": "\#($0)""# } ?? "")}}}
            """#
        guard let a = try? Engine(json: config), let b = try? Engine(json: config) else { return ["what": "coherence lag between two engines", "error": "bad configuration"] }
        await a.start()
        await b.start()
        func state(_ e: Engine) -> String? { e.getOptimizationMetrics()["cache"]?["l2"]?["state"]?.stringValue }
        for _ in 0..<500 where state(a) != "up" || state(b) != "up" { try? await Task.sleep(for: .milliseconds(10)) }
        for i in 0..<writes {
            _ = await a.optimizeRequest(Array(#"{"jsonrpc":"2.0","id":\#(i),"method":"tools/call","params":{"name":"update_record","arguments":{"id":"r\#(i)"}}}"#.utf8))
        }
        try? await Task.sleep(for: .milliseconds(300))
        let l2 = b.getOptimizationMetrics()["cache"]?["l2"]
        await a.stop()
        await b.stop()
        let lag = l2?["coherenceLagMs"]
        return ["what": .string("coherence lag, engine to engine (\(l2?["invalidationsReceived"]?.integerValue ?? 0) of \(writes))"), "perSecond": .null,
                "p50Us": .double((lag?["p50"]?.doubleValue ?? .nan) * 1000), "p99Us": .double((lag?["p99"]?.doubleValue ?? .nan) * 1000)]
    }
}
