/// One MCP server, in the `mcpServers` shape MCP clients already use, plus mcpopt's own fields.
public struct ServerConfig: Sendable, Equatable {
    public enum Transport: Sendable, Equatable {
        /// A child process speaking newline-delimited JSON-RPC on stdin/stdout.
        case stdio(command: String, args: [String], env: [EnvVar], cwd: String?)
        /// A Streamable HTTP endpoint.
        case http(url: HTTPURL, headers: [Header])

        public var name: String {
            switch self {
            case .stdio: "stdio"
            case .http: "http"
            }
        }
    }

    public struct EnvVar: Sendable, Equatable {
        public var name: String
        public var value: String
    }

    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String
    }

    /// The key under `mcpServers`.
    public var name: String
    public var transport: Transport
    /// Replica group: servers with the same group serve the same tools and are load-balanced.
    /// Defaults to the server's own name (a group of one).
    public var group: String
    /// Relative share of traffic within a replica group.
    public var weight: Double
    public var tags: [String]
    /// A disabled server stays in the configuration but is never started or routed to.
    public var disabled: Bool
    /// Believe this server's tool annotations (`readOnlyHint`, `idempotentHint`) for caching
    /// and retries. Off by default: annotations come from the server and may be wrong.
    public var trustAnnotations = false
    /// The server keeps per-session state: each client session gets its own backend session.
    public var stateful = false
    /// Requests sent to this server at once; more wait in a bounded queue.
    public var maxConcurrency: Int
    /// https servers: a PEM bundle of the CAs to trust instead of the system's (a private CA).
    public var caFile: String?
    /// https servers: the certificate (PEM chain) and key presented to a server that asks for
    /// one (mutual TLS); both or neither.
    public var clientCert: String?
    public var clientKey: String?
    /// Which protocol era to speak with it: `auto` (like the official SDKs: discovery, then
    /// initialize), or one era only (a server whose discovery misbehaves; a handshake-era
    /// session is also what servers need to send requests to the client).
    public var protocolEra: ProtocolPreference = .auto

    public init(name: String, transport: Transport, group: String? = nil, weight: Double = 1, tags: [String] = [], disabled: Bool = false) {
        self.name = name
        self.transport = transport
        self.group = group ?? name
        self.weight = weight
        self.tags = tags
        self.disabled = disabled
        if case .stdio = transport { maxConcurrency = 16 } else { maxConcurrency = 64 }
    }
}

/// An `http://` or `https://host[:port][/path]` URL, split into the parts a client
/// connection needs.
public struct HTTPURL: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var path: String
    /// https: TLS, the default port 443.
    public var tls = false

    public init(host: String, port: Int, path: String, tls: Bool = false) {
        self.host = host
        self.port = port
        self.path = path
        self.tls = tls
    }

    public var description: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "\(tls ? "https" : "http")://\(h):\(port)\(path)"
    }

    /// Parses the URL forms a server config uses. Returns a reason on failure.
    public static func parse(_ text: String) -> Result<HTTPURL, URLProblem> {
        let lower = text.lowercased()
        let tls = lower.hasPrefix("https://")
        guard tls || lower.hasPrefix("http://") else { return .failure(.scheme) }
        var rest = Substring(text.dropFirst(tls ? "https://".count : "http://".count))
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        rest = rest[authorityEnd...]
        if let fragment = rest.firstIndex(of: "#") { rest = rest[..<fragment] }
        let path = rest.isEmpty ? "/" : String(rest.first == "?" ? "/" + rest : rest)
        if authority.contains("@") { return .failure(.userInfo) }

        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return .failure(.host) }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return .failure(.host) }
                portText = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty,
            host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-._:%".contains($0)) })
        else { return .failure(.host) }
        var port = tls ? 443 : 80
        if let portText {
            guard let p = Int(portText), (1...65535).contains(p) else { return .failure(.port) }
            port = p
        }
        guard path.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else { return .failure(.path) }
        return .success(HTTPURL(host: String(host), port: port, path: path, tls: tls))
    }

    public enum URLProblem: Error, Sendable {
        case scheme, userInfo, host, port, path

        public var message: String {
            switch self {
            case .scheme: "must be an http:// or https:// URL"
            case .userInfo: "must not carry credentials in the URL: put them in \"headers\" (for example Authorization)"
            case .host: "has no valid host"
            case .port: "has an invalid port: must be 1-65535"
            case .path: "has a path with spaces or non-ASCII characters: percent-encode them"
            }
        }
    }
}

public enum ProtocolPreference: String, Sendable, CaseIterable {
    case auto, handshake, modern
}
