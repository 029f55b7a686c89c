import CMCPOptJSON

/// Why a document is not JSON.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case invalidUTF8
        case tooDeep
        case syntax
    }
    public let kind: Kind
    public let detail: String
    public var description: String { detail }
}

/// Parses JSON with simdjson (Debian's libsimdjson) and builds a `JSONValue` tree.
public enum JSONParser {
    /// Nesting deeper than this is rejected (protects recursive consumers).
    public static let defaultMaxDepth = 256

    public static func parse(_ text: String, maxDepth: Int = defaultMaxDepth) throws(JSONParseError) -> JSONValue {
        var copy = text
        return try copy.withUTF8 { buffer in Result { () throws(JSONParseError) in try parse(UnsafeRawBufferPointer(buffer), maxDepth: maxDepth) } }.get()
    }

    public static func parse(_ bytes: [UInt8], maxDepth: Int = defaultMaxDepth) throws(JSONParseError) -> JSONValue {
        try bytes.withUnsafeBytes { buffer in Result { () throws(JSONParseError) in try parse(buffer, maxDepth: maxDepth) } }.get()
    }

    public static func parse(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = defaultMaxDepth) throws(JSONParseError) -> JSONValue {
        let base = bytes.baseAddress?.assumingMemoryBound(to: CChar.self)
        var flat = mco_json_flat()
        withUnsafePointer(to: 0 as CChar) { empty in
            mco_json_flatten(base ?? empty, bytes.count, maxDepth, &flat)
        }
        defer { mco_json_flat_free(&flat) }
        if flat.error != 0 {
            throw error(code: flat.error, message: String(cString: flat.message), maxDepth: maxDepth)
        }
        var reader = FlatReader(base: UnsafeRawPointer(flat.data!), end: flat.length)
        return reader.readValue()
    }

    private static func error(code: Int32, message: String, maxDepth: Int) -> JSONParseError {
        switch Int(code) {
        case MCO_JSON_DEPTH: JSONParseError(kind: .tooDeep, detail: "JSON nests deeper than \(maxDepth) levels")
        case MCO_JSON_UTF8: JSONParseError(kind: .invalidUTF8, detail: "text is not valid UTF-8")
        case MCO_JSON_EMPTY: JSONParseError(kind: .syntax, detail: "empty document: expected a JSON value")
        case MCO_JSON_MEMORY: JSONParseError(kind: .syntax, detail: "document too large to parse: \(message)")
        default: JSONParseError(kind: .syntax, detail: "malformed JSON: \(message)")
        }
    }

    /// True when `bytes` is valid UTF-8.
    public static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        return mco_utf8_valid(base.assumingMemoryBound(to: CChar.self), bytes.count) != 0
    }
}

/// Reads the stream written by the C++ shim (see mcpopt_json_shim.h for the format).
private struct FlatReader {
    let base: UnsafeRawPointer
    let end: Int
    var offset = 0

    mutating func u32() -> Int {
        let v = base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
        offset += 4
        return Int(UInt32(littleEndian: v))
    }

    mutating func u64() -> UInt64 {
        let v = base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
        offset += 8
        return UInt64(littleEndian: v)
    }

    mutating func string() -> String {
        let length = u32()
        // simdjson has already validated the UTF-8.
        let s = String(decoding: UnsafeRawBufferPointer(start: base + offset, count: length), as: UTF8.self)
        offset += length
        return s
    }

    mutating func readValue() -> JSONValue {
        let tag = base.load(fromByteOffset: offset, as: UInt8.self)
        offset += 1
        switch tag {
        case UInt8(ascii: "n"): return .null
        case UInt8(ascii: "t"): return .bool(true)
        case UInt8(ascii: "f"): return .bool(false)
        case UInt8(ascii: "i"): return .int(Int64(bitPattern: u64()))
        case UInt8(ascii: "u"):
            let u = u64()
            return u <= UInt64(Int64.max) ? .int(Int64(u)) : .double(Double(u))
        case UInt8(ascii: "d"): return .double(Double(bitPattern: u64()))
        case UInt8(ascii: "s"): return .string(string())
        case UInt8(ascii: "a"):
            let count = u32()
            var items: [JSONValue] = []
            items.reserveCapacity(count)
            for _ in 0..<count { items.append(readValue()) }
            return .array(items)
        case UInt8(ascii: "o"):
            let count = u32()
            var members: [(key: String, value: JSONValue)] = []
            members.reserveCapacity(count)
            for _ in 0..<count {
                let key = string()
                members.append((key, readValue()))
            }
            return .object(JSONObject(members))
        default:
            preconditionFailure("corrupt flattened JSON stream (tag \(tag))")
        }
    }
}
