import MCPOptProtocol

/// Names the gateway shows for the tools (and prompts) of many servers: stable, unique, and
/// within what clients accept (`^[a-zA-Z0-9_-]{1,64}$`: no dots, no colons).
///
/// The scheme, documented in docs/GATEWAY.md:
/// 1. A name offered by one replica group only, already valid, is shown as it is.
/// 2. A name offered by several groups is shown as `<group>__<name>` for every group offering it
///    (so no group's tool silently shadows another's).
/// 3. Characters outside `[A-Za-z0-9_-]` become `_`; a result longer than 64 characters is cut
///    to 55 and given `_` plus 8 hex digits of a hash of the full original, so it stays unique
///    and stable across restarts.
/// Replicas of one group offer the same tools, so a group's tool appears once.
public struct ToolNamespace: Sendable {
    public struct Entry: Sendable, Equatable {
        /// The name the gateway shows.
        public var exposed: String
        public var group: String
        /// The backend's own name.
        public var original: String
    }

    public private(set) var entries: [Entry] = []
    private var byExposed: [String: Int] = [:]

    /// `offers` lists, per replica group, the names its servers offer.
    public init(offers: [(group: String, names: [String])]) {
        var groupsOffering: [String: Int] = [:]
        for offer in offers {
            for name in Set(offer.names) { groupsOffering[name, default: 0] += 1 }
        }
        for offer in offers.sorted(by: { $0.group < $1.group }) {
            for name in Set(offer.names).sorted() {
                let shared = groupsOffering[name, default: 0] > 1
                let wanted = shared ? Self.sanitize(offer.group) + "__" + name : name
                var exposed = Self.fit(wanted)
                // A clash left after sanitizing (two names mapping to one) gets a hash suffix.
                if byExposed[exposed] != nil { exposed = Self.hashed(offer.group + "\u{0}" + name) }
                byExposed[exposed] = entries.count
                entries.append(Entry(exposed: exposed, group: offer.group, original: name))
            }
        }
    }

    /// The backend group and name behind an exposed name.
    public func resolve(_ exposed: String) -> Entry? {
        byExposed[exposed].map { entries[$0] }
    }

    /// The exposed name of a group's tool.
    public func exposedName(group: String, original: String) -> String? {
        entries.first { $0.group == group && $0.original == original }?.exposed
    }

    static func isValid(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count) && name.utf8.allSatisfy(isAllowed)
    }

    static func isAllowed(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b == 0x2D
    }

    static func sanitize(_ name: String) -> String {
        let bytes = name.utf8.map { isAllowed($0) ? $0 : UInt8(ascii: "_") }
        return bytes.isEmpty ? "_" : String(decoding: bytes, as: UTF8.self)
    }

    /// Sanitized, and hashed when too long.
    static func fit(_ name: String) -> String {
        let clean = sanitize(name)
        return clean.utf8.count <= 64 ? clean : hashed(name)
    }

    static func hashed(_ name: String) -> String {
        var copy = name
        let digest = copy.withUTF8 { hash64(UnsafeRawBufferPointer($0)) }
        let hex = String(digest & 0xFFFF_FFFF, radix: 16)
        let suffix = String(repeating: "0", count: 8 - hex.count) + hex
        return String(sanitize(name).prefix(55)) + "_" + suffix
    }
}
