import ArgumentParser
import Dispatch
import Glibc
import MCPOptIO
import MCPOptJSON
import MCPOptSync
import MCPOptUpstream

/// `mcpopt bench upstream`: tools/call round trips over one stdio pipe to a minimal echo server
/// (Benchmarks/upstream/echo_server.c) and over HTTP keep-alive to a minimal HTTP one
/// (http_echo_server.c), on io_uring and on epoll; one at a time (latency) and 16 in flight
/// (throughput). scripts/bench-upstream runs it beside the official Python SDK client and a
/// plain blocking client against the same servers.
struct BenchUpstream: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "upstream", abstract: "stdio round trips to an echo MCP server, io_uring and epoll side by side.")

    @Flag(help: "Print machine-readable JSON instead of a table.")
    var json = false

    @Option(help: "The stdio echo server to start (built by scripts/bench-upstream).")
    var server: String?

    @Option(help: "Port of a running HTTP echo server on 127.0.0.1 (path /mcp).")
    var httpPort: Int?

    @Option(help: "Requests per measurement.")
    var requests = 20_000

    func run() throws {
        guard server != nil || httpPort != nil else { throw ValidationError("give --server (stdio) and/or --http-port") }
        var rows: [JSONValue] = []
        for transport in ["stdio", "http"] where (transport == "stdio" ? server != nil : httpPort != nil) {
            for backend in EventLoop.Backend.allCases {
                for concurrency in [1, 16] {
                    rows.append(try measure(transport: transport, backend: backend, concurrency: concurrency))
                }
            }
        }
        let result: JSONValue = ["benchmark": "upstream", "requests": .int(Int64(requests)), "rows": .array(rows)]
        if json {
            print(result.jsonString)
            return
        }
        func n(_ value: JSONValue?) -> String { JSONWriter.number(value?.doubleValue ?? .nan) }
        print("round trips to echo servers, \(requests) tools/call each")
        print("transport  backend  in flight   round trips/s   p50 us   p99 us")
        for row in rows {
            print((row["transport"]?.stringValue ?? "").padding(11) + (row["backend"]?.stringValue ?? "").padding(9) + n(row["concurrency"]).leftPad(9) + n(row["roundTripsPerSecond"]).leftPad(16)
                + n(row["p50Us"]).leftPad(9) + n(row["p99Us"]).leftPad(9))
        }
    }

    private func measure(transport: String, backend: EventLoop.Backend, concurrency: Int) throws -> JSONValue {
        let loop = try EventLoop(backend: backend)
        defer { loop.shutdown() }
        let upstream: BenchUpstreamClient
        if transport == "stdio", let server {
            let stdio = StdioUpstream(command: StdioCommand(command: server), loop: loop, mode: .handshake)
            stdio.start()
            upstream = BenchUpstreamClient(request: { (request) throws(UpstreamError) in try await stdio.request(request) }, shutdown: { await stdio.shutdown() })
        } else {
            let http = HTTPUpstream(endpoint: .init(host: "127.0.0.1", port: httpPort ?? 0, path: "/mcp"), loop: loop, mode: .handshake)
            http.start()
            upstream = BenchUpstreamClient(request: { (request) throws(UpstreamError) in try await http.request(request) }, shutdown: { await http.shutdown() })
        }
        let total = requests
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        Task {
            let call = UpstreamRequest(method: "tools/call", paramsJSON: #"{"name":"echo","arguments":{"i":1}}"#)
            do {
                for _ in 0..<200 { _ = try await upstream.request(call) }   // warm up
                let start = BenchClock.nanos()
                let samples = try await withThrowingTaskGroup(of: [UInt64].self) { group in
                    for worker in 0..<concurrency {
                        group.addTask {
                            var mine: [UInt64] = []
                            for _ in stride(from: worker, to: total, by: concurrency) {
                                let t = BenchClock.nanos()
                                _ = try await upstream.request(call)
                                mine.append(BenchClock.nanos() - t)
                            }
                            return mine
                        }
                    }
                    return try await group.reduce(into: []) { $0 += $1 }
                }
                outcome.set(samples.sorted(), elapsed: BenchClock.nanos() - start)
            } catch {
                outcome.fail("\(error)")
            }
            await upstream.shutdown()
            done.signal()
        }
        done.wait()
        let (samples, elapsed, failure) = outcome.get()
        if let failure { throw ValidationError("the echo server failed: \(failure)") }
        return [
            "transport": .string(transport), "backend": .string(backend.rawValue), "concurrency": .int(Int64(concurrency)),
            "roundTripsPerSecond": .int(Int64(Double(samples.count) / (Double(elapsed) / 1e9))),
            "p50Us": .double((Double(quantile(samples, 0.5)) / 100).rounded() / 10),
            "p99Us": .double((Double(quantile(samples, 0.99)) / 100).rounded() / 10),
        ]
    }
}

/// One transport's request and shutdown, for the measurement loop.
private struct BenchUpstreamClient: Sendable {
    let request: @Sendable (UpstreamRequest) async throws(UpstreamError) -> [UInt8]
    let shutdown: @Sendable () async -> Void
}

private final class Outcome: @unchecked Sendable {
    private let lock = Lock()
    private var samples: [UInt64] = []
    private var elapsed: UInt64 = 1
    private var failure: String?
    func set(_ samples: [UInt64], elapsed: UInt64) { lock.withLock { self.samples = samples; self.elapsed = elapsed } }
    func fail(_ message: String) { lock.withLock { failure = message } }
    func get() -> ([UInt64], UInt64, String?) { lock.withLock { (samples, elapsed, failure) } }
}
