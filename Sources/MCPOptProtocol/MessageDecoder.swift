import CMCPOptRPC
import Glibc

/// Why bytes are not a usable JSON-RPC message.
public struct DecodeError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Not JSON, or not UTF-8 (JSON-RPC -32700).
        case notJSON
        /// JSON, but not a JSON-RPC 2.0 message (-32600).
        case invalid
        /// A top-level array: a batch (only 2025-03-26 allowed them).
        case batch
        case tooDeep
        case `internal`
    }
    public let kind: Kind
    public let detail: String

    /// The JSON-RPC error code to answer with.
    public var rpcCode: Int64 { kind == .notJSON ? RPCErrorCode.parseError : RPCErrorCode.invalidRequest }
    public var description: String { detail }
}

/// Decodes JSON-RPC messages with simdjson, reusing its buffers: one decoder per thread (or per
/// connection), never shared. Views it returns are valid until its next call.
public final class MessageDecoder {
    private let decoder: OpaquePointer
    // Never shared (see above): no dynamic exclusivity checks on it, two accesses a decode.
    @exclusivity(unchecked) private var message = mco_rpc_message()

    public init() {
        guard let d = mco_rpc_decoder_new() else { fatalError("out of memory creating a message decoder") }
        decoder = d
    }

    deinit { mco_rpc_decoder_free(decoder) }

    /// Decodes one message. The view borrows `bytes` and this decoder's buffers: use it before
    /// the next call and while `bytes` lives.
    public func decode(_ bytes: UnsafeRawBufferPointer) throws(DecodeError) -> MessageView {
        var detail: UnsafePointer<CChar>?
        let status = mco_rpc_decode(decoder, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count, &message, &detail)
        guard status == Int32(MCO_RPC_OK) else {
            let text = detail.map { String(cString: $0) } ?? ""
            switch Int(status) {
            case MCO_RPC_NOT_JSON: throw DecodeError(kind: .notJSON, detail: text)
            case MCO_RPC_BATCH: throw DecodeError(kind: .batch, detail: text)
            case MCO_RPC_TOO_DEEP: throw DecodeError(kind: .tooDeep, detail: text)
            case MCO_RPC_INVALID: throw DecodeError(kind: .invalid, detail: text)
            default: throw DecodeError(kind: .internal, detail: text)
            }
        }
        return MessageView(raw: message)
    }

    /// Decodes and copies out: for callers that keep the message.
    public func decodeOwned(_ bytes: [UInt8]) throws(DecodeError) -> Message {
        try bytes.withUnsafeBytes { buffer in Result { () throws(DecodeError) in Message(try decode(buffer)) } }.get()
    }

    /// The canonical form of a JSON value (sorted keys, no insignificant whitespace) and its
    /// 64-bit hash: equal JSON values give equal bytes, whatever their member order.
    public func canonicalize(_ bytes: UnsafeRawBufferPointer) throws(DecodeError) -> (canonical: [UInt8], hash: UInt64) {
        var out = mco_str()
        var hash: UInt64 = 0
        let status = mco_json_canonicalize(decoder, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count, &out, &hash)
        guard status == Int32(MCO_RPC_OK) else {
            throw DecodeError(kind: status == Int32(MCO_RPC_TOO_DEEP) ? .tooDeep : .notJSON, detail: "not a JSON value")
        }
        return (Array(UnsafeRawBufferPointer(start: out.ptr, count: out.len)), hash)
    }
}

/// XXH3-64 of bytes (xxhash, from Debian's header).
public func hash64(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
    mco_hash64(bytes.baseAddress, bytes.count, seed)
}

extension MessageDecoder {
    /// Decoders ready for reuse: creating one allocates simdjson's buffers, too costly per
    /// message. `withPooled` lends one for the duration of `body` (nested calls get their own).
    private static let pool = DecoderPool()

    public static func withPooled<R>(_ body: (MessageDecoder) throws -> R) rethrows -> R {
        let decoder = pool.take()
        defer { pool.give(decoder) }
        return try body(decoder)
    }
}

private final class DecoderPool: @unchecked Sendable {
    private static let capacity = 64
    /// The free decoders (retained) and their count, in raw memory guarded by `lock`: every
    /// message passes here, and raw memory has no exclusivity checks to pay.
    private let slots = UnsafeMutablePointer<Unmanaged<MessageDecoder>>.allocate(capacity: DecoderPool.capacity)
    private let count: UnsafeMutablePointer<Int> = {
        let p = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        p.initialize(to: 0)
        return p
    }()
    /// Heap-allocated: a mutex must not move.
    private let lock: UnsafeMutablePointer<pthread_mutex_t> = {
        let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(m, nil)
        return m
    }()

    func take() -> MessageDecoder {
        pthread_mutex_lock(lock)
        var d: MessageDecoder?
        if count.pointee > 0 {
            count.pointee -= 1
            d = slots[count.pointee].takeRetainedValue()
        }
        pthread_mutex_unlock(lock)
        return d ?? MessageDecoder()
    }

    func give(_ decoder: MessageDecoder) {
        pthread_mutex_lock(lock)
        if count.pointee < Self.capacity {
            slots[count.pointee] = Unmanaged.passRetained(decoder)
            count.pointee += 1
        }
        pthread_mutex_unlock(lock)
    }
}
