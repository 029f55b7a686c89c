import MCPOptJSON
import MCPOptProtocol
import MCPOptRouting
import MCPOptUpstream

/// What one server offers, as its list methods answered (definitions kept whole, so a gateway
/// can show them), or why it could not be listed.
public struct ServerCatalog: Sendable {
    public var server: String
    public var group: String
    /// Lists as the server gave them; the lookups the request path makes on every call
    /// (annotations by tool, prompts and resources by name) are indexed when they are set.
    public internal(set) var tools: [JSONValue] = [] {
        didSet {
            toolInfos = tools.compactMap(Self.toolInfo)
            annotationsByTool = Dictionary(toolInfos.map { ($0.name, $0.annotations) }, uniquingKeysWith: { first, _ in first })
        }
    }
    public internal(set) var prompts: [JSONValue] = [] { didSet { promptNameSet = Set(promptNames) } }
    public internal(set) var resources: [JSONValue] = [] { didSet { resourceURISet = Set(resourceURIs) } }
    public internal(set) var resourceTemplates: [JSONValue] = []
    /// Set when the server could not be listed (down, broken): its offers are left out.
    public internal(set) var error: String?
    /// The protocol version agreed with the server.
    public internal(set) var version: String?

    /// Tools with the annotations routing and caching use.
    public private(set) var toolInfos: [ToolInfo] = []
    private(set) var annotationsByTool: [String: ToolAnnotations] = [:]
    private(set) var promptNameSet: Set<String> = []
    private(set) var resourceURISet: Set<String> = []

    public init(server: String, group: String) {
        self.server = server
        self.group = group
    }

    public var toolNames: [String] { toolInfos.map(\.name) }
    public var promptNames: [String] { prompts.compactMap { $0["name"]?.stringValue } }
    public var resourceURIs: [String] { resources.compactMap { $0["uri"]?.stringValue } }

    static func toolInfo(_ tool: JSONValue) -> ToolInfo? {
        guard let name = tool["name"]?.stringValue else { return nil }
        let a = tool["annotations"]
        return ToolInfo(name: name, annotations: ToolAnnotations(readOnly: a?["readOnlyHint"]?.boolValue, idempotent: a?["idempotentHint"]?.boolValue,
                                                                 destructive: a?["destructiveHint"]?.boolValue, openWorld: a?["openWorldHint"]?.boolValue))
    }

    /// Whether a resource template of this server matches `uri` (RFC 6570 level 1: each
    /// `{var}` stands for one or more characters other than '/').
    public func templateMatches(_ uri: String) -> Bool {
        resourceTemplates.contains { t in
            guard let template = t["uriTemplate"]?.stringValue else { return false }
            return Self.match(template: Array(template.utf8)[...], uri: Array(uri.utf8)[...])
        }
    }

    static func match(template t: ArraySlice<UInt8>, uri u: ArraySlice<UInt8>) -> Bool {
        guard u.count <= 4096, let c = t.first else { return u.isEmpty }
        if c == UInt8(ascii: "{") {
            guard let close = t.firstIndex(of: UInt8(ascii: "}")) else { return false }
            let rest = t[(close + 1)...]
            var end = u.startIndex
            while end < u.endIndex, u[end] != UInt8(ascii: "/") {
                end += 1
                if match(template: rest, uri: u[end...]) { return true }
            }
            return false
        }
        return u.first == c && match(template: t.dropFirst(), uri: u.dropFirst())
    }
}

extension ServerCatalog {
    /// Lists everything a server offers, following cursors (at most `maxPages` pages per
    /// list); a list method the server lacks (-32601) is an empty list.
    static func fetch(from backend: Backend, timeout: Duration, maxPages: Int = 100) async -> ServerCatalog {
        var catalog = ServerCatalog(server: backend.name, group: backend.server.group)
        do {
            catalog.tools = try await list(backend, method: "tools/list", key: "tools", timeout: timeout, maxPages: maxPages)
            catalog.prompts = try await list(backend, method: "prompts/list", key: "prompts", timeout: timeout, maxPages: maxPages)
            catalog.resources = try await list(backend, method: "resources/list", key: "resources", timeout: timeout, maxPages: maxPages)
            catalog.resourceTemplates = try await list(backend, method: "resources/templates/list", key: "resourceTemplates", timeout: timeout, maxPages: maxPages)
        } catch {
            catalog = ServerCatalog(server: backend.name, group: backend.server.group)
            catalog.error = error.message
        }
        catalog.version = backend.version?.rawValue
        return catalog
    }

    struct ListError: Error {
        var message: String
    }

    private static func list(_ backend: Backend, method: String, key: String, timeout: Duration, maxPages: Int) async throws(ListError) -> [JSONValue] {
        var items: [JSONValue] = []
        var cursor: String?
        for _ in 0..<maxPages {
            var params = JSONObject()
            if let cursor { params["cursor"] = .string(cursor) }
            let response: [UInt8]
            do {
                response = try await backend.request(UpstreamRequest(method: method, params: Array(JSONValue.object(params).jsonString.utf8)), timeout: timeout)
            } catch {
                throw ListError(message: "\(method) failed: \(error.message)")
            }
            guard let message = try? JSONParser.parse(response) else { throw ListError(message: "\(method): the server's answer is not JSON") }
            if let error = message["error"] {
                // A server without this feature says so; that is an empty list, not a failure.
                if error["code"]?.integerValue == RPCErrorCode.methodNotFound { return [] }
                throw ListError(message: "\(method) failed: \(error["message"]?.stringValue ?? "error \(error["code"]?.integerValue ?? 0)")")
            }
            guard let result = message["result"], let page = result[key]?.arrayValue else {
                throw ListError(message: "\(method): the result has no \"\(key)\" array")
            }
            items.append(contentsOf: page)
            guard let next = result["nextCursor"]?.stringValue, !next.isEmpty, next != cursor else { return items }
            cursor = next
        }
        return items
    }
}
