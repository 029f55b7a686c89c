import MCPOptJSON
import MCPOptProtocol
import MCPOptSync

/// A front's side of server-to-client requests (sampling, elicitation, roots): the server's
/// request goes to the client under an id of the front's own (ids of several servers would
/// collide), and the client's response, when it comes back, resumes the waiting engine.
/// Unanswered requests give up after `timeout`.
final class ClientAsker: @unchecked Sendable {
    private let lock = Lock()
    /// By the id sent: who may answer (a client session) and who waits.
    private var waiting: [String: (owner: String, continuation: CheckedContinuation<[UInt8]?, Never>)] = [:]   // guarded by lock
    private var next: UInt64 = 0                                                 // guarded by lock
    let timeout: Duration

    init(timeout: Duration = .seconds(300)) { self.timeout = timeout }

    /// Sends `request` (the server's) to the client through `send` and waits for the answer.
    func ask(_ request: [UInt8], owner: String = "", send: @escaping @Sendable ([UInt8]) -> Void) async -> [UInt8]? {
        guard case .object(var message)? = try? JSONParser.parse(request) else { return nil }
        let id = lock.withLock { () -> String in
            next += 1
            return "mcpopt-ask-\(next)"
        }
        message["id"] = .string(id)
        let outgoing = Array(JSONValue.object(message).jsonString.utf8)
        let timeout = self.timeout
        return await withCheckedContinuation { (continuation: CheckedContinuation<[UInt8]?, Never>) in
            lock.withLock { waiting[id] = (owner, continuation) }
            send(outgoing)
            Task { [weak self] in
                try? await Task.sleep(for: timeout)
                self?.finish(id, nil)
            }
        }
    }

    /// Takes a message from the client (`owner`: its session): true when it was the answer to
    /// one of our requests to that client.
    func answer(_ message: [UInt8], owner: String = "") -> Bool {
        // Most messages are requests: one scan for our id prefix before any decoding.
        guard ByteSearch.contains(message, askPrefix) else { return false }
        let id: String? = message.withUnsafeBytes { bytes in
            MessageDecoder.withPooled { decoder in
                guard let view = try? decoder.decode(bytes), view.kind == .result || view.kind == .error else { return nil }
                return view.idRaw.isPresent ? (try? JSONParser.parse(view.idRaw.buffer))?.stringValue : nil
            }
        }
        guard let id, id.hasPrefix("mcpopt-ask-"), lock.withLock({ waiting[id]?.owner == owner }) else { return false }
        finish(id, message)
        return true
    }

    private func finish(_ id: String, _ answer: [UInt8]?) {
        lock.withLock { waiting.removeValue(forKey: id) }?.continuation.resume(returning: answer)
    }
}

private let askPrefix = ByteSearch.Needle("mcpopt-ask-")
