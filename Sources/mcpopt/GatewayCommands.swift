import ArgumentParser
import Dispatch
import MCPOptConfig
import MCPOptEngine
import MCPOptGateway

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

    func run() throws {
        let engine = try loadEngine(config)
        let gateway = Gateway(engine: engine)
        blockOn {
            for warning in await gateway.start() { printError("mcpopt: \(warning)") }
            await StdioFront(gateway: gateway).run()
            await engine.stop()
        }
    }
}
