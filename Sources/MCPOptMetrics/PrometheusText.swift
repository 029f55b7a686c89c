/// Writes the Prometheus text exposition format (version 0.0.4): what `/metrics` serves.
public struct PrometheusText {
    public private(set) var text = ""
    private var declared: Set<String> = []

    public init() {}

    public mutating func counter(_ name: String, help: String, value: Double, labels: [(String, String)] = []) {
        declare(name, "counter", help)
        sample(name, labels, value)
    }

    public mutating func gauge(_ name: String, help: String, value: Double, labels: [(String, String)] = []) {
        declare(name, "gauge", help)
        sample(name, labels, value)
    }

    /// A latency histogram as a summary in seconds (quantiles, count, sum).
    public mutating func summary(_ name: String, help: String, _ s: LatencyHistogram.Summary, labels: [(String, String)] = []) {
        declare(name, "summary", help)
        for (q, v) in [("0.5", s.p50), ("0.9", s.p90), ("0.99", s.p99), ("0.999", s.p999)] {
            sample(name, labels + [("quantile", q)], Double(v) / 1e9)
        }
        sample(name + "_count", labels, Double(s.count))
        sample(name + "_sum", labels, Double(s.sum) / 1e9)
    }

    private mutating func declare(_ name: String, _ type: String, _ help: String) {
        guard declared.insert(name).inserted else { return }
        text += "# HELP \(name) \(help.replacingBackslashesAndNewlines())\n# TYPE \(name) \(type)\n"
    }

    private mutating func sample(_ name: String, _ labels: [(String, String)], _ value: Double) {
        text += name
        if !labels.isEmpty {
            text += "{" + labels.map { "\($0.0)=\"\($0.1.escapedLabelValue())\"" }.joined(separator: ",") + "}"
        }
        text += " " + Self.format(value) + "\n"
    }

    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v.rounded() == v && abs(v) < 1e15 { return String(Int64(v)) }
        return String(v)
    }
}

extension String {
    func escapedLabelValue() -> String {
        var out = ""
        for c in self {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }

    func replacingBackslashesAndNewlines() -> String {
        var out = ""
        for c in self {
            switch c {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }
}
