import Foundation
import XCTest
import MCPOptJSON
import MCPOptRouting
@testable import MCPOptEngine

/// The watching events: metricsUpdate, targetMet (once, when targets become met),
/// routingOptimized (a tool's preferred server changes), stateUpdated.
final class MonitorTests: XCTestCase, @unchecked Sendable {
    final class Recorder: @unchecked Sendable {
        private let lock = NSLock()
        private var events: [EngineEvent] = []
        func add(_ e: EngineEvent) { lock.lock(); events.append(e); lock.unlock() }
        func named(_ n: EngineEvent.Name) -> [EngineEvent] { lock.lock(); defer { lock.unlock() }; return events.filter { $0.name == n } }
    }

    func testWatchingEventsReportMetricsTargetsRoutingAndState() async throws {
        let a = try RequestPathTests.kvServer("kv-a", group: "kv"), b = try RequestPathTests.kvServer("kv-b", group: "kv")
        let engine = try Engine(json: #"{"mcpServers": {\#(a), \#(b)}, "targets": {"latencyReduction": 0, "minSuccessRate": 0, "maxResponseTime": "1h"}}"#)
        let recorder = Recorder()
        engine.events.subscribe { recorder.add($0) }
        await engine.start()
        addTeardownBlock { await engine.stop() }
        for i in 0..<5 {
            let r = await engine.optimizeRequest(Array(#"{"jsonrpc":"2.0","id":\#(i),"method":"tools/call","params":{"name":"get","arguments":{"key":"x"}}}"#.utf8))
            XCTAssertTrue(r.success, r.error ?? "")
        }
        engine.monitor.tick(engine)
        XCTAssertEqual(recorder.named(.metricsUpdate).count, 1)
        XCTAssertEqual(recorder.named(.metricsUpdate).first?.data["system"]?["requests"]?.integerValue, 5)
        XCTAssertEqual(recorder.named(.targetMet).count, 1)

        // The preferred server for `get` becomes unavailable: the next look reports the change.
        let before = engine.router.decide(tool: "get", maxFallbacks: 0).server
        XCTAssertNotNil(before)
        XCTAssertTrue(engine.router.forceCircuit(server: before!, .open))
        engine.monitor.tick(engine)
        let change = recorder.named(.routingOptimized).first { $0.data["tool"] == "get" }
        XCTAssertEqual(change?.data["from"]?.stringValue, before)
        XCTAssertNotNil(change?.data["to"]?.stringValue)
        XCTAssertNotEqual(change?.data["to"]?.stringValue, before)
        XCTAssertEqual(recorder.named(.targetMet).count, 1, "targetMet is told when targets become met, not on every look")

        _ = engine.state.put("plan/step", Array("2".utf8))
        XCTAssertEqual(recorder.named(.stateUpdated).last?.data["key"], "plan/step")
    }

    /// A start still listing servers when the engine stops must not begin ticking after the
    /// stop: nothing would stop it, and its weak references would outlive a host that exits.
    func testAMonitorStoppedBeforeItStartedNeverTicks() async throws {
        let engine = try Engine(json: #"{"mcpServers": {}}"#)
        let monitor = EngineMonitor()
        XCTAssertNil(monitor.stop(engine), "nothing was ticking")
        monitor.start(engine)   // what a start finishing after the stop does
        XCTAssertNil(monitor.stop(engine), "the late start began no ticking task")
        // A monitor that started normally hands its task to stop, which ends it.
        let running = EngineMonitor()
        running.start(engine)
        let task = running.stop(engine)
        XCTAssertNotNil(task)
        await task?.value
    }
}
