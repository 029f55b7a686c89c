import Glibc
import MCPOptJSON

/// The hot set kept across restarts (`caching.hotSetFile`): when the engine stops, the most used
/// cached requests are written down, and when it starts they are sent again, so the cache is
/// warm before the first client asks. Requests, not results, are kept: nothing cached goes to
/// disk, and what is fetched on start is fresh.
///
/// A cache key is "v2" NUL method NUL group NUL name-or-uri NUL canonical-arguments NUL cursor
/// NUL "=" partition (CachePolicy.key), which is enough to rebuild the request. Shared keys
/// ("*" for the partition) are skipped: what is stored under one is stored under a caller's too.
struct HotRequest: Equatable {
    var method: String
    var group: String
    var nameOrURI: String
    var arguments: String
    var cursor: String
    var partition: String
    var accessCount: Int

    init?(cacheKey: [UInt8], accessCount: Int) {
        let fields = cacheKey.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        guard fields.count == 7, fields[0] == "v2", !fields[1].isEmpty, fields[6].first == "=" else { return nil }
        (method, group, nameOrURI, arguments, cursor, partition) = (fields[1], fields[2], fields[3], fields[4], fields[5], String(fields[6].dropFirst()))
        self.accessCount = accessCount
    }

    init?(json: JSONValue) {
        guard let method = json["method"]?.stringValue, let group = json["group"]?.stringValue else { return nil }
        self.method = method
        self.group = group
        nameOrURI = json["name"]?.stringValue ?? ""
        arguments = json["arguments"]?.stringValue ?? ""
        cursor = json["cursor"]?.stringValue ?? ""
        partition = json["partition"]?.stringValue ?? ""
        accessCount = Int(json["accessCount"]?.doubleValue ?? 0)
    }

    var json: JSONValue {
        ["method": .string(method), "group": .string(group), "name": .string(nameOrURI), "arguments": .string(arguments),
         "cursor": .string(cursor), "partition": .string(partition), "accessCount": .int(Int64(accessCount))]
    }

    /// The JSON-RPC request that fills this entry again (nil for a method it cannot rebuild).
    func request(id: Int) -> [UInt8]? {
        var params = JSONObject()
        let arguments = self.arguments.isEmpty ? nil : try? JSONParser.parse(self.arguments)
        switch method {
        case "tools/call", "prompts/get":
            guard !nameOrURI.isEmpty else { return nil }
            params["name"] = .string(nameOrURI)
            if let arguments { params["arguments"] = arguments }
        case "resources/read":
            guard !nameOrURI.isEmpty else { return nil }
            params["uri"] = .string(nameOrURI)
        case "tools/list", "prompts/list", "resources/list", "resources/templates/list":
            if !cursor.isEmpty { params["cursor"] = .string(cursor) }
        default:
            return nil
        }
        let message: JSONValue = ["jsonrpc": "2.0", "id": .string("mcpopt-warm-\(id)"), "method": .string(method), "params": .object(params)]
        return Array(message.jsonString.utf8)
    }
}

enum HotSetFile {
    /// Writes the hot set atomically (a temporary file renamed over the old one).
    static func save(_ requests: [HotRequest], to path: String) -> String? {
        let document: JSONValue = ["version": 1, "requests": .array(requests.map(\.json))]
        let bytes = Array(document.jsonString.utf8)
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return "cannot write \(temporary): \(String(cString: strerror(errno)))" }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else {
                close(fd)
                unlink(temporary)
                return "cannot write \(temporary): \(String(cString: strerror(errno)))"
            }
            written += n
        }
        fsync(fd)
        close(fd)
        guard rename(temporary, path) == 0 else { return "cannot replace \(path): \(String(cString: strerror(errno)))" }
        return nil
    }

    /// The saved hot set, hottest first; nil when there is none (or it cannot be read).
    static func load(_ path: String) -> [HotRequest]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while bytes.count < 64 << 20 {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += buffer[0..<n]
        }
        guard let document = try? JSONParser.parse(bytes), let list = document["requests"]?.arrayValue else { return nil }
        return list.compactMap(HotRequest.init(json:))
    }
}

extension Engine {
    /// Writes the hot set (`caching.hotSetFile`), hottest first. `stop` calls it.
    func saveHotSet() {
        guard let path = config.caching.hotSetFile else { return }
        let requests = cache.hotKeys(limit: config.caching.hotSetSize * 2)
            .compactMap { HotRequest(cacheKey: $0.key, accessCount: Int($0.accessCount)) }
            .filter { !$0.partition.contains("\u{1}session:") }   // a client session's entries end with it
        if let error = HotSetFile.save(Array(requests.prefix(config.caching.hotSetSize)), to: path) {
            runtime.events.emit(.optimizationError, ["reason": .string("hot set not saved: \(error)")])
        }
    }

    /// Sends the saved hot set's requests again (4 at a time), hottest first, so their results
    /// are cached before clients ask. `start` runs it in the background.
    func restoreHotSet() async {
        guard let path = config.caching.hotSetFile, let requests = HotSetFile.load(path), !requests.isEmpty else { return }
        let jobs = requests.prefix(config.caching.hotSetSize).enumerated().compactMap { i, r -> ([UInt8], OptimizeOptions)? in
            guard let message = r.request(id: i) else { return nil }
            return (message, OptimizeOptions(partition: r.partition, servers: [r.group]))
        }
        var next = 0
        await withTaskGroup(of: Bool.self) { group in
            func launch() {
                let (message, options) = jobs[next]
                next += 1
                group.addTask { await self.optimizeRequest(message, options).success }
            }
            while next < jobs.count && next < 4 { launch() }
            for await ok in group {
                if ok { runtime.metrics.hotSetRestored.add() }
                if next < jobs.count && !runtime.isStopped { launch() }
            }
        }
    }
}
