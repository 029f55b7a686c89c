// swift-tools-version: 6.1
// mcpopt: an MCP optimization engine with a Swift core behind a C ABI.
//
// Layering (imports only point down this list):
//   CMCPOptJSON, CMCPOptSupport   C/C++ shims (simdjson; thread-local error state, allocator probe)
//   CMCPOptConcurrency            seqlock, epochs, striped counters (the lock-free read paths)
//   MCPOptCache                   the in-process cache (slab pages, S3-FIFO, lock-free reads)
//   MCPOptRouting                 server registry, lock-free routing table, strategies, breakers
//   MCPOptJSON                    JSON values over simdjson, writer, canonical form
//   MCPOptConfig                  the engine's JSON configuration, validated with field paths
//   MCPOptEngine                  composes the components
//   MCPOpt                        the C ABI (@_cdecl), producing libmcpopt.so
//   mcpopt                        the command-line program (gateway, demo, bench)
import PackageDescription

/// Nonisolated async functions run on their caller's executor (SE-0461) instead of hopping
/// to the generic one. A request task prefers its event loop as executor, and each hop asked
/// the runtime for that preference under a lock: 17 hops a cache miss, about 3% of its
/// instructions (callgrind). Every Swift target uses it, so that function types mean the same
/// across modules.
let swiftSettings: [SwiftSetting] = [.enableUpcomingFeature("NonisolatedNonsendingByDefault")]

let package = Package(
    name: "mcpopt",
    products: [
        // Built as libMCPOpt.so (SwiftPM names it after the product, and "mcpopt" is the program);
        // its soname is libmcpopt.so.1 and CMake installs it as libmcpopt.so.
        .library(name: "MCPOpt", type: .dynamic, targets: ["MCPOpt"]),
        .library(name: "MCPOptEngine", targets: ["MCPOptEngine"]),
        .executable(name: "mcpopt", targets: ["mcpopt"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        .target(
            name: "CMCPOptJSON",
            cxxSettings: [.unsafeFlags(["-O2"])],
            linkerSettings: [.linkedLibrary("simdjson"), .linkedLibrary("stdc++")]
        ),
        .target(name: "CMCPOptSupport", linkerSettings: [.linkedLibrary("dl")]),
        .target(
            name: "CMCPOptRPC",
            cxxSettings: [.unsafeFlags(["-O2"])],
            linkerSettings: [.linkedLibrary("simdjson"), .linkedLibrary("stdc++")]
        ),
        .systemLibrary(name: "CHiredis", path: "Sources/CHiredis"),
        .target(name: "MCPOptSync", dependencies: ["CMCPOptConcurrency"], swiftSettings: swiftSettings),
        .target(name: "CMCPOptIO", linkerSettings: [.linkedLibrary("uring")]),
        .target(name: "CMCPOptTLS", linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),
        .target(name: "MCPOptIO", dependencies: ["CMCPOptIO", "CMCPOptTLS", "MCPOptSync", "MCPOptUpstream", "MCPOptProtocol", "MCPOptJSON"], swiftSettings: swiftSettings),
        .target(name: "MCPOptRouting", dependencies: ["CMCPOptConcurrency", "MCPOptSync"], swiftSettings: swiftSettings),
        .target(name: "CMCPOptConcurrency"),
        .target(name: "CMCPOptCache", dependencies: ["CMCPOptConcurrency"], linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "MCPOptCache", dependencies: ["CMCPOptCache", "CMCPOptConcurrency", "MCPOptSync"], swiftSettings: swiftSettings),
        .target(name: "MCPOptMetrics", dependencies: ["MCPOptSync", .product(name: "Histogram", package: "hdrhistogram-swift")], swiftSettings: swiftSettings),
        .target(name: "MCPOptJSON", dependencies: ["CMCPOptJSON"], swiftSettings: swiftSettings),
        .target(name: "MCPOptRedis", dependencies: ["CHiredis", "MCPOptIO"], swiftSettings: swiftSettings),
        .target(name: "MCPOptConfig", dependencies: ["MCPOptJSON"], swiftSettings: swiftSettings),
        .target(name: "CMCPOptHTTP", linkerSettings: [.linkedLibrary("http_parser")]),
        .target(name: "MCPOptProtocol", dependencies: ["CMCPOptRPC", "CMCPOptHTTP", "MCPOptJSON"], swiftSettings: swiftSettings),
        .target(name: "MCPOptUpstream", dependencies: ["MCPOptProtocol", "MCPOptJSON"], swiftSettings: swiftSettings),
        .target(name: "MCPOptGateway", dependencies: ["MCPOptEngine", "MCPOptProtocol", "MCPOptJSON", "MCPOptIO", "MCPOptSync"], swiftSettings: swiftSettings),
        .target(name: "MCPOptMock", dependencies: ["MCPOptGateway", "MCPOptProtocol", "MCPOptJSON", "MCPOptSync"], swiftSettings: swiftSettings),
        .target(name: "MCPOptDemo", dependencies: ["MCPOptEngine", "MCPOptConfig", "MCPOptIO", "MCPOptUpstream", "MCPOptProtocol", "MCPOptJSON", "MCPOptMetrics", "MCPOptMock", "MCPOptSync"], swiftSettings: swiftSettings),
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite"),
        .target(name: "MCPOptCoordination", dependencies: ["CSQLite", "MCPOptSync"], swiftSettings: swiftSettings),
        .target(name: "MCPOptEngine", dependencies: ["MCPOptCache", "MCPOptRouting", "MCPOptConfig", "MCPOptCoordination", "MCPOptJSON", "MCPOptProtocol", "MCPOptSync", "CMCPOptSupport", "MCPOptIO", "MCPOptUpstream", "MCPOptMetrics", "MCPOptRedis"], swiftSettings: swiftSettings),
        .target(
            name: "MCPOpt",
            dependencies: ["MCPOptEngine", "MCPOptCache", "MCPOptRouting", "CMCPOptConcurrency", "MCPOptConfig", "MCPOptCoordination", "MCPOptJSON", "MCPOptSync", "CMCPOptSupport"],
            // The shipped library's exports (only mcpopt_*) and soname are set where it is
            // linked for shipping (CMakeLists.txt): as target flags they would also reach the
            // test executables, and hide the symbols sanitizers must export.
            exclude: ["mcpopt.map"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "mcpopt",
            dependencies: [
                "MCPOptEngine", "MCPOptConfig", "MCPOptJSON", "MCPOptProtocol", "MCPOptCache", "MCPOptRouting", "MCPOptSync",
                "MCPOptIO", "MCPOptUpstream", "MCPOptGateway", "MCPOptMock", "MCPOptDemo", "MCPOptRedis", "CMCPOptSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings,
            // The program, unlike the library, may bring its own allocator.
            linkerSettings: [.linkedLibrary("jemalloc")]
        ),
        // Fuzz targets; replays a corpus when built normally (see scripts/fuzz).
        .executableTarget(name: "mcpopt-fuzz", dependencies: ["MCPOptCache", "MCPOptConfig", "MCPOptJSON", "MCPOptProtocol"], path: "Sources/MCPOptFuzz", swiftSettings: swiftSettings),
        // What several test targets share (TLS material for the tests against real servers).
        .target(name: "MCPOptTestSupport", path: "Tests/MCPOptTestSupport"),
        .testTarget(name: "MCPOptJSONTests", dependencies: ["MCPOptJSON"], swiftSettings: swiftSettings),
        .testTarget(name: "MCPOptSyncTests", dependencies: ["MCPOptSync"], swiftSettings: swiftSettings),
        .testTarget(name: "MCPOptCacheTests", dependencies: ["MCPOptCache"], swiftSettings: swiftSettings),
        .testTarget(name: "MCPOptRoutingTests", dependencies: ["MCPOptRouting"], swiftSettings: swiftSettings),
        .testTarget(name: "MCPOptIOTests", dependencies: ["MCPOptTestSupport", "MCPOptIO", "MCPOptUpstream", "MCPOptProtocol", "MCPOptJSON"], swiftSettings: swiftSettings),
        .testTarget(name: "MCPOptConfigTests", dependencies: ["MCPOptConfig", "MCPOptJSON"], swiftSettings: swiftSettings),
        .testTarget(name: "MCPOptEngineTests", dependencies: ["MCPOptTestSupport", "MCPOptEngine", "MCPOptConfig", "MCPOptProtocol", "MCPOptSync", "MCPOptMock", "MCPOptGateway", "MCPOptRedis", "MCPOptIO"], swiftSettings: swiftSettings),
        .testTarget(name: "MCPOptCoordinationTests", dependencies: ["MCPOptCoordination"], swiftSettings: swiftSettings),
        .testTarget(name: "MCPOptMetricsTests", dependencies: ["MCPOptMetrics"], swiftSettings: swiftSettings),
        .testTarget(name: "MCPOptABITests", dependencies: ["MCPOpt"], swiftSettings: swiftSettings),
        .testTarget(name: "MCPOptProtocolTests", dependencies: ["MCPOptProtocol", "MCPOptJSON"], swiftSettings: swiftSettings),
        .testTarget(name: "MCPOptGatewayTests", dependencies: ["MCPOptGateway"], swiftSettings: swiftSettings),
        .testTarget(name: "MCPOptDemoTests", dependencies: ["MCPOptDemo", "MCPOptMock", "MCPOptGateway", "MCPOptJSON", "MCPOptSync"], swiftSettings: swiftSettings),
        .testTarget(name: "MCPOptRedisTests", dependencies: ["MCPOptTestSupport", "MCPOptRedis", "MCPOptIO"], swiftSettings: swiftSettings),
        .testTarget(name: "MCPOptUpstreamTests", dependencies: ["MCPOptUpstream", "MCPOptProtocol", "MCPOptJSON"], swiftSettings: swiftSettings),
    ],
    cxxLanguageStandard: .cxx17
)
