import MCPOptJSON

/// The HTTP headers a modern-era request carries so that gateways can route without parsing the
/// body: `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, and `Mcp-Param-<Name>` for tool
/// arguments whose input schema has `x-mcp-header`. A gateway regenerates them for every hop.
public enum RoutingHeaders {
    /// Which arguments of a tool are mirrored into headers: (argument, header suffix) pairs, read
    /// from the tool's `inputSchema.properties[*]["x-mcp-header"]`.
    public static func parameterHeaders(inputSchema: JSONValue) -> [(argument: String, header: String)] {
        guard case .object(let properties)? = inputSchema["properties"] else { return [] }
        return properties.members.compactMap { member in
            guard let header = member.value["x-mcp-header"]?.stringValue, !header.isEmpty, isToken(header) else { return nil }
            return (member.key, header)
        }
    }

    /// The headers for one request of `view` at `version`. `parameterHeaders` comes from the
    /// tool's schema (empty when unknown or not a tools/call).
    public static func headers(for view: MessageView, version: ProtocolVersion, parameterHeaders: [(argument: String, header: String)] = []) -> [(String, String)] {
        var out: [(String, String)] = [("MCP-Protocol-Version", version.rawValue)]
        guard version.era == .modern, let method = view.method.string else { return out }
        out.append(("Mcp-Method", method))
        switch method {
        case "tools/call", "prompts/get":
            if let name = view.name.string { out.append(("Mcp-Name", headerValue(.string(name)) ?? name)) }
        case "resources/read", "resources/subscribe", "resources/unsubscribe":
            if let uri = view.uri.string { out.append(("Mcp-Name", headerValue(.string(uri)) ?? uri)) }
        default: break
        }
        if !parameterHeaders.isEmpty, view.arguments.isPresent, case .object(let arguments)? = try? JSONParser.parse(view.arguments.buffer) {
            for (argument, header) in parameterHeaders {
                if let value = arguments[argument], let text = headerValue(value) { out.append(("Mcp-Param-" + header, text)) }
            }
        }
        return out
    }

    /// A header value for a JSON value: strings, integers and booleans only; text that is not
    /// plain printable ASCII (or has edge whitespace) goes as `=?base64?...?=`.
    public static func headerValue(_ value: JSONValue) -> String? {
        switch value {
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d) where d.rounded() == d && abs(d) < 9e15: return String(Int64(d))
        case .string(let s):
            let plain = s.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F } && s.first != " " && s.last != " "
                && !(s.hasPrefix("=?") && s.hasSuffix("?="))
            return plain ? s : "=?base64?" + base64(Array(s.utf8)) + "?="
        default: return nil
        }
    }

    static func isToken(_ s: String) -> Bool {
        s.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || "!#$%&'*+-.^_`|~".utf8.contains(b)
        }
    }

    /// Standard base64 with padding (RFC 4648). Twelve lines here rather than a dependency:
    /// header values are short and this is not on a hot path.
    static func base64(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let n = min(3, bytes.count - i)
            let chunk = (UInt32(bytes[i]) << 16) | (n > 1 ? UInt32(bytes[i + 1]) << 8 : 0) | (n > 2 ? UInt32(bytes[i + 2]) : 0)
            for k in 0..<4 { out.append(k <= n ? alphabet[Int((chunk >> (18 - 6 * UInt32(k))) & 63)] : UInt8(ascii: "=")) }
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Writes HTTP/1.1 requests, as bytes (no String is built per request).
public enum HTTPRequestWriter {
    /// A POST of one JSON-RPC message to a Streamable HTTP endpoint.
    public static func post(path: String, host: String, headers: [(String, String)], body: some Collection<UInt8>) -> [UInt8] {
        post(head: postHead(path: path, host: host, headers: []), headers: headers, body: Array(body))
    }

    /// What every POST to one endpoint begins with (request line, Host, Accept, Content-Type,
    /// then `headers`): computed once per endpoint for `post(head:headers:body:)`.
    public static func postHead(path: String, host: String, headers: [(String, String)]) -> [UInt8] {
        var out: [UInt8] = []
        out += "POST ".utf8
        out += path.utf8
        out += " HTTP/1.1\r\nHost: ".utf8
        out += host.utf8
        out += "\r\nAccept: application/json, text/event-stream\r\nContent-Type: application/json\r\n".utf8
        out.append(headerLines: headers)
        return out
    }

    /// A POST: `head` (from `postHead`), these headers, Content-Length, the body.
    public static func post(head: [UInt8], headers: [(String, String)], body: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var size = head.count + body.count + 40
        for (name, value) in headers { size += name.utf8.count + value.utf8.count + 4 }
        out.reserveCapacity(size)
        out += head
        out.append(headerLines: headers)
        out += contentLength
        out.append(decimal: body.count)
        out += blankLine
        out += body
        return out
    }

    /// A request without a body (GET for the server's stream, DELETE to end a session).
    public static func request(method: String, path: String, host: String, headers: [(String, String)]) -> [UInt8] {
        var out: [UInt8] = []
        out += method.utf8
        out.append(UInt8(ascii: " "))
        out += path.utf8
        out += " HTTP/1.1\r\nHost: ".utf8
        out += host.utf8
        out += crlf
        out.append(headerLines: headers)
        out += crlf
        return out
    }

    private static let contentLength = Array("Content-Length: ".utf8)
    private static let blankLine = Array("\r\n\r\n".utf8)
    private static let crlf = Array("\r\n".utf8)
}
