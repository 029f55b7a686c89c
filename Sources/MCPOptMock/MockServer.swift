import Glibc
import MCPOptGateway
import MCPOptJSON
import MCPOptProtocol
import MCPOptSync

/// A real MCP server (both eras, over the gateway's stdio and HTTP fronts) whose tools do no
/// work: each call waits a latency drawn from its tool's distribution and answers a text that
/// depends only on the tool and its argument (so replicas agree). Faults come from the profile:
/// errors, a crash after N calls, a hang, latency that degrades over time. Deterministic under
/// the profile's seed for a given order of calls.
public final class MockServer: MCPService, @unchecked Sendable {
    /// A call waiting out its latency.
    public struct Pending: Sendable {
        public let delayNanos: UInt64
        let answer: [UInt8]
    }

    public let profile: MockProfile
    public let identity: GatewayFront.Identity
    /// What a crash does (the process exits; tests replace it).
    public var crash: @Sendable () -> Void = { _exit(3) }

    private let answers: ProtocolAnswers
    private let toolsByName: [String: MockProfile.Tool]
    private let toolList: JSONValue
    private let startedNanos = MockClock.nanos()
    private let lock = Lock()
    private var random: SeededRandom      // guarded by lock
    private var calls = 0                 // guarded by lock
    private var hangEndsNanos: UInt64?    // guarded by lock
    /// When each worker is next free (capacity > 0): a call takes the earliest.
    private var workerFreeNanos: [UInt64]  // guarded by lock
    /// Participant mode: transaction id -> "prepared" | "committed" | "aborted".
    private var transactions: [String: String] = [:]   // guarded by lock
    /// Seals this process's requestStates (another instance, even of the same profile, has another).
    private let secret: String

    public init(profile: MockProfile) {
        self.profile = profile
        identity = GatewayFront.Identity(name: profile.name, version: profile.version, instructions: nil, capabilities: ["tools": ["listChanged": false]])
        answers = ProtocolAnswers(identity: identity, cacheHints: { $0 == "tools/list" ? (60_000, "public") : $0 == "server/discover" ? (60_000, "public") : nil })
        toolsByName = Dictionary(profile.tools.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        toolList = .array(profile.tools.map(Self.definition) + (profile.participant ? Self.participantTools : []))
        random = SeededRandom(seed: SeededRandom.seed(profile.seed, profile.name))
        workerFreeNanos = Array(repeating: 0, count: profile.capacity)
        var system = SystemRandomNumberGenerator()
        secret = String(system.next(), radix: 36)
    }

    /// Calls answered or started so far.
    public var callCount: Int { lock.withLock { calls } }

    static func definition(_ tool: MockProfile.Tool) -> JSONValue {
        let readOnly = tool.kind == .read || tool.kind == .analytics
        return [
            "name": .string(tool.name),
            "description": .string(tool.description),
            "inputSchema": ["type": "object", "properties": [tool.argument: ["type": "string"]], "required": [.string(tool.argument)]],
            "annotations": ["readOnlyHint": .bool(readOnly), "idempotentHint": true, "destructiveHint": false, "openWorldHint": false],
        ]
    }

    public func handleImmediately(_ message: [UInt8], caller: ServiceCaller) -> ServiceAnswer<Pending> {
        message.withUnsafeBytes { bytes in MessageDecoder.withPooled { decoder in handle(bytes, decoder) } }
    }

    public func complete(_ pending: Pending) async -> [UInt8] {
        try? await Task.sleep(for: .nanoseconds(Int64(pending.delayNanos)))
        return pending.answer
    }

    public func sessionEnded(_ session: String) {}

    private func handle(_ bytes: UnsafeRawBufferPointer, _ decoder: MessageDecoder) -> ServiceAnswer<Pending> {
        let view: MessageView
        do {
            view = try decoder.decode(bytes)
        } catch {
            return .answered(answers.decodeError(error))
        }
        guard view.kind == .request, let method = view.method.string else { return .answered(nil) }
        let id = Array(view.idRaw.buffer)
        let modern = ProtocolAnswers.isModern(view, method: method)
        if let answer = answers.answer(view, method: method, id: id, modern: modern) { return .answered(answer) }
        switch method {
        case "tools/list":
            return .answered(answers.result(["tools": toolList], id: id, method: method, modern: modern))
        case "tools/call":
            if profile.participant, let name = view.name.string, name.hasPrefix("tx_") {
                return .answered(transaction(name, view: view, id: id, modern: modern))
            }
            guard let name = view.name.string, let tool = toolsByName[name] else {
                return .answered(answers.error(id: id, code: RPCErrorCode.invalidParams, "Unknown tool: \(view.name.string ?? "(no name)")"))
            }
            let arguments = view.arguments.isPresent ? (try? JSONParser.parse(view.arguments.buffer)) : nil
            guard let argument = arguments?[tool.argument]?.stringValue else {
                return .answered(answers.error(id: id, code: RPCErrorCode.invalidParams, "\(name) needs the string argument \"\(tool.argument)\""))
            }
            if tool.kind == .interactive, modern {
                if let answer = interaction(tool, view: view, argument: argument, id: id) { return .answered(answer) }
            }
            return call(tool, argument: argument, id: id, modern: modern)
        default:
            return .answered(answers.error(id: id, code: RPCErrorCode.methodNotFound, "Method not found: \(method)"))
        }
    }

    /// The first round of an interactive tool (nil: the retry is valid, answer the call).
    private func interaction(_ tool: MockProfile.Tool, view: MessageView, argument: String, id: [UInt8]) -> [UInt8]? {
        guard let state = view.requestState.string else {
            let nonce = lock.withLock { String(random.next(), radix: 36) }
            let result: JSONValue = [
                "resultType": "input_required",
                "inputRequests": ["confirm": ["method": "elicitation/create",
                                              "params": ["message": .string("Confirm \(tool.name)(\(argument))?"), "mode": "form",
                                                         "requestedSchema": ["type": "object", "properties": ["ok": ["type": "boolean"]]]]]],
                "requestState": .string(secret + "." + nonce),
                "_meta": [MetaKey.serverInfo: ["name": .string(identity.name), "version": .string(identity.version)]],
            ]
            let text = Array(result.jsonString.utf8)
            return text.withUnsafeBytes { MessageEncoder.result(idJSON: id, result: $0) }
        }
        guard state.hasPrefix(secret + "."), view.hasInputResponses else {
            return answers.error(id: id, code: RPCErrorCode.invalidParams, "invalid requestState: not issued by this server")
        }
        return nil
    }

    private func call(_ tool: MockProfile.Tool, argument: String, id: [UInt8], modern: Bool) -> ServiceAnswer<Pending> {
        let now = MockClock.nanos()
        var crashNow = false
        let (latencyMs, fails, waitNanos): (Double, Bool, UInt64) = lock.withLock {
            calls += 1
            if profile.crashAfter > 0, calls > profile.crashAfter { crashNow = true }
            var wait: UInt64 = 0
            if profile.hangAfter > 0, calls > profile.hangAfter {
                if hangEndsNanos == nil { hangEndsNanos = now + UInt64(profile.hangMs * 1e6) }
                if let end = hangEndsNanos, end > now { wait = end - now }
            }
            let service = random.lognormal(median: tool.medianMs, p99: tool.p99Ms) * degradeFactor(now)
            // A bounded server: the call starts when a worker is free, and holds it meanwhile.
            if let worker = workerFreeNanos.indices.min(by: { workerFreeNanos[$0] < workerFreeNanos[$1] }) {
                let start = max(now + wait, workerFreeNanos[worker])
                workerFreeNanos[worker] = start + UInt64(max(0, service) * 1e6)
                wait = start - now
            }
            return (service, random.unit() < profile.errorRate, wait)
        }
        if crashNow { crash() }
        let answer: [UInt8]
        if fails {
            answer = answers.error(id: id, code: RPCErrorCode.internalError, "injected fault (errorRate \(profile.errorRate))")
        } else {
            let text = Self.resultText(tool: tool.name, argument: argument, bytes: tool.resultBytes)
            answer = answers.result(["content": [["type": "text", "text": .string(text)]], "isError": false], id: id, method: "tools/call", modern: modern)
        }
        let delay = UInt64(max(0, latencyMs) * 1e6) + waitNanos
        return delay < 20_000 ? .answered(answer) : .pending(Pending(delayNanos: delay, answer: answer))
    }

    static let participantTools: [JSONValue] = ["tx_prepare", "tx_commit", "tx_abort"].map { name in
        ["name": .string(name), "description": .string("two-phase commit: \(name.dropFirst(3)) a transaction"),
         "inputSchema": ["type": "object", "properties": ["transaction_id": ["type": "string"], "payload": [:]], "required": ["transaction_id"]]]
    }

    /// The participant convention, in memory: prepare votes yes; commit needs a prepare;
    /// commit and abort are idempotent.
    private func transaction(_ tool: String, view: MessageView, id: [UInt8], modern: Bool) -> [UInt8] {
        let arguments = view.arguments.isPresent ? (try? JSONParser.parse(view.arguments.buffer)) : nil
        guard let tx = arguments?["transaction_id"]?.stringValue else {
            return answers.error(id: id, code: RPCErrorCode.invalidParams, "\(tool) needs the string argument \"transaction_id\"")
        }
        let outcome: (answer: JSONValue?, refusal: String?) = lock.withLock {
            let state = transactions[tx]
            switch tool {
            case "tx_prepare":
                guard state == nil || state == "prepared" else { return (["vote": "no", "reason": .string("transaction already \(state!)")], nil) }
                transactions[tx] = "prepared"
                return (["vote": "yes"], nil)
            case "tx_commit":
                guard state == "prepared" || state == "committed" else { return (nil, "cannot commit \(tx): it is \(state ?? "unknown") here") }
                transactions[tx] = "committed"
                return (["state": "committed"], nil)
            case "tx_abort":
                guard state != "committed" else { return (nil, "cannot abort \(tx): it is committed") }
                transactions[tx] = "aborted"
                return (["state": "aborted"], nil)
            default:
                return (nil, "Unknown tool: \(tool)")
            }
        }
        if let answer = outcome.answer {
            return answers.result(["content": [["type": "text", "text": .string(answer.jsonString)]], "structuredContent": answer, "isError": false],
                                  id: id, method: "tools/call", modern: modern)
        }
        return answers.result(["content": [["type": "text", "text": .string(outcome.refusal ?? "refused")]], "isError": true], id: id, method: "tools/call", modern: modern)
    }

    /// 1 until the degradation starts, then growing linearly with time, capped.
    private func degradeFactor(_ now: UInt64) -> Double {
        guard let d = profile.degrade else { return 1 }
        let sinceMs = Double(now &- startedNanos) / 1e6 - d.afterMs
        return sinceMs <= 0 ? 1 : min(d.maxFactor, 1 + d.ratePerSecond * sinceMs / 1000)
    }

    /// A text that depends only on the tool and argument, of about `bytes` bytes.
    public static func resultText(tool: String, argument: String, bytes: Int) -> String {
        var text = "\(tool)(\(argument)): "
        var random = SeededRandom(seed: SeededRandom.seed(0, tool + "\u{0}" + argument))
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz     ".utf8)
        var filler: [UInt8] = []
        filler.reserveCapacity(max(0, bytes - text.utf8.count))
        while filler.count + text.utf8.count < bytes { filler.append(alphabet[Int(random.next() % UInt64(alphabet.count))]) }
        text += String(decoding: filler, as: UTF8.self)
        return text
    }
}

enum MockClock {
    static func nanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
