import MCPOptJSON

/// The whole configuration of an engine: servers plus option groups.
public struct EngineConfig: Sendable, Equatable {
    /// In document order; names are unique.
    public var servers: [ServerConfig] = []
    public var routing = RoutingOptions()
    public var caching = CachingOptions()
    public var optimization = OptimizationOptions()
    public var coordination = CoordinationOptions()
    public var targets = Targets()
    public var agents: [AgentProfile] = []

    public init() {}

    /// The servers that take part (not disabled).
    public var activeServers: [ServerConfig] { servers.filter { !$0.disabled } }

    /// Largest configuration document accepted.
    public static let maxDocumentSize = 16 << 20

    /// Parses and validates a configuration document, reporting every problem at once.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(ConfigError) -> EngineConfig {
        if bytes.count > maxDocumentSize {
            throw ConfigError(kind: .tooLarge, issues: [ConfigIssue(path: .root, message: "configuration is \(bytes.count) bytes, more than the \(maxDocumentSize) accepted")])
        }
        let document: JSONValue
        do {
            document = try JSONParser.parse(bytes)
        } catch {
            let kind: ConfigError.Kind = error.kind == .invalidUTF8 ? .invalidUTF8 : .malformedJSON
            throw ConfigError(kind: kind, issues: [ConfigIssue(path: .root, message: error.detail)])
        }
        return try parse(document)
    }

    public static func parse(_ bytes: [UInt8]) throws(ConfigError) -> EngineConfig {
        try bytes.withUnsafeBytes { buffer in Result { () throws(ConfigError) in try parse(buffer) } }.get()
    }

    public static func parse(_ text: String) throws(ConfigError) -> EngineConfig {
        var copy = text
        return try copy.withUTF8 { buffer in Result { () throws(ConfigError) in try parse(UnsafeRawBufferPointer(buffer)) } }.get()
    }

    public static func parse(_ document: JSONValue) throws(ConfigError) -> EngineConfig {
        let sink = IssueSink()
        let config = ConfigDecoder(sink: sink).decode(document)
        if !sink.issues.isEmpty { throw ConfigError(kind: .invalid, issues: sink.issues) }
        return config
    }
}
