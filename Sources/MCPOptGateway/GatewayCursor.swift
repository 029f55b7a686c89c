/// Cursors of aggregated lists. A gateway lists every backend; its own cursor says which backend
/// to continue with and that backend's cursor, so a client pages through all of them in turn.
/// Opaque to clients: base64url of "v1|<backend index>|" followed by "c<backend cursor>", or
/// "n" when the backend starts from its first page.
public struct GatewayCursor: Sendable, Equatable {
    public var backend: Int
    /// The backend's own cursor, nil to start that backend from its first page.
    public var backendCursor: String?

    public init(backend: Int, backendCursor: String?) {
        self.backend = backend
        self.backendCursor = backendCursor
    }

    public var encoded: String {
        Base64URL.encode(Array("v1|\(backend)|\(backendCursor.map { "c" + $0 } ?? "n")".utf8))
    }

    /// Nil for anything this gateway did not hand out (the caller answers -32602).
    public init?(encoded: String) {
        guard let bytes = Base64URL.decode(encoded), let text = String(validating: bytes, as: UTF8.self) else { return nil }
        let parts = text.split(separator: "|", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "v1", let index = Int(parts[1]), index >= 0, let marker = parts[2].first else { return nil }
        backend = index
        switch marker {
        case "c": backendCursor = String(parts[2].dropFirst())
        case "n" where parts[2].count == 1: backendCursor = nil
        default: return nil
        }
    }
}

/// URL-safe base64 without padding.
enum Base64URL {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            let n = min(3, bytes.count - i)
            let chunk = (UInt32(bytes[i]) << 16) | (n > 1 ? UInt32(bytes[i + 1]) << 8 : 0) | (n > 2 ? UInt32(bytes[i + 2]) : 0)
            for k in 0...n { out.append(alphabet[Int((chunk >> (18 - 6 * UInt32(k))) & 63)]) }
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: String) -> [UInt8]? {
        var values: [UInt32] = []
        for b in text.utf8 {
            guard let v = alphabet.firstIndex(of: b) else { return nil }
            values.append(UInt32(v))
        }
        guard values.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        var i = 0
        while i < values.count {
            let n = min(4, values.count - i)
            var chunk: UInt32 = 0
            for k in 0..<4 { chunk = (chunk << 6) | (k < n ? values[i + k] : 0) }
            for k in 0..<(n - 1) { out.append(UInt8((chunk >> (16 - 8 * UInt32(k))) & 0xFF)) }
            i += 4
        }
        return out
    }
}
