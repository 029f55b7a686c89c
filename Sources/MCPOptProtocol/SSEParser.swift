/// One server-sent event.
public struct SSEEvent: Sendable, Equatable {
    /// The `event:` field; nil means the default type, "message".
    public var event: String?
    /// The `data:` lines joined with "\n".
    public var data: [UInt8]
    /// The last `id:` seen (it persists across events, as the spec says).
    public var id: String?
    /// A `retry:` reconnection time in milliseconds, when this event set one.
    public var retry: Int?
}

/// Parses a `text/event-stream` body incrementally, per the HTML living standard: lines end in
/// CRLF, LF or CR (a CR at the end of one chunk and an LF at the start of the next are one line
/// end), comments start with ':', an empty line dispatches the event, events without data are
/// dropped, and a partial event at the end of the stream is discarded.
public struct SSEParser {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    public let maxEventBytes: Int
    private var line: [UInt8] = []
    private var data: [UInt8] = []
    private var hasData = false
    private var eventType: String?
    private var lastID: String?
    private var retry: Int?
    private var afterCR = false
    private var atStart = true

    public init(maxEventBytes: Int = 16 << 20) {
        self.maxEventBytes = maxEventBytes
    }

    /// Feeds a chunk, calling `onEvent` for each complete event. An event over the limit throws.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, _ onEvent: (SSEEvent) throws -> Void) throws {
        var index = 0
        if atStart, !bytes.isEmpty {
            // A UTF-8 byte order mark may open the stream (possibly split across chunks: rare
            // enough to handle only when whole).
            if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { index = 3 }
            atStart = false
        }
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            if afterCR {
                afterCR = false
                if byte == 0x0A { continue }
            }
            switch byte {
            case 0x0D:
                afterCR = true
                try endLine(onEvent)
            case 0x0A:
                try endLine(onEvent)
            default:
                line.append(byte)
                if line.count + data.count > maxEventBytes {
                    throw Failure(description: "server-sent event larger than \(maxEventBytes) bytes")
                }
            }
        }
    }

    private mutating func endLine(_ onEvent: (SSEEvent) throws -> Void) throws {
        defer { line.removeAll(keepingCapacity: true) }
        if line.isEmpty {
            // Dispatch.
            defer {
                data.removeAll(keepingCapacity: true)
                hasData = false
                eventType = nil
                retry = nil
            }
            guard hasData else { return }
            try onEvent(SSEEvent(event: eventType, data: data, id: lastID, retry: retry))
            return
        }
        if line[0] == UInt8(ascii: ":") { return }
        let colon = line.firstIndex(of: UInt8(ascii: ":")) ?? line.count
        let field = line[..<colon]
        var valueStart = colon < line.count ? colon + 1 : line.count
        if valueStart < line.count, line[valueStart] == UInt8(ascii: " ") { valueStart += 1 }
        let value = line[valueStart...]
        switch String(decoding: field, as: UTF8.self) {
        case "data":
            if hasData { data.append(0x0A) }
            data.append(contentsOf: value)
            hasData = true
        case "event":
            eventType = String(decoding: value, as: UTF8.self)
        case "id":
            if !value.contains(0) { lastID = String(decoding: value, as: UTF8.self) }
        case "retry":
            if !value.isEmpty, value.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let ms = Int(String(decoding: value, as: UTF8.self)) {
                retry = ms
            }
        default:
            break  // unknown fields are ignored
        }
    }

    /// The id to send as Last-Event-ID when resuming.
    public var lastEventID: String? { lastID }
}
