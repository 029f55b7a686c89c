import MCPOptJSON
import MCPOptProtocol
import MCPOptSync

/// Bridges a handshake-era server's requests to the client (sampling, elicitation, roots) for
/// a modern-era client, which cannot be sent requests: it is asked in the modern way instead.
/// While the call runs on the server, the server's requests are collected here; the client's
/// answer becomes `input_required` with those requests as `inputRequests` and a `requestState`
/// naming this bridge; the client's retry (same method, `inputResponses`, that `requestState`)
/// answers the server's requests, and the call goes on (more rounds, or its result).
///
/// The call stays open on the server between rounds, so a bridge waiting for a retry expires
/// (`GatewayInputBridges.expiry`): the server's requests are then answered with an error.
final class InputBridge: @unchecked Sendable {
    /// What the call came to: its result, or requests for the client.
    enum Outcome {
        case finished([UInt8])
        case needsInput([(key: String, request: JSONValue)])
    }

    private let lock = Lock()
    /// The call on the server (cancelled when the bridge is given up).
    private var work: Task<Void, Never>?                                          // guarded by lock
    private var asked: [(key: String, request: JSONValue, continuation: CheckedContinuation<[UInt8]?, Never>)] = []   // guarded by lock
    /// How many of `asked` went to the client already.
    private var sent = 0                                                           // guarded by lock
    private var result: [UInt8]?                                                   // guarded by lock
    private var waiter: CheckedContinuation<Void, Never>?                          // guarded by lock
    private var nextKey = 0                                                        // guarded by lock
    /// Given up: later requests of the server get no answer at once.
    private var abandoned = false                                                  // guarded by lock

    init() {}

    /// The server's request (as the engine relays it); returns the client's answer once it
    /// comes with a retry, or nil (the bridge expired or the call ended).
    func ask(_ request: [UInt8]) async -> [UInt8]? {
        guard case .object(let o)? = try? JSONParser.parse(request), let method = o["method"] else { return nil }
        var item: JSONObject = ["method": method]
        if let params = o["params"] { item["params"] = params }
        return await withCheckedContinuation { (c: CheckedContinuation<[UInt8]?, Never>) in
            let (accepted, wake) = lock.withLock { () -> (Bool, CheckedContinuation<Void, Never>?) in
                guard !abandoned else { return (false, nil) }
                nextKey += 1
                asked.append((key: "mcpopt-input-\(nextKey)", request: .object(item), continuation: c))
                defer { waiter = nil }
                return (true, waiter)
            }
            if !accepted { c.resume(returning: nil) }
            wake?.resume()
        }
    }

    /// The call ended on the server.
    func finish(_ response: [UInt8]) {
        let wake = lock.withLock { () -> CheckedContinuation<Void, Never>? in
            result = response
            defer { waiter = nil }
            return waiter
        }
        wake?.resume()
    }

    /// Waits for the call's result or for requests the client has not seen yet.
    func next() async -> Outcome {
        while true {
            if let outcome = lock.withLock({ () -> Outcome? in
                if sent < asked.count {
                    defer { sent = asked.count }
                    return .needsInput(asked[sent...].map { ($0.key, $0.request) })
                }
                return result.map { .finished($0) }
            }) {
                return outcome
            }
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = lock.withLock { () -> Bool in
                    if sent < asked.count || result != nil { return true }
                    waiter = c
                    return false
                }
                if now { c.resume() }
            }
        }
    }

    /// The client's retry: each answered request resumes the server's (as a JSON-RPC result);
    /// requests it left unanswered are asked again in the next round.
    func answer(_ responses: JSONObject) {
        let answered = lock.withLock { () -> [(CheckedContinuation<[UInt8]?, Never>, JSONValue)] in
            var answered: [(CheckedContinuation<[UInt8]?, Never>, JSONValue)] = []
            asked.removeAll { item in
                guard let value = responses[item.key] else { return false }
                answered.append((item.continuation, value))
                return true
            }
            sent = 0
            return answered
        }
        for (continuation, value) in answered {
            continuation.resume(returning: Array(JSONValue.object(["jsonrpc": "2.0", "id": 0, "result": value]).jsonString.utf8))
        }
    }

    /// Runs the call (`call` returns its response) in a task of its own: rounds end while the
    /// call goes on.
    func start(_ call: @escaping @Sendable () async -> [UInt8]) {
        let task = Task { [self] in finish(await call()) }
        lock.withLock { work = task }
    }

    /// Gives up: every waiting server request gets no answer (the engine tells the server),
    /// and the call is cancelled.
    func abandon() {
        lock.withLock { work }?.cancel()
        let waiting = lock.withLock { () -> [CheckedContinuation<[UInt8]?, Never>] in
            abandoned = true
            defer { asked.removeAll(); sent = 0 }
            return asked.map(\.continuation)
        }
        for c in waiting { c.resume(returning: nil) }
    }
}

/// The bridges waiting for a client's retry, by `requestState`; each expires on its own.
final class GatewayInputBridges: @unchecked Sendable {
    static let statePrefix = "mcpopt-input-state-"
    let expiry: Duration
    private let lock = Lock()
    private var waiting: [String: InputBridge] = [:]   // guarded by lock
    private var random = SystemRandomNumberGenerator() // guarded by lock

    init(expiry: Duration = .seconds(120)) { self.expiry = expiry }

    /// Parks `bridge` until its retry comes (or it expires); returns its state, 128 random
    /// bits (a new one each round: a state is good for one retry).
    func park(_ bridge: InputBridge) -> String {
        let state = lock.withLock { () -> String in
            let a = UInt64.random(in: .min ... .max, using: &random), b = UInt64.random(in: .min ... .max, using: &random)
            let state = Self.statePrefix + String(a, radix: 16) + "-" + String(b, radix: 16)
            waiting[state] = bridge
            return state
        }
        let expiry = self.expiry
        Task { [weak self] in
            try? await Task.sleep(for: expiry)
            guard let self, let expired = self.lock.withLock({ () -> InputBridge? in
                guard self.waiting[state] === bridge else { return nil }
                return self.waiting.removeValue(forKey: state)
            }) else { return }
            expired.abandon()
        }
        return state
    }

    /// The bridge a retry names (taken: one retry per round).
    func take(_ state: String) -> InputBridge? { lock.withLock { waiting.removeValue(forKey: state) } }

    var count: Int { lock.withLock { waiting.count } }
}
