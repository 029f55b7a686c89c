import ArgumentParser
import Glibc
import MCPOptEngine
import MCPOptGateway
import MCPOptJSON
import MCPOptMock

/// `mcpopt bench gateway`: the gateway's added latency over a direct call, side by side in one
/// run with a plain proxy hop (haproxy, nginx) and FastMCP's proxy, all against the same fast C
/// echo server and measured by the same blocking keep-alive C client; then cache-hit throughput
/// with several connections and through the C ABI, and a thundering herd through the engine.
/// It starts everything it needs and stops it on every way out (BenchProcesses).
struct BenchGateway: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Added latency of the gateway against haproxy, nginx and FastMCP's proxy; hit throughput; a thundering herd.",
        discussion: """
            Compiles Benchmarks/upstream/http_echo_server.c and Benchmarks/gateway/{gateway_client,abi_hit}.c \
            with cc, starts the echo server, haproxy and nginx (installed with apt-get when missing, unless \
            --no-install), this program as `mcpopt serve`, and FastMCP's proxy (skipped when fastmcp cannot be \
            imported). Rows that cannot run are listed as skipped, with the reason. The rows compared in a \
            round run interleaved, in --blocks turns of their calls each, so they see the same machine.
            """)

    @Option(help: "Calls per latency row (FastMCP's proxy gets a 40th of them: it is that slow).")
    var requests = 20_000

    @Option(help: "Rounds of the latency rows.")
    var rounds = 2

    @Flag(help: "Print machine-readable JSON instead of a table.")
    var json = false

    @Option(help: "Python that can import fastmcp (default: $MCPOPT_PYTHON, else .venv/bin/python in the source tree, else python3).")
    var python: String?

    @Option(help: "The source tree holding Benchmarks/ and include/ (default: found from the program's path).")
    var sources: String?

    @Option(help: "libmcpopt for the C ABI rows (default: libMCPOpt.so beside the program, or ../lib/libmcpopt.so.1).")
    var library: String?

    @Option(help: "Where the processes of the latency rounds run, comma-separated: any (where the scheduler puts them), same (all on one CPU), split (the client on one CPU, the servers on another). Each placement runs --rounds rounds.")
    var placements = "any,same,split"

    @Option(help: "Turns each round's latency rows are measured in: every path runs a share of its calls in each turn, so a drift of the machine during the round reaches every path alike.")
    var blocks = 10

    @Option(help: "Client connections (and C ABI threads, at most 2 of them) for the throughput rows.")
    var connections = 4

    @Option(help: "Identical concurrent requests in the thundering herd.")
    var herd = 1_000

    @Flag(help: "Do not install haproxy and nginx when missing (their rows are skipped).")
    var noInstall = false

    @Option(help: "Busy polling of the second gateway, set beside haproxy with busy-polling (serve --busy-poll); 0 leaves those rows out.")
    var busyPoll = "50us"

    func validate() throws {
        guard requests >= 10 else { throw ValidationError("--requests must be at least 10") }
        guard (1...20).contains(rounds) else { throw ValidationError("--rounds must be between 1 and 20") }
        let unknown = placements.split(separator: ",", omittingEmptySubsequences: false).filter { BenchPlacement(rawValue: String($0)) == nil }
        guard unknown.isEmpty else { throw ValidationError("--placements: unknown \(unknown.map { "'\($0)'" }.joined(separator: ", ")); use any, same, split") }
        guard (1...100).contains(blocks), blocks <= requests else { throw ValidationError("--blocks must be between 1 and 100, and at most --requests") }
        guard (1...64).contains(connections) else { throw ValidationError("--connections must be between 1 and 64") }
        guard (1...10_000).contains(herd) else { throw ValidationError("--herd must be between 1 and 10000") }
        _ = try busyPollDuration(busyPoll)
    }

    func run() throws {
        let processes = try BenchProcesses()
        defer { processes.stopAll() }
        var skipped: [String] = []
        let busy = Self.busyShare(over: .seconds(1))
        let machine: JSONValue = ["cores": .int(Int64(sysconf(Int32(_SC_NPROCESSORS_ONLN)))), "kernel": .string(Self.kernel()),
                                  "loadAverageAtStart": .string(BenchProcesses.read("/proc/loadavg").split(separator: " ").prefix(3).joined(separator: " ")),
                                  "busyBeforeStart": busy.map { .double(($0 * 1000).rounded() / 1000) } ?? .null]

        // The helpers, compiled from the source tree.
        let root = try sourceTree()
        guard let cc = BenchProcesses.find("cc") else { throw ValidationError("cc is needed to build the echo server and the client") }
        let echo = "\(processes.directory)/http_echo_server", client = "\(processes.directory)/gateway_client", abi = "\(processes.directory)/abi_hit"
        for (name, arguments) in [("cc echo", [cc, "-O2", "-o", echo, "\(root)/Benchmarks/upstream/http_echo_server.c"]),
                                  ("cc client", [cc, "-O2", "-o", client, "\(root)/Benchmarks/gateway/gateway_client.c", "-lpthread"])] {
            let (status, _, errors) = try processes.run(name, arguments, seconds: 120)
            guard status == 0 else { throw ValidationError("\(name) failed: \(errors)") }
        }
        let abiBuilt = try processes.run("cc abi", [cc, "-O2", "-I\(root)/include", "-o", abi, "\(root)/Benchmarks/gateway/abi_hit.c", "-ldl", "-lpthread"], seconds: 120).status == 0

        // The fast server every path leads to.
        let echoPortFile = "\(processes.directory)/echo.port"
        let echoServer = try processes.start("echo server", [echo], stdout: echoPortFile)
        var echoPort = 0
        for _ in 0..<250 where echoPort == 0 {   // 5 s
            echoPort = Int(BenchProcesses.read(echoPortFile).split(separator: " ").last?.split(separator: "\n").first ?? "") ?? 0
            if echoPort == 0 { usleep(20_000) }
        }
        guard echoPort > 0 else { throw ValidationError("the echo server did not start: \(processes.tail(echoServer))") }
        processes.serves(echoPort, echoServer)

        // The hops in front of it.
        var ports: [String: Int] = [:]   // the peers that started: haproxy, nginx, fastmcp
        let polling = try busyPollDuration(busyPoll) > .zero ? busyPoll : nil
        if let (haproxy, nginx) = proxyPrograms(processes, &skipped) {
            if let port = try startHaproxy(haproxy, echoPort: echoPort, processes, &skipped) { ports["haproxy"] = port }
            if let port = try startNginx(nginx, echoPort: echoPort, processes, &skipped) { ports["nginx"] = port }
            if polling != nil, let port = try startHaproxy(haproxy, echoPort: echoPort, busyPolling: true, processes, &skipped) { ports["haproxy busy"] = port }
        }
        // haproxy's busy-polling never sleeps, even with nothing to do: it runs only for its own
        // turns (stopped with SIGSTOP between them), or it would take a CPU from every other row.
        let spinsWhenIdle = ports["haproxy busy"]
        if let port = spinsWhenIdle, let group = processes.group(serving: port) { kill(-group, SIGSTOP) }
        let gateway = try startGateway(echoPort: echoPort, processes)
        // The same gateway busy polling (serve --busy-poll), beside haproxy doing the same.
        let pollingGateway = try polling.map { try startGateway(serverURL: "http://127.0.0.1:\(echoPort)/mcp", busyPoll: $0, processes) }
        if let port = try startFastMCP(root: root, echoPort: echoPort, processes, &skipped) { ports["fastmcp"] = port }
        // A real MCP server (FastMCP, the same echo tool), directly and behind a gateway of its own.
        var realServer: (direct: Int, gateway: Int)?
        if let port = try startFastMCPServer(processes, &skipped) {
            realServer = (port, try startGateway(serverURL: "http://127.0.0.1:\(port)/mcp", processes))
        }

        // Latency, one call at a time, every path in each round.
        let timeout = 120 + Double(requests) * 0.005
        // One row: the C client's JSON line, or the row's path and why it failed.
        func measure(_ label: String, _ port: Int, calls: Int, _ mode: String, offset: Int = 0, connections: Int = 1) throws -> JSONValue {
            let arguments = [client, label, "\(calls)", "\(port)", "echo", mode, "\(offset)", "\(connections)"]
            let (status, output, errors) = try processes.run(label, arguments, seconds: timeout)
            guard status == 0, let row = try? JSONParser.parse(output.split(separator: "\n").last.map(String.init) ?? "") else {
                return ["path": .string(label), "error": .string(status == nil ? "ran out of time (\(Int(timeout)) s)" : "the client failed: \(errors)")]
            }
            return row
        }
        // Rows measured side by side: `blocks` turns, each running every path for its share of
        // the calls in the same order; a row's figures come from the samples of all its turns.
        // (This guest's round trips drift by up to 2x over minutes; measured one after the other,
        // the rows of a round compared different states of the machine.)
        func interleaved(_ paths: [(label: String, port: Int, mode: String, offset: Int)], calls: Int, connections: Int = 1) throws -> [JSONValue] {
            let turnFile = "\(processes.directory)/samples-turn.txt"
            var samples = [[Double]](repeating: [], count: paths.count)
            // The same samples by where the turn's pair ended: [0] with the client on the CPU of
            // the busiest thread of each server that worked (the one it calls, and the echo server
            // behind a hop), [1] not; only turns where that was known (one connection, servers
            // started here). One sample a call: the counts are calls.
            var samplesByPlacement = [[[Double]]](repeating: [[], []], count: paths.count)
            var seconds = [Double](repeating: 0, count: paths.count)
            var failures = [JSONValue?](repeating: nil, count: paths.count)
            for block in 0..<blocks {
                let share = calls / blocks + (block < calls % blocks ? 1 : 0)
                for (index, path) in paths.enumerated() where failures[index] == nil {
                    // Each turn's misses start elsewhere, so they stay misses.
                    let arguments = [client, path.label, "\(share)", "\(path.port)", "echo", path.mode,
                                     "\(path.offset + block * 10_000_000)", "\(connections)", turnFile]
                    unlink(turnFile)
                    var servers: [pid_t] = []
                    for port in [path.port, echoPort] { if let group = processes.group(serving: port), !servers.contains(group) { servers.append(group) } }
                    let before = servers.map { BenchAffinity.threads(ofGroup: $0) }
                    let paused = path.port == spinsWhenIdle ? processes.group(serving: path.port) : nil
                    if let paused { kill(-paused, SIGCONT) }
                    let (status, output, errors) = try processes.run(path.label, arguments, seconds: timeout)
                    if let paused { kill(-paused, SIGSTOP) }
                    guard status == 0, let row = try? JSONParser.parse(output.split(separator: "\n").last.map(String.init) ?? ""),
                          let rate = row["roundTripsPerSecond"]?.doubleValue, rate > 0 else {
                        failures[index] = ["path": .string(path.label), "error": .string(status == nil ? "ran out of time (\(Int(timeout)) s)" : "the client failed: \(errors)")]
                        continue
                    }
                    seconds[index] += Double(share) / rate
                    let turn = BenchProcesses.read(turnFile).split(separator: "\n").compactMap { Double($0) }
                    samples[index] += turn
                    let serverCPUs = servers.indices.compactMap { BenchAffinity.busiestCPU(ofGroup: servers[$0], since: before[$0]) }
                    if let clientCPU = row["cpu"]?.doubleValue, clientCPU >= 0, !serverCPUs.isEmpty {
                        let oneCPU = serverCPUs.allSatisfy { Double($0) == clientCPU }
                        samplesByPlacement[index][oneCPU ? 0 : 1] += turn
                    }
                }
            }
            return paths.indices.map { index in
                if let failure = failures[index] { return failure }
                let samples = samples[index].sorted()
                guard !samples.isEmpty else { return ["path": .string(paths[index].label), "error": "no samples"] }
                func tenth(_ x: Double) -> JSONValue { .double((x * 10).rounded() / 10) }
                func median(_ values: [Double]) -> JSONValue { values.isEmpty ? .null : tenth(values.sorted()[values.count / 2]) }
                let (oneCPU, twoCPUs) = (samplesByPlacement[index][0], samplesByPlacement[index][1])
                let placed = oneCPU.count + twoCPUs.count
                return ["path": .string(paths[index].label), "requests": .int(Int64(samples.count)), "connections": .int(Int64(connections)),
                        "blocks": .int(Int64(blocks)), "roundTripsPerSecond": .double((Double(samples.count) / seconds[index]).rounded()),
                        "p50Us": tenth(samples[samples.count / 2]), "p99Us": tenth(samples[Int(Double(samples.count) * 0.99)]),
                        "meanUs": tenth(samples.reduce(0, +) / Double(samples.count)),
                        "oneCPUShare": placed > 0 ? .double((Double(oneCPU.count) / Double(placed) * 100).rounded() / 100) : .null,
                        "p50OneCPUUs": median(oneCPU), "p50TwoCPUsUs": median(twoCPUs)]
            }
        }
        let fastmcpCalls = max(requests / 40, 5)
        var roundResults: [JSONValue] = []
        let allowed = BenchAffinity.allowed()
        var placementOrder: [BenchPlacement] = []
        for placement in placements.split(separator: ",").compactMap({ BenchPlacement(rawValue: String($0)) }) where !placementOrder.contains(placement) {
            placementOrder.append(placement)
        }
        for placement in placementOrder {
            guard let cpus = placement.cpus(allowed: allowed) else {
                skipped.append("placement \(placement.rawValue): this process may use \(allowed.count) CPU(s)")
                continue
            }
            // The servers (and what they started) where the placement puts them; the clients
            // inherit this thread's CPUs when it starts them.
            processes.pinAll(to: cpus.servers)
            BenchAffinity.pin(0, to: cpus.client)
            defer {
                processes.pinAll(to: allowed)
                BenchAffinity.pin(0, to: allowed)
            }
            for round in 1...rounds {
                var paths: [(label: String, port: Int, mode: String, offset: Int)] = [("direct", echoPort, "miss", 0)]
                for peer in ["haproxy", "nginx"] { if let port = ports[peer] { paths.append((peer, port, "miss", 0)) } }
                // Misses stay misses across rounds and placements: each round's arguments start elsewhere.
                let offset = (roundResults.count + 1) * 1_000_000_000
                paths.append(("mcpopt miss", gateway, "miss", offset))
                paths.append(("mcpopt hit", gateway, "hit", 0))
                // Repeats that are never of the connection's last call (the repeat lane's memo
                // after the parse, not its check before: docs/GATEWAY.md).
                paths.append(("mcpopt hit, 8 in turn", gateway, "rotate", 0))
                if let pollingGateway {
                    if let port = ports["haproxy busy"] { paths.append(("haproxy, busy-polling", port, "miss", 0)) }
                    paths.append(("mcpopt miss, busy-poll", pollingGateway, "miss", offset))
                    paths.append(("mcpopt hit, busy-poll", pollingGateway, "hit", 0))
                }
                var rows = try interleaved(paths, calls: requests)
                // FastMCP's proxy adds milliseconds: a drift of microseconds does not matter to it.
                if let port = ports["fastmcp"] { rows.append(try measure("fastmcp proxy", port, calls: fastmcpCalls, "miss", offset: offset)) }
                rows = Self.withAddedLatency(rows)
                roundResults.append(["round": .int(Int64(round)), "placement": .string(placement.rawValue), "rows": .array(rows), "goals": Self.goals(rows)])
            }
        }

        // Cache hits with several connections: the gateway beside the direct call.
        var concurrentPaths: [(label: String, port: Int, mode: String, offset: Int)] = [("direct, \(connections) connections", echoPort, "hit", 0),
                                                                                     ("mcpopt hit, \(connections) connections", gateway, "hit", 0)]
        if let pollingGateway { concurrentPaths.append(("mcpopt hit busy-poll, \(connections) conns", pollingGateway, "hit", 0)) }
        let concurrent = try interleaved(concurrentPaths, calls: requests, connections: connections)

        // Against the real server: its own round trip beside a cache hit in front of it.
        var realRows: [JSONValue] = []
        if let realServer {
            realRows = [try measure("fastmcp server, direct", realServer.direct, calls: fastmcpCalls, "miss", offset: 7_000_000_000),
                        try measure("mcpopt hit, fastmcp behind", realServer.gateway, calls: requests, "hit")]
        }

        // Cache hits through the C ABI, in a C host.
        var abiRows: [JSONValue] = []
        if !abiBuilt {
            skipped.append("C ABI rows: abi_hit.c did not compile (see include/mcpopt.h)")
        } else if let library = libraryPath() {
            for threads in Set([1, min(2, connections)]).sorted() {
                // Hits cost microseconds: five times the calls of a latency row take about as long.
                let (status, output, errors) = try processes.run("abi \(threads)", [abi, library, "\(echoPort)", "\(requests * 5)", "\(threads)"], seconds: timeout)
                if status == 0, let row = try? JSONParser.parse(output.split(separator: "\n").last.map(String.init) ?? "") { abiRows.append(row) } else {
                    skipped.append("C ABI row, \(threads) thread(s): \(status == nil ? "ran out of time" : errors)")
                }
            }
        } else {
            skipped.append("C ABI rows: no libmcpopt beside the program (swift build -c release --product MCPOpt, or give --library)")
        }

        // A thundering herd through the engine, in this process.
        let herdResult = Cell<JSONValue>()
        let herd = self.herd
        blockOn { herdResult.value = await Self.thunderingHerd(count: herd, toolMs: 200) }

        let result: JSONValue = [
            "benchmark": "gateway", "requestsPerRow": .int(Int64(requests)), "blocks": .int(Int64(blocks)), "busyPoll": polling.map { JSONValue.string($0) } ?? .null, "fastmcpRequestsPerRow": .int(Int64(fastmcpCalls)),
            "machine": machine, "rounds": .array(roundResults), "concurrentHits": .array(concurrent),
            "cAbiHits": .array(abiRows), "realServer": .array(realRows), "realServerHitOverDirect": Self.realServerRatio(realRows),
            "herd": herdResult.value ?? .null, "skipped": .array(skipped.map { .string($0) }),
        ]
        if json {
            print(result.jsonString)
        } else {
            print(Self.table(result))
        }
    }

    /// The share of the CPUs' time spent busy (not idle nor waiting on I/O) over `period`, from
    /// /proc/stat: what else runs while the benchmark would (its figures assume nothing does).
    static func busyShare(over period: Duration) -> Double? {
        func sample() -> (busy: Double, total: Double)? {
            guard let line = BenchProcesses.read("/proc/stat").split(separator: "\n").first, line.hasPrefix("cpu ") else { return nil }
            let fields = line.split(separator: " ").dropFirst().compactMap { Double($0) }
            guard fields.count >= 5 else { return nil }
            let total = fields.reduce(0, +)
            return (total - fields[3] - fields[4], total)   // idle, iowait
        }
        guard let a = sample() else { return nil }
        usleep(UInt32(period.components.seconds * 1_000_000 + period.components.attoseconds / 1_000_000_000_000))
        guard let b = sample(), b.total > a.total else { return nil }
        return (b.busy - a.busy) / (b.total - a.total)
    }

    // MARK: what it starts

    /// The directory holding Benchmarks/gateway/gateway_client.c: --sources, else the first
    /// one up from the program (SwiftPM's .build/<triple>/release/, CMake's build/bin/), else ".".
    private func sourceTree() throws -> String {
        let marker = "/Benchmarks/gateway/gateway_client.c"
        if let sources {
            guard access(sources + marker, R_OK) == 0 else { throw ValidationError("--sources: no \(sources + marker)") }
            return sources
        }
        var directory = Demo.executablePath()
        for _ in 0..<6 {
            directory = String(directory[..<(directory.lastIndex(of: "/") ?? directory.startIndex)])
            if directory.isEmpty { break }
            if access(directory + marker, R_OK) == 0 { return directory }
        }
        if let cwd = getcwd(nil, 0) {
            defer { free(cwd) }
            if access(String(cString: cwd) + marker, R_OK) == 0 { return String(cString: cwd) }
        }
        throw ValidationError("cannot find the benchmark sources (\(marker.dropFirst())); give --sources")
    }

    private func libraryPath() -> String? {
        if let library { return library }
        let program = Demo.executablePath()
        let directory = String(program[..<(program.lastIndex(of: "/") ?? program.startIndex)])
        return ["\(directory)/libMCPOpt.so", "\(directory)/../lib/libmcpopt.so.1"].first { access($0, R_OK) == 0 }
    }

    /// haproxy and nginx, installed from Debian when missing (and allowed); nil when not there.
    private func proxyPrograms(_ processes: BenchProcesses, _ skipped: inout [String]) -> (String, String)? {
        if let haproxy = BenchProcesses.find("haproxy"), let nginx = BenchProcesses.find("nginx") { return (haproxy, nginx) }
        guard !noInstall else {
            skipped.append("haproxy and nginx rows: not installed (and --no-install)")
            return nil
        }
        // As root, apt-get itself; otherwise sudo, without a prompt (-n): a benchmark must not hang on one.
        let sudo: [String] = getuid() == 0 ? [] : (BenchProcesses.find("sudo").map { [$0, "-n"] } ?? [])
        if let apt = BenchProcesses.find("apt-get"), getuid() == 0 || !sudo.isEmpty {
            setenv("DEBIAN_FRONTEND", "noninteractive", 1)
            _ = try? processes.run("apt-get", sudo + [apt, "install", "-y", "-qq", "--no-install-recommends", "haproxy", "nginx-light"], seconds: 600)
            // Debian starts the packaged services; the benchmark runs its own.
            if let service = BenchProcesses.find("service") {
                for name in ["nginx", "haproxy"] { _ = try? processes.run("service \(name)", sudo + [service, name, "stop"], seconds: 30) }
            }
        }
        if let haproxy = BenchProcesses.find("haproxy"), let nginx = BenchProcesses.find("nginx") { return (haproxy, nginx) }
        skipped.append("haproxy and nginx rows: not installed, and apt-get install haproxy nginx-light did not work here")
        return nil
    }

    /// haproxy in front of the echo server; `busyPolling`: its `busy-polling` (it never sleeps
    /// in its poller), the peer of a busy-polling gateway.
    private func startHaproxy(_ program: String, echoPort: Int, busyPolling: Bool = false, _ processes: BenchProcesses, _ skipped: inout [String]) throws -> Int? {
        guard let port = BenchProcesses.freePort() else { return nil }
        let config = """
            global
              maxconn 1024\(busyPolling ? "\n  busy-polling" : "")
            defaults
              mode http
              timeout connect 5s
              timeout client 60s
              timeout server 60s
              http-reuse always
            frontend f
              bind 127.0.0.1:\(port)
              default_backend b
            backend b
              server echo 127.0.0.1:\(echoPort)

            """
        let file = "\(processes.directory)/haproxy-\(port).cfg"
        try writeText(file, config)
        let child = try processes.start("haproxy", [program, "-f", file, "-db"])
        guard processes.waitUntilListening(port, child: child, seconds: 10) else {
            skipped.append("haproxy\(busyPolling ? " busy-polling" : "") row: it did not listen: \(processes.tail(child))")
            return nil
        }
        return port
    }

    private func startNginx(_ program: String, echoPort: Int, _ processes: BenchProcesses, _ skipped: inout [String]) throws -> Int? {
        guard let port = BenchProcesses.freePort() else { return nil }
        let directory = "\(processes.directory)/nginx"
        mkdir(directory, 0o755)
        // Keep-alive both ways, as haproxy does; no buffering, no logs: a plain hop.
        let config = """
            daemon off;
            worker_processes 1;
            pid \(directory)/nginx.pid;
            error_log \(directory)/error.log;
            events { worker_connections 1024; }
            http {
              access_log off;
              client_body_temp_path \(directory);
              proxy_temp_path \(directory);
              keepalive_requests 10000000;
              upstream echo { server 127.0.0.1:\(echoPort); keepalive 16; keepalive_requests 10000000; }
              server {
                listen 127.0.0.1:\(port);
                location / { proxy_pass http://echo; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
              }
            }

            """
        try writeText("\(processes.directory)/nginx.conf", config)
        let child = try processes.start("nginx", [program, "-c", "\(processes.directory)/nginx.conf", "-p", directory])
        guard processes.waitUntilListening(port, child: child, seconds: 10) else {
            skipped.append("nginx row: it did not listen: \(processes.tail(child))")
            return nil
        }
        return port
    }

    /// This very program as `mcpopt serve`, caching the echo tool. Its rows are the point: no
    /// gateway, no benchmark.
    private func startGateway(echoPort: Int, _ processes: BenchProcesses) throws -> Int {
        try startGateway(serverURL: "http://127.0.0.1:\(echoPort)/mcp", processes)
    }

    private func startGateway(serverURL: String, busyPoll: String? = nil, _ processes: BenchProcesses) throws -> Int {
        guard let port = BenchProcesses.freePort() else { throw ValidationError("no free port for the gateway") }
        let config = #"{"mcpServers": {"echo": {"url": "\#(serverURL)"}}, "caching": {"tools": {"echo": "60s"}}}"#
        let file = "\(processes.directory)/mcpopt-\(port).json"
        try writeText(file, config)
        let child = try processes.start("mcpopt serve", [Demo.executablePath(), "serve", "--config", file, "--listen", "127.0.0.1:\(port)"]
                                            + (busyPoll.map { ["--busy-poll", $0] } ?? []))
        guard processes.waitUntilListening(port, child: child, seconds: 15) else { throw ValidationError("mcpopt serve did not listen: \(processes.tail(child))") }
        return port
    }

    private func startFastMCP(root: String, echoPort: Int, _ processes: BenchProcesses, _ skipped: inout [String]) throws -> Int? {
        try startPython("FastMCP proxy row", file: "fastmcp_proxy.py", importing: "from fastmcp.server import create_proxy", root: root, processes, &skipped) { port in
            """
            from fastmcp.server import create_proxy
            create_proxy("http://127.0.0.1:\(echoPort)/mcp").run(transport="http", host="127.0.0.1", port=\(port), path="/mcp", show_banner=False, log_level="warning", json_response=True)

            """
        }
    }

    /// A FastMCP server (JSON responses) with the echo tool the client calls: what a direct
    /// call to a real MCP server costs, to set beside a cache hit in front of it.
    private func startFastMCPServer(_ processes: BenchProcesses, _ skipped: inout [String]) throws -> Int? {
        try startPython("real server rows", file: "fastmcp_server.py", importing: "import fastmcp", root: (try? sourceTree()) ?? ".", processes, &skipped) { port in
            """
            from fastmcp import FastMCP
            mcp = FastMCP("echo")
            @mcp.tool(annotations={"readOnlyHint": True, "idempotentHint": True})
            def echo(i: int) -> str:
                return str(i)
            mcp.run(transport="http", host="127.0.0.1", port=\(port), path="/mcp", show_banner=False, log_level="warning", json_response=True)

            """
        }
    }

    /// Runs a Python script (given its port) with the first interpreter that can run
    /// `importing`, and waits until it listens; nil, with the reason in `skipped`, otherwise.
    private func startPython(_ rows: String, file: String, importing: String, root: String, _ processes: BenchProcesses, _ skipped: inout [String],
                             script: (Int) -> String) throws -> Int? {
        guard let interpreter = try python(importing: importing, root: root, processes) else {
            skipped.append("\(rows): no Python that can run `\(importing)` (give --python)")
            return nil
        }
        guard let port = BenchProcesses.freePort() else { return nil }
        try writeText("\(processes.directory)/\(file)", script(port))
        let child = try processes.start(file, [interpreter, "\(processes.directory)/\(file)"])
        guard processes.waitUntilListening(port, child: child, seconds: 60) else {
            skipped.append("\(rows): it did not listen: \(processes.tail(child))")
            return nil
        }
        return port
    }

    /// The first Python that runs `statement`: --python, $MCPOPT_PYTHON, the tree's .venv, python3.
    private func python(importing statement: String, root: String, _ processes: BenchProcesses) throws -> String? {
        let candidates = [python, getenv("MCPOPT_PYTHON").map { String(cString: $0) }, "\(root)/.venv/bin/python", "python3"].compactMap { $0 }
        for candidate in candidates {
            guard let interpreter = BenchProcesses.find(candidate) else { continue }
            if try processes.run("python check", [interpreter, "-c", statement], seconds: 60).status == 0 { return interpreter }
        }
        return nil
    }

    // MARK: the thundering herd

    /// `count` identical concurrent tools/call through an engine in this process, against a
    /// mock server (also in this process, over HTTP on loopback) whose tool takes `toolMs`: how
    /// many calls reached the server (the goal is 1), how the callers were answered, how long
    /// the herd took.
    static func thunderingHerd(count: Int, toolMs: Int) async -> JSONValue {
        let what: JSONValue = ["requests": .int(Int64(count)), "toolMs": .int(Int64(toolMs))]
        let profileText = #"{"name": "slow", "tools": [{"name": "slow_get", "kind": "read", "argument": "key", "medianMs": \#(toolMs), "p99Ms": \#(toolMs)}]}"#
        let server: MockServer, front: HTTPFront<MockServer>, port: Int
        do {
            server = MockServer(profile: try MockProfile.parse(Array(profileText.utf8)))
            var settings = HTTPFront<MockServer>.Settings()
            settings.port = 0
            front = try HTTPFront(service: server, settings: settings)
            port = try front.start()
        } catch {
            return merged(what, ["error": .string("cannot start the mock server: \(error)")])
        }
        defer { front.stop() }
        let config = #"{"mcpServers": {"slow": {"url": "http://127.0.0.1:\#(port)/mcp", "trustAnnotations": true}}, "caching": {"tools": {"slow_get": "60s"}}}"#
        let engine: Engine
        do { engine = try Engine(json: config) } catch { return merged(what, ["error": .string("bad configuration: \(error)")]) }
        await engine.start()
        let before = server.callCount
        let request = Array(#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow_get","arguments":{"key":"k"}}}"#.utf8)
        let started = BenchClock.nanos()
        let answers = await withTaskGroup(of: (Bool, String).self) { group in
            for _ in 0..<count {
                group.addTask {
                    let r = await engine.optimizeRequest(request)
                    return (r.success, r.source.rawValue)
                }
            }
            var tally: [String: Int] = [:]
            var succeeded = 0
            for await (success, source) in group {
                tally[source, default: 0] += 1
                if success { succeeded += 1 }
            }
            return (succeeded, tally)
        }
        let wallMs = Double(BenchClock.nanos() - started) / 1e6
        let upstreamCalls = server.callCount - before
        await engine.stop()
        let sources = JSONValue.object(JSONObject(answers.1.sorted { $0.key < $1.key }.map { (key: $0.key, value: .int(Int64($0.value))) }))
        return merged(what, ["upstreamCalls": .int(Int64(upstreamCalls)), "succeeded": .int(Int64(answers.0)), "sources": sources,
                             "wallMs": .double((wallMs * 10).rounded() / 10)])
    }

    private static func merged(_ a: JSONValue, _ b: JSONValue) -> JSONValue {
        .object(JSONObject((a.objectValue?.members ?? []) + (b.objectValue?.members ?? [])))
    }

    // MARK: figures

    /// Each row with its p50 over the direct row's ("addedP50Us").
    static func withAddedLatency(_ rows: [JSONValue]) -> [JSONValue] {
        let direct = rows.first { $0["path"]?.stringValue == "direct" }?["p50Us"]?.doubleValue
        return rows.map { row in
            guard case .object(var o) = row, let p50 = row["p50Us"]?.doubleValue, let direct else { return row }
            o["addedP50Us"] = .double(((p50 - direct) * 10).rounded() / 10)
            return .object(o)
        }
    }

    /// The issue's goals for one round: miss added ÷ haproxy added (≤ 1.5), FastMCP added ÷
    /// mcpopt miss added (≥ 300), hit p50 ÷ direct p50 (< 1); null when a row is missing.
    static func goals(_ rows: [JSONValue]) -> JSONValue {
        func value(_ path: String, _ field: String) -> Double? { rows.first { $0["path"]?.stringValue == path }?[field]?.doubleValue }
        func p50(_ path: String) -> Double? { value(path, "p50Us") }
        func added(_ path: String) -> Double? { value(path, "addedP50Us") }
        func ratio(_ a: Double?, _ b: Double?) -> JSONValue {
            guard let a, let b, b > 0 else { return .null }
            return .double((a / b * 100).rounded() / 100)
        }
        return [
            "missAddedOverHaproxyAdded": ratio(added("mcpopt miss"), added("haproxy")), "missGoalAtMost": 1.5,
            "fastmcpAddedOverMissAdded": ratio(added("fastmcp proxy"), added("mcpopt miss")), "fastmcpGoalAtLeast": 300,
            "hitP50OverDirectP50": ratio(p50("mcpopt hit"), p50("direct")), "hitGoalBelow": 1,
            // The same ratio between turns the scheduler placed alike (null when one of the two
            // rows had no such turn): unpinned, the rows' own p50s may compare placements.
            "hitOverDirectOnOneCPU": ratio(value("mcpopt hit", "p50OneCPUUs"), value("direct", "p50OneCPUUs")),
            "hitOverDirectOnTwoCPUs": ratio(value("mcpopt hit", "p50TwoCPUsUs"), value("direct", "p50TwoCPUsUs")),
            // With busy polling, beside haproxy with its busy-polling (and without).
            "busyPollMissAddedOverHaproxyBusyAdded": ratio(added("mcpopt miss, busy-poll"), added("haproxy, busy-polling")),
            "busyPollMissAddedOverHaproxyAdded": ratio(added("mcpopt miss, busy-poll"), added("haproxy")),
            "busyPollHitP50OverDirectP50": ratio(p50("mcpopt hit, busy-poll"), p50("direct")),
            "busyPollHitOverDirectOnOneCPU": ratio(value("mcpopt hit, busy-poll", "p50OneCPUUs"), value("direct", "p50OneCPUUs")),
            "busyPollHitOverDirectOnTwoCPUs": ratio(value("mcpopt hit, busy-poll", "p50TwoCPUsUs"), value("direct", "p50TwoCPUsUs")),
        ]
    }

    /// A hit in front of the real server ÷ the real server's own round trip (p50).
    static func realServerRatio(_ rows: [JSONValue]) -> JSONValue {
        guard rows.count == 2, let direct = rows[0]["p50Us"]?.doubleValue, let hit = rows[1]["p50Us"]?.doubleValue, direct > 0 else { return .null }
        return .double((hit / direct * 1000).rounded() / 1000)
    }

    static func table(_ result: JSONValue) -> String {
        func n(_ value: JSONValue?) -> String {
            guard let d = value?.doubleValue else { return "-" }
            return JSONWriter.number(d >= 1_000 ? d.rounded() : d)
        }
        let machine = result["machine"]
        var lines = ["mcpopt bench gateway: \(n(result["requestsPerRow"])) calls per row in \(n(result["blocks"])) interleaved turns (FastMCP proxy \(n(result["fastmcpRequestsPerRow"])) at once), one at a time; "
            + "\(n(machine?["cores"])) cores, kernel \(machine?["kernel"]?.stringValue ?? "?"), load \(machine?["loadAverageAtStart"]?.stringValue ?? "?") at start"]
        lines.append("one CPU: the share of a row's calls in turns that ended with the client on the CPU of each server's busiest thread (the scheduler's placement, which a round trip's time depends on first)")
        let header = "path".padding(28) + "p50 us".leftPad(10) + "p99 us".leftPad(10) + "mean us".leftPad(10) + "calls/s".leftPad(10) + "added p50".leftPad(11)
            + "one CPU".leftPad(9)
        func line(_ row: JSONValue) -> String {
            let path = (row["path"]?.stringValue ?? "").padding(28)
            if let error = row["error"]?.stringValue { return path + "failed: " + error }
            return path + n(row["p50Us"]).leftPad(10) + n(row["p99Us"]).leftPad(10) + n(row["meanUs"]).leftPad(10)
                + n(row["roundTripsPerSecond"]).leftPad(10) + (row["path"]?.stringValue == "direct" ? "-" : row["addedP50Us"].map { "+" + n($0) } ?? "").leftPad(11)
                + (row["oneCPUShare"]?.doubleValue.map { "\(Int(($0 * 100).rounded()))%" } ?? "").leftPad(9)
        }
        var placement = ""
        for round in result["rounds"]?.arrayValue ?? [] {
            if let name = round["placement"]?.stringValue, name != placement {
                placement = name
                lines += ["", BenchPlacement(rawValue: name)?.summary ?? name]
            }
            lines += ["", "round \(n(round["round"])) (\(placement))", header] + (round["rows"]?.arrayValue ?? []).map(line)
            let g = round["goals"]
            lines.append("goals: miss added / haproxy added = \(n(g?["missAddedOverHaproxyAdded"])) (<= 1.5); "
                + "FastMCP added / miss added = \(n(g?["fastmcpAddedOverMissAdded"])) (>= 300); hit p50 / direct p50 = \(n(g?["hitP50OverDirectP50"])) (< 1)")
            if g?["busyPollHitP50OverDirectP50"]?.doubleValue != nil {
                lines.append("       busy polling (\(result["busyPoll"]?.stringValue ?? "?")): miss added / haproxy busy-polling added = \(n(g?["busyPollMissAddedOverHaproxyBusyAdded"])), "
                    + "/ haproxy added = \(n(g?["busyPollMissAddedOverHaproxyAdded"])) (<= 1.5); hit p50 / direct p50 = \(n(g?["busyPollHitP50OverDirectP50"])) (< 1)")
            }
            // Unpinned, the rows may have been placed differently: the ratio between turns placed alike.
            let shares = ["direct", "mcpopt hit", "mcpopt hit, busy-poll"].map { path in
                (round["rows"]?.arrayValue ?? []).first { $0["path"]?.stringValue == path }?["oneCPUShare"]?.doubleValue
            }
            if placement == BenchPlacement.any.rawValue, let direct = shares[0], let hit = shares[1] {
                lines.append("       the hit's turns ended on one CPU for \(Int((hit * 100).rounded()))% of its calls, the direct call's for \(Int((direct * 100).rounded()))%; "
                    + "hit p50 / direct p50 between turns placed alike: one CPU \(n(g?["hitOverDirectOnOneCPU"])), two CPUs \(n(g?["hitOverDirectOnTwoCPUs"]))")
                if let polling = shares[2] {
                    lines.append("       the busy-polling hit's turns ended on one CPU for \(Int((polling * 100).rounded()))% of its calls; between turns placed alike: "
                        + "one CPU \(n(g?["busyPollHitOverDirectOnOneCPU"])), two CPUs \(n(g?["busyPollHitOverDirectOnTwoCPUs"]))")
                }
            }
        }
        lines += ["", "cache hits, several connections at once", header] + (result["concurrentHits"]?.arrayValue ?? []).map(line)
        let real = result["realServer"]?.arrayValue ?? []
        if !real.isEmpty {
            lines += ["", "against a real MCP server (FastMCP, the same echo tool)", header] + real.map(line)
            lines.append("hit p50 / the real server's direct p50 = \(n(result["realServerHitOverDirect"])) (< 1)")
        }
        let abi = result["cAbiHits"]?.arrayValue ?? []
        if !abi.isEmpty {
            lines += ["", "cache hits through the C ABI (mcpopt_optimize_request in a C host)"]
            lines += abi.map { "\(n($0["threads"])) thread(s)".padding(28) + n($0["p50Us"]).leftPad(10) + n($0["p99Us"]).leftPad(10) + "".leftPad(10)
                + n($0["callsPerSecond"]).leftPad(10) + "   \(n($0["hits"])) of \(n($0["requests"])) hits" }
        }
        if let herd = result["herd"] {
            lines.append("")
            if let error = herd["error"]?.stringValue {
                lines.append("thundering herd: failed: \(error)")
            } else {
                let sources = herd["sources"]?.objectValue?.members.map { "\($0.key) \(n($0.value))" }.joined(separator: ", ") ?? ""
                lines.append("thundering herd: \(n(herd["requests"])) identical concurrent calls of a \(n(herd["toolMs"])) ms tool -> "
                    + "\(n(herd["upstreamCalls"])) upstream call(s) in \(n(herd["wallMs"])) ms (\(n(herd["succeeded"])) succeeded; \(sources))")
            }
        }
        for note in result["skipped"]?.arrayValue ?? [] { lines.append("skipped: \(note.stringValue ?? "")") }
        if let busy = machine?["busyBeforeStart"]?.doubleValue, busy > 0.1 {
            lines.append("note: the CPUs were \(Int((busy * 100).rounded()))% busy in the second before the start: something else is running, and these figures count it")
        }
        return lines.joined(separator: "\n")
    }

    static func kernel() -> String {
        var names = utsname()
        guard uname(&names) == 0 else { return "?" }
        return withUnsafeBytes(of: &names.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}
