import MCPOptCache
import MCPOptConfig
import MCPOptRouting

/// Why the engine refused to route a request (before any server was considered).
public enum RouteRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    case unknownAgent(String)
    case toolNotAllowed(agent: String, tool: String)

    public var description: String {
        switch self {
        case .unknownAgent(let agent): "no agent profile \"\(agent)\" in the configuration"
        case .toolNotAllowed(let agent, let tool): "agent \"\(agent)\" may not call tool \"\(tool)\" (see its allowedTools)"
        }
    }
}

extension Engine {
    /// The router's settings from the `routing` options: adaptive when adaptive routing is on,
    /// predictive when only prediction is, least outstanding requests otherwise.
    static func routerSettings(_ routing: RoutingOptions) -> RouterSettings {
        var settings = RouterSettings()
        settings.defaultStrategy = routing.enableAdaptiveRouting ? .adaptive : routing.enablePredictiveRouting ? .predictive : .leastOutstanding
        settings.predictionWindow = routing.predictionWindow
        settings.minConfidence = routing.minConfidence
        return settings
    }

    static func makeRouter(_ config: EngineConfig) -> Router {
        Router(settings: routerSettings(config.routing), servers: config.activeServers.map {
            ServerInfo(id: $0.name, transport: $0.transport.name, group: $0.group, weight: $0.weight, tags: $0.tags)
        })
    }

    /// Routes a call of `tool` for `agent` (nil: no profile): the agent's allowed tools and
    /// servers (names or replica groups) apply, and its default requirements unless the request
    /// sets its own.
    public func route(tool: String, requirements: MCPOptRouting.Requirements = .init(), agent: String? = nil,
                      maxFallbacks: Int = 3) throws(RouteRefusal) -> RoutingDecision {
        router.decide(tool: tool, try agentRequirements(tool: tool, requirements, agent: agent), maxFallbacks: maxFallbacks)
    }

    /// `requirements` with the agent's profile applied: it may call `tool` (or this throws),
    /// its allowed servers narrow the request's, and its defaults fill what the request left unset.
    func agentRequirements(tool: String, _ requirements: MCPOptRouting.Requirements, agent: String?) throws(RouteRefusal) -> MCPOptRouting.Requirements {
        var requirements = requirements
        if let agent {
            guard let profile = config.agents.first(where: { $0.id == agent }) else { throw .unknownAgent(agent) }
            if let tools = profile.allowedTools, !tools.contains(where: { KeyPattern($0).matches(Array(tool.utf8)) }) {
                throw .toolNotAllowed(agent: agent, tool: tool)
            }
            if let ids = runtime.directory.allowed(servers: nil, agent: agent) {
                requirements.allowedServers = requirements.allowedServers.map { $0.intersection(ids) } ?? ids
            }
            if requirements.maxResponseTime == nil { requirements.maxResponseTime = profile.requirements.maxResponseTime }
            if requirements.minSuccessRate == nil { requirements.minSuccessRate = profile.requirements.minSuccessRate }
        }
        return requirements
    }
}
