import MCPOptRouting
import MCPOptProtocol

/// What may be answered from the cache, under which key, for how long, shared with whom.
///
/// MCP gives hints only for lists, reads and discovery (modern `ttlMs` and `cacheScope`);
/// caching `tools/call` is this gateway's own policy: only tools configured as cacheable, or
/// read-only *and* idempotent by the annotations of a server whose annotations the
/// configuration trusts (annotations default to not read-only, and servers may lie). Never
/// cached: error responses, `isError` results, `input_required` results, continuation retries.
/// Keys carry a partition (the caller's identity) unless the server marked the answer public,
/// so nothing leaks between tenants.
public struct CachePolicy: Sendable {
    public enum ToolRule: Sendable, Equatable {
        case cache(Duration)
        case never
    }

    /// The tool's annotations, as the server declared them.
    public struct ToolAnnotations: Sendable, Equatable {
        public var readOnly: Bool
        public var idempotent: Bool
        public init(readOnly: Bool = false, idempotent: Bool = false) {
            self.readOnly = readOnly
            self.idempotent = idempotent
        }

        /// What a server's catalog declares (hints it leaves out count as false).
        init(declared: MCPOptRouting.ToolAnnotations) {
            self.init(readOnly: declared.readOnly ?? false, idempotent: declared.idempotent ?? false)
        }
    }

    public var defaultTTL: Duration
    /// Longest time anything is kept, whatever a server says (24 h, as clients cap ttlMs).
    public var maxTTL: Duration = .seconds(86_400)
    /// Per-tool rules, by "<group>/<tool>" or plain "<tool>" (any group).
    public var toolRules: [String: ToolRule] = [:] {
        didSet { hasGroupRules = toolRules.keys.contains { $0.utf8.contains(UInt8(ascii: "/")) } }
    }
    private var hasGroupRules = false
    /// Replica groups whose tool annotations are believed.
    public var trustedGroups: Set<String> = []

    public init(defaultTTL: Duration) {
        self.defaultTTL = defaultTTL
    }

    /// A cacheable request's key and terms.
    public struct Lookup: Sendable, Equatable {
        public var key: [UInt8]
        /// Stored for this long unless the response says otherwise.
        public var ttl: Duration
        /// The partition the key was built with ("" when shared).
        public var partition: String
    }

    /// Methods whose results are cacheable by default: listings, reads, discovery.
    static let readMethods: Set<String> = [
        "tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read", "prompts/get", "server/discover",
    ]

    /// The key to look up for `request` sent to `group`, or nil when it must not be cached.
    /// `partition` identifies the caller (agent, or a hash of its credentials).
    public func lookup(_ request: MessageView, group: String, annotations: ToolAnnotations?, partition: String) -> Lookup? {
        guard request.kind == .request, !request.isContinuation, let method = request.method.string else { return nil }
        let ttl: Duration
        if method == "tools/call" {
            guard let tool = request.name.string, let t = toolTTL(tool: tool, group: group, annotations: annotations) else { return nil }
            ttl = t
        } else if Self.readMethods.contains(method) {
            ttl = defaultTTL
        } else {
            return nil
        }
        return Lookup(key: Self.key(request, method: method, group: group, partition: partition), ttl: min(ttl, maxTTL), partition: partition)
    }

    /// `lookup` for a `tools/call` whose tool name the caller has already read (the strings
    /// are not made again from the bytes).
    public func lookup(call request: MessageView, tool: String, group: String, annotations: ToolAnnotations?, partition: String) -> Lookup? {
        guard request.kind == .request, !request.isContinuation, let ttl = toolTTL(tool: tool, group: group, annotations: annotations) else { return nil }
        return Lookup(key: Self.key(request, method: "tools/call", group: group, partition: partition), ttl: min(ttl, maxTTL), partition: partition)
    }

    func toolTTL(tool: String, group: String, annotations: ToolAnnotations?) -> Duration? {
        // The "<group>/<tool>" key is built only when such rules exist (it is per request).
        let rule = hasGroupRules ? toolRules[group + "/" + tool] ?? toolRules[tool] : toolRules[tool]
        switch rule {
        case .cache(let ttl)?: return ttl
        case .never?: return nil
        case nil:
            guard trustedGroups.contains(group), let a = annotations, a.readOnly, a.idempotent else { return nil }
            return defaultTTL
        }
    }

    /// Whether (and for how long, and shared or not) to store `response` for `lookup`.
    /// A `public` cache scope stores under the shared key as well.
    public func store(_ response: MessageView, for lookup: Lookup) -> (ttl: Duration, shared: Bool)? {
        guard response.kind == .result, !response.resultIsError else { return nil }
        if response.resultType.isPresent, !response.resultType.equals("complete") { return nil }
        var ttl = lookup.ttl
        if let ms = response.resultTTLMilliseconds {
            guard ms > 0 else { return nil }
            ttl = min(.milliseconds(ms), maxTTL)
        }
        return (ttl, response.resultCacheScope.equals("public"))
    }

    /// "v2" method group name-or-uri canonical-arguments cursor partition, NUL-separated.
    /// The partition field is "=" and the caller's partition (empty for an anonymous caller),
    /// or "*" for the key every caller shares: no caller's partition, the anonymous one
    /// included, is the shared key.
    static func key(_ request: MessageView, method: String, group: String, partition: String) -> [UInt8] {
        let subject = request.name.isPresent ? request.name.buffer : request.uri.buffer
        var key: [UInt8] = []
        key.reserveCapacity(8 + method.utf8.count + group.utf8.count + subject.count + request.canonicalArguments.count
                            + request.cursor.count + partition.utf8.count)
        key.append(literal: "v2")
        func field(_ bytes: UnsafeRawBufferPointer) {
            key.append(0)
            key.append(contentsOf: bytes)
        }
        func field(_ text: String) {
            key.append(0)
            key.append(contentsOf: text.utf8)
        }
        field(method)
        field(group)
        field(subject)
        field(request.canonicalArguments.buffer)
        field(request.cursor.buffer)
        key.append(0)
        key.append(privateMark)
        key.append(contentsOf: partition.utf8)
        return key
    }

    static let privateMark = UInt8(ascii: "=")
    static let sharedMark = UInt8(ascii: "*")

    /// The key of the same request shared by every caller (for results marked public).
    public func sharedKey(_ lookup: Lookup) -> [UInt8] {
        var key = Array(lookup.key.dropLast(1 + lookup.partition.utf8.count))
        key.append(Self.sharedMark)
        return key
    }
}
