import ArgumentParser
import Glibc
import MCPOptCoordination
import MCPOptEngine
import MCPOptJSON
import MCPOptSync

/// `mcpopt bench coordination`: two-phase commit latency across 3 and 10 participants against
/// its floor (two parallel round trips to the participants plus one fsync, each measured here),
/// a fan-out across 100 servers, and (with --redis) how long shared state takes to converge
/// between two engine instances. Participants are `mcpopt mock-server --participant` over
/// stdio (in-memory, answering at once), so the figures are the coordinator's own costs.
struct BenchCoordination: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "coordination",
                                                    abstract: "Two-phase commit against its floor, fan-out across 100 servers, state convergence.")

    @Option(help: "Transactions per participant count.")
    var transactions = 300

    @Option(help: "Servers in the fan-out measurement.")
    var fanOutServers = 100

    @Option(help: "Fan-out operations per policy.")
    var fanOuts = 50

    @Option(help: "A Redis for the state convergence rows (redis://host:port); without it they are skipped.")
    var redis: String?

    @Option(help: "Directory for the decision log (its disk's fsync is part of the figure).")
    var directory = "/tmp"

    @Flag(help: "Print machine-readable JSON instead of a table.")
    var json = false

    func validate() throws {
        guard transactions > 0, fanOuts > 0, (1...1000).contains(fanOutServers) else {
            throw ValidationError("--transactions and --fan-outs must be positive, --fan-out-servers between 1 and 1000")
        }
    }

    func run() throws {
        let out = Cell<JSONValue>()
        let (transactions, fanOutServers, fanOuts, redis, directory) = (self.transactions, self.fanOutServers, self.fanOuts, self.redis, self.directory)
        blockOn {
            out.value = await Self.measure(transactions: transactions, fanOutServers: fanOutServers, fanOuts: fanOuts, redis: redis, directory: directory)
        }
        let result = out.value!
        if let error = result["error"]?.stringValue { throw ValidationError(error) }
        if json {
            print(result.jsonString)
            return
        }
        func n(_ value: JSONValue?) -> String { value.flatMap(\.doubleValue).map { JSONWriter.number(($0 * 100).rounded() / 100) } ?? "-" }
        print("coordination (participants: stdio mock servers answering at once; fsync on \(directory): \(n(result["fsyncP50Us"])) us p50)")
        print("what".padding(44) + "p50 ms".leftPad(10) + "p99 ms".leftPad(10) + "floor ms".leftPad(10) + "x floor".leftPad(9))
        for row in result["rows"]?.arrayValue ?? [] {
            print((row["what"]?.stringValue ?? "").padding(44) + n(row["p50Ms"]).leftPad(10) + n(row["p99Ms"]).leftPad(10)
                + n(row["floorMs"]).leftPad(10) + n(row["timesFloor"]).leftPad(9))
        }
    }

    // MARK: measurement

    static func measure(transactions: Int, fanOutServers: Int, fanOuts: Int, redis: String?, directory: String) async -> JSONValue {
        let base = "\(directory)/mcpopt-bench-coordination-\(getpid())"
        mkdir(base, 0o700)
        defer {
            for file in ["profile.json", "tx.db", "tx.db-wal", "tx.db-shm", "fsync"] { unlink("\(base)/\(file)") }
            rmdir(base)
        }
        let profile = "\(base)/profile.json"
        let text = #"{"name": "participant", "tools": [{"name": "echo", "kind": "read", "argument": "id", "medianMs": 0, "p99Ms": 0}]}"#
        guard let file = fopen(profile, "w") else { return ["error": .string("cannot write \(profile)")] }
        fputs(text, file)
        fclose(file)
        let fsync = fsyncMicros("\(base)/fsync")
        var rows: [JSONValue] = []

        // Two-phase commit across 3 and 10.
        let servers = (0..<10).map { "p\($0)" }
        guard let engine = try? Engine(json: config(servers, profile: profile, extra: #", "coordination": {"enableDistributedTransactions": true, "transactionLog": "\#(base)/tx.db"}"#)) else {
            return ["error": "bad configuration"]
        }
        await engine.start()
        for n in [3, 10] {
            let group = Array(servers.prefix(n))
            // The floor's round trip: one call to each of the n at once (what prepare and commit each cost at least).
            var rounds: [UInt64] = []
            for i in 0..<transactions {
                let t0 = BenchClock.nanos()
                _ = try? await engine.coordinateOperation("echo", servers: group, data: ["id": .string("r\(i)")])
                rounds.append(BenchClock.nanos() - t0)
            }
            var commits: [UInt64] = []
            var failed = 0
            for i in 0..<transactions {
                var options = CoordinationCallOptions()
                options.mode = .transaction
                let t0 = BenchClock.nanos()
                let report = try? await engine.coordinateOperation("bench", servers: group, data: ["i": .int(Int64(i))], options: options)
                commits.append(BenchClock.nanos() - t0)
                if report?.success != true { failed += 1 }
            }
            rounds.sort()
            commits.sort()
            let floor = 2 * Double(quantile(rounds, 0.5)) / 1e6 + fsync / 1000
            rows.append(["what": .string("fan-out round, \(n) participants"), "p50Ms": ms(quantile(rounds, 0.5)), "p99Ms": ms(quantile(rounds, 0.99))])
            rows.append(["what": .string("2PC commit, \(n) participants\(failed > 0 ? " (\(failed) failed)" : "")"), "p50Ms": ms(quantile(commits, 0.5)),
                         "p99Ms": ms(quantile(commits, 0.99)), "floorMs": .double(floor), "timesFloor": .double(Double(quantile(commits, 0.5)) / 1e6 / floor)])
        }
        await engine.stop()

        // Fan-out across many servers.
        let many = (0..<fanOutServers).map { "f\($0)" }
        if let wide = try? Engine(json: config(many, profile: profile, extra: #", "coordination": {"fanOutConcurrency": \#(fanOutServers)}"#)) {
            await wide.start()
            for (label, policy) in [("all", FanOutPolicy.all), ("quorum \(fanOutServers / 2 + 1)", .quorum(fanOutServers / 2 + 1)), ("first success", .firstSuccess)] {
                var times: [UInt64] = []
                var options = CoordinationCallOptions()
                options.policy = policy
                var incomplete = 0
                for i in 0..<fanOuts {
                    let t0 = BenchClock.nanos()
                    let report = try? await wide.coordinateOperation("echo", servers: many, data: ["id": .string("w\(i)")], options: options)
                    times.append(BenchClock.nanos() - t0)
                    if report?.success != true { incomplete += 1 }
                }
                times.sort()
                rows.append(["what": .string("fan-out, \(fanOutServers) servers, \(label)\(incomplete > 0 ? " (\(incomplete) failed)" : "")"),
                             "p50Ms": ms(quantile(times, 0.5)), "p99Ms": ms(quantile(times, 0.99))])
            }
            await wide.stop()
        }

        if let redis { rows += await convergence(redis: redis, writes: min(transactions * 3, 2_000)) }
        return ["benchmark": "coordination", "fsyncP50Us": .double(fsync), "transactions": .int(Int64(transactions)), "rows": .array(rows)]
    }

    /// Two engines on one Redis: a write in one, until the other has it (eventual); a strong
    /// write and a linearizable read from the other (strong).
    static func convergence(redis: String, writes: Int) async -> [JSONValue] {
        var rows: [JSONValue] = []
        for model in ["eventual", "strong"] {
            let config = #"{"mcpServers": {}, "coordination": {"enableStateSynchronization": true, "consistencyModel": "\#(model)", "redisUrl": "\#(redis)"}}"#
            guard let a = try? Engine(json: config), let b = try? Engine(json: config) else { continue }
            await a.start()
            await b.start()
            var times: [UInt64] = []
            if model == "eventual" {
                let arrived = Cell<(lock: Lock, times: [String: UInt64])>()
                arrived.value = (Lock(), [:])
                let box = arrived
                let watch = b.state.watch(prefix: "bench/") { key, _ in
                    let now = BenchClock.nanos()
                    box.value!.lock.withLock { box.value!.times[key] = now }
                }
                for i in 0..<writes {
                    let key = "bench/\(i)"
                    let t0 = BenchClock.nanos()
                    a.state.put(key, Array("v\(i)".utf8))
                    // Bounded wait for the other instance (2 s).
                    var seen: UInt64?
                    for _ in 0..<200_000 {
                        seen = box.value!.lock.withLock { box.value!.times[key] }
                        if seen != nil { break }
                        await Task.yield()
                    }
                    if let seen { times.append(seen - t0) }
                }
                b.state.unwatch(watch)
            } else {
                for i in 0..<writes {
                    let t0 = BenchClock.nanos()
                    _ = try? await a.putState("bench/strong", Array("v\(i)".utf8))
                    let read = try? await b.getState("bench/strong")
                    if read.map({ String(decoding: $0.value, as: UTF8.self) }) == "v\(i)" { times.append(BenchClock.nanos() - t0) }
                }
            }
            times.sort()
            rows.append(["what": .string(model == "eventual" ? "state: write to other instance has it (eventual)" : "state: strong write + read from the other"),
                         "p50Ms": ms(quantile(times, 0.5)), "p99Ms": ms(quantile(times, 0.99)), "samples": .int(Int64(times.count))])
            await a.stop()
            await b.stop()
        }
        return rows
    }

    static func config(_ servers: [String], profile: String, extra: String) -> String {
        let entries = servers.map { #""\#($0)": {"command": "\#(Demo.executablePath())", "args": ["mock-server", "--profile", "\#(profile)", "--name", "\#($0)", "--participant"]}"# }
        return #"{"mcpServers": {\#(entries.joined(separator: ", "))}\#(extra)}"#
    }

    /// Median cost of a small write plus fdatasync, in microseconds (the decision's fsync).
    static func fsyncMicros(_ path: String) -> Double {
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
        guard fd >= 0 else { return .nan }
        defer { close(fd) }
        var samples: [UInt64] = []
        let record = [UInt8](repeating: 0x78, count: 128)
        for i in 0..<200 {
            let t0 = BenchClock.nanos()
            _ = record.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(i * 128)) }
            fdatasync(fd)
            samples.append(BenchClock.nanos() - t0)
        }
        samples.sort()
        return Double(quantile(samples, 0.5)) / 1000
    }

    static func ms(_ nanos: UInt64) -> JSONValue { .double(Double(nanos) / 1e6) }
}
