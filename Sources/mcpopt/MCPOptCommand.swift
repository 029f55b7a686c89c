import ArgumentParser
import Glibc
import MCPOptConfig
import MCPOptEngine
import MCPOptJSON

@main
struct MCPOptCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcpopt",
        abstract: "An MCP optimization engine: routing, caching, failover and metrics in front of your MCP servers.",
        version: MCPOptVersion.string,
        subcommands: [Validate.self, Describe.self, Serve.self, Stdio.self, MockServerCommand.self, Demo.self, Bench.self]
    )

    /// A write to a peer that went away (a server that crashed, a client that hung up) must
    /// be an EPIPE error for that one connection, not a SIGPIPE that ends the whole program.
    static func main() {
        signal(SIGPIPE, SIG_IGN)
        main(nil)
    }
}

/// Reads a configuration file, turning I/O failures into a clean exit.
func readConfigFile(_ path: String) throws -> [UInt8] {
    do {
        return try FileReader.read(path)
    } catch {
        throw ValidationError("cannot read \(path): \(error)")
    }
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a configuration file and list every problem with the JSON path of the field.")

    @Argument(help: "The configuration file (JSON with mcpServers and engine options).")
    var config: String

    func run() throws {
        let bytes = try readConfigFile(config)
        do {
            let parsed = try EngineConfig.parse(bytes)
            let active = parsed.activeServers
            let stdio = active.filter { $0.transport.name == "stdio" }.count
            print("\(config): valid: \(active.count) server(s) (\(stdio) stdio, \(active.count - stdio) http), \(Set(active.map(\.group)).count) group(s), \(parsed.agents.count) agent profile(s)")
        } catch {
            printError("\(config): \(error.issues.count) problem(s)")
            for issue in error.issues { printError("  \(issue.path): \(issue.message)") }
            throw ExitCode(2)
        }
    }
}

struct Describe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start an engine from a configuration and print what it runs with, as JSON (secrets redacted).")

    @Argument(help: "The configuration file.")
    var config: String

    func run() throws {
        let bytes = try readConfigFile(config)
        do {
            let parsed = try EngineConfig.parse(bytes)
            print(JSONWriter(pretty: true).string(Engine(config: parsed).describe()))
        } catch {
            printError("\(config): \(error)")
            throw ExitCode(2)
        }
    }
}
