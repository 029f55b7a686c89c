import Glibc
import MCPOptSync

/// A hybrid logical clock timestamp: wall-clock milliseconds plus a logical counter, with the
/// writer's node id breaking ties, so every write has a unique, totally ordered stamp that stays
/// close to real time and never goes backwards (Kulkarni et al., 2014).
public struct HLCTimestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var wallMilliseconds: Int64
    public var logical: UInt32
    public var node: String

    public init(wallMilliseconds: Int64, logical: UInt32, node: String) {
        self.wallMilliseconds = wallMilliseconds
        self.logical = logical
        self.node = node
    }

    public static func < (a: Self, b: Self) -> Bool {
        (a.wallMilliseconds, a.logical, a.node) < (b.wallMilliseconds, b.logical, b.node)
    }

    /// "<ms>.<logical>@<node>": sortable as text only through parsing.
    public var description: String { "\(wallMilliseconds).\(logical)@\(node)" }

    public init?(_ text: String) {
        guard let at = text.firstIndex(of: "@"), let dot = text[..<at].firstIndex(of: "."),
            let ms = Int64(text[..<dot]), let logical = UInt32(text[text.index(after: dot)..<at])
        else { return nil }
        self.init(wallMilliseconds: ms, logical: logical, node: String(text[text.index(after: at)...]))
    }
}

/// Issues HLC timestamps for one node; thread-safe.
public final class HybridLogicalClock: @unchecked Sendable {
    public let node: String
    private let lock = Lock()
    private var last: HLCTimestamp
    private let now: @Sendable () -> Int64

    public init(node: String, now: @escaping @Sendable () -> Int64 = HybridLogicalClock.wallMilliseconds) {
        self.node = node
        self.now = now
        last = HLCTimestamp(wallMilliseconds: 0, logical: 0, node: node)
    }

    /// A stamp for a local event (a write).
    public func tick() -> HLCTimestamp {
        lock.withLock {
            let wall = now()
            if wall > last.wallMilliseconds {
                last = HLCTimestamp(wallMilliseconds: wall, logical: 0, node: node)
            } else {
                last.logical += 1
            }
            return last
        }
    }

    /// Takes in a stamp seen from another node, so later local stamps order after it.
    @discardableResult
    public func observe(_ remote: HLCTimestamp) -> HLCTimestamp {
        lock.withLock {
            let wall = now()
            let maxWall = max(wall, last.wallMilliseconds, remote.wallMilliseconds)
            var logical: UInt32 = 0
            if maxWall == last.wallMilliseconds && maxWall == remote.wallMilliseconds {
                logical = max(last.logical, remote.logical) + 1
            } else if maxWall == last.wallMilliseconds {
                logical = last.logical + 1
            } else if maxWall == remote.wallMilliseconds {
                logical = remote.logical + 1
            }
            last = HLCTimestamp(wallMilliseconds: maxWall, logical: logical, node: node)
            return last
        }
    }

    @Sendable public static func wallMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
