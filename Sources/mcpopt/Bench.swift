import ArgumentParser

/// `mcpopt bench <component>`: reproducible benchmarks; figures are recorded in BENCHMARKS.md.
/// Each component adds its own subcommand in a file of its own (BenchCache.swift, ...).
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a benchmark and print its figures (a table, or --json).",
        subcommands: benchSubcommands
    )
}

/// Registered benchmark subcommands.
let benchSubcommands: [ParsableCommand.Type] = [BenchCodec.self, BenchCache.self, BenchRoute.self, BenchUpstream.self, BenchShared.self, BenchCoordination.self, BenchGateway.self]
