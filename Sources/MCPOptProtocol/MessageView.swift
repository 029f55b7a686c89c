import CMCPOptRPC
import Glibc
import MCPOptJSON

/// A span of bytes inside a decoded message (or the decoder's buffers). Empty `isPresent ==
/// false` spans stand for absent fields.
public struct ByteSpan: @unchecked Sendable {
    public let pointer: UnsafeRawPointer?
    public let count: Int

    init(_ s: mco_str) {
        pointer = s.ptr.map(UnsafeRawPointer.init)
        count = s.len
    }

    public var isPresent: Bool { pointer != nil }
    public var buffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: pointer, count: count) }
    public var bytes: [UInt8]? { pointer == nil ? nil : Array(buffer) }
    public var string: String? { pointer == nil ? nil : String(decoding: buffer, as: UTF8.self) }

    /// Compares without allocating.
    public func equals(_ text: StaticString) -> Bool {
        guard pointer != nil, count == text.utf8CodeUnitCount else { return false }
        return memcmp(pointer!, text.utf8Start, count) == 0
    }
}

public enum MessageKind: Sendable, Equatable {
    case request, notification, result, error
}

public enum RequestID: Hashable, Sendable, CustomStringConvertible {
    case int(Int64)
    case string(String)

    /// As JSON.
    public var json: String {
        switch self {
        case .int(let i):
            return String(i)
        case .string(let s):
            var out = ""
            JSONWriter.appendQuoted(s, to: &out)
            return out
        }
    }

    public var description: String { json }
}

/// A decoded message, borrowed from its decoder (valid until the decoder's next call). Field
/// accessors are cheap; `.string`/`.bytes` copy.
public struct MessageView {
    let raw: mco_rpc_message

    /// The whole message the spans lie in.
    public var source: ByteSpan { ByteSpan(raw.source) }

    /// Where `span` starts inside `source`.
    public func offset(of span: ByteSpan) -> Int? {
        guard let p = span.pointer, let base = raw.source.ptr else { return nil }
        return UnsafeRawPointer(base).distance(to: p)
    }

    public var kind: MessageKind {
        switch raw.kind {
        case Int32(MCO_KIND_REQUEST): .request
        case Int32(MCO_KIND_NOTIFICATION): .notification
        case Int32(MCO_KIND_RESULT): .result
        default: .error
        }
    }

    public var id: RequestID? {
        switch Int(raw.id_kind) {
        case MCO_ID_INT: .int(raw.id_int)
        case MCO_ID_STRING: .string(ByteSpan(raw.id_string).string ?? "")
        default: nil
        }
    }

    /// The id token as written (also for null or unusual ids of responses).
    public var idRaw: ByteSpan { ByteSpan(raw.id_raw) }
    public var method: ByteSpan { ByteSpan(raw.method) }
    public var params: ByteSpan { ByteSpan(raw.params_raw) }
    /// params.name: the tool of tools/call, the prompt of prompts/get.
    public var name: ByteSpan { ByteSpan(raw.name) }
    public var uri: ByteSpan { ByteSpan(raw.uri) }
    public var cursor: ByteSpan { ByteSpan(raw.cursor) }
    public var arguments: ByteSpan { ByteSpan(raw.arguments_raw) }
    public var canonicalArguments: ByteSpan { ByteSpan(raw.arguments_canonical) }
    /// Hash of the canonical arguments; 0 when there are none.
    public var argumentsHash: UInt64 { raw.arguments_hash }
    public var requestState: ByteSpan { ByteSpan(raw.request_state) }
    public var hasInputResponses: Bool { raw.has_input_responses != 0 }
    /// The modern `_meta` version, or the version an `initialize` asks for.
    public var protocolVersion: ByteSpan { ByteSpan(raw.protocol_version) }
    public var progressToken: ByteSpan { ByteSpan(raw.progress_token_raw) }
    /// The modern `_meta["io.modelcontextprotocol/logLevel"]` (the log messages a request opts
    /// into), when it is a string.
    public var logLevel: ByteSpan { ByteSpan(raw.log_level) }
    public var meta: ByteSpan { ByteSpan(raw.meta_raw) }

    public var result: ByteSpan { ByteSpan(raw.result_raw) }
    public var resultType: ByteSpan { ByteSpan(raw.result_type) }
    public var resultIsError: Bool { raw.result_is_error != 0 }
    /// result.ttlMs, nil when absent.
    public var resultTTLMilliseconds: Int64? { raw.result_ttl_ms >= 0 ? raw.result_ttl_ms : nil }
    public var resultCacheScope: ByteSpan { ByteSpan(raw.result_cache_scope) }
    public var resultNextCursor: ByteSpan { ByteSpan(raw.result_next_cursor) }

    public var errorCode: Int64 { raw.error_code }
    public var errorMessage: ByteSpan { ByteSpan(raw.error_message) }
    public var errorData: ByteSpan { ByteSpan(raw.error_data_raw) }

    /// Whether this message opens a continuation of the modern multi-round-trip flow, whose
    /// answers must never be cached and which must reach the same backend.
    public var isContinuation: Bool { requestState.isPresent || hasInputResponses }
}

/// A decoded message with its own storage, for callers that keep it.
public struct Message: Sendable, Equatable {
    public var kind: MessageKind
    public var id: RequestID?
    public var method: String?
    public var params: [UInt8]?
    public var name: String?
    public var uri: String?
    public var arguments: [UInt8]?
    public var canonicalArguments: [UInt8]?
    public var argumentsHash: UInt64
    public var protocolVersion: String?
    public var result: [UInt8]?
    public var resultType: String?
    public var resultIsError: Bool
    public var errorCode: Int64?
    public var errorMessage: String?

    public init(_ view: MessageView) {
        kind = view.kind
        id = view.id
        method = view.method.string
        params = view.params.bytes
        name = view.name.string
        uri = view.uri.string
        arguments = view.arguments.bytes
        canonicalArguments = view.canonicalArguments.bytes
        argumentsHash = view.argumentsHash
        protocolVersion = view.protocolVersion.string
        result = view.result.bytes
        resultType = view.resultType.string
        resultIsError = view.resultIsError
        errorCode = view.kind == .error ? view.errorCode : nil
        errorMessage = view.errorMessage.string
    }
}
