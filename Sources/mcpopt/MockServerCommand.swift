import ArgumentParser
import Glibc
import MCPOptGateway
import MCPOptMock

struct MockServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mock-server",
        abstract: "Run a mock MCP server for load and fault injection (stdio by default, or Streamable HTTP with --http).",
        discussion: """
            A real MCP server of both protocol eras whose tools wait a latency drawn from a lognormal
            distribution and answer a deterministic text. Tools and faults come from --profile (JSON,
            see docs/DEMO.md) or --preset (\(MockProfile.presetNames.joined(separator: ", "))); the options
            below override the profile's faults. Deterministic under --seed for a given order of calls.
            """)

    @Option(help: "A profile file (JSON).")
    var profile: String?

    @Option(help: "A preset profile: \(MockProfile.presetNames.joined(separator: ", ")).")
    var preset: String?

    @Option(help: "The server's name (serverInfo.name).")
    var name: String?

    @Option(help: "Seed of the latency and fault draws.")
    var seed: UInt64?

    @Option(help: "Serve Streamable HTTP at HOST:PORT (path /mcp) instead of stdio.")
    var http: String?

    @Option(help: "Probability (0...1) that a call answers an error.")
    var errorRate: Double?

    @Option(help: "Exit (status 3) when call number N+1 arrives.")
    var crashAfter: Int?

    @Option(help: "From call number N+1, hold answers for --hang-ms.")
    var hangAfter: Int?

    @Option(help: "How long a hang lasts, in milliseconds.")
    var hangMs: Double?

    @Option(help: "Latency starts degrading this many milliseconds after start...")
    var degradeAfterMs: Double?

    @Option(help: "...growing by this factor per second (1: twice as slow after one second).")
    var degradeRate: Double?

    @Flag(help: "Also be a two-phase-commit participant (tools tx_prepare, tx_commit, tx_abort; in memory).")
    var participant = false

    @Flag(help: "With --http: exit when stdin ends (a parent that dies takes its servers with it).")
    var exitOnEof = false

    func validate() throws {
        if (profile == nil) == (preset == nil) { throw ValidationError("give exactly one of --profile FILE and --preset NAME") }
        if let errorRate, !(0...1).contains(errorRate) { throw ValidationError("--error-rate must be between 0 and 1") }
        for (flag, value) in [("--crash-after", crashAfter), ("--hang-after", hangAfter)] where (value ?? 0) < 0 {
            throw ValidationError("\(flag) must not be negative")
        }
    }

    func run() throws {
        var loaded: MockProfile
        if let profile {
            let bytes = try readConfigFile(profile)
            do {
                loaded = try MockProfile.parse(bytes)
            } catch {
                printError("\(profile): \(error)")
                throw ExitCode(2)
            }
        } else {
            guard let p = MockProfile.preset(preset!, name: name ?? preset!) else {
                throw ValidationError("unknown preset \"\(preset!)\" (known: \(MockProfile.presetNames.joined(separator: ", ")))")
            }
            loaded = p
        }
        if let name { loaded.name = name }
        if let seed { loaded.seed = seed }
        if let errorRate { loaded.errorRate = errorRate }
        if let crashAfter { loaded.crashAfter = crashAfter }
        if let hangAfter { loaded.hangAfter = hangAfter }
        if let hangMs { loaded.hangMs = hangMs }
        if degradeAfterMs != nil || degradeRate != nil {
            loaded.degrade = MockProfile.Degrade(afterMs: degradeAfterMs ?? 0, ratePerSecond: degradeRate ?? 1)
        }
        if participant { loaded.participant = true }
        let server = MockServer(profile: loaded)
        guard let http else {
            blockOn { await StdioFront(service: server).run() }
            return
        }
        if exitOnEof { exitWhenStdinEnds() }
        let (host, port) = try Serve.split(http)
        var settings = HTTPFront<MockServer>.Settings()
        settings.host = host
        settings.port = port
        let front: HTTPFront<MockServer>
        do {
            front = try HTTPFront(service: server, settings: settings)
            let bound = try front.start()
            printError("mock-server \(loaded.name): serving \(loaded.tools.count) tool(s) at http://\(host.contains(":") ? "[\(host)]" : host):\(bound)/mcp")
        } catch {
            throw ValidationError("cannot serve on \(http): \(error.message)")
        }
        waitForTermination()
        front.stop()
    }
}

/// Reads stdin on a thread of its own and exits the process when it ends.
func exitWhenStdinEnds() {
    var thread = pthread_t()
    _ = pthread_create(&thread, nil, { _ in
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { _exit(0) }
        }
    }, nil)
}
