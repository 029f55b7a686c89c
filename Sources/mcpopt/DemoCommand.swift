import ArgumentParser
import Glibc
import MCPOptDemo
import MCPOptJSON

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what mcpopt does: the same agent workload with and without it, against mock servers with injected faults.",
        discussion: """
            Starts 12 mock MCP servers twice over (stdio and HTTP, in replica groups; one replica
            degrades mid-run, one crashes and comes back), replays a seeded agent trace through a
            naive client and through the engine in alternating chunks, and prints both side by side
            with the original brief's targets as pass/fail rows. Writes an HTML report with charts.
            See docs/DEMO.md.
            """)

    @Option(help: "Mock servers per run (at least 7).")
    var servers = 12

    @Option(help: "Calls in the generated trace.")
    var requests = 3_000

    @Option(help: "Seed of the trace and of the servers' latency draws.")
    var seed: UInt64 = 42

    @Option(help: "Stop after about this many seconds (both runs replay the same chunks).")
    var duration: Double?

    @Option(help: "Steps replayed at once (agents working side by side).")
    var lanes = 8

    @Option(help: "Replay this trace (JSON lines: {\"step\", \"agent\", \"tool\", \"arguments\"}) instead of generating one.")
    var trace: String?

    @Option(help: "Write the trace that is replayed to this file (JSON lines).")
    var saveTrace: String?

    @Option(help: "Where to write the HTML report (default: in the run's work directory).")
    var report: String?

    @Option(help: "A Redis (redis://host:port) for the shared cache: after the comparison, a second engine instance with a cold L1 replays the trace against it.")
    var sharedCache: String?

    @Flag(help: "Inject no faults (no degrading replica, no crashes): the effect of caching and routing alone.")
    var noFaults = false

    @Flag(help: "Print the results as JSON instead of a table.")
    var json = false

    func validate() throws {
        if servers < 7 { throw ValidationError("--servers must be at least 7 (one server per kind of the reference workload)") }
        if servers > 1_000 { throw ValidationError("--servers is at most 1000") }
        if requests < 1 || requests > 10_000_000 { throw ValidationError("--requests must be between 1 and 10000000") }
        if let duration, duration <= 0 { throw ValidationError("--duration must be positive") }
        if lanes < 1 || lanes > 1_024 { throw ValidationError("--lanes must be between 1 and 1024") }
    }

    func run() throws {
        var template = Array("/tmp/mcpopt-demo-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ValidationError("cannot create a work directory in /tmp") }
        let work = String(cString: made)
        var options = DemoOptions(executable: Self.executablePath(), workDirectory: work)
        options.servers = servers
        options.requests = requests
        options.seed = seed
        options.durationSeconds = duration
        options.lanes = lanes
        options.tracePath = trace
        options.faults = !noFaults
        options.sharedCacheURL = sharedCache
        options.progress = { printError("demo: " + $0) }
        let command = "mcpopt demo " + CommandLine.arguments.dropFirst(2).joined(separator: " ")
        let outcome = OutcomeCell()
        let runOptions = options
        blockOn {
            do throws(DemoError) { outcome.value = .success(try await DemoRunner.run(runOptions)) } catch { outcome.value = .failure(error) }
        }
        let result: DemoResult
        switch outcome.value! {
        case .failure(let error):
            printError("mcpopt demo: \(error)")
            printError("(server logs are in \(work))")
            throw ExitCode(1)
        case .success(let r): result = r
        }
        if let saveTrace {
            do { try writeText(saveTrace, result.trace.jsonLines) } catch { printError("mcpopt demo: \(error)") }
        }
        let report = DemoReport(result, command: command.trimmingCharacters(in: " "))
        let htmlPath = self.report ?? work + "/report.html"
        do { try writeText(htmlPath, report.html) } catch { printError("mcpopt demo: \(error)") }
        if json {
            var o = report.json
            if case .object(var object) = o {
                object["report"] = .string(htmlPath)
                o = .object(object)
            }
            print(JSONWriter(pretty: true).string(o))
        } else {
            print("mcpopt demo: \(result.trace.callCount) calls, \(result.fleet.count) servers, seed \(seed)\(noFaults ? ", no faults" : ""); \(report.machine)")
            print()
            print(report.table)
            print("report: \(htmlPath)")
        }
    }

    static func executablePath() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        return n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
    }
}

func writeText(_ path: String, _ text: String) throws(ValidationError) {
    guard let file = fopen(path, "w") else { throw ValidationError("cannot write \(path): \(String(cString: strerror(errno)))") }
    defer { fclose(file) }
    let bytes = Array(text.utf8)
    guard fwrite(bytes, 1, bytes.count, file) == bytes.count else { throw ValidationError("cannot write \(path)") }
}

extension String {
    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.first == set { s.removeFirst() }
        while s.last == set { s.removeLast() }
        return String(s)
    }
}

/// The demo's outcome, handed from the async run to the command (blockOn waits for it).
final class OutcomeCell: @unchecked Sendable {
    var value: Result<DemoResult, DemoError>?
}
