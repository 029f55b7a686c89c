import CHiredis

/// A Redis reply (RESP2).
public enum RESPValue: Sendable, Equatable {
    case status(String)
    case error(String)
    case integer(Int64)
    /// A bulk string; nil is Redis' nil (a nil array, `*-1`, reads as nil too, as in hiredis).
    case bulk([UInt8]?)
    case array([RESPValue])

    public var bytes: [UInt8]? { if case .bulk(let b) = self { b } else { nil } }
    public var string: String? {
        switch self {
        case .bulk(let b?): String(decoding: b, as: UTF8.self)
        case .status(let s): s
        default: nil
        }
    }
    public var isError: Bool { if case .error = self { true } else { false } }
}

/// Redis commands as bytes, formatted by hiredis (binary-safe arguments).
public enum RESPCommand {
    public static func encode(_ arguments: [[UInt8]]) -> [UInt8] {
        // One contiguous copy holds every argument, so each pointer stays valid for the call.
        let total = arguments.reduce(0) { $0 + $1.count }
        let storage = UnsafeMutablePointer<CChar>.allocate(capacity: max(total, 1))
        let argv = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: max(arguments.count, 1))
        let lengths = UnsafeMutablePointer<Int>.allocate(capacity: max(arguments.count, 1))
        defer {
            storage.deallocate()
            argv.deallocate()
            lengths.deallocate()
        }
        var offset = 0
        for (i, argument) in arguments.enumerated() {
            argument.withUnsafeBytes { bytes in
                if let base = bytes.baseAddress { UnsafeMutableRawPointer(storage + offset).copyMemory(from: base, byteCount: bytes.count) }
            }
            argv[i] = UnsafePointer(storage + offset)
            lengths[i] = argument.count
            offset += argument.count
        }
        var target: UnsafeMutablePointer<CChar>?
        let n = redisFormatCommandArgv(&target, Int32(arguments.count), argv, lengths)
        defer { redisFreeCommand(target) }
        guard n > 0, let target else { return [] }
        return Array(UnsafeRawBufferPointer(start: target, count: Int(n)))
    }

    public static func encode(_ arguments: String...) -> [UInt8] {
        encode(arguments.map { Array($0.utf8) })
    }
}

/// Reads replies from a byte stream with hiredis' reader: feed bytes, take complete replies.
public final class RESPReader {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    private let reader: UnsafeMutablePointer<redisReader>

    public init() {
        guard let r = redisReaderCreate() else { fatalError("out of memory creating a Redis reply reader") }
        reader = r
    }

    deinit { redisReaderFree(reader) }

    public func feed(_ bytes: UnsafeRawBufferPointer) throws(Failure) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        if redisReaderFeed(reader, base.assumingMemoryBound(to: CChar.self), bytes.count) != REDIS_OK {
            throw Failure(description: errorText)
        }
    }

    /// The next complete reply, or nil when more bytes are needed.
    public func next() throws(Failure) -> RESPValue? {
        var reply: UnsafeMutableRawPointer?
        if redisReaderGetReply(reader, &reply) != REDIS_OK { throw Failure(description: errorText) }
        guard let reply else { return nil }
        defer { freeReplyObject(reply) }
        return Self.convert(reply.assumingMemoryBound(to: redisReply.self))
    }

    private var errorText: String {
        withUnsafePointer(to: reader.pointee.errstr) { $0.withMemoryRebound(to: CChar.self, capacity: 128) { String(cString: $0) } }
    }

    private static func convert(_ r: UnsafeMutablePointer<redisReply>) -> RESPValue {
        let reply = r.pointee
        func text() -> [UInt8] { Array(UnsafeRawBufferPointer(start: reply.str, count: Int(reply.len))) }
        switch reply.type {
        case REDIS_REPLY_STATUS: return .status(String(decoding: text(), as: UTF8.self))
        case REDIS_REPLY_ERROR: return .error(String(decoding: text(), as: UTF8.self))
        case REDIS_REPLY_INTEGER: return .integer(reply.integer)
        case REDIS_REPLY_STRING: return .bulk(text())
        case REDIS_REPLY_NIL: return .bulk(nil)
        case REDIS_REPLY_ARRAY:
            return .array((0..<Int(reply.elements)).map { convert(reply.element[$0]!) })
        default: return .error("unknown reply type \(reply.type)")
        }
    }
}
