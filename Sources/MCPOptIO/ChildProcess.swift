import CMCPOptIO
import Glibc

/// How to start a stdio MCP server: the `command`/`args`/`env`/`cwd` of an `mcpServers` entry.
public struct StdioCommand: Sendable, Equatable {
    public var command: String
    public var arguments: [String]
    /// Added to (and overriding) this process's environment.
    public var environment: [String: String]
    public var workingDirectory: String?

    public init(command: String, arguments: [String] = [], environment: [String: String] = [:], workingDirectory: String? = nil) {
        self.command = command
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
    }
}

/// A child process with pipes on its stdin, stdout and stderr, in a process group of its own.
final class ChildProcess {
    let pid: pid_t
    /// -1 once closed (end of input for the server).
    private(set) var stdin: Int32
    let stdout: Int32
    let stderr: Int32
    /// A pidfd (readable when the child exits), or -1 on kernels without pidfd_open.
    let pidfd: Int32
    private(set) var exitStatus: Int32?

    static func spawn(_ command: StdioCommand) throws(IOError) -> ChildProcess {
        var environment: [String: String] = [:]
        var entry = mco_environ()
        while let pointer = entry?.pointee {
            let text = String(cString: pointer)
            if let equals = text.firstIndex(of: "=") { environment[String(text[..<equals])] = String(text[text.index(after: equals)...]) }
            entry = entry! + 1
        }
        for (key, value) in command.environment { environment[key] = value }
        let argv = ([command.command] + command.arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var fds: [Int32] = [-1, -1, -1]
        var pid: pid_t = 0
        var pidfd: Int32 = -1
        let rc = argv.withUnsafeBufferPointer { argvBuffer in
            envp.withUnsafeBufferPointer { envpBuffer in
                fds.withUnsafeMutableBufferPointer { fdBuffer in
                    if let cwd = command.workingDirectory {
                        return mco_spawn(command.command, argvBuffer.baseAddress, envpBuffer.baseAddress, cwd, fdBuffer.baseAddress, &pid, &pidfd)
                    }
                    return mco_spawn(command.command, argvBuffer.baseAddress, envpBuffer.baseAddress, nil, fdBuffer.baseAddress, &pid, &pidfd)
                }
            }
        }
        guard rc == 0 else {
            throw IOError(message: "cannot start \(command.command): \(String(cString: strerror(rc)))")
        }
        return ChildProcess(pid: pid, fds: fds, pidfd: pidfd)
    }

    private init(pid: pid_t, fds: [Int32], pidfd: Int32) {
        self.pid = pid
        stdin = fds[0]
        stdout = fds[1]
        stderr = fds[2]
        self.pidfd = pidfd
    }

    /// Collects the exit status if the child has exited (never blocks).
    @discardableResult
    func reap() -> Int32? {
        if let exitStatus { return exitStatus }
        var status: Int32 = 0
        let rc = waitpid(pid, &status, WNOHANG)
        if rc == pid { exitStatus = status } else if rc < 0 && errno == ECHILD { exitStatus = -1 }
        return exitStatus
    }

    /// Signals the child's whole process group (servers often start helpers of their own).
    func signal(_ signal: Int32) {
        guard exitStatus == nil else { return }
        if kill(-pid, signal) != 0 { kill(pid, signal) }
    }

    /// Closes stdin alone (a well-behaved server exits on end of input). Closing twice would
    /// close whatever descriptor took the number meanwhile, so it is closed once.
    func closeStdin() {
        guard stdin >= 0 else { return }
        close(stdin)
        stdin = -1
    }

    /// Closes our ends of the pipes and the pidfd.
    func closeDescriptors() {
        closeStdin()
        for fd in [stdout, stderr, pidfd] where fd >= 0 { close(fd) }
    }

    /// "exited with status 3", "killed by signal 9".
    static func describe(_ status: Int32) -> String {
        if status < 0 { return "exited" }
        let signal = status & 0x7F
        if signal == 0 { return "exited with status \((status >> 8) & 0xFF)" }
        return "killed by signal \(signal)"
    }
}
