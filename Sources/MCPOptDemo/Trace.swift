import MCPOptJSON
import MCPOptMock

/// One tool call of a trace: who calls, which tool, with which argument.
public struct TraceCall: Sendable, Equatable {
    public var agent: String
    public var tool: String
    public var arguments: JSONValue

    public init(agent: String, tool: String, arguments: JSONValue) {
        self.agent = agent
        self.tool = tool
        self.arguments = arguments
    }
}

/// What an agent session does, as steps: the calls of one step are issued together (a fan-out
/// over several servers, or a burst of agents asking the same thing at once); steps follow one
/// another on each of the replay's lanes.
public struct Trace: Sendable, Equatable {
    public var steps: [[TraceCall]]
    public init(steps: [[TraceCall]]) { self.steps = steps }

    public var callCount: Int { steps.reduce(0) { $0 + $1.count } }

    /// JSON lines, one call a line: {"step": N, "agent": ..., "tool": ..., "arguments": {...}}.
    public var jsonLines: String {
        var out = ""
        for (index, step) in steps.enumerated() {
            for call in step {
                let line: JSONValue = ["step": .int(Int64(index)), "agent": .string(call.agent), "tool": .string(call.tool), "arguments": call.arguments]
                out += line.jsonString + "\n"
            }
        }
        return out
    }

    public struct Problem: Error, Sendable, CustomStringConvertible {
        public let line: Int
        public let message: String
        public var description: String { "line \(line): \(message)" }
    }

    /// Reads JSON lines (as `jsonLines` writes them; a user's recording). Consecutive lines with
    /// the same `step` form one step; without `step`, each line is a step of its own.
    public static func parse(jsonLines text: String) throws(Problem) -> Trace {
        var steps: [[TraceCall]] = []
        var lastStep: Int64?
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingWhitespace
            if line.isEmpty { continue }
            let value: JSONValue
            do { value = try JSONParser.parse(String(line)) } catch { throw Problem(line: index + 1, message: "not JSON: \(error.detail)") }
            guard let tool = value["tool"]?.stringValue, !tool.isEmpty else { throw Problem(line: index + 1, message: "needs \"tool\" (a string)") }
            let arguments = value["arguments"] ?? [:]
            guard case .object = arguments else { throw Problem(line: index + 1, message: "\"arguments\" must be an object") }
            let call = TraceCall(agent: value["agent"]?.stringValue ?? "agent", tool: tool, arguments: arguments)
            let step = value["step"]?.integerValue
            if let step, step == lastStep, !steps.isEmpty {
                steps[steps.count - 1].append(call)
            } else {
                steps.append([call])
            }
            lastStep = step
        }
        guard !steps.isEmpty else { throw Problem(line: 0, message: "the trace has no calls") }
        return Trace(steps: steps)
    }
}

extension Substring {
    var trimmingWhitespace: Substring {
        var s = self
        while let c = s.first, c == " " || c == "\t" || c == "\r" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\r" { s.removeLast() }
        return s
    }
}

/// The reference workload: an agent session mix over the demo's servers. Zipf-distributed reads
/// of files and records (a few are hot, most are rare), searches, slow reports, writes that must
/// invalidate what was read, fan-out steps that touch several servers at once, and bursts where
/// several agents ask the same thing together. Deterministic under the seed.
public struct TraceGenerator: Sendable {
    public var seed: UInt64
    public var agents = 8
    public var files = 2_000
    public var records = 5_000
    public var queries = 400
    public var zipfExponent = 0.99

    public init(seed: UInt64) { self.seed = seed }

    /// A trace of about `calls` calls.
    public func generate(calls: Int) -> Trace {
        var random = SeededRandom(seed: SeededRandom.seed(seed, "trace"))
        let fileRank = ZipfSampler(count: files, exponent: zipfExponent)
        let recordRank = ZipfSampler(count: records, exponent: zipfExponent)
        let queryRank = ZipfSampler(count: queries, exponent: zipfExponent)
        let repoRank = ZipfSampler(count: 40, exponent: zipfExponent)
        let ticketRank = ZipfSampler(count: 800, exponent: zipfExponent)
        let topicRank = ZipfSampler(count: 300, exponent: zipfExponent)
        func file(_ r: inout SeededRandom) -> JSONValue { ["path": .string("/src/module-\(fileRank.sample(&r)).swift")] }
        func record(_ r: inout SeededRandom) -> JSONValue { ["id": .string("rec-\(recordRank.sample(&r))")] }
        func query(_ r: inout SeededRandom) -> JSONValue { ["query": .string("query \(queryRank.sample(&r))")] }

        var steps: [[TraceCall]] = []
        var total = 0
        while total < calls {
            let agent = "agent-\(Int(random.next() % UInt64(agents)))"
            let u = random.unit()
            var step: [TraceCall]
            switch u {
            case ..<0.44: step = [TraceCall(agent: agent, tool: "read_file", arguments: file(&random))]
            case ..<0.50: step = [TraceCall(agent: agent, tool: "list_dir", arguments: ["path": .string("/src/dir-\(fileRank.sample(&random) % 50)")])]
            case ..<0.62: step = [TraceCall(agent: agent, tool: "get_record", arguments: record(&random))]
            case ..<0.69: step = [TraceCall(agent: agent, tool: "search", arguments: query(&random))]
            case ..<0.73: step = [TraceCall(agent: agent, tool: "write_file", arguments: file(&random))]
            case ..<0.76: step = [TraceCall(agent: agent, tool: "update_record", arguments: record(&random))]
            case ..<0.80: step = [TraceCall(agent: agent, tool: "git_log", arguments: ["repo": .string("repo-\(repoRank.sample(&random))")])]
            case ..<0.85: step = [TraceCall(agent: agent, tool: "get_ticket", arguments: ["id": .string("T-\(ticketRank.sample(&random))")])]
            case ..<0.86: step = [TraceCall(agent: agent, tool: "comment_ticket", arguments: ["id": .string("T-\(ticketRank.sample(&random))")])]
            case ..<0.90: step = [TraceCall(agent: agent, tool: "lookup_doc", arguments: ["topic": .string("topic-\(topicRank.sample(&random))")])]
            case ..<0.92: step = [TraceCall(agent: agent, tool: "usage_report", arguments: ["report": .string("report-\(random.next() % 12)")])]
            case ..<0.97:
                // Fan-out: one question answered from several servers at once.
                step = [TraceCall(agent: agent, tool: "search", arguments: query(&random)),
                        TraceCall(agent: agent, tool: "get_record", arguments: record(&random)),
                        TraceCall(agent: agent, tool: "read_file", arguments: file(&random)),
                        TraceCall(agent: agent, tool: "get_ticket", arguments: ["id": .string("T-\(ticketRank.sample(&random))")])]
            default:
                // Burst: every agent asks for the same fresh thing at once (a thundering herd).
                let arguments: JSONValue = ["query": .string("incident \(random.next() % 1_000_000)")]
                step = (0..<agents).map { TraceCall(agent: "agent-\($0)", tool: "search", arguments: arguments) }
            }
            total += step.count
            steps.append(step)
        }
        return Trace(steps: steps)
    }
}
