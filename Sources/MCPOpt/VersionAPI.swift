import MCPOptEngine

// Written once at first use, read-only after: safe to share.
nonisolated(unsafe) private let versionText: UnsafeMutablePointer<CChar> = strdupStatic(MCPOptVersion.string)

@_cdecl("mcpopt_version")
public func mcpopt_version() -> UnsafePointer<CChar> {
    UnsafePointer(versionText)
}

@_cdecl("mcpopt_abi_version")
public func mcpopt_abi_version() -> UInt32 {
    UInt32(MCPOptVersion.abi)
}

@_cdecl("mcpopt_status_string")
public func mcpopt_status_string(_ status: Int32) -> UnsafePointer<CChar> {
    let text: StaticString = ABIStatus(rawValue: status)?.text ?? "unknown status"
    return UnsafeRawPointer(text.utf8Start).assumingMemoryBound(to: CChar.self)
}

/// A C string that lives for the life of the process.
func strdupStatic(_ s: String) -> UnsafeMutablePointer<CChar> {
    let utf8 = Array(s.utf8CString)
    let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: utf8.count)
    buffer.initialize(from: utf8, count: utf8.count)
    return buffer
}
