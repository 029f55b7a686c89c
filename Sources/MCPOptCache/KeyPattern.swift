/// A glob over key bytes: `*` matches any run of bytes (also `/`), `?` one byte, `\` makes the
/// next byte literal. `Read:/src/*` selects every key starting with `Read:/src/`.
public struct KeyPattern: Sendable, Equatable {
    private enum Token: Equatable { case byte(UInt8), any, star }
    private let tokens: [Token]
    /// Set when the pattern is a literal prefix followed by one `*` (the common case).
    private let prefix: [UInt8]?

    public init(_ pattern: String) {
        var tokens: [Token] = []
        var escaped = false
        for byte in pattern.utf8 {
            if escaped { tokens.append(.byte(byte)); escaped = false; continue }
            switch byte {
            case UInt8(ascii: "\\"): escaped = true
            case UInt8(ascii: "*"): if tokens.last != .star { tokens.append(.star) }
            case UInt8(ascii: "?"): tokens.append(.any)
            default: tokens.append(.byte(byte))
            }
        }
        if escaped { tokens.append(.byte(UInt8(ascii: "\\"))) }
        self.tokens = tokens
        if tokens.last == .star, !tokens.dropLast().contains(where: { if case .byte = $0 { false } else { true } }) {
            prefix = tokens.dropLast().map { if case .byte(let b) = $0 { b } else { 0 } }
        } else {
            prefix = nil
        }
    }

    /// Whether the pattern has no wildcard (it names exactly one key).
    public var isLiteral: Bool { literalKey != nil }

    /// The one key a pattern without wildcards names (escapes removed).
    public var literalKey: [UInt8]? {
        var key: [UInt8] = []
        for token in tokens {
            guard case .byte(let byte) = token else { return nil }
            key.append(byte)
        }
        return key
    }

    public func matches(_ key: UnsafeRawBufferPointer) -> Bool {
        if let prefix {
            return key.count >= prefix.count && prefix.withUnsafeBytes { $0.elementsEqual(key.prefix(prefix.count)) }
        }
        // Iterative matching with one backtrack point: linear in practice, O(n*m) at worst.
        var t = 0, k = 0
        var starToken = -1, starKey = 0
        while k < key.count {
            if t < tokens.count {
                switch tokens[t] {
                case .star:
                    starToken = t; starKey = k; t += 1; continue
                case .any:
                    t += 1; k += 1; continue
                case .byte(let b) where b == key[k]:
                    t += 1; k += 1; continue
                default: break
                }
            }
            guard starToken >= 0 else { return false }
            t = starToken + 1
            starKey += 1
            k = starKey
        }
        while t < tokens.count, tokens[t] == .star { t += 1 }
        return t == tokens.count
    }

    public func matches(_ key: [UInt8]) -> Bool { key.withUnsafeBytes { matches($0) } }
}
