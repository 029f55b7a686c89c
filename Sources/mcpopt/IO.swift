import Glibc

/// Whole-file reads and stderr output without Foundation (the program stays small).
enum FileReader {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static func read(_ path: String) throws(Failure) -> [UInt8] {
        guard let file = fopen(path, "rb") else { throw Failure(description: String(cString: strerror(errno))) }
        defer { fclose(file) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
            if n > 0 { out.append(contentsOf: chunk[0..<n]) }
            if n < chunk.count {
                if ferror(file) != 0 { throw Failure(description: String(cString: strerror(errno))) }
                return out
            }
        }
    }
}

func printError(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { bytes in
        var rest = UnsafeRawBufferPointer(bytes)
        while !rest.isEmpty {
            let n = Glibc.write(2, rest.baseAddress, rest.count)
            if n <= 0 { return }
            rest = UnsafeRawBufferPointer(rebasing: rest[n...])
        }
    }
}

enum ProcessInfoLite {
    static func environment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
}

/// SIGINT and SIGTERM, and SIGHUP when asked: what `waitForTermination` takes.
private func terminationSignals(hangup: Bool) -> sigset_t {
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGINT)
    sigaddset(&set, SIGTERM)
    if hangup { sigaddset(&set, SIGHUP) }
    return set
}

/// Blocks the signals `waitForTermination` will take, in this thread and every thread started
/// after: called before the engine starts its threads, none of them can be ended by one (a
/// signal that arrives meanwhile waits for the wait). Child processes start with none blocked.
func blockTerminationSignals(hangup: Bool) {
    var set = terminationSignals(hangup: hangup)
    pthread_sigmask(SIG_BLOCK, &set, nil)
}

/// Blocks until SIGINT or SIGTERM (which then no longer kill the process: the caller stops
/// cleanly, so stdio servers are asked to exit instead of being orphaned). With `onHangup`, each
/// SIGHUP meanwhile calls it (on this thread) and the wait goes on; without, SIGHUP keeps its
/// default and ends the process.
func waitForTermination(onHangup: (() -> Void)? = nil) {
    var set = terminationSignals(hangup: onHangup != nil)
    pthread_sigmask(SIG_BLOCK, &set, nil)
    while true {
        var received: Int32 = 0
        guard sigwait(&set, &received) == 0 else { return }
        guard received == SIGHUP, let onHangup else { return }
        onHangup()
    }
}
