import ArgumentParser
import CMCPOptSupport
import Glibc
import MCPOptSync

/// The helper processes a benchmark starts (servers, proxies, clients, compilers), so that every
/// one of them is stopped on every way out: `stopAll()` on return or throw, and a signal handler
/// for SIGINT/SIGTERM/SIGHUP. Each child leads a process group of its own, so stopping it also
/// stops what it started (nginx's worker, uvicorn's). A SIGKILL of the benchmark itself is the
/// one way out that leaves them running.
final class BenchProcesses: @unchecked Sendable {
    struct Child {
        let name: String
        let pid: pid_t
        let log: String
    }

    let directory: String
    private let lock = Lock()
    private var children: [Child] = []   // guarded by lock
    private var listeners: [Int: pid_t] = [:]   // guarded by lock: a port, the process group serving it

    /// A fresh temporary directory for logs, configurations and compiled helpers.
    init() throws(ValidationError) {
        var template = Array("/tmp/mcpopt-bench-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ValidationError("cannot create a temporary directory: \(String(cString: strerror(errno)))") }
        directory = String(cString: made)
        BenchSignals.install(removing: directory)
    }

    /// Starts `arguments` (the first is the program) with stdin from /dev/null and stdout and
    /// stderr into `<directory>/<name>.log` (or stdout into `stdout`).
    @discardableResult
    func start(_ name: String, _ arguments: [String], stdout: String? = nil) throws(ValidationError) -> Child {
        let log = "\(directory)/\(name.replacingSpaces()).log"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout ?? log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // A group of its own (see the type's comment); the default signal handling, not ours.
        posix_spawnattr_setpgroup(&attributes, 0)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in BenchSignals.handled { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF))
        let argv = arguments.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, environ)
        guard rc == 0 else { throw ValidationError("cannot start \(arguments[0]): \(String(cString: strerror(rc)))") }
        let child = Child(name: name, pid: pid, log: log)
        lock.withLock { children.append(child) }
        BenchSignals.remember(pid)
        return child
    }

    /// Runs a command to its end, at most `seconds`; returns its exit status (nil: it ran out of
    /// time and was stopped), what it wrote to stdout, and the end of its stderr.
    func run(_ name: String, _ arguments: [String], seconds: Double) throws(ValidationError) -> (status: Int32?, output: String, errors: String) {
        let out = "\(directory)/\(name.replacingSpaces()).out"
        let child = try start(name, arguments, stdout: out)
        let status = wait(child, seconds: seconds)
        if status == nil { stop(child) } else { forget(child) }
        return (status, BenchProcesses.read(out), tail(child))
    }

    /// The exit status once `child` has ended, waiting at most `seconds` (nil: still running).
    /// It sleeps on the child's pidfd: no wake-ups while a measured client runs. (It polled
    /// every 2 ms: on a 2-CPU guest, a wake-up during every measured turn, on the client's own
    /// CPU in the pinned placements; BENCHMARKS.md.)
    func wait(_ child: Child, seconds: Double) -> Int32? {
        let deadline = BenchClock.nanos() + UInt64(seconds * 1e9)
        let pidfd = mco_pidfd_open(child.pid)
        defer { if pidfd >= 0 { close(pidfd) } }
        repeat {
            if let status = exited(child) { return status }
            let now = BenchClock.nanos()
            guard now < deadline else { break }
            if pidfd >= 0 {
                var ready = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
                _ = poll(&ready, 1, Int32(min((deadline - now) / 1_000_000 + 1, 60_000)))   // EINTR: look again
            } else {
                usleep(2_000)   // a kernel without pidfd_open (before 5.3)
            }
        } while true
        return nil
    }

    /// The exit status if `child` has ended (and is reaped), else nil.
    func exited(_ child: Child) -> Int32? {
        var status: Int32 = 0
        let r = waitpid(child.pid, &status, WNOHANG)
        if r == 0 || (r < 0 && errno == EINTR) { return nil }
        // Exited normally: its status; killed by a signal: 128 + the signal, as shells report it.
        return r == child.pid && (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// Stops `child`'s process group: SIGTERM, up to 3 s to exit, then SIGKILL (and up to 2 s more).
    func stop(_ child: Child) {
        kill(-child.pid, SIGTERM)
        kill(-child.pid, SIGCONT)   // one the benchmark holds stopped takes its SIGTERM now
        if wait(child, seconds: 3) == nil {
            kill(-child.pid, SIGKILL)
            _ = wait(child, seconds: 2)
        }
        // Whatever the leader left in its group (it may have exited before its workers).
        kill(-child.pid, SIGKILL)
        forget(child)
    }

    /// Notes that `child`'s process group serves `port`.
    func serves(_ port: Int, _ child: Child) { lock.withLock { listeners[port] = child.pid } }

    /// The process group serving `port`, if a child started here does.
    func group(serving port: Int) -> pid_t? { lock.withLock { listeners[port] } }

    /// Pins every running child, with the processes and threads it started, to `cpus`.
    func pinAll(to cpus: [Int32]) {
        for child in lock.withLock({ children }) { BenchAffinity.pinGroup(child.pid, to: cpus) }
    }

    /// Stops every child still running, newest first, and removes the directory.
    func stopAll() {
        let running = lock.withLock { children }
        for child in running.reversed() { stop(child) }
        _ = try? run("rm", ["/bin/rm", "-rf", directory], seconds: 10)
        // rm ran in the directory's own log file; the directory is gone either way.
    }

    private func forget(_ child: Child) {
        lock.withLock { children.removeAll { $0.pid == child.pid } }
        BenchSignals.forget(child.pid)
    }

    /// The end of a helper's log, for an error message.
    func tail(_ child: Child, bytes: Int = 400) -> String {
        let text = BenchProcesses.read(child.log)
        return String(text.suffix(bytes)).trimmingCharacters(in: "\n")
    }

    static func read(_ path: String) -> String {
        guard let file = fopen(path, "r") else { return "" }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while bytes.count < 16 << 20 {   // helpers' output is small; bounded all the same
            let n = fread(&buffer, 1, buffer.count, file)
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The first executable `name` on PATH, or in /usr/sbin and /sbin (where Debian puts haproxy
    /// and nginx, often not on a user's PATH).
    static func find(_ name: String) -> String? {
        if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
        let path = (getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin") + ":/usr/sbin:/sbin"
        for directory in path.split(separator: ":") where access("\(directory)/\(name)", X_OK) == 0 {
            return "\(directory)/\(name)"
        }
        return nil
    }

    /// A port nothing listens on now, on 127.0.0.1.
    static func freePort() -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var address = loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        return ok ? Int(UInt16(bigEndian: address.sin_port)) : nil
    }

    /// Waits until something accepts connections on 127.0.0.1:`port`, at most `seconds`, and
    /// gives up early when `child` exits. True once it listens.
    func waitUntilListening(_ port: Int, child: Child, seconds: Double) -> Bool {
        let deadline = BenchClock.nanos() + UInt64(seconds * 1e9)
        repeat {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = BenchProcesses.loopback(port: port)
            let connected = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            close(fd)
            if connected {
                serves(port, child)
                return true
            }
            if exited(child) != nil {
                forget(child)
                return false
            }
            usleep(20_000)
        } while BenchClock.nanos() < deadline
        return false
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return address
    }
}

/// On SIGINT, SIGTERM or SIGHUP the benchmark kills its children's groups, has the temporary
/// directory removed and exits. The handler may only make async-signal-safe calls, so the pids
/// live in a fixed array it reads (0: free) and the removal's arguments are prepared beforehand.
enum BenchSignals {
    static let handled: [Int32] = [SIGINT, SIGTERM, SIGHUP]
    private static let capacity = 64
    nonisolated(unsafe) private static let pids: UnsafeMutablePointer<pid_t> = {
        let p = UnsafeMutablePointer<pid_t>.allocate(capacity: capacity)
        p.initialize(repeating: 0, count: capacity)
        return p
    }()
    /// argv of `/bin/rm -rf <directory>`, NULL-terminated (kept for the process's life).
    nonisolated(unsafe) private static var removal: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?

    static func install(removing directory: String) {
        _ = pids
        let argv = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: 4)
        argv.initialize(from: [strdup("/bin/rm"), strdup("-rf"), strdup(directory), nil], count: 4)
        removal = argv
        for s in handled {
            signal(s) { received in
                for i in 0..<BenchSignals.capacity where BenchSignals.pids[i] > 0 { kill(-BenchSignals.pids[i], SIGKILL) }
                // fork and execve are async-signal-safe; the rm outlives us by a moment.
                if let argv = BenchSignals.removal, fork() == 0 {
                    execve("/bin/rm", argv, nil)
                    _exit(127)
                }
                _exit(128 + received)
            }
        }
    }

    static func remember(_ pid: pid_t) {
        for i in 0..<capacity where pids[i] == 0 {
            pids[i] = pid
            return
        }
    }

    static func forget(_ pid: pid_t) {
        for i in 0..<capacity where pids[i] == pid { pids[i] = 0 }
    }
}

extension String {
    fileprivate func replacingSpaces() -> String { String(map { $0 == " " || $0 == "/" || $0 == "," ? "-" : $0 }) }
}
