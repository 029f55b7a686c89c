import MCPOptConfig

/// The configured servers indexed once for the request path (the configuration never changes
/// under a running engine): a server by name, the servers a name or replica group stands for,
/// and what each agent profile allows. Filtering the server list per request cost more than
/// a cache hit's lookup.
struct ServerDirectory: Sendable {
    /// Active (not disabled) servers, in configuration order.
    let active: [ServerConfig]
    private let byName: [String: ServerConfig]
    /// A server's name or a group's name -> the active servers it stands for.
    private let membersOf: [String: Set<String>]
    /// Agent id -> the servers its profile allows (profiles that list servers only).
    private let agentServers: [String: Set<String>]

    init(_ config: EngineConfig) {
        active = config.activeServers
        byName = Dictionary(active.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var members: [String: Set<String>] = [:]
        for server in active {
            members[server.name, default: []].insert(server.name)
            members[server.group, default: []].insert(server.name)
        }
        membersOf = members
        var agents: [String: Set<String>] = [:]
        for profile in config.agents {
            guard let list = profile.allowedServers else { continue }
            agents[profile.id] = list.reduce(into: Set<String>()) { $0.formUnion(members[$1] ?? []) }
        }
        agentServers = agents
    }

    func server(_ name: String) -> ServerConfig? { byName[name] }

    /// The active servers that `namesOrGroups` stand for.
    func servers(_ namesOrGroups: [String]) -> Set<String> {
        if namesOrGroups.count == 1 { return membersOf[namesOrGroups[0]] ?? [] }
        return namesOrGroups.reduce(into: Set<String>()) { $0.formUnion(membersOf[$1] ?? []) }
    }

    /// The servers a request may use: those `servers` name (nil: all) and the agent's profile
    /// allows (nil or no list: all). nil means every server.
    func allowed(servers: [String]?, agent: String?) -> Set<String>? {
        var allowed = servers.map { self.servers($0) }
        if let agent, let mine = agentServers[agent] {
            allowed = allowed.map { $0.intersection(mine) } ?? mine
        }
        return allowed
    }
}
