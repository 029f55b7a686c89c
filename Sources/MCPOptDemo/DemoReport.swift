import Glibc
import MCPOptJSON

/// The figures of one run.
public struct RunSummary: Sendable {
    public var calls: Int
    public var succeeded: Int
    public var meanMs: Double
    public var p50Ms: Double
    public var p99Ms: Double
    public var maxMs: Double
    public var throughput: Double
    /// Answered without a server (cache hits in L1 or L2, merged requests, stale copies).
    public var hitRate: Double
    public var perServer: [String: Int]

    public var availability: Double { calls == 0 ? 0 : Double(succeeded) / Double(calls) }

    public init(_ run: RunResult) {
        calls = run.records.count
        succeeded = run.records.filter(\.ok).count
        let sorted = run.records.map(\.latencyNanos).sorted()
        func ms(_ n: UInt64) -> Double { Double(n) / 1e6 }
        func q(_ p: Double) -> Double { sorted.isEmpty ? 0 : ms(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) }
        meanMs = sorted.isEmpty ? 0 : ms(sorted.reduce(0, +)) / Double(sorted.count)
        p50Ms = q(0.5)
        p99Ms = q(0.99)
        maxMs = sorted.last.map(ms) ?? 0
        throughput = run.wallNanos == 0 ? 0 : Double(calls) / (Double(run.wallNanos) / 1e9)
        hitRate = calls == 0 ? 0 : Double(run.records.filter { ["memory", "coalesced", "stale", "shared"].contains($0.source) }.count) / Double(calls)
        perServer = [:]
        for record in run.records { if let server = record.server { perServer[server, default: 0] += 1 } }
    }
}

/// A pass/fail row: the original brief's targets (and ours), computed from what was measured.
public struct TargetCheck: Sendable {
    public var name: String
    public var target: String
    public var measured: String
    public var passed: Bool
}

/// Everything the demo prints, as a table, JSON and a self-contained HTML page.
public struct DemoReport: Sendable {
    public let result: DemoResult
    public let naive: RunSummary
    public let engine: RunSummary
    public let machine: String
    public let command: String

    public init(_ result: DemoResult, command: String) {
        self.result = result
        naive = RunSummary(result.naive)
        engine = RunSummary(result.engine)
        machine = Self.machine()
        self.command = command
    }

    public var meanReduction: Double { naive.meanMs > 0 ? 1 - engine.meanMs / naive.meanMs : 0 }
    public var p99Reduction: Double { naive.p99Ms > 0 ? 1 - engine.p99Ms / naive.p99Ms : 0 }
    var system: JSONValue { result.engineMetrics["system"] ?? .null }
    var routingP99Us: Double { result.engineMetrics["routing"]?["decisionTimeP99Us"]?.doubleValue ?? 0 }
    var coordinated: Int { engine.perServer.count }

    public var checks: [TargetCheck] {
        [
            TargetCheck(name: "mean latency reduction", target: ">= 60% (brief: 40%)", measured: percent(meanReduction), passed: meanReduction >= 0.6),
            TargetCheck(name: "p99 latency reduction", target: ">= 80%", measured: percent(p99Reduction), passed: p99Reduction >= 0.8),
            TargetCheck(name: result.options.faults ? "availability with faults" : "availability (no faults)", target: ">= 99.99% (brief: 99.9%)", measured: percent(engine.availability, digits: 3),
                        passed: engine.availability >= 0.9999),
            TargetCheck(name: "servers coordinated", target: ">= 10", measured: "\(coordinated) of \(result.fleet.count)", passed: coordinated >= 10),
            TargetCheck(name: "routing decision p99", target: "< 100 ms", measured: fixed(routingP99Us, 1) + " us", passed: routingP99Us < 100_000),
        ]
    }

    // MARK: table

    public var table: String {
        let s = system
        func n(_ key: String) -> String { s[key]?.integerValue.map(String.init) ?? "-" }
        var rows: [(String, String, String, String)] = [
            ("calls", "\(naive.calls)", "\(engine.calls)", ""),
            ("mean latency", ms(naive.meanMs), ms(engine.meanMs), "-" + percent(meanReduction)),
            ("p50 latency", ms(naive.p50Ms), ms(engine.p50Ms), naive.p50Ms > 0 ? "-" + percent(1 - engine.p50Ms / naive.p50Ms) : ""),
            ("p99 latency", ms(naive.p99Ms), ms(engine.p99Ms), "-" + percent(p99Reduction)),
            ("max latency", ms(naive.maxMs), ms(engine.maxMs), ""),
            ("throughput", fixed(naive.throughput, 0) + "/s", fixed(engine.throughput, 0) + "/s",
             naive.throughput > 0 ? "x" + fixed(engine.throughput / naive.throughput, 1) : ""),
            ("cache hit rate", percent(naive.hitRate), percent(engine.hitRate), ""),
            ("availability", percent(naive.availability, digits: 3), percent(engine.availability, digits: 3),
             "\(naive.calls - naive.succeeded) vs \(engine.calls - engine.succeeded) failed"),
            ("routing decision p99", "-", fixed(routingP99Us, 1) + " us", ""),
            ("retries / failovers / hedges", "0 / 0 / 0", "\(n("retries")) / \(n("failovers")) / \(n("hedges"))", ""),
            ("servers used", "\(naive.perServer.count)", "\(coordinated)", "of \(result.fleet.count)"),
        ]
        rows.insert(("", "naive", "mcpopt", "change"), at: 0)
        let widths = (0..<4).map { c in rows.map { [$0.0, $0.1, $0.2, $0.3][c].count }.max()! }
        var out = ""
        for (i, r) in rows.enumerated() {
            let cells = [r.0, r.1, r.2, r.3]
            out += "  " + cells.enumerated().map { c, text in c == 0 ? pad(text, widths[c]) : lpad(text, widths[c]) }.joined(separator: "   ") + "\n"
            if i == 0 { out += "  " + widths.map { String(repeating: "-", count: $0) }.joined(separator: "   ") + "\n" }
        }
        if let second = result.secondInstance {
            let s2 = RunSummary(second)
            let l2 = result.secondInstanceMetrics?["cache"]?["l2"]
            let l2Hits = l2?["hits"]?.integerValue ?? 0
            out += "\n  second instance (cold L1, shared cache in Redis), the same trace after the first:\n"
            out += "  mean \(ms(s2.meanMs)), p50 \(ms(s2.p50Ms)), p99 \(ms(s2.p99Ms)); hit rate \(percent(s2.hitRate)) "
            out += "(\(l2Hits) from L2); availability \(percent(s2.availability, digits: 3))\n"
            out += "  against the first instance: mean \(engine.meanMs > 0 ? "-" + percent(1 - s2.meanMs / engine.meanMs) : "-"), "
            out += "p99 \(engine.p99Ms > 0 ? "-" + percent(1 - s2.p99Ms / engine.p99Ms) : "-")\n"
        }
        out += "\n  targets (computed from this run):\n"
        for check in checks {
            out += "  [\(check.passed ? "pass" : "FAIL")] \(pad(check.name, 28)) \(pad(check.measured, 14)) target \(check.target)\n"
        }
        return out
    }

    // MARK: JSON

    public var json: JSONValue {
        func run(_ r: RunSummary) -> JSONValue {
            ["calls": .int(Int64(r.calls)), "succeeded": .int(Int64(r.succeeded)), "availability": .double(r.availability),
             "latencyMs": ["mean": .double(r.meanMs), "p50": .double(r.p50Ms), "p99": .double(r.p99Ms), "max": .double(r.maxMs)],
             "throughputPerSecond": .double(r.throughput), "hitRate": .double(r.hitRate),
             "perServer": .object(JSONObject(r.perServer.sorted { $0.key < $1.key }.map { ($0.key, .int(Int64($0.value))) }))]
        }
        return [
            "seed": .int(Int64(result.options.seed)), "faults": .bool(result.options.faults), "servers": .int(Int64(result.fleet.count)), "machine": .string(machine), "command": .string(command),
            "traceCalls": .int(Int64(result.trace.callCount)), "stepsReplayed": .int(Int64(result.stepsReplayed)),
            "naive": run(naive), "mcpopt": run(engine),
            "reduction": ["mean": .double(meanReduction), "p99": .double(p99Reduction)],
            "routingDecisionP99Us": .double(routingP99Us),
            "engineMetrics": result.engineMetrics,
            "fleetRestarts": .int(Int64(result.fleetRestarts)),
            "secondInstance": result.secondInstance.map { second -> JSONValue in
                var o = run(RunSummary(second)).objectValue ?? [:]
                o["l2"] = result.secondInstanceMetrics?["cache"]?["l2"] ?? .null
                return .object(o)
            } ?? .null,
            "checks": .array(checks.map { ["name": .string($0.name), "target": .string($0.target), "measured": .string($0.measured), "passed": .bool($0.passed)] }),
        ]
    }

    // MARK: HTML

    public var html: String {
        let naiveColor = "#c0504d", engineColor = "#2e75b6"
        var page = """
            <!doctype html><html><head><meta charset="utf-8"><title>mcpopt demo report</title>
            <style>body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}
            table{border-collapse:collapse}td,th{padding:4px 12px;border-bottom:1px solid #ddd;text-align:right}
            td:first-child,th:first-child{text-align:left}.pass{color:#2a7d2a}.fail{color:#b00}
            .legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 16px}</style></head><body>
            <h1>mcpopt demo</h1>
            <p>The same trace (\(result.trace.callCount) calls, seed \(result.options.seed)) replayed by a naive client (direct
            session to the first server offering each tool; no cache, no retry) and through mcpopt, each against its own identical
            fleet of \(result.fleet.count) mock servers, in alternating chunks. Machine: \(escape(machine)).<br>
            Reproduce: <code>\(escape(command))</code></p>
            <p class="legend"><span style="background:\(naiveColor)"></span>naive<span style="background:\(engineColor)"></span>mcpopt</p>
            <h2>Summary</h2><pre>\(escape(table))</pre>
            """
        page += "<h2>Latency over time</h2>" + timeChart(naiveColor: naiveColor, engineColor: engineColor)
        page += "<h2>Latency CDF</h2>" + cdfChart(naiveColor: naiveColor, engineColor: engineColor)
        page += "<h2>Calls per server</h2>" + loadChart(naiveColor: naiveColor, engineColor: engineColor)
        page += "<h2>Engine metrics</h2><pre>\(escape(JSONWriter(pretty: true).string(result.engineMetrics)))</pre></body></html>\n"
        return page
    }

    private func timeChart(naiveColor: String, engineColor: String) -> String {
        let width = 900.0, height = 260.0, bins = 60
        let end = Double(max(result.naive.wallNanos, result.engine.wallNanos, 1))
        func series(_ run: RunResult) -> [Double?] {
            var sums = [Double](repeating: 0, count: bins), counts = [Int](repeating: 0, count: bins)
            for r in run.records {
                let b = min(bins - 1, Int(Double(r.startNanos) / end * Double(bins)))
                sums[b] += Double(r.latencyNanos) / 1e6
                counts[b] += 1
            }
            return (0..<bins).map { counts[$0] == 0 ? nil : sums[$0] / Double(counts[$0]) }
        }
        let a = series(result.naive), b = series(result.engine)
        // Log scale: a crash's multi-second waits would flatten everything else.
        let values = (a + b).compactMap { $0 }.map { max($0, 0.01) }
        let lo = log10(values.min() ?? 0.01), hi = max(log10(values.max() ?? 1), lo + 1)
        func line(_ s: [Double?], _ color: String) -> String {
            let points = s.enumerated().compactMap { i, v in
                v.map { fixed(50 + Double(i) / Double(bins - 1) * (width - 60), 1) + "," + fixed(height - 30 - (log10(max($0, 0.01)) - lo) / (hi - lo) * (height - 50), 1) }
            }
            return "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(points.joined(separator: " "))\"/>"
        }
        let yLabel = fixed(pow(10, hi), 0) + " ms (log scale, bottom " + fixed(pow(10, lo), 3) + " ms)"
        return svg(width, height, axes(width, height, yLabel: yLabel, xLabel: "time in run (mean latency per bin)") + line(a, naiveColor) + line(b, engineColor))
    }

    private func cdfChart(naiveColor: String, engineColor: String) -> String {
        let width = 900.0, height = 260.0
        let all = (result.naive.records + result.engine.records).map { max(Double($0.latencyNanos) / 1e6, 0.001) }
        let lo = log10(max(0.001, all.min() ?? 0.001)), hi = log10(max(all.max() ?? 1, 0.01))
        func line(_ run: RunResult, _ color: String) -> String {
            let sorted = run.records.map { max(Double($0.latencyNanos) / 1e6, 0.001) }.sorted()
            guard !sorted.isEmpty else { return "" }
            let step = max(1, sorted.count / 300)
            let points = stride(from: 0, to: sorted.count, by: step).map { i -> String in
                let x = 50 + (log10(sorted[i]) - lo) / max(hi - lo, 1e-9) * (width - 60)
                let y = height - 30 - Double(i + 1) / Double(sorted.count) * (height - 50)
                return fixed(x, 1) + "," + fixed(y, 1)
            }
            return "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(points.joined(separator: " "))\"/>"
        }
        let xLabel = "latency, log scale: " + fixed(pow(10, lo), 3) + " ms to " + fixed(pow(10, hi), 0) + " ms"
        return svg(width, height, axes(width, height, yLabel: "100%", xLabel: xLabel) + line(result.naive, naiveColor) + line(result.engine, engineColor))
    }

    private func loadChart(naiveColor: String, engineColor: String) -> String {
        let names = result.fleet.map(\.name)
        let top = Double(max(1, (Array(naive.perServer.values) + Array(engine.perServer.values)).max() ?? 1))
        let rowHeight = 22.0, width = 900.0
        var body = ""
        for (i, name) in names.enumerated() {
            let y = 10 + Double(i) * rowHeight
            let a = Double(naive.perServer[name] ?? 0), b = Double(engine.perServer[name] ?? 0)
            body += "<text x=\"0\" y=\"\(y + 14)\" font-size=\"12\">\(escape(name))</text>"
            body += "<rect x=\"110\" y=\"\(y + 2)\" width=\("\"" + fixed(a / top * (width - 200), 1) + "\"") height=\"8\" fill=\"\(naiveColor)\"/>"
            body += "<rect x=\"110\" y=\"\(y + 10)\" width=\("\"" + fixed(b / top * (width - 200), 1) + "\"") height=\"8\" fill=\"\(engineColor)\"/>"
            body += "<text x=\"\(fixed(115 + max(a, b) / top * (width - 200), 0))\" y=\"\(y + 16)\" font-size=\"11\">\(Int(a)) / \(Int(b))</text>"
        }
        return svg(width, 20 + Double(names.count) * rowHeight, body)
    }

    private func axes(_ width: Double, _ height: Double, yLabel: String, xLabel: String) -> String {
        "<line x1=\"50\" y1=\"\(height - 30)\" x2=\"\(width - 10)\" y2=\"\(height - 30)\" stroke=\"#888\"/><line x1=\"50\" y1=\"20\" x2=\"50\" y2=\"\(height - 30)\" stroke=\"#888\"/>"
            + "<text x=\"0\" y=\"25\" font-size=\"11\">\(escape(yLabel))</text><text x=\"50\" y=\"\(height - 8)\" font-size=\"11\">\(escape(xLabel))</text>"
    }

    private func svg(_ width: Double, _ height: Double, _ body: String) -> String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\">\(body)</svg>\n"
    }

    // MARK: helpers

    static func machine() -> String {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        var model = "unknown CPU"
        if let text = try? readText("/proc/cpuinfo"), let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
           let colon = line.firstIndex(of: ":") {
            model = line[line.index(after: colon)...].trimmingWhitespace.description
        }
        return "Linux \(release), \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) cores, \(model)"
    }
}

func percent(_ x: Double, digits: Int = 1) -> String { fixed(x * 100, digits) + "%" }
func ms(_ x: Double) -> String { fixed(x, x < 1 ? 3 : 1) + " ms" }

/// `x` with `digits` decimals (no Foundation here).
func fixed(_ x: Double, _ digits: Int) -> String {
    guard x.isFinite else { return x.isNaN ? "nan" : (x < 0 ? "-inf" : "inf") }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = (abs(x) * scale).rounded()
    guard scaled < 9e18 else { return String(x) }
    let n = UInt64(scaled)
    let whole = n / UInt64(scale), fraction = n % UInt64(scale)
    var text = (x < 0 && n > 0 ? "-" : "") + String(whole)
    if digits > 0 {
        let f = String(fraction)
        text += "." + String(repeating: "0", count: digits - f.count) + f
    }
    return text
}
func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
func lpad(_ s: String, _ w: Int) -> String { s.count >= w ? s : String(repeating: " ", count: w - s.count) + s }
func escape(_ s: String) -> String {
    s.replacingAll("&", "&amp;").replacingAll("<", "&lt;").replacingAll(">", "&gt;").replacingAll("\"", "&quot;")
}

extension String {
    func replacingAll(_ a: String, _ b: String) -> String {
        guard contains(a) else { return self }
        return split(separator: a, omittingEmptySubsequences: false).joined(separator: b)
    }
}
