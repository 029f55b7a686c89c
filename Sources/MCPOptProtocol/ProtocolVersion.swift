/// MCP protocol revisions and their two eras.
///
/// Handshake era (2024-11-05 ... 2025-11-25): `initialize` then `notifications/initialized`;
/// over HTTP a session id. Modern era (2026-07-28): stateless, every request carries its version
/// and client capabilities in `params._meta`, `server/discover` instead of `initialize`.
public struct ProtocolVersion: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let v2024_11_05 = ProtocolVersion(rawValue: "2024-11-05")
    public static let v2025_03_26 = ProtocolVersion(rawValue: "2025-03-26")
    public static let v2025_06_18 = ProtocolVersion(rawValue: "2025-06-18")
    public static let v2025_11_25 = ProtocolVersion(rawValue: "2025-11-25")
    public static let v2026_07_28 = ProtocolVersion(rawValue: "2026-07-28")

    /// Every revision this implementation speaks, oldest first.
    public static let supported: [ProtocolVersion] = [.v2024_11_05, .v2025_03_26, .v2025_06_18, .v2025_11_25, .v2026_07_28]
    public static let latestHandshake = v2025_11_25
    public static let latestModern = v2026_07_28
    /// What a Streamable HTTP server assumes when a request has no version header.
    public static let httpDefault = v2025_03_26

    public var isSupported: Bool { Self.supported.contains(self) }

    /// Dates compare as text.
    public static func < (a: ProtocolVersion, b: ProtocolVersion) -> Bool { a.rawValue < b.rawValue }

    public var era: ProtocolEra { self >= .v2026_07_28 ? .modern : .handshake }

    /// JSON-RPC batches existed only in 2025-03-26.
    public var allowsBatches: Bool { self == .v2025_03_26 }

    public var description: String { rawValue }

    /// The version a server answers an `initialize` with: the client's when supported, else
    /// the latest handshake version (the client then decides whether to continue).
    public static func negotiateHandshake(requested: ProtocolVersion) -> ProtocolVersion {
        requested.isSupported && requested.era == .handshake ? requested : latestHandshake
    }

    /// The newest modern version both sides speak, from a server's `supportedVersions`.
    public static func negotiateModern(serverSupports versions: [String]) -> ProtocolVersion? {
        versions.map(ProtocolVersion.init(rawValue:)).filter { $0.era == .modern && $0.isSupported }.max()
    }
}

public enum ProtocolEra: String, Sendable, Hashable {
    case handshake
    case modern
}

/// Names of the `_meta` keys of the modern era.
public enum MetaKey {
    public static let protocolVersion = "io.modelcontextprotocol/protocolVersion"
    public static let clientCapabilities = "io.modelcontextprotocol/clientCapabilities"
    public static let clientInfo = "io.modelcontextprotocol/clientInfo"
    public static let serverInfo = "io.modelcontextprotocol/serverInfo"
    public static let logLevel = "io.modelcontextprotocol/logLevel"
    /// On every frame of a `subscriptions/listen` stream: the listen request's id.
    public static let subscriptionID = "io.modelcontextprotocol/subscriptionId"
}

/// The severity of a log message (`notifications/message`), as `logging/setLevel` and the
/// modern `_meta` level name them (RFC 5424), least severe first.
public enum LogLevel: Int, Sendable, Hashable, Comparable, CaseIterable {
    case debug, info, notice, warning, error, critical, alert, emergency

    public init?(_ name: some StringProtocol) {
        guard let level = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = level
    }

    public var name: String {
        switch self {
        case .debug: "debug"
        case .info: "info"
        case .notice: "notice"
        case .warning: "warning"
        case .error: "error"
        case .critical: "critical"
        case .alert: "alert"
        case .emergency: "emergency"
        }
    }

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// JSON-RPC and MCP error codes, with the HTTP status the modern era maps each to.
public enum RPCErrorCode {
    public static let parseError: Int64 = -32700
    public static let invalidRequest: Int64 = -32600
    public static let methodNotFound: Int64 = -32601
    public static let invalidParams: Int64 = -32602
    public static let internalError: Int64 = -32603
    public static let headerMismatch: Int64 = -32020
    public static let missingClientCapability: Int64 = -32021
    public static let unsupportedProtocolVersion: Int64 = -32022
    public static let resourceNotFound: Int64 = -32002
    /// Older drafts' codes, accepted from backends.
    public static let legacyHeaderMismatch: Int64 = -32001
    public static let legacyUnsupportedProtocolVersion: Int64 = -32004

    public static func httpStatus(for code: Int64) -> Int {
        switch code {
        case parseError, invalidRequest, invalidParams, headerMismatch, missingClientCapability, unsupportedProtocolVersion: 400
        case methodNotFound: 404
        default: 200
        }
    }
}
