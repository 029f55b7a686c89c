import Glibc
import MCPOptIO
import MCPOptJSON
import MCPOptMock
import MCPOptSync

/// What `mcpopt demo` runs.
public struct DemoOptions: Sendable {
    public var servers = 12
    public var requests = 3_000
    public var seed: UInt64 = 42
    /// Stop starting new chunks once this much time has passed (both runs get the same chunks).
    public var durationSeconds: Double?
    /// Steps replayed at once (agents working side by side).
    public var lanes = 8
    /// Replay this trace (JSON lines) instead of generating one.
    public var tracePath: String?
    /// The mcpopt program (it runs the mock servers).
    public var executable: String
    /// Where profiles and server logs go.
    public var workDirectory: String
    /// Inject the degradation and the crash (off: the pure effect of caching and routing).
    public var faults = true
    /// A Redis for the shared cache: the engine run fills it, then a second engine instance
    /// (cold L1) replays the trace against it.
    public var sharedCacheURL: String?
    /// Progress lines (to stderr).
    public var progress: (@Sendable (String) -> Void)?

    public init(executable: String, workDirectory: String) {
        self.executable = executable
        self.workDirectory = workDirectory
    }
}

/// One run of the trace through one client.
public struct RunResult: Sendable {
    public var label: String
    public var records: [CallRecord] = []
    /// Time spent replaying (the chunks of this run only).
    public var wallNanos: UInt64 = 0
}

public struct DemoResult: Sendable {
    public var options: DemoOptions
    public var fleet: [DemoServer]
    public var trace: Trace
    public var stepsReplayed: Int
    public var naive: RunResult
    public var engine: RunResult
    public var engineMetrics: JSONValue
    /// HTTP mock servers restarted after a crash (both fleets).
    public var fleetRestarts: Int
    /// With a shared cache: the second instance's run, and its engine's metrics.
    public var secondInstance: RunResult?
    public var secondInstanceMetrics: JSONValue?
}

/// The demo: the same trace replayed by a naive client and through the engine, each against
/// its own identical fleet (same profiles, same seed), in alternating chunks so that machine
/// noise and the servers' time-driven degradation fall on both alike.
public enum DemoRunner {
    public static func run(_ options: DemoOptions) async throws(DemoError) -> DemoResult {
        let say = options.progress ?? { _ in }
        guard options.servers >= FleetPlan.kinds.count else {
            throw DemoError("--servers must be at least \(FleetPlan.kinds.count) (one server per kind of the reference workload)")
        }
        let trace: Trace
        if let path = options.tracePath {
            guard let text = try? readText(path) else { throw DemoError("cannot read the trace \(path)") }
            do { trace = try Trace.parse(jsonLines: text) } catch { throw DemoError("\(path): \(error)") }
        } else {
            trace = TraceGenerator(seed: options.seed).generate(calls: options.requests)
        }
        var plan = FleetPlan.make(servers: options.servers, seed: options.seed,
                                  degradeAfterMs: max(1_000, Double(trace.callCount) * 0.8), crashEvery: max(20, trace.callCount / 60))
        if !options.faults {
            for i in plan.indices {
                plan[i].profile.degrade = nil
                plan[i].profile.crashAfter = 0
            }
        }
        mkdir(options.workDirectory, 0o755)
        let naiveDirectory = options.workDirectory + "/naive", engineDirectory = options.workDirectory + "/engine"
        mkdir(naiveDirectory, 0o755)
        mkdir(engineDirectory, 0o755)
        say("starting 2 x \(plan.count) mock servers (\(plan.filter { !$0.http }.count) stdio, \(plan.filter(\.http).count) HTTP each)")
        let naiveFleet = Fleet(servers: plan, executable: options.executable, directory: naiveDirectory)
        let engineFleet = Fleet(servers: plan, executable: options.executable, directory: engineDirectory)
        defer {
            naiveFleet.stop()
            engineFleet.stop()
        }
        try naiveFleet.start()
        try engineFleet.start()
        let loop: EventLoop
        do { loop = try EventLoop(name: "mcpopt-demo") } catch { throw DemoError("cannot start an event loop: \(error.message)") }
        defer { loop.shutdown() }
        let naive = NaiveClient(fleet: naiveFleet, loop: loop)
        let engine = try EngineClient(fleet: engineFleet, sharedCache: options.sharedCacheURL)
        do {
            try await naive.start()
            try await engine.start()
        } catch {
            await naive.stop()
            await engine.stop()
            throw error
        }

        var naiveRun = RunResult(label: "naive"), engineRun = RunResult(label: "mcpopt")
        let chunkSize = max(25, trace.steps.count / 12)
        let chunks = stride(from: 0, to: trace.steps.count, by: chunkSize).map { $0..<min($0 + chunkSize, trace.steps.count) }
        let began = monotonic()
        var replayed = 0
        for (index, range) in chunks.enumerated() {
            if let limit = options.durationSeconds, Double(monotonic() - began) / 1e9 > limit { break }
            let order: [(DemoClient, Bool)] = index % 2 == 0 ? [(naive, true), (engine, false)] : [(engine, false), (naive, true)]
            for (client, isNaive) in order {
                var run = isNaive ? naiveRun : engineRun
                let (records, wall) = await replay(trace.steps[range], client: client, lanes: options.lanes, offset: run.wallNanos)
                run.records += records
                run.wallNanos += wall
                if isNaive { naiveRun = run } else { engineRun = run }
            }
            replayed = range.upperBound
            let done = naiveRun.records.count
            say("chunk \(index + 1)/\(chunks.count): \(done) calls each; naive \(failures(naiveRun)) failed, mcpopt \(failures(engineRun)) failed")
        }
        let metrics = engine.engine.getOptimizationMetrics()
        await naive.stop()
        var second: RunResult?
        var secondMetrics: JSONValue?
        if let url = options.sharedCacheURL {
            // Another instance, cold L1, the same Redis: what the first one fetched serves it.
            say("second instance: replaying the trace with a cold L1 and the shared cache")
            try? await Task.sleep(for: .milliseconds(200))   // the first instance's last L2 writes land
            let other = try EngineClient(fleet: engineFleet, sharedCache: url)
            do {
                try await other.start()
            } catch {
                await engine.stop()
                await other.stop()
                throw error
            }
            var run = RunResult(label: "mcpopt, second instance")
            (run.records, run.wallNanos) = await replay(trace.steps[0..<replayed], client: other, lanes: options.lanes, offset: 0)
            second = run
            secondMetrics = other.engine.getOptimizationMetrics()
            await other.stop()
        }
        await engine.stop()
        return DemoResult(options: options, fleet: plan, trace: trace, stepsReplayed: replayed, naive: naiveRun, engine: engineRun, engineMetrics: metrics,
                          fleetRestarts: naiveFleet.restartCount + engineFleet.restartCount, secondInstance: second, secondInstanceMetrics: secondMetrics)
    }

    static func failures(_ run: RunResult) -> Int { run.records.filter { !$0.ok }.count }

    /// Replays steps on `lanes` lanes: each lane takes the next step and issues its calls
    /// together; returns the records and the wall time.
    static func replay(_ steps: ArraySlice<[TraceCall]>, client: DemoClient, lanes: Int, offset: UInt64) async -> ([CallRecord], UInt64) {
        let next = AtomicCounter()
        let start = monotonic()
        let base = steps.startIndex
        let stepsCopy = Array(steps)
        var records: [CallRecord] = []
        await withTaskGroup(of: [CallRecord].self) { group in
            for _ in 0..<max(1, lanes) {
                group.addTask {
                    var mine: [CallRecord] = []
                    while true {
                        let i = Int(next.add()) - 1
                        guard i < stepsCopy.count else { return mine }
                        await withTaskGroup(of: CallRecord.self) { calls in
                            for (j, call) in stepsCopy[i].enumerated() {
                                calls.addTask {
                                    let t0 = monotonic()
                                    let outcome = await client.call(call, id: (base + i) * 64 + j)
                                    let t1 = monotonic()
                                    return CallRecord(startNanos: offset + (t0 - start), latencyNanos: t1 - t0, ok: outcome.ok, server: outcome.server,
                                                      source: outcome.source, error: outcome.error)
                                }
                            }
                            for await record in calls { mine.append(record) }
                        }
                    }
                }
            }
            for await lane in group { records += lane }
        }
        return (records, monotonic() - start)
    }
}

@inline(__always) func monotonic() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func readText(_ path: String) throws(DemoError) -> String {
    guard let file = fopen(path, "r") else { throw DemoError("cannot read \(path)") }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = fread(&chunk, 1, chunk.count, file)
        if n <= 0 { break }
        bytes += chunk[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}
