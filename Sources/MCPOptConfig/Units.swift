/// Parsing of the unit-bearing values a configuration accepts: durations ("250ms", "5s", or a
/// number of milliseconds) and sizes ("100MiB", "64KB", or a number of bytes).
enum Units {
    /// Nanoseconds per unit suffix.
    static let durationUnits: [(suffix: String, nanos: Double)] = [
        ("ns", 1), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9),
    ]

    /// Bytes per unit suffix; SI (kB, MB, GB) and IEC (KiB, MiB, GiB) both accepted, case-insensitive.
    static let sizeUnits: [(suffix: String, bytes: Double)] = [
        ("b", 1), ("kb", 1e3), ("kib", 1024), ("k", 1024), ("mb", 1e6), ("mib", 1_048_576), ("m", 1_048_576),
        ("gb", 1e9), ("gib", 1_073_741_824), ("g", 1_073_741_824),
    ]

    /// Splits "12.5ms" into (12.5, "ms"). Returns nil when the text does not start with a number.
    static func split(_ text: String) -> (Double, String)? {
        let trimmed = text.trimmingWhitespace()
        let numberEnd = trimmed.firstIndex(where: { !($0.isNumber && $0.isASCII) && $0 != "." }) ?? trimmed.endIndex
        guard numberEnd != trimmed.startIndex, let value = Double(trimmed[..<numberEnd]) else { return nil }
        return (value, String(trimmed[numberEnd...]).trimmingWhitespace())
    }

    static func durationNanos(_ text: String) -> Double? {
        guard let (value, unit) = split(text) else { return nil }
        guard let factor = durationUnits.first(where: { $0.suffix == unit })?.nanos else { return nil }
        return value * factor
    }

    static func sizeBytes(_ text: String) -> Double? {
        guard let (value, unit) = split(text) else { return nil }
        if unit.isEmpty { return value }
        guard let factor = sizeUnits.first(where: { $0.suffix == unit.lowercased() })?.bytes else { return nil }
        return value * factor
    }
}

extension String {
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let start = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let end = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[start...end])
    }
}

/// A duration as configurations write it: "250ms", "5s", "1.5m", or a plain number of
/// milliseconds. Nil for anything else, or a negative value.
public func parseDuration(_ value: String) -> Duration? {
    let text = value.trimmingWhitespace()
    if let number = Double(text) { return number >= 0 && number.isFinite ? .nanoseconds(Int64(number * 1e6)) : nil }
    guard let nanos = Units.durationNanos(text), nanos >= 0, nanos < 9e18 else { return nil }
    return .nanoseconds(Int64(nanos))
}
