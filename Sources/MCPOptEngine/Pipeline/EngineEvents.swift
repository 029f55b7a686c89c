import MCPOptJSON
import MCPOptSync

/// Something the engine reports as it happens. Names are the original brief's.
public struct EngineEvent: Sendable {
    public enum Name: String, Sendable, CaseIterable {
        case metricsUpdate, targetMet, routingOptimized, routingError, cacheHit, cacheMiss, optimizationError
        case serverUp, serverDown, circuitOpened, circuitClosed, stateUpdated
    }
    public var name: Name
    /// Details as a JSON object (server, tool, reason, latency...).
    public var data: JSONValue
    public init(_ name: Name, _ data: JSONValue) {
        self.name = name
        self.data = data
    }
}

/// Subscribers to engine events. Handlers run synchronously on the thread that emits (an I/O
/// or request thread): they must be quick and must not call back into the engine's waits.
/// With no subscriber, emitting costs one atomic load, and no event is built.
public final class EventBus: @unchecked Sendable {
    public typealias Handler = @Sendable (EngineEvent) -> Void
    private let lock = Lock()
    @exclusivity(unchecked) private var handlers: [(id: UInt64, handler: Handler)] = []   // guarded by lock
    @exclusivity(unchecked) private var nextID: UInt64 = 1                                // guarded by lock
    private let count = AtomicCounter()

    public init() {}

    /// Returns a token for `unsubscribe`.
    @discardableResult
    public func subscribe(_ handler: @escaping Handler) -> UInt64 {
        lock.withLock {
            let id = nextID
            nextID += 1
            handlers.append((id, handler))
            count.store(UInt64(handlers.count))
            return id
        }
    }

    @discardableResult
    public func unsubscribe(_ id: UInt64) -> Bool {
        lock.withLock {
            let before = handlers.count
            handlers.removeAll { $0.id == id }
            count.store(UInt64(handlers.count))
            return handlers.count != before
        }
    }

    public var hasSubscribers: Bool { count.load() > 0 }

    /// Builds the event only when someone listens.
    public func emit(_ name: EngineEvent.Name, _ data: @autoclosure () -> JSONValue) {
        guard hasSubscribers else { return }
        let event = EngineEvent(name, data())
        let current = lock.withLock { handlers }
        for (_, handler) in current { handler(event) }
    }
}
