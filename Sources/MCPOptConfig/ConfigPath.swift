/// The location of a field in the configuration document, written the way people read it:
/// `$.mcpServers.time.args[1]`, with keys that are not plain identifiers quoted
/// (`$.mcpServers["my server"].url`).
public struct ConfigPath: Sendable, Hashable, CustomStringConvertible {
    private enum Component: Sendable, Hashable {
        case key(String)
        case index(Int)
    }

    private var components: [Component] = []

    public static let root = ConfigPath()

    public func appending(_ key: String) -> ConfigPath {
        var copy = self
        copy.components.append(.key(key))
        return copy
    }

    public func appending(index: Int) -> ConfigPath {
        var copy = self
        copy.components.append(.index(index))
        return copy
    }

    public var description: String {
        var out = "$"
        for component in components {
            switch component {
            case .index(let i): out += "[\(i)]"
            case .key(let k):
                if Self.isPlainIdentifier(k) {
                    out += "." + k
                } else {
                    out += "["
                    out += Self.quoted(k)
                    out += "]"
                }
            }
        }
        return out
    }

    private static func isPlainIdentifier(_ key: String) -> Bool {
        guard let first = key.unicodeScalars.first, first == "_" || first == "$" || first.properties.isAlphabetic && first.isASCII
        else { return false }
        return key.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" || $0 == "$") }
    }

    private static func quoted(_ key: String) -> String {
        var out = "\""
        for scalar in key.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            default:
                if scalar.value < 0x20 { out += "\\u{\(String(scalar.value, radix: 16))}" } else { out.unicodeScalars.append(scalar) }
            }
        }
        return out + "\""
    }
}

/// One problem found in a configuration.
public struct ConfigIssue: Sendable, Equatable, CustomStringConvertible {
    public let path: ConfigPath
    public let message: String

    public init(path: ConfigPath, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(message)" }
}

/// Every problem found in a configuration, in document order. Thrown by `EngineConfig.parse`.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The text is not JSON (or not UTF-8); `issues` has one entry at the root.
        case malformedJSON
        case invalidUTF8
        /// The document is over `EngineConfig.maxDocumentSize`.
        case tooLarge
        /// The JSON is well formed but describes an invalid configuration.
        case invalid
    }

    public let kind: Kind
    public let issues: [ConfigIssue]

    public init(kind: Kind, issues: [ConfigIssue]) {
        precondition(!issues.isEmpty)
        self.kind = kind
        self.issues = issues
    }

    /// The first issue, with a count of the rest: one line for a log or an exception.
    public var description: String {
        let first = issues[0].description
        return issues.count == 1 ? first : "\(first) (and \(issues.count - 1) more)"
    }
}
