import MCPOptJSON

/// The checks a Streamable HTTP server makes on a POST before it runs anything, in the order the
/// specification gives them (see MCP-NOTES): host and origin, method, Accept, JSON, message
/// kind, then for the modern era the routing headers against the body. The era is picked by the
/// `MCP-Protocol-Version` header alone: none, or a handshake version, is the handshake path.
public enum FrontDoor {
    public struct Policy: Sendable {
        /// Host header values accepted (DNS-rebinding protection); empty means loopback names
        /// only: 127.0.0.1, localhost and [::1], on any port.
        public var allowedHosts: [String] = []
        /// Origin header values accepted; a request without Origin (not a browser) passes.
        /// Empty means loopback origins only.
        public var allowedOrigins: [String] = []
        public var maxBodyBytes = 4 << 20
        public init() {}
    }

    /// What to do with the request.
    public enum Verdict: Sendable, Equatable {
        /// Answer now with this HTTP status, headers and body (a JSON-RPC error, or empty).
        case answer(status: Int, headers: [Header], body: [UInt8])
        /// A modern-era request that passed every check.
        case modern(ProtocolVersion)
        /// Serve on the handshake-era path (sessions, initialize).
        case handshake(ProtocolVersion?)
    }

    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    /// Host and Origin, for every request of either era: a foreign one gets 403.
    public static func checkHostAndOrigin(_ request: HTTPParser, policy: Policy) -> Verdict? {
        if let host = request.header("host"), !hostAllowed(host, policy) {
            return plain(403, "Forbidden: Host \"\(host)\" is not allowed")
        }
        if let origin = request.header("origin"), !originAllowed(origin, policy) {
            return plain(403, "Forbidden: Origin \"\(origin)\" is not allowed")
        }
        return nil
    }

    /// Checks a complete POST (head and body). `knownMethods` are the methods the server serves;
    /// `parameterHeaders` gives a tool's mirrored arguments (for Mcp-Param-* checks).
    public static func check(_ request: HTTPParser, body: UnsafeRawBufferPointer, decoder: MessageDecoder, policy: Policy,
                             knownMethods: Set<String>, parameterHeaders: (String) -> [(argument: String, header: String)] = { _ in [] }) -> Verdict
    {
        if let verdict = checkHostAndOrigin(request, policy: policy) { return verdict }
        guard request.method == "POST" else {
            return .answer(status: 405, headers: [Header("Allow", "POST")], body: [])
        }
        let versionHeader = request.header("mcp-protocol-version")
        let version = versionHeader.map(ProtocolVersion.init(rawValue:))
        guard let version, version.era == .modern || !version.isSupported && version > .latestHandshake else {
            return .handshake(version)
        }
        // From here on: the modern era.
        let accept = request.header("accept") ?? ""
        let acceptsAll = ByteSearch.containsIgnoringCase(accept, "*/*") || ByteSearch.containsIgnoringCase(accept, "application/*")
        guard acceptsAll || (ByteSearch.containsIgnoringCase(accept, "application/json") && ByteSearch.containsIgnoringCase(accept, "text/event-stream")) else {
            return plain(406, "Not Acceptable: Accept must list application/json and text/event-stream")
        }
        guard body.count <= policy.maxBodyBytes else {
            return rpcError(nil, RPCErrorCode.invalidRequest, "request body over \(policy.maxBodyBytes) bytes", status: 413)
        }
        let view: MessageView
        do {
            view = try decoder.decode(body)
        } catch {
            return rpcError(nil, error.rpcCode, error.kind == .batch ? "batches are not supported" : "\(error.kind == .notJSON ? "Parse error" : "Invalid Request"): \(error.detail)")
        }
        let id = view.idRaw.isPresent ? Array(view.idRaw.buffer) : nil
        switch view.kind {
        case .notification, .result, .error:
            return .answer(status: 202, headers: [], body: [])
        case .request:
            break
        }
        for name in ["mcp-protocol-version", "mcp-method", "mcp-name"] where request.headerOccurrences(name) > 1 {
            return rpcError(id, RPCErrorCode.headerMismatch, "header \(name) appears more than once")
        }
        let method = view.method.string ?? ""
        // Required _meta keys.
        guard view.meta.isPresent, let meta = try? JSONParser.parse(view.meta.buffer) else {
            return rpcError(id, RPCErrorCode.invalidParams, "params._meta is required in protocol version \(version.rawValue)")
        }
        guard let bodyVersion = meta[MetaKey.protocolVersion]?.stringValue else {
            return rpcError(id, RPCErrorCode.invalidParams, "params._meta[\"\(MetaKey.protocolVersion)\"] is required")
        }
        guard case .object? = meta[MetaKey.clientCapabilities] else {
            return rpcError(id, RPCErrorCode.invalidParams, "params._meta[\"\(MetaKey.clientCapabilities)\"] is required (it may be {})")
        }
        // Headers must agree with the body.
        if bodyVersion != version.rawValue {
            return rpcError(id, RPCErrorCode.headerMismatch, "MCP-Protocol-Version header \(version.rawValue) disagrees with the body's \(bodyVersion)")
        }
        if let headerMethod = request.header("mcp-method"), headerMethod != method {
            return rpcError(id, RPCErrorCode.headerMismatch, "Mcp-Method header \"\(headerMethod)\" disagrees with the body's \"\(method)\"")
        }
        let named: String? = switch method {
        case "tools/call", "prompts/get": view.name.string
        case "resources/read", "resources/subscribe", "resources/unsubscribe": view.uri.string
        default: nil
        }
        if let named, let headerName = request.header("mcp-name"), headerName != named, headerName != RoutingHeaders.headerValue(.string(named)) {
            return rpcError(id, RPCErrorCode.headerMismatch, "Mcp-Name header \"\(headerName)\" disagrees with the body's \"\(named)\"")
        }
        guard version.isSupported, version.era == .modern else {
            let supported: JSONValue = .array(ProtocolVersion.supported.filter { $0.era == .modern }.map { .string($0.rawValue) })
            return rpcError(id, RPCErrorCode.unsupportedProtocolVersion, "Unsupported protocol version: \(version.rawValue)",
                            data: ["supported": supported, "requested": .string(version.rawValue)])
        }
        if method == "tools/call", let tool = view.name.string {
            let mapping = parameterHeaders(tool)
            if !mapping.isEmpty {
                let arguments = view.arguments.isPresent ? (try? JSONParser.parse(view.arguments.buffer)) : nil
                for (argument, header) in mapping {
                    let expected = arguments?[argument].flatMap(RoutingHeaders.headerValue)
                    let sent = request.header("mcp-param-" + header.lowercased())
                    if sent != expected {
                        return rpcError(id, RPCErrorCode.headerMismatch, "Mcp-Param-\(header) header \(sent.map { "\"\($0)\"" } ?? "missing") disagrees with argument \"\(argument)\"")
                    }
                }
            }
        }
        guard knownMethods.contains(method) else {
            return rpcError(id, RPCErrorCode.methodNotFound, "Method not found: \(method)")
        }
        return .modern(version)
    }

    // MARK: helpers

    static func hostAllowed(_ host: String, _ policy: Policy) -> Bool {
        if !policy.allowedHosts.isEmpty { return policy.allowedHosts.contains(host.lowercased()) }
        let name: Substring
        if host.hasPrefix("[") {
            name = host[...(host.firstIndex(of: "]") ?? host.index(before: host.endIndex))]
        } else {
            name = host.split(separator: ":", maxSplits: 1).first ?? ""
        }
        return ["127.0.0.1", "localhost", "[::1]"].contains(name.lowercased())
    }

    static func originAllowed(_ origin: String, _ policy: Policy) -> Bool {
        if !policy.allowedOrigins.isEmpty { return policy.allowedOrigins.contains(origin.lowercased()) }
        let lower = origin.lowercased()
        for scheme in ["http://", "https://"] where lower.hasPrefix(scheme) {
            return hostAllowed(String(lower.dropFirst(scheme.count)), Policy())
        }
        return false
    }

    static func plain(_ status: Int, _ text: String) -> Verdict {
        .answer(status: status, headers: [Header("Content-Type", "text/plain; charset=utf-8")], body: Array(text.utf8))
    }

    /// A JSON-RPC error with the HTTP status its code maps to.
    public static func rpcError(_ id: [UInt8]?, _ code: Int64, _ message: String, data: JSONValue? = nil, status: Int? = nil) -> Verdict {
        .answer(status: status ?? RPCErrorCode.httpStatus(for: code), headers: [Header("Content-Type", "application/json")],
                body: MessageEncoder.error(idJSON: id, code: code, message: message, data: data))
    }
}
