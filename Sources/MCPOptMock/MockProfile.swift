import MCPOptJSON

/// What a mock server offers and how it misbehaves: its tools (with annotations, latency
/// distributions and result sizes) and the faults it injects. Read from JSON (see
/// docs/DEMO.md for the format) or taken from a preset.
public struct MockProfile: Sendable, Equatable {
    /// The kind of work a tool stands for; it decides the tool's annotations.
    public enum Kind: String, Sendable, CaseIterable {
        /// Read-only and idempotent (a file or record read, a search).
        case read
        /// Changes state, idempotently (sets a value): safe to retry, not to cache.
        case write
        /// Read-only, idempotent and slow (a report).
        case analytics
        /// Asks the client for input first (modern era: an `input_required` result with a
        /// sealed `requestState` only this server accepts back), then answers.
        case interactive
    }

    public struct Tool: Sendable, Equatable {
        public var name: String
        public var kind: Kind
        /// The argument the tool takes (a string).
        public var argument: String
        /// Median and 99th percentile of a lognormal latency distribution.
        public var medianMs: Double
        public var p99Ms: Double
        /// Size of the text the tool answers with.
        public var resultBytes: Int
        public var description: String

        public init(name: String, kind: Kind, argument: String = "key", medianMs: Double, p99Ms: Double, resultBytes: Int = 256, description: String? = nil) {
            self.name = name
            self.kind = kind
            self.argument = argument
            self.medianMs = medianMs
            self.p99Ms = p99Ms
            self.resultBytes = resultBytes
            self.description = description ?? "\(kind.rawValue) \(argument) (mock)"
        }
    }

    /// Latency that grows with time: from `afterMs` after start, latencies are multiplied by
    /// 1 + `ratePerSecond` x seconds since then, up to `maxFactor`.
    public struct Degrade: Sendable, Equatable {
        public var afterMs: Double
        public var ratePerSecond: Double
        public var maxFactor: Double
        public init(afterMs: Double, ratePerSecond: Double, maxFactor: Double = 50) {
            self.afterMs = afterMs
            self.ratePerSecond = ratePerSecond
            self.maxFactor = maxFactor
        }
    }

    public var name: String
    public var version = "1.0.0"
    public var seed: UInt64 = 1
    public var tools: [Tool]
    /// Calls served at once (workers); more wait their turn in a queue. 0: unlimited.
    public var capacity = 0
    /// Probability that a call answers a JSON-RPC error (-32603) instead of its result.
    public var errorRate = 0.0
    /// The process exits (status 3) when call number crashAfter + 1 arrives; 0: never.
    public var crashAfter = 0
    /// From call number hangAfter + 1, calls get no answer for hangMs; 0: never.
    public var hangAfter = 0
    public var hangMs = 10_000.0
    public var degrade: Degrade?
    /// Also a two-phase-commit participant (docs/COORDINATION.md): tools tx_prepare, tx_commit,
    /// tx_abort, kept in memory, answered at once (for coordinator benchmarks; votes yes).
    public var participant = false

    public init(name: String, tools: [Tool]) {
        self.name = name
        self.tools = tools
    }

    /// A profile problem, with the JSON path of the field.
    public struct Problem: Error, Sendable, CustomStringConvertible {
        public let path: String
        public let message: String
        public var description: String { "\(path): \(message)" }
    }

    /// Reads a profile from JSON; every field but `tools` (or `preset`) has a default.
    public static func parse(_ bytes: [UInt8]) throws(Problem) -> MockProfile {
        let root: JSONValue
        do { root = try JSONParser.parse(bytes) } catch { throw Problem(path: "$", message: "not JSON: \(error.detail)") }
        guard case .object(let o) = root else { throw Problem(path: "$", message: "expected an object, got \(root.typeName)") }
        let known: Set<String> = ["name", "version", "seed", "preset", "tools", "capacity", "errorRate", "crashAfter", "hangAfter", "hangMs", "degrade"]
        if let unknown = o.keys.first(where: { !known.contains($0) }) { throw Problem(path: "$.\(unknown)", message: "unknown key") }
        let name = try string(o["name"], "$.name") ?? "mock"
        var profile: MockProfile
        if let preset = try string(o["preset"], "$.preset") {
            guard let p = Self.preset(preset, name: name) else {
                throw Problem(path: "$.preset", message: "unknown preset \"\(preset)\" (known: \(presetNames.joined(separator: ", ")))")
            }
            profile = p
        } else {
            profile = MockProfile(name: name, tools: [])
        }
        if let tools = o["tools"] {
            guard case .array(let list) = tools else { throw Problem(path: "$.tools", message: "expected an array") }
            profile.tools = try list.enumerated().map { (i, t) throws(Problem) in try tool(t, "$.tools[\(i)]") }
        }
        guard !profile.tools.isEmpty else { throw Problem(path: "$.tools", message: "a profile needs tools (or a preset)") }
        profile.version = try string(o["version"], "$.version") ?? profile.version
        profile.seed = try UInt64(number(o["seed"], "$.seed", 0...Double(UInt32.max)) ?? Double(profile.seed))
        profile.capacity = try Int(number(o["capacity"], "$.capacity", 0...100_000) ?? Double(profile.capacity))
        profile.errorRate = try number(o["errorRate"], "$.errorRate", 0...1) ?? profile.errorRate
        profile.crashAfter = try Int(number(o["crashAfter"], "$.crashAfter", 0...1e9) ?? Double(profile.crashAfter))
        profile.hangAfter = try Int(number(o["hangAfter"], "$.hangAfter", 0...1e9) ?? Double(profile.hangAfter))
        profile.hangMs = try number(o["hangMs"], "$.hangMs", 0...3_600_000) ?? profile.hangMs
        if let d = o["degrade"], d != .null {
            guard case .object(let dobj) = d else { throw Problem(path: "$.degrade", message: "expected an object") }
            profile.degrade = Degrade(afterMs: try number(dobj["afterMs"], "$.degrade.afterMs", 0...3_600_000) ?? 0,
                                      ratePerSecond: try number(dobj["ratePerSecond"], "$.degrade.ratePerSecond", 0...1000) ?? 1,
                                      maxFactor: try number(dobj["maxFactor"], "$.degrade.maxFactor", 1...10_000) ?? 50)
        }
        return profile
    }

    private static func tool(_ value: JSONValue, _ path: String) throws(Problem) -> Tool {
        guard case .object(let o) = value else { throw Problem(path: path, message: "expected an object") }
        guard let name = try string(o["name"], path + ".name"), !name.isEmpty else { throw Problem(path: path + ".name", message: "a tool needs a name") }
        let kindText = try string(o["kind"], path + ".kind") ?? "read"
        guard let kind = Kind(rawValue: kindText) else {
            throw Problem(path: path + ".kind", message: "unknown kind \"\(kindText)\" (known: read, write, analytics, interactive)")
        }
        let median = try number(o["medianMs"], path + ".medianMs", 0...3_600_000) ?? 1
        let p99 = try number(o["p99Ms"], path + ".p99Ms", 0...3_600_000) ?? median * 4
        guard p99 >= median else { throw Problem(path: path + ".p99Ms", message: "must be at least medianMs") }
        return Tool(name: name, kind: kind, argument: try string(o["argument"], path + ".argument") ?? "key", medianMs: median, p99Ms: p99,
                    resultBytes: Int(try number(o["resultBytes"], path + ".resultBytes", 0...16_000_000) ?? 256),
                    description: try string(o["description"], path + ".description"))
    }

    private static func string(_ value: JSONValue?, _ path: String) throws(Problem) -> String? {
        guard let value, value != .null else { return nil }
        guard case .string(let s) = value else { throw Problem(path: path, message: "expected a string, got \(value.typeName)") }
        return s
    }

    private static func number(_ value: JSONValue?, _ path: String, _ range: ClosedRange<Double>) throws(Problem) -> Double? {
        guard let value, value != .null else { return nil }
        guard let d = value.doubleValue else { throw Problem(path: path, message: "expected a number, got \(value.typeName)") }
        guard range.contains(d) else { throw Problem(path: path, message: "\(d) is out of range: must be between \(range.lowerBound) and \(range.upperBound)") }
        return d
    }

    // MARK: presets

    public static let presetNames = ["files", "records", "search", "analytics", "git", "tickets", "docs"]

    /// The demo's kinds of server: each a few tools with latencies typical of its kind, and a
    /// few workers (a slow kind has fewer).
    public static func preset(_ preset: String, name: String) -> MockProfile? {
        let tools: [Tool]
        let capacity: Int
        switch preset {
        case "files":
            capacity = 4
            tools = [Tool(name: "read_file", kind: .read, argument: "path", medianMs: 2, p99Ms: 30, resultBytes: 1024),
                     Tool(name: "list_dir", kind: .read, argument: "path", medianMs: 3, p99Ms: 35, resultBytes: 512),
                     Tool(name: "write_file", kind: .write, argument: "path", medianMs: 6, p99Ms: 60, resultBytes: 32)]
        case "records":
            capacity = 4
            tools = [Tool(name: "get_record", kind: .read, argument: "id", medianMs: 5, p99Ms: 60, resultBytes: 512),
                     Tool(name: "update_record", kind: .write, argument: "id", medianMs: 8, p99Ms: 80, resultBytes: 32)]
        case "search":
            capacity = 2
            tools = [Tool(name: "search", kind: .read, argument: "query", medianMs: 15, p99Ms: 150, resultBytes: 2048)]
        case "analytics":
            capacity = 1
            tools = [Tool(name: "usage_report", kind: .analytics, argument: "report", medianMs: 60, p99Ms: 400, resultBytes: 4096)]
        case "git":
            capacity = 2
            tools = [Tool(name: "git_log", kind: .read, argument: "repo", medianMs: 8, p99Ms: 80, resultBytes: 2048)]
        case "tickets":
            capacity = 2
            tools = [Tool(name: "get_ticket", kind: .read, argument: "id", medianMs: 10, p99Ms: 100, resultBytes: 768),
                     Tool(name: "comment_ticket", kind: .write, argument: "id", medianMs: 12, p99Ms: 120, resultBytes: 32)]
        case "docs":
            capacity = 4
            tools = [Tool(name: "lookup_doc", kind: .read, argument: "topic", medianMs: 4, p99Ms: 40, resultBytes: 1536)]
        default:
            return nil
        }
        var profile = MockProfile(name: name, tools: tools)
        profile.capacity = capacity
        return profile
    }

    /// The profile as JSON (what `parse` reads back).
    public var json: JSONValue {
        var o: JSONObject = [
            "name": .string(name), "version": .string(version), "seed": .int(Int64(seed)),
            "tools": .array(tools.map { t in
                ["name": .string(t.name), "kind": .string(t.kind.rawValue), "argument": .string(t.argument), "medianMs": .double(t.medianMs),
                 "p99Ms": .double(t.p99Ms), "resultBytes": .int(Int64(t.resultBytes)), "description": .string(t.description)]
            }),
            "capacity": .int(Int64(capacity)), "errorRate": .double(errorRate), "crashAfter": .int(Int64(crashAfter)), "hangAfter": .int(Int64(hangAfter)), "hangMs": .double(hangMs),
        ]
        if let degrade {
            o["degrade"] = ["afterMs": .double(degrade.afterMs), "ratePerSecond": .double(degrade.ratePerSecond), "maxFactor": .double(degrade.maxFactor)]
        }
        return .object(o)
    }
}
