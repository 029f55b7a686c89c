import MCPOptSync

/// How the engine answers a repeat of a request it answered from the cache without routing it
/// (a `tools/call`, `resources/read` or `prompts/get` that one group serves to this caller):
/// the same bytes from the same caller, only the JSON-RPC id differing. Planning such a repeat
/// again would decide the same things (the request, the caller's options and the configuration
/// are the same) unless a server's catalog changed, so a replay skips to the cache lookup:
/// it checks the catalogs' epoch, reads the cache (a result since invalidated, evicted or
/// expired is gone; one due for a refresh ahead is left to the full path, which starts the
/// refresh) and counts the hit as the full path does. A front keeps replays for requests it
/// has seen byte for byte (see the gateway's `RepeatMemo`); the front's own checks (headers,
/// session) are its business.
public final class HitReplay: @unchecked Sendable {
    let engine: Engine
    let lookup: CachePolicy.Lookup
    let sharedKey: [UInt8]
    /// `tools/call`, `resources/read` or `prompts/get` (as the hit is counted).
    public let method: String
    /// The tool called, for `tools/call`.
    let tool: String?
    /// The catalogs' epoch the request was planned with.
    let epoch: UInt64

    init(engine: Engine, lookup: CachePolicy.Lookup, sharedKey: [UInt8], method: String, tool: String?, epoch: UInt64) {
        self.engine = engine
        self.lookup = lookup
        self.sharedKey = sharedKey
        self.method = method
        self.tool = tool
        self.epoch = epoch
    }

    /// The answer to the repeat with `id` (its raw JSON token), or nil: plan the request anew.
    public func answer(id: UnsafeRawBufferPointer) -> [UInt8]? { engine.answer(self, id: id) }

    /// The answer appended to `out`, after what `head` appends given the answer's length (a
    /// transport's framing): one buffer, no copy of the answer on its own. False: nothing was
    /// appended; plan the request anew.
    public func answer(id: UnsafeRawBufferPointer, into out: inout [UInt8], head: (Int, inout [UInt8]) -> Void) -> Bool {
        engine.answer(self, id: id, into: &out, head: head)
    }

    /// Bytes this replay holds (a front bounds what it keeps).
    public var footprint: Int { 80 + lookup.key.count + sharedKey.count + (tool?.utf8.count ?? 0) }
}
