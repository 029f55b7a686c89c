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
        // On the bytes: this runs on every request, and passes almost always.
        if let refused = request.withHeader("host", { host in host.flatMap { hostAllowed($0, policy) ? nil : String(decoding: $0, as: UTF8.self) } }) {
            return plain(403, "Forbidden: Host \"\(refused)\" is not allowed")
        }
        if let refused = request.withHeader("origin", { origin in origin.flatMap { originAllowed($0, policy) ? nil : String(decoding: $0, as: UTF8.self) } }) {
            return plain(403, "Forbidden: Origin \"\(refused)\" is not allowed")
        }
        return nil
    }

    /// Checks a complete POST (head and body). `knownMethods` are the methods the server serves;
    /// `parameterHeaders` gives a tool's mirrored arguments (for Mcp-Param-* checks).
    /// `hostAndOriginChecked`: the caller ran `checkHostAndOrigin` already.
    public static func check(_ request: HTTPParser, body: UnsafeRawBufferPointer, decoder: MessageDecoder, policy: Policy,
                             knownMethods: Set<String>, parameterHeaders: (String) -> [(argument: String, header: String)] = { _ in [] },
                             hostAndOriginChecked: Bool = false) -> Verdict
    {
        if !hostAndOriginChecked, let verdict = checkHostAndOrigin(request, policy: policy) { return verdict }
        guard request.methodIs("POST") else {
            return .answer(status: 405, headers: [Header("Allow", "POST")], body: [])
        }
        let versionHeader = request.header("mcp-protocol-version")
        let version = versionHeader.map(ProtocolVersion.init(rawValue:))
        guard let version, version.era == .modern || !version.isSupported && version > .latestHandshake else {
            return .handshake(version)
        }
        // From here on: the modern era.
        let acceptable = request.withHeader("accept") { accept in
            accept.map { let ranges = ByteSearch.mediaRanges($0); return ranges.allowsJSONAndEventStream || ranges.contains(.anyApplication) } ?? false
        }
        guard acceptable else {
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
        var host = host
        return host.withUTF8 { hostAllowed(UnsafeRawBufferPointer($0), policy) }
    }

    static func hostAllowed(_ host: UnsafeRawBufferPointer, _ policy: Policy) -> Bool {
        if !policy.allowedHosts.isEmpty { return policy.allowedHosts.contains(String(decoding: host, as: UTF8.self).lowercased()) }
        // The name without its port: "[::1]:8080" -> "[::1]", "localhost:8080" -> "localhost".
        var end = host.count
        if host.first == UInt8(ascii: "[") {
            if let close = host.firstIndex(of: UInt8(ascii: "]")) { end = close + 1 }
        } else if let colon = host.firstIndex(of: UInt8(ascii: ":")) {
            end = colon
        }
        let name = UnsafeRawBufferPointer(rebasing: host[0..<end])
        return ByteSearch.equals(name, "127.0.0.1") || ByteSearch.equalsIgnoringCase(name, "localhost") || ByteSearch.equals(name, "[::1]")
    }

    static func originAllowed(_ origin: String, _ policy: Policy) -> Bool {
        var origin = origin
        return origin.withUTF8 { originAllowed(UnsafeRawBufferPointer($0), policy) }
    }

    static func originAllowed(_ origin: UnsafeRawBufferPointer, _ policy: Policy) -> Bool {
        if !policy.allowedOrigins.isEmpty { return policy.allowedOrigins.contains(String(decoding: origin, as: UTF8.self).lowercased()) }
        for scheme: StaticString in ["http://", "https://"] where origin.count >= scheme.utf8CodeUnitCount
            && ByteSearch.equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: origin[0..<scheme.utf8CodeUnitCount]), scheme) {
            return hostAllowed(UnsafeRawBufferPointer(rebasing: origin[scheme.utf8CodeUnitCount...]), Policy())
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
