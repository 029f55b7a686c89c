import ArgumentParser
import Dispatch
import MCPOptConfig
import MCPOptEngine
import MCPOptGateway
import MCPOptIO
import MCPOptProtocol

/// Builds an engine from a configuration file, with every problem reported as `validate` does.
func loadEngine(_ path: String) throws -> Engine {
    let bytes = try readConfigFile(path)
    do {
        return Engine(config: try EngineConfig.parse(bytes))
    } catch {
        printError("\(path): \(error.issues.count) problem(s)")
        for issue in error.issues { printError("  \(issue.path): \(issue.message)") }
        throw ExitCode(2)
    }
}

/// The value of a --busy-poll option (serve, bench gateway).
func busyPollDuration(_ text: String) throws -> Duration {
    guard let duration = parseDuration(text), duration <= EventLoop.maxBusyPoll else {
        throw ValidationError("--busy-poll: expected a duration from 0 to 10ms (e.g. 50us), got '\(text)'")
    }
    return duration
}

/// A value handed from async work (`blockOn`) back to the synchronous command.
final class Cell<T>: @unchecked Sendable {
    var value: T?
}

/// Runs async work from a synchronous command: the main thread waits, the work runs on the
/// concurrency pool.
func blockOn(_ work: @escaping @Sendable () async -> Void) {
    let done = DispatchSemaphore(value: 0)
    Task {
        await work()
        done.signal()
    }
    done.wait()
}

struct Stdio: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve as one MCP server over stdio, in front of every server of a configuration (for desktop MCP clients).",
        discussion: """
            Reads JSON-RPC messages from stdin, one per line, and answers on stdout; logs go to stderr.
            Tools and prompts of every server are listed together; a name offered by several replica
            groups is shown as <group>__<name> (see docs/GATEWAY.md).
            """)

    @Option(name: .long, help: "The configuration file (mcpServers and engine options).")
    var config: String

    @Flag(name: .long, help: "Answer repeats of cached calls through the full request path too (see docs/GATEWAY.md, the repeat lane).")
    var noRepeatLane = false

    func run() throws {
        let engine = try loadEngine(config)
        let gateway = Gateway(engine: engine)
        blockOn {
            for warning in await gateway.start() { printError("mcpopt: \(warning)") }
            let front = StdioFront(service: gateway, repeats: noRepeatLane ? nil : RepeatMemo.Limits())
            gateway.relayServerLogs { [weak front] message in front?.notify(message) }
            await front.run()
            await engine.stop()
        }
    }
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve as one MCP server over Streamable HTTP, in front of every server of a configuration.",
        discussion: """
            Endpoints: /mcp (MCP, both protocol eras), /metrics (Prometheus text), /healthz (JSON:
            200 when healthy or degraded, 503 when no server answers). Binds loopback unless told
            otherwise; Host and Origin are checked; --token requires a bearer token.
            """)

    @Option(name: .long, help: "The configuration file (mcpServers and engine options).")
    var config: String

    @Option(name: .long, help: "Address to listen on: HOST:PORT (IPv6 as [::1]:PORT).")
    var listen = "127.0.0.1:8080"

    @Option(name: .long, help: "Require Authorization: Bearer TOKEN (default: the MCPOPT_TOKEN environment variable, if set).")
    var token: String?

    @Option(name: .long, parsing: .singleValue, help: "Also accept this Host header value (repeatable; loopback names are always accepted).")
    var allowHost: [String] = []

    @Option(name: .long, parsing: .singleValue, help: "Also accept this Origin (repeatable; loopback origins are always accepted).")
    var allowOrigin: [String] = []

    @Flag(name: .long, help: "Answer repeats of cached calls through the full request path too (see docs/GATEWAY.md, the repeat lane).")
    var noRepeatLane = false

    @Option(name: .long, help: "Serve HTTPS with this certificate chain (PEM, the server's own first); needs --tls-key.")
    var tlsCert: String?

    @Option(name: .long, help: "The private key (PEM) of --tls-cert.")
    var tlsKey: String?

    @Option(name: .long, help: ArgumentHelp("Before sleeping, look for the next request for this long (e.g. 50us; up to 10ms): lower latency across CPUs, for up to that much CPU after each burst of requests. Default: the configuration's optimization.busyPoll, which is 0, off (see docs/GATEWAY.md).", valueName: "duration"))
    var busyPoll: String?

    /// SIGHUP: the TLS files read again, for new connections (renewed certificates without a
    /// restart, which would empty the cache): --tls-cert and --tls-key, and the https servers'
    /// caFile, clientCert and clientKey. Files that do not load leave what is in use as it is.
    private func reloadCertificates(front: HTTPFront<Gateway>, engine: Engine) {
        if let tlsCert, let tlsKey {
            do {
                front.useCredentials(try TLSServerCredentials(certificateFile: tlsCert, keyFile: tlsKey))
                printError("mcpopt: SIGHUP: new connections get the certificate in \(tlsCert)")
            } catch {
                printError("mcpopt: SIGHUP: kept the certificate in use, the files do not load: \(error.message)")
            }
        }
        let problems = Cell<[String]>()
        blockOn { problems.value = await engine.reloadServerCertificates() }
        for problem in problems.value ?? [] { printError("mcpopt: SIGHUP: kept the TLS files in use for \(problem)") }
    }

    func validate() throws {
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
        if let busyPoll { _ = try busyPollDuration(busyPoll) }
    }

    func run() throws {
        // Before any thread starts: only the wait below takes these (SIGHUP: certificates).
        blockTerminationSignals(hangup: true)
        let (host, port) = try Self.split(listen)
        var credentials: TLSServerCredentials?
        if let tlsCert, let tlsKey {
            do {
                credentials = try TLSServerCredentials(certificateFile: tlsCert, keyFile: tlsKey)
            } catch {
                throw ValidationError("--tls-cert/--tls-key: \(error.message)")
            }
        }
        let engine = try loadEngine(config)
        let gateway = Gateway(engine: engine)
        var settings = HTTPFront<Gateway>.Settings()
        settings.host = host
        settings.port = port
        settings.bearerToken = token ?? ProcessInfoLite.environment("MCPOPT_TOKEN")
        settings.policy.allowedHosts = allowHost
        settings.policy.allowedOrigins = allowOrigin
        if noRepeatLane { settings.repeats = nil }
        settings.tls = credentials
        settings.busyPoll = try busyPoll.map(busyPollDuration) ?? engine.config.optimization.busyPoll
        let front: HTTPFront<Gateway>
        do {
            front = try HTTPFront(service: gateway, settings: settings)
        } catch {
            throw ValidationError("cannot start the HTTP front: \(error.message)")
        }
        front.metricsPage = { [weak front] in
            var text = engine.prometheusText()
            if let front {
                text += "# HELP mcpopt_repeat_lane_answers_total Cache hits the HTTP front's repeat lane answered (counted in mcpopt_cache_hits_total too).\n"
                text += "# TYPE mcpopt_repeat_lane_answers_total counter\nmcpopt_repeat_lane_answers_total \(front.repeatsAnswered)\n"
                if front.settings.busyPoll > .zero {
                    // Whether polling pays: polls that found work against those that ran out.
                    let polls = await front.busyPollStats()
                    text += "# HELP mcpopt_busy_polls_total Busy polls of the front's loop (--busy-poll), by whether they found work before their time ran out.\n"
                    text += "# TYPE mcpopt_busy_polls_total counter\n"
                    text += "mcpopt_busy_polls_total{outcome=\"found\"} \(polls.found)\nmcpopt_busy_polls_total{outcome=\"expired\"} \(polls.expired)\n"
                }
            }
            return (200, "text/plain; version=0.0.4", Array(text.utf8))
        }
        front.healthPage = {
            let health = await engine.performHealthCheck()
            return (health["status"]?.stringValue == "unhealthy" ? 503 : 200, "application/json", Array(health.jsonString.utf8))
        }
        // One thread for the front and the upstream calls: no hops on the request path.
        engine.useEventLoop(front.loop)
        blockOn {
            for warning in await gateway.start() { printError("mcpopt: \(warning)") }
        }
        do {
            let bound = try front.start()
            printError("mcpopt: serving \(engine.config.activeServers.count) server(s) at \(credentials == nil ? "http" : "https")://\(host.contains(":") ? "[\(host)]" : host):\(bound)/mcp")
        } catch {
            throw ValidationError("cannot listen on \(listen): \(error.message)")
        }
        waitForTermination(onHangup: { reloadCertificates(front: front, engine: engine) })
        // The engine's servers stop on the front's loop: stop serving, then the engine, then the loop.
        front.stopServing()
        blockOn { await engine.stop() }
        front.stop()
    }

    static func split(_ address: String) throws -> (String, Int) {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("--listen must be HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080")
        }
        var host = String(address[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }
}
