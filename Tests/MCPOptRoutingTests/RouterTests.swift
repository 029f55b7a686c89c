import Dispatch
import Foundation
import XCTest
@testable import MCPOptRouting

final class RouterTests: XCTestCase {
    private func tools(_ names: String...) -> [ToolInfo] { names.map { ToolInfo(name: $0) } }

    private func router(_ servers: [ServerInfo], configure: (inout RouterSettings) -> Void = { _ in }) -> Router {
        var settings = RouterSettings()
        configure(&settings)
        return Router(settings: settings, servers: servers)
    }

    /// Feeds `count` outcomes for a server's tool.
    private func feed(_ router: Router, _ server: String, _ tool: String, latencyMs: Double, success: Bool = true, count: Int = 20) {
        for _ in 0..<count { router.record(server: server, tool: tool, latency: .microseconds(Int64(latencyMs * 1000)), success: success) }
    }

    func testRegistryChangesAtRunTime() {
        let router = router([ServerInfo(id: "a", tools: tools("read", "write")), ServerInfo(id: "b", tools: tools("read"))])
        XCTAssertEqual(Set(router.servers(offering: "read").map(\.server)), ["a", "b"])
        XCTAssertEqual(router.servers(offering: "write").map(\.server), ["a"])
        XCTAssertEqual(router.decide(tool: "nope").outcome, .unknownTool)
        XCTAssertTrue(router.decide(tool: "nope").reasoning.contains("no registered server offers tool \"nope\""))
        let before = router.tableInfo.generation
        router.upsert(ServerInfo(id: "c", transport: "http", group: "g", tools: [ToolInfo(name: "search", annotations: ToolAnnotations(readOnly: true, idempotent: true))]))
        XCTAssertGreaterThan(router.tableInfo.generation, before)
        XCTAssertEqual(router.servers(offering: "search").first?.annotations.readOnly, true)
        XCTAssertTrue(router.setTools(server: "b", tools("read", "search")))
        XCTAssertEqual(Set(router.servers(offering: "search").map(\.server)), ["b", "c"])
        XCTAssertTrue(router.remove(server: "a"))
        XCTAssertFalse(router.remove(server: "a"))
        XCTAssertEqual(router.decide(tool: "write").outcome, .unknownTool)
        XCTAssertEqual(router.decide(tool: "read").server, "b")
        XCTAssertFalse(router.setHealth(server: "zz", .healthy))
        XCTAssertEqual(router.registeredServers.map(\.id), ["b", "c"])
    }

    func testPredictiveChoosesTheFastestAndFallsBackWhenUnsure() {
        let router = router((1...3).map { ServerInfo(id: "s\($0)", group: "g", tools: tools("t")) }) { $0.defaultStrategy = .predictive }
        // No history: confidence 0, least outstanding instead.
        let unsure = router.decide(tool: "t")
        XCTAssertEqual(unsure.outcome, .chosen)
        XCTAssertTrue(unsure.reasoning.contains("confidence threshold"), unsure.reasoning)
        feed(router, "s1", "t", latencyMs: 30)
        feed(router, "s2", "t", latencyMs: 5)
        feed(router, "s3", "t", latencyMs: 12)
        let decision = router.decide(tool: "t")
        XCTAssertEqual(decision.server, "s2")
        XCTAssertEqual(decision.fallbacks, ["s3", "s1"])
        XCTAssertGreaterThan(decision.confidence, 0.5)
        XCTAssertEqual(Double(decision.predictedLatency!.components.attoseconds) / 1e15, 5, accuracy: 0.5)
        XCTAssertTrue(decision.reasoning.contains("lowest predicted latency"), decision.reasoning)
        XCTAssertGreaterThan(decision.decisionNanos, 0)
    }

    func testAdaptiveExploresUnmeasuredServersFirst() {
        let router = router((1...3).map { ServerInfo(id: "s\($0)", tools: tools("t")) })
        feed(router, "s1", "t", latencyMs: 1)
        feed(router, "s2", "t", latencyMs: 2)
        // s3 has no history: adaptive tries it before exploiting s1.
        let decision = router.decide(tool: "t")
        XCTAssertEqual(decision.server, "s3")
        XCTAssertTrue(decision.reasoning.contains("not yet measured"), decision.reasoning)
        feed(router, "s3", "t", latencyMs: 50)
        var counts: [String: Int] = [:]
        for _ in 0..<2_000 { counts[router.decide(tool: "t").server!, default: 0] += 1 }
        XCTAssertGreaterThan(counts["s1", default: 0], 1_800, "exploits the fastest: \(counts)")
        XCTAssertGreaterThan(counts["s2", default: 0] + counts["s3", default: 0], 10, "but keeps exploring: \(counts)")
    }

    func testPowerOfTwoChoicesPrefersTheLessLoaded() {
        let router = router([ServerInfo(id: "busy", tools: tools("t")), ServerInfo(id: "idle", tools: tools("t"))]) { $0.defaultStrategy = .leastOutstanding }
        let choice = Array("t".utf8).withUnsafeBytes { router.route(tool: $0) }
        XCTAssertTrue(choice.hasServer)
        // Load "busy" with requests in flight (routed while it was the only server).
        router.remove(server: "idle")
        for _ in 0..<10 { router.begin(Array("t".utf8).withUnsafeBytes { router.route(tool: $0) }) }
        router.upsert(ServerInfo(id: "idle", tools: tools("t")))
        for _ in 0..<50 { XCTAssertEqual(router.decide(tool: "t").server, "idle") }
        XCTAssertEqual(router.decide(tool: "t", Requirements(strategy: .peakEWMA)).server, "idle")
    }

    func testConsistentHashingKeepsAffinityWithinBoundedLoads() {
        let router = router((1...5).map { ServerInfo(id: "r\($0)", group: "g", tools: tools("t")) }) { $0.defaultStrategy = .consistentHash }
        var owners: [String: String] = [:]
        for key in 0..<200 {
            let first = router.decide(tool: "t", Requirements(affinityKey: "user-\(key)")).server!
            XCTAssertEqual(router.decide(tool: "t", Requirements(affinityKey: "user-\(key)")).server, first)
            owners["user-\(key)"] = first
        }
        XCTAssertEqual(Set(owners.values).count, 5, "keys spread over every replica")
        // Removing one replica moves only its keys.
        router.remove(server: "r3")
        var moved = 0
        for (key, owner) in owners where owner != "r3" {
            if router.decide(tool: "t", Requirements(affinityKey: key)).server != owner { moved += 1 }
        }
        XCTAssertEqual(moved, 0)
        // Overload the owner of one key: it spills to another replica.
        let key = owners.first { $0.value != "r3" }!
        let choice = Array("t".utf8).withUnsafeBytes { router.route(tool: $0, FastRequirements(Requirements(affinityKey: key.key))) }
        for _ in 0..<20 { router.begin(choice) }
        XCTAssertNotEqual(router.decide(tool: "t", Requirements(affinityKey: key.key)).server, key.value)
    }

    func testRequirementsNoServerCanMeet() {
        let router = router([ServerInfo(id: "slow", tools: tools("t")), ServerInfo(id: "flaky", tools: tools("t"))])
        feed(router, "slow", "t", latencyMs: 800)
        feed(router, "flaky", "t", latencyMs: 5, success: true, count: 4)
        feed(router, "flaky", "t", latencyMs: 5, success: false, count: 6)
        let decision = router.decide(tool: "t", Requirements(maxResponseTime: .milliseconds(100), minSuccessRate: 0.9))
        XCTAssertEqual(decision.outcome, .noServerMeetsRequirements)
        XCTAssertNil(decision.server)
        XCTAssertTrue(decision.reasoning.contains("predicted latency at most 100 ms"), decision.reasoning)
        XCTAssertTrue(decision.reasoning.contains("success rate at least 90%"), decision.reasoning)
        // Relaxing one requirement lets one server through.
        XCTAssertEqual(router.decide(tool: "t", Requirements(maxResponseTime: .seconds(1), minSuccessRate: 0.9)).server, "slow")
        // Allowed servers (agent profiles).
        XCTAssertEqual(router.decide(tool: "t", Requirements(allowedServers: ["flaky"])).server, "flaky")
        XCTAssertEqual(router.decide(tool: "t", Requirements(allowedServers: ["other"])).outcome, .noServerMeetsRequirements)
    }

    func testCircuitBreakerTransitions() {
        let router = router([ServerInfo(id: "a", tools: tools("t")), ServerInfo(id: "b", tools: tools("t"))]) { settings in
            settings.defaultStrategy = .predictive
            settings.breaker.openDuration = .milliseconds(60)
            settings.breaker.minimumRequests = 10
        }
        feed(router, "a", "t", latencyMs: 1)
        feed(router, "b", "t", latencyMs: 9)
        XCTAssertEqual(router.decide(tool: "t").server, "a")
        // Failures: four in a row, and a failure rate below the threshold, keep it closed...
        feed(router, "a", "t", latencyMs: 1, success: false, count: 4)
        XCTAssertEqual(router.circuitState(server: "a"), .closed, "4 failures in a row are fewer than 5, 4 of 24 below 50%")
        // ...the fifth in a row opens it.
        feed(router, "a", "t", latencyMs: 1, success: false, count: 1)
        // ...then opens, and "a" is no longer chosen.
        XCTAssertEqual(router.circuitState(server: "a"), .open)
        for _ in 0..<20 { XCTAssertEqual(router.decide(tool: "t").server, "b") }
        // After the open duration one request probes it (half-open), and only one.
        Thread.sleep(forTimeInterval: 0.12)
        let probe = router.decide(tool: "t")
        XCTAssertEqual(probe.server, "a")
        XCTAssertTrue(probe.probe)
        XCTAssertTrue(probe.reasoning.contains("half-open"), probe.reasoning)
        XCTAssertEqual(router.circuitState(server: "a"), .halfOpen)
        XCTAssertEqual(router.decide(tool: "t").server, "b", "one probe at a time")
        // The probe fails: open again.
        router.record(server: "a", tool: "t", latency: .milliseconds(1), success: false, error: "connection reset")
        XCTAssertEqual(router.circuitState(server: "a"), .open)
        XCTAssertEqual(router.serverStats().first { $0.id == "a" }?.lastError, "connection reset")
        // Next probe succeeds: closed, and "a" is the fastest again.
        Thread.sleep(forTimeInterval: 0.12)
        XCTAssertTrue(router.decide(tool: "t").probe)
        router.record(server: "a", tool: "t", latency: .milliseconds(1), success: true)
        XCTAssertEqual(router.circuitState(server: "a"), .closed)
        XCTAssertEqual(router.decide(tool: "t").server, "a")
    }

    func testFailureRateOpensTheCircuitWithoutAStreak() {
        let router = router([ServerInfo(id: "a", tools: tools("t")), ServerInfo(id: "b", tools: tools("t"))])
        // fail, fail, succeed...: never five in a row, but two thirds failed.
        for step in 0..<9 { router.record(server: "a", tool: "t", latency: .milliseconds(1), success: step % 3 == 2) }
        XCTAssertEqual(router.circuitState(server: "a"), .closed, "fewer than the 10 outcomes the rate needs")
        router.record(server: "a", tool: "t", latency: .milliseconds(1), success: false)
        XCTAssertEqual(router.circuitState(server: "a"), .open)
    }

    func testOpenAndUnhealthyServersAreLastResortOnly() {
        let router = router([ServerInfo(id: "a", tools: tools("t")), ServerInfo(id: "b", tools: tools("t"))])
        router.forceCircuit(server: "a", .open)
        XCTAssertEqual(router.decide(tool: "t").server, "b")
        router.setHealth(server: "b", .unhealthy)
        let decision = router.decide(tool: "t")
        XCTAssertEqual(decision.outcome, .lastResort)
        XCTAssertNotNil(decision.server)
        XCTAssertTrue(decision.reasoning.contains("last resort"), decision.reasoning)
        router.setHealth(server: "b", .healthy)
        XCTAssertEqual(router.decide(tool: "t").outcome, .chosen)
    }

    /// Simulated servers with known latency distributions: the router's mean latency stays near
    /// the best possible, it leaves a failing server and comes back to a recovered one.
    func testSimulatedRoutingQuality() {
        var settings = RouterSettings()
        settings.breaker.openDuration = .milliseconds(20)
        let result = RoutingSimulation(settings: settings, seed: 1).run(requests: 16_000, sleepEvery: 250, pauseMillis: 3)
        // Phases are 3,200 requests each; the bounds are generous (behaviour, not speed).
        XCTAssertLessThan(result.meanLatencyMs, result.bestMeanLatencyMs * 1.5, "\(result)")
        XCTAssertLessThan(result.requestsToLeaveFailing, 100, "\(result)")
        XCTAssertLessThan(result.requestsToReturn, 3_000, "adaptive routing must come back to the recovered server: \(result)")
        XCTAssertLessThan(result.requestsToLeaveDegraded, 200, "\(result)")
        // Without exploration, a fast server that failed is not tried again within the window.
        let predictive = RoutingSimulation(settings: settings, seed: 1, strategy: .predictive).run(requests: 16_000, sleepEvery: 250, pauseMillis: 3)
        XCTAssertLessThan(predictive.requestsToLeaveFailing, 100, "\(predictive)")
    }

    /// Readers routing, writers recording outcomes, and a publisher changing the table (adding
    /// and removing servers) at once; run under ThreadSanitizer by scripts/swift-tsan.
    func testConcurrentRoutingRecordingAndRepublishing() {
        let router = router((0..<20).map { ServerInfo(id: "s\($0)", group: "g\($0 % 4)", tools: (0..<50).map { ToolInfo(name: "tool-\($0)") }) })
        let problems = Counter()
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for step in 0..<3_000 {
                let tool = "tool-\(step % 50)"
                switch worker {
                case 0, 1:
                    let choice = Array(tool.utf8).withUnsafeBytes { router.route(tool: $0) }
                    if choice.outcome != .chosen && choice.outcome != .lastResort && choice.outcome != .unknownTool { problems.add() }
                    if choice.hasServer {
                        router.begin(choice)
                        router.complete(choice, latency: .microseconds(Int64(step % 900)), success: step % 7 != 0)
                    }
                    if step % 100 == 0 { _ = router.decide(tool: tool).reasoning }
                case 2:
                    router.record(server: "s\(step % 20)", tool: tool, latency: .milliseconds(1), success: true)
                default:
                    if step % 10 == 0 { router.remove(server: "s\(step / 10 % 20)") }
                    if step % 10 == 5 { router.upsert(ServerInfo(id: "s\(step / 10 % 20)", tools: (0..<50).map { ToolInfo(name: "tool-\($0)") })) }
                    if step % 500 == 0 { _ = router.serverStats() }
                }
            }
        }
        XCTAssertEqual(problems.value, 0)
        XCTAssertGreaterThan(router.tableInfo.generation, 100)
    }

    /// Removing a server while requests are routed to it: routing moves on at once, and the
    /// outcomes of requests already sent are recorded without harm.
    func testRemovingAServerWhileRouting() {
        let router = router([ServerInfo(id: "a", tools: tools("t")), ServerInfo(id: "b", tools: tools("t"))]) { $0.defaultStrategy = .predictive }
        feed(router, "a", "t", latencyMs: 1)
        feed(router, "b", "t", latencyMs: 5)
        let inFlight = Array("t".utf8).withUnsafeBytes { router.route(tool: $0) }
        XCTAssertEqual(router.registeredServers[Int(inFlight.server)].id, "a")
        router.begin(inFlight)
        router.remove(server: "a")
        XCTAssertEqual(router.decide(tool: "t").server, "b")
        router.complete(inFlight, latency: .milliseconds(1), success: true)
        XCTAssertEqual(router.decide(tool: "t").server, "b")
        XCTAssertEqual(router.serverStats().map(\.id), ["b"])
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
