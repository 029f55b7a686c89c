import CMCPOptSupport
import Glibc

/// Where a latency benchmark's processes run.
///
/// On a small guest, a wake-up that crosses CPUs costs tens of microseconds, and the scheduler
/// places the client and the servers differently from run to run. Unpinned round trips to the
/// same server therefore fall into two states, about 15 µs and about 60 µs on the 2-vCPU machine
/// of BENCHMARKS.md. That gap is wider than a proxy's own cost. Pinning takes the placement out
/// of a comparison; `any` keeps what a deployment would see.
enum BenchPlacement: String, CaseIterable, Sendable {
    /// Wherever the scheduler puts them.
    case any
    /// Every process on one CPU: a round trip costs what its programs compute, and each
    /// wake-up is a switch on that CPU.
    case same
    /// The client on one CPU and every server on another: each hop between the client and a
    /// server crosses CPUs; a proxy and the server behind it share one.
    case split

    /// The CPUs for the servers and for the client, from those this process may use; nil when
    /// there are too few.
    func cpus(allowed: [Int32]) -> (servers: [Int32], client: [Int32])? {
        switch self {
        case .any: return allowed.isEmpty ? nil : (allowed, allowed)
        case .same: return allowed.isEmpty ? nil : ([allowed[0]], [allowed[0]])
        case .split: return allowed.count < 2 ? nil : ([allowed[1]], [allowed[0]])
        }
    }

    var summary: String {
        switch self {
        case .any: "placement any: wherever the scheduler puts the processes"
        case .same: "placement same: every process on one CPU (each round trip costs what its programs compute)"
        case .split: "placement split: the client on one CPU, the servers on another (every client hop crosses CPUs)"
        }
    }
}

/// CPU affinity of threads and process groups (Linux).
enum BenchAffinity {
    /// The CPUs the calling thread may run on, in order.
    static func allowed() -> [Int32] {
        var cpus = [Int32](repeating: 0, count: 1024)
        let count = mco_affinity_get(0, &cpus, cpus.count)
        return count > 0 ? Array(cpus.prefix(Int(count))) : []
    }

    /// Pins thread (or process) `tid` (0: the calling thread) to `cpus`.
    @discardableResult
    static func pin(_ tid: pid_t, to cpus: [Int32]) -> Bool { mco_affinity_set(tid, cpus, cpus.count) == 0 }

    /// Pins every thread of every process in process group `group` (a server and the workers it
    /// started: nginx's, uvicorn's). Threads started later inherit their creator's CPUs.
    static func pinGroup(_ group: pid_t, to cpus: [Int32]) {
        for pid in processes(inGroup: group) {
            for tid in numericEntries("/proc/\(pid)/task") { pin(tid, to: cpus) }
        }
    }

    /// Every thread of process group `group`: its time on a CPU so far (ns, the first field of
    /// its schedstat) and the CPU it ran on last (field 39 of its stat).
    static func threads(ofGroup group: pid_t) -> [pid_t: (runNanos: UInt64, cpu: Int32)] {
        var threads: [pid_t: (runNanos: UInt64, cpu: Int32)] = [:]
        for pid in processes(inGroup: group) {
            for tid in numericEntries("/proc/\(pid)/task") {
                let stat = BenchProcesses.read("/proc/\(pid)/task/\(tid)/stat")
                guard let close = stat.lastIndex(of: ")") else { continue }
                let fields = stat[stat.index(after: close)...].split(separator: " ")   // from field 3
                guard fields.count > 36, let cpu = Int32(fields[36]),
                      let run = BenchProcesses.read("/proc/\(pid)/task/\(tid)/schedstat").split(separator: " ").first.flatMap({ UInt64($0) }) else { continue }
                threads[tid] = (run, cpu)
            }
        }
        return threads
    }

    /// The CPU of the thread of `group` that ran longest since `before` was taken (a snapshot
    /// from `threads(ofGroup:)`): the one that answered a turn's calls. Nil when none ran.
    static func busiestCPU(ofGroup group: pid_t, since before: [pid_t: (runNanos: UInt64, cpu: Int32)]) -> Int32? {
        var best: (ran: UInt64, cpu: Int32)?
        for (tid, now) in threads(ofGroup: group) {
            let ran = now.runNanos - min(now.runNanos, before[tid]?.runNanos ?? 0)
            if ran > 0, ran > best?.ran ?? 0 { best = (ran, now.cpu) }
        }
        return best?.cpu
    }

    /// The processes whose process group is `group` (field 5 of /proc/PID/stat).
    private static func processes(inGroup group: pid_t) -> [pid_t] {
        numericEntries("/proc").filter { pid in
            let stat = BenchProcesses.read("/proc/\(pid)/stat")
            // The command name is in parentheses and may hold spaces: fields follow its last ')'.
            guard let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && pid_t(fields[2]) == group
        }
    }

    private static func numericEntries(_ directory: String) -> [pid_t] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var entries: [pid_t] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let id = pid_t(name) { entries.append(id) }
        }
        return entries
    }
}
