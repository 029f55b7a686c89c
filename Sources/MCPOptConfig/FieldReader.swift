import MCPOptJSON

/// Collects issues while a configuration is read, so one pass reports every problem.
final class IssueSink {
    private(set) var issues: [ConfigIssue] = []
    func report(_ path: ConfigPath, _ message: String) { issues.append(ConfigIssue(path: path, message: message)) }
}

/// Reads the members of one JSON object with type checks, defaults and ranges, reporting
/// problems with the member's path. `finish()` reports members nobody asked for (typos).
struct FieldReader {
    let object: JSONObject
    let path: ConfigPath
    let sink: IssueSink
    private var consumed: Set<String> = []

    /// Reads `value` as an object; reports and returns nil when it is not one.
    init?(_ value: JSONValue, at path: ConfigPath, sink: IssueSink) {
        guard case .object(let object) = value else {
            sink.report(path, "expected an object, got \(value.typeName)")
            return nil
        }
        self.init(object: object, path: path, sink: sink)
    }

    init(object: JSONObject, path: ConfigPath, sink: IssueSink) {
        self.object = object
        self.path = path
        self.sink = sink
        var seen: Set<String> = []
        for member in object.members where !seen.insert(member.key).inserted {
            sink.report(path.appending(member.key), "duplicate key \"\(member.key)\"")
        }
    }

    /// The raw member, marking it consumed. `null` counts as absent.
    mutating func value(_ key: String) -> JSONValue? {
        consumed.insert(key)
        guard let v = object[key], v != .null else { return nil }
        return v
    }

    mutating func bool(_ key: String, default fallback: Bool) -> Bool {
        guard let v = value(key) else { return fallback }
        guard case .bool(let b) = v else { return mismatch(key, "a boolean (true or false)", v, fallback) }
        return b
    }

    mutating func string(_ key: String) -> String? {
        guard let v = value(key) else { return nil }
        guard case .string(let s) = v else { return mismatch(key, "a string", v, nil) }
        return s
    }

    mutating func nonEmptyString(_ key: String) -> String? {
        guard let s = string(key) else { return nil }
        if s.isEmpty { sink.report(path.appending(key), "must not be empty"); return nil }
        return s
    }

    mutating func enumeration<E: RawRepresentable & CaseIterable>(_ key: String, default fallback: E) -> E where E.RawValue == String {
        guard let s = string(key) else { return fallback }
        guard let e = E(rawValue: s) else {
            let allowed = E.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            sink.report(path.appending(key), "\"\(s)\" is not one of \(allowed)")
            return fallback
        }
        return e
    }

    mutating func double(_ key: String, default fallback: Double, in range: ClosedRange<Double>) -> Double {
        guard let v = value(key) else { return fallback }
        guard let d = v.doubleValue else { return mismatch(key, "a number", v, fallback) }
        guard range.contains(d) else {
            sink.report(path.appending(key), "\(JSONWriter.number(d)) is out of range: must be between \(JSONWriter.number(range.lowerBound)) and \(JSONWriter.number(range.upperBound))")
            return fallback
        }
        return d
    }

    /// A number of at least `minimum` that must be greater than zero when `exclusive`.
    mutating func positiveDouble(_ key: String, default fallback: Double) -> Double {
        guard let v = value(key) else { return fallback }
        guard let d = v.doubleValue else { return mismatch(key, "a number", v, fallback) }
        guard d > 0, d.isFinite else {
            sink.report(path.appending(key), "must be a number greater than 0, got \(JSONWriter.number(d))")
            return fallback
        }
        return d
    }

    mutating func integer(_ key: String, default fallback: Int, in range: ClosedRange<Int>) -> Int {
        guard let v = value(key) else { return fallback }
        guard let i = v.integerValue else {
            return mismatch(key, "a whole number", v, fallback)
        }
        guard i >= Int64(range.lowerBound), i <= Int64(range.upperBound) else {
            sink.report(path.appending(key), "\(i) is out of range: must be between \(range.lowerBound) and \(range.upperBound)")
            return fallback
        }
        return Int(i)
    }

    /// A duration: a number of milliseconds, or a string with a unit ("250us", "100ms", "5s", "2m", "1h").
    mutating func duration(_ key: String, default fallback: Duration, in range: ClosedRange<Duration>) -> Duration {
        guard let v = value(key) else { return fallback }
        let nanos: Double
        switch v {
        case .int, .double: nanos = v.doubleValue! * 1e6
        case .string(let s):
            guard let n = Units.durationNanos(s) else {
                sink.report(path.appending(key), "\"\(s)\" is not a duration: use milliseconds as a number, or a string such as \"250ms\", \"5s\", \"2m\"")
                return fallback
            }
            nanos = n
        default: return mismatch(key, "a duration (milliseconds, or a string such as \"5s\")", v, fallback)
        }
        guard nanos.isFinite, nanos >= 0, nanos <= 9.2e18 else {
            sink.report(path.appending(key), "must be a duration of at least 0")
            return fallback
        }
        let d = Duration.nanoseconds(Int64(nanos))
        guard range.contains(d) else {
            sink.report(path.appending(key), "\(d.configText) is out of range: must be between \(range.lowerBound.configText) and \(range.upperBound.configText)")
            return fallback
        }
        return d
    }

    /// A byte size: a number of bytes, or a string with a unit ("64KiB", "100MiB", "1GB").
    mutating func size(_ key: String, default fallback: Int, in range: ClosedRange<Int>) -> Int {
        guard let v = value(key) else { return fallback }
        let bytes: Double
        switch v {
        case .int, .double: bytes = v.doubleValue!
        case .string(let s):
            guard let b = Units.sizeBytes(s) else {
                sink.report(path.appending(key), "\"\(s)\" is not a size: use bytes as a number, or a string such as \"64KiB\", \"100MiB\", \"1GB\"")
                return fallback
            }
            bytes = b
        default: return mismatch(key, "a size (bytes, or a string such as \"100MiB\")", v, fallback)
        }
        guard bytes.isFinite, bytes.rounded() == bytes, bytes >= Double(range.lowerBound), bytes <= Double(range.upperBound) else {
            sink.report(path.appending(key), "\(JSONWriter.number(bytes)) bytes is out of range: must be a whole number of bytes between \(range.lowerBound) and \(range.upperBound)")
            return fallback
        }
        return Int(bytes)
    }

    mutating func stringArray(_ key: String) -> [String]? {
        guard let v = value(key) else { return nil }
        guard case .array(let items) = v else { return mismatch(key, "an array of strings", v, nil) }
        var out: [String] = []
        for (i, item) in items.enumerated() {
            if case .string(let s) = item { out.append(s) } else {
                sink.report(path.appending(key).appending(index: i), "expected a string, got \(item.typeName)")
            }
        }
        return out
    }

    mutating func stringMap(_ key: String) -> [(String, String)]? {
        guard let v = value(key) else { return nil }
        guard var reader = FieldReader(v, at: path.appending(key), sink: sink) else { return nil }
        var out: [(String, String)] = []
        for member in reader.object.members {
            if let s = reader.string(member.key) { out.append((member.key, s)) }
        }
        return out
    }

    /// A nested object's reader, or nil when absent (or not an object, which is reported).
    mutating func child(_ key: String) -> FieldReader? {
        guard let v = value(key) else { return nil }
        return FieldReader(v, at: path.appending(key), sink: sink)
    }

    func report(_ key: String, _ message: String) { sink.report(path.appending(key), message) }

    /// Reports every member that was never read: unknown keys are errors, not silent no-ops.
    /// Keys starting with "x-" or "$" are left for users' own annotations.
    func finish(known: [String] = []) {
        for member in object.members where !consumed.contains(member.key) {
            if member.key.hasPrefix("x-") || member.key.hasPrefix("$") { continue }
            let candidates = Array(consumed) + known
            var message = "unknown key \"\(member.key)\""
            if let guess = Self.closest(to: member.key, in: candidates) { message += " (did you mean \"\(guess)\"?)" }
            sink.report(path.appending(member.key), message)
        }
    }

    private func mismatch<T>(_ key: String, _ expected: String, _ got: JSONValue, _ fallback: T) -> T {
        sink.report(path.appending(key), "expected \(expected), got \(got.typeName)")
        return fallback
    }

    /// The candidate within a small edit distance, for "did you mean" hints.
    static func closest(to word: String, in candidates: [String]) -> String? {
        let lowered = word.lowercased()
        var best: (String, Int)?
        for candidate in Set(candidates) {
            let d = editDistance(Array(lowered), Array(candidate.lowercased()))
            if d <= max(1, word.count / 4), d < (best?.1 ?? .max) { best = (candidate, d) }
        }
        return best?.0
    }

    private static func editDistance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = Swift.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}

extension Duration {
    /// Milliseconds as a Double, the unit durations are written in.
    public var milliseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }

    /// "250ms", "5s", "40us": for messages.
    var configText: String {
        let ms = milliseconds
        if ms >= 1000, (ms / 1000).rounded() == ms / 1000 { return "\(Int64(ms / 1000))s" }
        if ms >= 1 || ms == 0 { return "\(JSONWriter.number(ms))ms" }
        return "\(JSONWriter.number(ms * 1000))us"
    }
}
