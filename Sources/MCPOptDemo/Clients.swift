import MCPOptConfig
import MCPOptEngine
import MCPOptIO
import MCPOptJSON
import MCPOptProtocol
import MCPOptUpstream

/// What one call of a replay cost and how it went.
public struct CallRecord: Sendable {
    /// When the call started, from the start of its run (all chunks of a run laid end to end).
    public var startNanos: UInt64
    public var latencyNanos: UInt64
    public var ok: Bool
    /// The server that answered (nil for a cache hit or a failure).
    public var server: String?
    /// The engine's cache source (memory, origin, coalesced...); "direct" for the naive client.
    public var source: String
    public var error: String?
}

/// A client of the demo's servers: the naive one or the engine.
public protocol DemoClient: AnyObject, Sendable {
    func start() async throws(DemoError)
    func call(_ call: TraceCall, id: Int) async -> (ok: Bool, server: String?, source: String, error: String?)
    func stop() async
}

func callMessage(_ call: TraceCall, id: Int) -> [UInt8] {
    let params: JSONValue = ["name": .string(call.tool), "arguments": call.arguments]
    return Array(#"{"jsonrpc":"2.0","id":\#(id),"method":"tools/call","params":\#(params.jsonString)}"#.utf8)
}

/// True when a JSON-RPC response carries a result that is not a tool error.
func isSuccess(_ response: [UInt8]) -> (ok: Bool, error: String?) {
    response.withUnsafeBytes { bytes in
        MessageDecoder.withPooled { decoder in
            guard let view = try? decoder.decode(bytes) else { return (false, "undecodable response") }
            if view.result.isPresent { return view.resultIsError ? (false, "tool error") : (true, nil) }
            return (false, view.errorMessage.string ?? "error")
        }
    }
}

/// What an agent does without mcpopt: one direct session to the first server offering each
/// tool, no cache, no retry, no failover (a request lost to a crash is lost; the session
/// itself restarts a crashed stdio server, as the SDKs' clients do not even do).
public final class NaiveClient: DemoClient, @unchecked Sendable {
    private let fleet: Fleet
    private let loop: EventLoop
    private var sessions: [String: any MCPUpstream] = [:]   // written before the replay only
    private var serverForTool: [String: String] = [:]        // written before the replay only
    public let timeout: Duration

    public init(fleet: Fleet, loop: EventLoop, timeout: Duration = .seconds(10)) {
        self.fleet = fleet
        self.loop = loop
        self.timeout = timeout
    }

    public func start() async throws(DemoError) {
        for server in fleet.servers {
            for tool in server.profile.tools where serverForTool[tool.name] == nil { serverForTool[tool.name] = server.name }
        }
        for name in Set(serverForTool.values) {
            guard let server = fleet.servers.first(where: { $0.name == name }) else { continue }
            let upstream: any MCPUpstream
            if server.http {
                upstream = HTTPUpstream(endpoint: .init(host: "127.0.0.1", port: fleet.ports[name]!, path: "/mcp"), loop: loop)
            } else {
                upstream = StdioUpstream(command: StdioCommand(command: fleet.executable, arguments: ["mock-server", "--profile", fleet.profilePath(server)]), loop: loop)
            }
            upstream.start()
            sessions[name] = upstream
        }
        // Each session ready before timing starts (the engine's are too).
        for (name, upstream) in sessions {
            do {
                _ = try await upstream.request(UpstreamRequest(method: "tools/list", params: nil), timeout: .seconds(10), cancellable: false)
            } catch {
                throw DemoError("naive client: \(name) did not answer tools/list: \(error.message)")
            }
        }
    }

    public func call(_ call: TraceCall, id: Int) async -> (ok: Bool, server: String?, source: String, error: String?) {
        guard let name = serverForTool[call.tool], let session = sessions[name] else { return (false, nil, "direct", "no server offers \(call.tool)") }
        let params: JSONValue = ["name": .string(call.tool), "arguments": call.arguments]
        do {
            let response = try await session.request(UpstreamRequest(method: "tools/call", params: Array(params.jsonString.utf8)), timeout: timeout, cancellable: false)
            let (ok, error) = isSuccess(response)
            return (ok, name, "direct", error)
        } catch {
            return (false, name, "direct", error.message)
        }
    }

    public func stop() async {
        for session in sessions.values { await session.shutdown(grace: .milliseconds(500)) }
    }
}

/// The same calls through the engine (`optimizeRequest`), with every server of the fleet.
public final class EngineClient: DemoClient, @unchecked Sendable {
    public let engine: Engine

    public init(fleet: Fleet, sharedCache: String? = nil, extra: JSONObject = [:]) throws(DemoError) {
        var servers = JSONObject()
        for server in fleet.servers { servers[server.name] = fleet.configEntry(server) }
        var config: JSONObject = [
            "mcpServers": .object(servers),
            "caching": [
                "memoryCacheSize": "64MiB",
                // Writes make exactly the reads they change stale.
                "invalidationRules": [
                    ["tool": "write_file", "invalidates": ["read_file"], "arguments": ["path"]],
                    ["tool": "update_record", "invalidates": ["get_record"], "arguments": ["id"]],
                    ["tool": "comment_ticket", "invalidates": ["get_ticket"], "arguments": ["id"]],
                ],
            ],
            "optimization": ["requestTimeout": "10s"],
            "targets": ["maxServerCount": 100_000],
        ]
        if let sharedCache, case .object(var caching)? = config["caching"] {
            caching["distributed"] = .string(sharedCache)
            config["caching"] = .object(caching)
        }
        for member in extra.members { config[member.key] = member.value }
        do {
            engine = try Engine(json: JSONValue.object(config).jsonString)
        } catch {
            throw DemoError("the demo's engine configuration is invalid: \(error)")
        }
    }

    public func start() async throws(DemoError) {
        await engine.start()
        let down = engine.catalogs.filter { $0.error != nil }
        if !down.isEmpty { throw DemoError("engine: server(s) did not start: " + down.map { "\($0.server): \($0.error!)" }.joined(separator: "; ")) }
    }

    public func call(_ call: TraceCall, id: Int) async -> (ok: Bool, server: String?, source: String, error: String?) {
        let response = await engine.optimizeRequest(callMessage(call, id: id), OptimizeOptions(agent: nil, partition: "demo"))
        var ok = response.success
        var error = response.error
        if ok { (ok, error) = isSuccess(response.message) }
        return (ok, response.server, response.source.rawValue, error)
    }

    public func stop() async { await engine.stop() }
}
