import MCPOptJSON

/// Builds JSON-RPC messages as bytes. Raw JSON parts (params, results) are spliced in as
/// given, so nothing is re-encoded that does not need to be.
public enum MessageEncoder {
    public static func request(id: RequestID, method: String, params: UnsafeRawBufferPointer?) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64 + method.utf8.count + (params?.count ?? 0))
        out += #"{"jsonrpc":"2.0","id":"#.utf8
        if case .int(let n) = id { out.append(decimal: Int(n)) } else { out += id.json.utf8 }
        appendMethod(method, params: params, to: &out)
        return out
    }

    public static func notification(method: String, params: UnsafeRawBufferPointer?) -> [UInt8] {
        var out: [UInt8] = Array(#"{"jsonrpc":"2.0""#.utf8)
        appendMethod(method, params: params, to: &out)
        return out
    }

    /// A result response; `idJSON` is the id as JSON text (a request's own id token). Concrete
    /// types, not `some Collection`: a generic called from another module runs unspecialized
    /// (callgrind: ~1.6k instructions a cache hit, for a hundred bytes).
    public static func result(idJSON: UnsafeRawBufferPointer, result: UnsafeRawBufferPointer) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(resultLength(idJSON: idJSON.count, result: result.count))
        appendResult(idJSON: idJSON, result: result, to: &out)
        return out
    }

    /// The length of `result(idJSON:result:)` for an id and a result of these lengths.
    public static func resultLength(idJSON: Int, result: Int) -> Int { 33 + idJSON + result }

    /// Appends what `result(idJSON:result:)` returns.
    public static func appendResult(idJSON: UnsafeRawBufferPointer, result: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        out.append(literal: #"{"jsonrpc":"2.0","id":"#)
        out.append(contentsOf: idJSON)
        out.append(literal: #","result":"#)
        out.append(contentsOf: result)
        out.append(UInt8(ascii: "}"))
    }

    public static func result(idJSON: [UInt8], result: UnsafeRawBufferPointer) -> [UInt8] {
        idJSON.withUnsafeBytes { self.result(idJSON: $0, result: result) }
    }

    /// An error response. `idJSON` nil means `null` (the id could not be read).
    public static func error(idJSON: [UInt8]?, code: Int64, message: String, data: JSONValue? = nil) -> [UInt8] {
        var text = #"{"jsonrpc":"2.0","id":"#
        text += idJSON.map { String(decoding: $0, as: UTF8.self) } ?? "null"
        text += #","error":{"code":"# + String(code) + #","message":"#
        JSONWriter.appendQuoted(message, to: &text)
        if let data { text += #","data":"# + data.jsonString }
        text += "}}"
        return Array(text.utf8)
    }

    private static func appendMethod(_ method: String, params: UnsafeRawBufferPointer?, to out: inout [UInt8]) {
        out += #","method":"#.utf8
        // Method names are plain ASCII: copied as they are, escaped only when they need it
        // (checked on the contiguous bytes: the UTF-8 view's iterator cost ~400 instructions).
        var method = method
        let plain = method.withUTF8 { bytes in
            bytes.allSatisfy { $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }
        }
        if plain {
            out.append(UInt8(ascii: "\""))
            method.withUTF8 { out.append(contentsOf: $0) }
            out.append(UInt8(ascii: "\""))
        } else {
            var quoted = ""
            JSONWriter.appendQuoted(method, to: &quoted)
            out += quoted.utf8
        }
        if let params {
            out += #","params":"#.utf8
            out += params
        }
        out.append(UInt8(ascii: "}"))
    }

    /// `message` with its id token replaced: how a request is renumbered for a backend hop
    /// and a response given back its caller's id, without re-encoding anything else.
    public static func replacingID(in view: MessageView, with idJSON: UnsafeRawBufferPointer) -> [UInt8] {
        replacingID(in: view.source.buffer, at: view.offset(of: view.idRaw), count: view.idRaw.count, with: idJSON)
    }

    /// `source` with the `count` bytes of id token at `start` replaced (unchanged when nil):
    /// for callers that kept where the id was but not the decoded view.
    public static func replacingID(in source: UnsafeRawBufferPointer, at start: Int?, count: Int, with idJSON: UnsafeRawBufferPointer) -> [UInt8] {
        guard let start else { return Array(source) }
        var out: [UInt8] = []
        out.reserveCapacity(source.count + idJSON.count)
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: source[..<start]))
        out.append(contentsOf: idJSON)
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: source[(start + count)...]))
        return out
    }

    public static func replacingID(in view: MessageView, with idJSON: [UInt8]) -> [UInt8] {
        idJSON.withUnsafeBytes { replacingID(in: view, with: $0) }
    }

    /// Params for a modern-era hop: the request's params with `_meta` carrying this hop's
    /// protocol version, client capabilities and client info (other `_meta` keys kept).
    public static func modernParams(of view: MessageView, version: ProtocolVersion, clientCapabilities: JSONValue, clientInfo: JSONValue) -> [UInt8] {
        var meta = JSONObject()
        if view.meta.isPresent, case .object(let existing)? = try? JSONParser.parse(view.meta.buffer) {
            meta = existing
        }
        meta[MetaKey.protocolVersion] = .string(version.rawValue)
        meta[MetaKey.clientCapabilities] = clientCapabilities
        meta[MetaKey.clientInfo] = clientInfo
        let metaJSON = Array(JSONValue.object(meta).jsonString.utf8)

        let params = view.params.buffer
        guard view.params.isPresent, params.first == UInt8(ascii: "{") else {
            return Array(#"{"_meta":"#.utf8) + metaJSON + [UInt8(ascii: "}")]
        }
        if view.meta.isPresent, let paramsStart = view.offset(of: view.params), let metaStart = view.offset(of: view.meta) {
            let start = metaStart - paramsStart
            return Array(params[..<start]) + metaJSON + Array(params[(start + view.meta.count)...])
        }
        // Insert first; a comma only when the object has members.
        let rest = params.dropFirst().drop(while: { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 })
        let empty = rest.first == UInt8(ascii: "}")
        return Array(#"{"_meta":"#.utf8) + metaJSON + (empty ? [] : [UInt8(ascii: ",")]) + Array(params.dropFirst())
    }

    /// Params for a handshake-era hop: without the modern envelope a modern caller's request
    /// carried in `_meta` (a handshake-era server rejects it: -32600 over stdio); the caller's
    /// other `_meta` keys (a progress token) stay. Unchanged when there is no envelope.
    public static func handshakeParams(_ params: [UInt8]) -> [UInt8] {
        guard ByteSearch.contains(params, envelopePrefix), case .object(var o)? = try? JSONParser.parse(params),
              case .object(var meta)? = o["_meta"] else { return params }
        for key in [MetaKey.protocolVersion, MetaKey.clientCapabilities, MetaKey.clientInfo, MetaKey.logLevel] { meta[key] = nil }
        o["_meta"] = meta.isEmpty ? nil : .object(meta)
        return Array(JSONValue.object(o).jsonString.utf8)
    }
}

private let envelopePrefix = ByteSearch.Needle("io.modelcontextprotocol/")
