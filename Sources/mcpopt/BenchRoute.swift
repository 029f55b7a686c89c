import ArgumentParser
import Dispatch
import Glibc
import MCPOptJSON
import MCPOptMock
import MCPOptRouting
import MCPOptSync

/// `mcpopt bench route`: routing decision time at 10, 100 and 1,000 servers with 10,000 tools
/// while another thread records statistics and republishes the table; table build cost and
/// memory; routing quality in a simulation.
struct BenchRoute: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "route", abstract: "Routing: decision time under concurrent updates, table build cost, memory, routing quality.")

    @Flag(help: "Print machine-readable JSON instead of a table.")
    var json = false

    @Option(help: "Tools in the table.")
    var tools = 10_000

    @Option(help: "Decisions timed per server count.")
    var decisions = 300_000

    @Option(help: "Statistic updates per second recorded by the background thread.")
    var updatesPerSecond = 1_000_000

    @Option(help: "Milliseconds between table republications by the background thread.")
    var republishMs = 10

    @Option(help: "Requests per routing simulation.")
    var simulationRequests = 20_000

    func run() throws {
        var rows: [JSONValue] = []
        for servers in [10, 100, 1_000] {
            rows.append(measure(servers: servers))
        }
        var quality: [JSONValue] = []
        for strategy in [RoutingStrategy.adaptive, .predictive, .peakEWMA, .leastOutstanding] {
            var settings = RouterSettings()
            settings.breaker.openDuration = .milliseconds(50)
            let result = RoutingSimulation(settings: settings, seed: 42, strategy: strategy)
                .run(requests: simulationRequests, sleepEvery: 200, pauseMillis: 5)
            quality.append([
                "strategy": .string(strategy.rawValue), "requests": .int(Int64(result.requests)),
                "meanLatencyMs": .double(result.meanLatencyMs), "bestMeanLatencyMs": .double(result.bestMeanLatencyMs),
                "regretMs": .double((result.regretMs * 100).rounded() / 100), "failedRequests": .int(Int64(result.failures)),
                "requestsToLeaveFailing": .int(Int64(result.requestsToLeaveFailing)),
                "requestsToReturnAfterRecovery": .int(Int64(result.requestsToReturn)),
                "requestsToLeaveDegraded": .int(Int64(result.requestsToLeaveDegraded)),
            ])
        }
        let result: JSONValue = ["benchmark": "route", "tools": .int(Int64(tools)), "decision": .array(rows), "quality": .array(quality)]
        if json {
            print(result.jsonString)
            return
        }
        func n(_ value: JSONValue?) -> String { JSONWriter.number(value?.doubleValue ?? .nan) }
        print("routing, \(tools) tools in replica groups of 5; background: \(updatesPerSecond) stat updates/s, republish every \(republishMs) ms")
        print("servers  route p50  p99     p99.9   decide p50  updates/s  republished  build+publish  flat bytes/server  /tool  stats bytes/pair")
        for row in rows {
            print(n(row["servers"]).leftPad(7) + (n(row["routeP50Ns"]) + " ns").leftPad(11) + (n(row["routeP99Ns"]) + " ns").leftPad(8)
                + (n(row["routeP999Ns"]) + " ns").leftPad(9) + (n(row["decideP50Ns"]) + " ns").leftPad(12)
                + n(row["achievedUpdatesPerSecond"]).leftPad(11) + n(row["republished"]).leftPad(13)
                + (n(row["buildPublishMs"]) + " ms").leftPad(15) + n(row["flatBytesPerServer"]).leftPad(19)
                + n(row["flatBytesPerTool"]).leftPad(7) + n(row["statsBytesPerPair"]).leftPad(18))
        }
        print("")
        print("quality (simulation)   mean ms  best ms  regret ms  failed  to leave failing  to return  to leave degraded")
        for row in quality {
            print("  " + (row["strategy"]?.stringValue ?? "").padding(20) + n(row["meanLatencyMs"]).leftPad(8) + n(row["bestMeanLatencyMs"]).leftPad(9)
                + n(row["regretMs"]).leftPad(11) + n(row["failedRequests"]).leftPad(8) + n(row["requestsToLeaveFailing"]).leftPad(18)
                + n(row["requestsToReturnAfterRecovery"]).leftPad(11) + n(row["requestsToLeaveDegraded"]).leftPad(19))
        }
    }

    private func makeServers(_ count: Int) -> [ServerInfo] {
        let groups = max(1, count / 5)
        var toolsByGroup = [[ToolInfo]](repeating: [], count: groups)
        for tool in 0..<tools { toolsByGroup[tool % groups].append(ToolInfo(name: "tool-\(tool)")) }
        return (0..<count).map { ServerInfo(id: "server-\($0)", group: "group-\($0 % groups)", tools: toolsByGroup[$0 % groups]) }
    }

    private func measure(servers count: Int) -> JSONValue {
        let servers = makeServers(count)
        let router = Router(settings: RouterSettings(), servers: servers)
        // Build + publish cost of the whole table.
        var builds: [UInt64] = []
        for _ in 0..<10 {
            let start = BenchClock.nanos()
            router.update { _ in }
            builds.append(BenchClock.nanos() - start)
        }
        builds.sort()
        let info = router.tableInfo
        // Tool names, pre-encoded.
        let names = (0..<tools).map { Array("tool-\($0)".utf8) }
        // Warm every (server, tool) pair with a few outcomes so strategies have history.
        for name in names.prefix(2_000) {
            name.withUnsafeBytes { tool in
                for _ in 0..<5 {
                    let choice = router.route(tool: tool)
                    router.complete(choice, latency: .microseconds(Int64(500 + mco_random() % 1000)), success: true, started: false)
                }
            }
        }
        // The background thread: statistic updates at the given rate, republication every
        // republishMs, until the foreground is done.
        let stop = StopFlag()
        let background = BackgroundCounts()
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) {
            let start = BenchClock.nanos()
            var nextPublish = start + UInt64(republishMs) * 1_000_000
            var updates = 0, published = 0
            var toggle = false
            while !stop.isSet {
                for index in 0..<1_000 {
                    let name = names[(updates + index) % names.count]
                    name.withUnsafeBytes { tool in
                        let choice = router.route(tool: tool)
                        router.complete(choice, latency: .microseconds(Int64(300 + index)), success: index % 50 != 0, started: false)
                    }
                }
                updates += 1_000
                let now = BenchClock.nanos()
                if now >= nextPublish {
                    toggle.toggle()
                    router.setHealth(server: "server-0", toggle ? .healthy : .unknown)
                    published += 1
                    nextPublish = now + UInt64(republishMs) * 1_000_000
                }
                // Pace to the target rate.
                let due = start + UInt64(Double(updates) / Double(updatesPerSecond) * 1e9)
                let after = BenchClock.nanos()
                if due > after { usleep(UInt32(min((due - after) / 1000, 100_000))) }
            }
            background.set(updates: updates, published: published, seconds: Double(BenchClock.nanos() - start) / 1e9)
        }
        // Foreground: time each decision.
        var overheads: [UInt64] = []
        for _ in 0..<10_000 {
            let start = BenchClock.nanos()
            overheads.append(BenchClock.nanos() - start)
        }
        overheads.sort()
        let clockCost = quantile(overheads, 0.5)
        var samples = [UInt64](repeating: 0, count: decisions)
        var random = BenchRandom(seed: 9)
        let order = (0..<decisions).map { _ in Int(random.next() % UInt64(names.count)) }
        var fallbacks = [Int32](repeating: 0, count: 3)
        fallbacks.withUnsafeMutableBufferPointer { out in
            for index in 0..<decisions {
                names[order[index]].withUnsafeBytes { tool in
                    let start = BenchClock.nanos()
                    let choice = router.route(tool: tool, fallbacks: out)
                    let elapsed = BenchClock.nanos() - start
                    samples[index] = elapsed > clockCost ? elapsed - clockCost : 0
                    precondition(choice.hasServer)
                }
            }
        }
        samples.sort()
        var decideSamples: [UInt64] = []
        for index in 0..<20_000 {
            let start = BenchClock.nanos()
            _ = router.decide(tool: "tool-\(order[index])")
            decideSamples.append(BenchClock.nanos() - start)
        }
        decideSamples.sort()
        stop.set()
        group.wait()
        let counts = background.get()
        let pairs = Double(info.candidates)
        return [
            "servers": .int(Int64(count)), "tools": .int(Int64(info.tools)), "candidatesPerTool": .double(pairs / Double(info.tools)),
            "routeP50Ns": .int(Int64(quantile(samples, 0.5))), "routeP99Ns": .int(Int64(quantile(samples, 0.99))),
            "routeP999Ns": .int(Int64(quantile(samples, 0.999))), "decideP50Ns": .int(Int64(quantile(decideSamples, 0.5))),
            "decideP99Ns": .int(Int64(quantile(decideSamples, 0.99))),
            "achievedUpdatesPerSecond": .int(Int64(Double(counts.updates) / counts.seconds)),
            "republished": .int(Int64(counts.published)),
            "buildPublishMs": .double((Double(quantile(builds, 0.5)) / 1e4).rounded() / 100),
            "flatBytesPerServer": .int(Int64(info.flatBytes / count)),
            "flatBytesPerTool": .int(Int64(info.flatBytes / max(1, info.tools))),
            "statsBytesPerPair": .int(Int64(info.statsBytes / max(1, info.statsCells))),
            "clockCostNs": .int(Int64(clockCost)),
        ]
    }
}

private func mco_random() -> UInt64 { UInt64.random(in: 0...UInt64.max) }

private final class StopFlag: @unchecked Sendable {
    private var flag = false
    private let lock = Lock()
    var isSet: Bool { lock.withLock { flag } }
    func set() { lock.withLock { flag = true } }
}

private final class BackgroundCounts: @unchecked Sendable {
    private var values = (updates: 0, published: 0, seconds: 1.0)
    private let lock = Lock()
    func set(updates: Int, published: Int, seconds: Double) { lock.withLock { values = (updates, published, seconds) } }
    func get() -> (updates: Int, published: Int, seconds: Double) { lock.withLock { values } }
}
