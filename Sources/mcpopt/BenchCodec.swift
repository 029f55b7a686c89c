import ArgumentParser
import FoundationEssentials
import Glibc
import MCPOptJSON
import MCPOptProtocol

/// `mcpopt bench codec`: decode/encode cost of typical MCP messages, side by side with
/// Foundation's JSONDecoder (the obvious Swift alternative) on the same bytes.
struct BenchCodec: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "codec", abstract: "Decode and encode cost of MCP messages (ns per message, MB/s).")

    @Flag(help: "Print machine-readable JSON instead of a table.")
    var json = false

    @Option(help: "Milliseconds to run each measurement.")
    var milliseconds = 300

    func run() throws {
        let cases = CodecSamples.all()
        var rows: [JSONValue] = []
        let decoder = MessageDecoder()
        for sample in cases {
            let bytes = sample.bytes
            let size = Double(bytes.count)
            let decode = bytes.withUnsafeBytes { buffer in
                measure(milliseconds) { _ = try? decoder.decode(buffer) }
            }
            let renumber = bytes.withUnsafeBytes { buffer -> Double in
                guard let view = try? decoder.decode(buffer) else { return .nan }
                let id = Array("\"gw-1\"".utf8)
                return measure(milliseconds) { _ = MessageEncoder.replacingID(in: view, with: id) }
            }
            let foundation = bytes.withUnsafeBytes { buffer -> Double in
                let data = Data(buffer)
                let jsonDecoder = JSONDecoder()
                return measure(milliseconds) { _ = try? jsonDecoder.decode(Envelope.self, from: data) }
            }
            rows.append([
                "message": .string(sample.name), "bytes": .int(Int64(bytes.count)),
                "decodeNs": .double(decode.rounded()), "decodeMBps": .double((size / decode * 1000).rounded()),
                "renumberNs": .double(renumber.rounded()),
                "foundationJSONDecoderNs": .double(foundation.rounded()),
                "speedup": .double((foundation / decode * 10).rounded() / 10),
            ])
        }
        let result: JSONValue = ["benchmark": "codec", "rows": .array(rows)]
        if json {
            print(result.jsonString)
            return
        }
        print("message                  bytes   decode ns    MB/s   renumber ns   JSONDecoder ns   speedup")
        for row in rows {
            func n(_ key: String) -> String { JSONWriter.number(row[key]?.doubleValue ?? .nan) }
            let name = row["message"]?.stringValue ?? ""
            print(name.padding(22) + n("bytes").leftPad(8) + n("decodeNs").leftPad(12) + n("decodeMBps").leftPad(8)
                + n("renumberNs").leftPad(14) + n("foundationJSONDecoderNs").leftPad(17) + (n("speedup") + "x").leftPad(10))
        }
    }
}

/// The JSON-RPC envelope as Codable: what a Swift program would write with Foundation.
private struct Envelope: Decodable {
    struct Params: Decodable {
        let name: String?
        let arguments: [String: JSONAny]?
    }
    let jsonrpc: String
    let id: JSONAny?
    let method: String?
    let params: Params?
    let result: JSONAny?
}

/// Any JSON value, decoded fully (Foundation has no lazy "raw" value).
private enum JSONAny: Decodable {
    case null, bool(Bool), number(Double), string(String), array([JSONAny]), object([String: JSONAny])
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONAny].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONAny].self)) }
    }
}

enum CodecSamples {
    struct Sample {
        let name: String
        let bytes: [UInt8]
    }

    static let tool = #"{"name":"get_current_time","description":"Get current time in a specific timezone","inputSchema":{"type":"object","properties":{"timezone":{"type":"string","description":"IANA timezone name"}},"required":["timezone"]},"annotations":{"readOnlyHint":true,"idempotentHint":true}}"#

    static func all() -> [Sample] {
        let call = #"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/src/main.swift","limit":200}}}"#
        let modern = #"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_current_time","arguments":{"timezone":"Europe/Paris"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"mcp","version":"0.1.0"}}}}"#
        let result = ##"{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"# main.swift\nimport Foundation\nprint(\"hello\")\n"}],"isError":false}}"##
        func list(_ count: Int) -> String {
            #"{"jsonrpc":"2.0","id":3,"result":{"tools":["# + Array(repeating: tool, count: count).joined(separator: ",") + #"],"resultType":"complete","ttlMs":60000,"cacheScope":"public"}}"#
        }
        return [
            Sample(name: "tools/call", bytes: Array(call.utf8)),
            Sample(name: "tools/call (modern)", bytes: Array(modern.utf8)),
            Sample(name: "result (text)", bytes: Array(result.utf8)),
            Sample(name: "tools/list 10 tools", bytes: Array(list(10).utf8)),
            Sample(name: "tools/list 2,600 tools", bytes: Array(list(2600).utf8)),
        ]
    }
}

/// Mean nanoseconds per call over repeated batches, keeping the fastest batch (the machine is
/// shared: the minimum is the least disturbed figure).
private func measure(_ milliseconds: Int, _ body: () -> Void) -> Double {
    func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
    // Size a batch to about 5 ms.
    var batch = 1
    while true {
        let start = now()
        for _ in 0..<batch { body() }
        if now() - start > 5_000_000 || batch > 1 << 24 { break }
        batch *= 2
    }
    let deadline = now() + UInt64(milliseconds) * 1_000_000
    var best = Double.infinity
    repeat {
        let start = now()
        for _ in 0..<batch { body() }
        best = min(best, Double(now() - start) / Double(batch))
    } while now() < deadline
    return best
}
