import Glibc
import MCPOptJSON
import MCPOptMock
import MCPOptSync

/// One server of the demo: a mock server of some kind, in a replica group, over stdio or HTTP.
public struct DemoServer: Sendable, Equatable {
    public var name: String
    public var group: String
    public var http: Bool
    public var profile: MockProfile
}

/// Which servers the demo runs: the seven kinds of the reference workload in replica groups
/// (files 3, records 2, search 2, analytics 1, git 1, tickets 1, docs 2 for the default 12;
/// more servers add replicas in the same proportions). The first replica of each group runs
/// over stdio, the others over HTTP. Two faults: `files-1` degrades from a third of the run
/// on (its latency grows to 30x), `records-1` crashes every `crashEvery` calls and is
/// restarted by whoever started it.
public enum FleetPlan {
    static let kinds: [(kind: String, weight: Int)] = [("files", 3), ("records", 2), ("search", 2), ("analytics", 1), ("git", 1), ("tickets", 1), ("docs", 2)]

    public static func make(servers: Int, seed: UInt64, degradeAfterMs: Double, crashEvery: Int) -> [DemoServer] {
        precondition(servers >= kinds.count)
        // Largest remainder: every kind gets at least one replica.
        var counts = kinds.map { max(1, servers * $0.weight / 12) }
        var index = 0
        while counts.reduce(0, +) < servers {
            counts[index % counts.count] += 1
            index += 1
        }
        while counts.reduce(0, +) > servers, let i = counts.indices.max(by: { counts[$0] < counts[$1] }) { counts[i] -= 1 }
        var plan: [DemoServer] = []
        for (k, (kind, _)) in kinds.enumerated() {
            for replica in 1...counts[k] {
                let name = "\(kind)-\(replica)"
                var profile = MockProfile.preset(kind, name: name)!
                profile.seed = seed
                if name == "files-1" { profile.degrade = .init(afterMs: degradeAfterMs, ratePerSecond: 3, maxFactor: 30) }
                if name == "records-1" { profile.crashAfter = crashEvery }
                plan.append(DemoServer(name: name, group: kind, http: replica > 1, profile: profile))
            }
        }
        return plan
    }
}

/// The demo's HTTP mock servers, each a process of its own (`mcpopt mock-server --http`),
/// restarted when it exits (a crash comes back), stopped with the fleet. Each child reads a
/// pipe from us as its stdin and exits when it closes, so none outlives the demo.
public final class Fleet: @unchecked Sendable {
    public let servers: [DemoServer]
    public let executable: String
    public let directory: String
    public private(set) var ports: [String: Int] = [:]
    private let lock = Lock()
    private var children: [String: (pid: pid_t, lifeline: Int32)] = [:]   // guarded by lock
    private var stopping = false                                          // guarded by lock
    private var restarts = 0                                              // guarded by lock
    private var supervisor: Task<Void, Never>?

    public init(servers: [DemoServer], executable: String, directory: String) {
        self.servers = servers
        self.executable = executable
        self.directory = directory
    }

    public var restartCount: Int { lock.withLock { restarts } }

    public func profilePath(_ server: DemoServer) -> String { "\(directory)/\(server.name).json" }

    /// Writes every profile, starts the HTTP servers and waits until each accepts connections.
    public func start() throws(DemoError) {
        for server in servers {
            try writeFile(profilePath(server), server.profile.json.jsonString)
        }
        for server in servers where server.http {
            ports[server.name] = try Self.freePort()
            try spawn(server)
        }
        for server in servers where server.http {
            try Self.waitUntilListening(port: ports[server.name]!, name: server.name)
        }
        supervisor = Task.detached { [weak self] in
            while let self, !Task.isCancelled {
                self.reapAndRestart()
                try? await Task.sleep(for: .milliseconds(25))
            }
        }
    }

    /// The server's entry in an engine configuration's `mcpServers`.
    public func configEntry(_ server: DemoServer) -> JSONValue {
        if server.http {
            return ["url": .string("http://127.0.0.1:\(ports[server.name]!)/mcp"), "group": .string(server.group), "trustAnnotations": true]
        }
        return ["command": .string(executable), "args": ["mock-server", "--profile", .string(profilePath(server))],
                "group": .string(server.group), "trustAnnotations": true]
    }

    public func stop() {
        supervisor?.cancel()
        let all = lock.withLock { () -> [(pid: pid_t, lifeline: Int32)] in
            stopping = true
            return Array(children.values)
        }
        for child in all {
            close(child.lifeline)
            kill(child.pid, SIGTERM)
        }
        for child in all {
            var status: Int32 = 0
            // Bounded: SIGKILL after a second.
            var waited = 0
            while waitpid(child.pid, &status, WNOHANG) == 0 {
                if waited == 100 { kill(child.pid, SIGKILL) }
                if waited > 300 { break }
                usleep(10_000)
                waited += 1
            }
        }
        lock.withLock { children.removeAll() }
    }

    deinit { if !children.isEmpty { stop() } }

    private func reapAndRestart() {
        let exited: [DemoServer] = lock.withLock {
            guard !stopping else { return [] }
            return servers.filter { server in
                guard let child = children[server.name] else { return false }
                var status: Int32 = 0
                return waitpid(child.pid, &status, WNOHANG) == child.pid
            }
        }
        for server in exited {
            lock.withLock {
                if let child = children.removeValue(forKey: server.name) { close(child.lifeline) }
                restarts += 1
            }
            try? spawn(server)
        }
    }

    private func spawn(_ server: DemoServer) throws(DemoError) {
        let arguments = [executable, "mock-server", "--profile", profilePath(server), "--http", "127.0.0.1:\(ports[server.name]!)", "--exit-on-eof"]
        var lifeline: [Int32] = [-1, -1]
        guard pipe(&lifeline) == 0 else { throw DemoError("cannot create a pipe: \(String(cString: strerror(errno)))") }
        // Only the child's stdin is its read end; no other child may hold our write end.
        _ = fcntl(lifeline[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(lifeline[1], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, lifeline[0], 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "\(directory)/\(server.name).log", O_WRONLY | O_CREAT | O_APPEND, 0o644)
        let argv = arguments.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        close(lifeline[0])
        guard rc == 0 else {
            close(lifeline[1])
            throw DemoError("cannot start \(server.name): \(String(cString: strerror(rc)))")
        }
        lock.withLock { children[server.name] = (pid, lifeline[1]) }
    }

    static func freePort() throws(DemoError) -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw DemoError("cannot create a socket") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard ok else { throw DemoError("cannot find a free port: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func waitUntilListening(port: Int, name: String) throws(DemoError) {
        for _ in 0..<500 {   // 5 s
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(port).bigEndian
            let connected = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            close(fd)
            if connected { return }
            usleep(10_000)
        }
        throw DemoError("mock server \(name) did not start listening on port \(port) within 5 s")
    }
}

public struct DemoError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

func writeFile(_ path: String, _ text: String) throws(DemoError) {
    guard let file = fopen(path, "w") else { throw DemoError("cannot write \(path): \(String(cString: strerror(errno)))") }
    defer { fclose(file) }
    let bytes = Array(text.utf8)
    guard fwrite(bytes, 1, bytes.count, file) == bytes.count else { throw DemoError("cannot write \(path)") }
}
