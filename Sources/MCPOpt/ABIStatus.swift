import CMCPOptSupport
import MCPOptConfig

/// Status codes of include/mcpopt.h. Keep the numbers in step with the header.
enum ABIStatus: Int32, CaseIterable {
    case ok = 0
    case invalidArgument = 1
    case invalidUTF8 = 2
    case malformedJSON = 3
    case invalidConfig = 4
    case invalidHandle = 5
    case notFound = 6
    case tooLarge = 7
    case unsupported = 8
    case bufferTooSmall = 9
    case conflict = 10
    case unavailable = 11
    case `internal` = 99

    /// What mcpopt_status_string returns; static C strings, valid forever.
    var text: StaticString {
        switch self {
        case .ok: "ok"
        case .invalidArgument: "invalid argument"
        case .invalidUTF8: "invalid UTF-8"
        case .malformedJSON: "malformed JSON"
        case .invalidConfig: "invalid config"
        case .invalidHandle: "invalid handle"
        case .notFound: "not found"
        case .tooLarge: "too large"
        case .unsupported: "unsupported"
        case .bufferTooSmall: "buffer too small"
        case .conflict: "conflict"
        case .unavailable: "unavailable"
        case .internal: "internal error"
        }
    }
}

/// Every public function ends in one of these: it records the calling thread's last error.
enum LastError {
    @inline(__always)
    static func succeed() -> Int32 {
        if mco_tls_error_get() != nil { mco_tls_error_set(nil) }
        return ABIStatus.ok.rawValue
    }

    static func fail(_ status: ABIStatus, _ message: String, issues: [(path: String, message: String)] = []) -> Int32 {
        let error = mco_error_new(status.rawValue, message)
        for issue in issues { mco_error_add_issue(error, issue.path, issue.message) }
        mco_tls_error_set(error)
        return status.rawValue
    }

    static func fail(_ error: ConfigError) -> Int32 {
        let status: ABIStatus
        switch error.kind {
        case .invalidUTF8: status = .invalidUTF8
        case .malformedJSON: status = .malformedJSON
        case .tooLarge: status = .tooLarge
        case .invalid: status = .invalidConfig
        }
        return fail(status, error.description, issues: error.issues.map { ($0.path.description, $0.message) })
    }
}
