import CMCPOptSupport
import Glibc

// mcpopt_error * is an mco_error * (see CMCPOptSupport): these forward to it.

private let emptyText: StaticString = ""
private var empty: UnsafePointer<CChar> { UnsafeRawPointer(emptyText.utf8Start).assumingMemoryBound(to: CChar.self) }

@_cdecl("mcpopt_last_error_message")
public func mcpopt_last_error_message() -> UnsafePointer<CChar> {
    guard let e = mco_tls_error_get() else { return empty }
    return mco_error_message(e)
}

@_cdecl("mcpopt_last_status")
public func mcpopt_last_status() -> Int32 {
    mco_error_status(mco_tls_error_get())
}

@_cdecl("mcpopt_last_error")
public func mcpopt_last_error() -> OpaquePointer? {
    mco_error_copy(mco_tls_error_get())
}

@_cdecl("mcpopt_error_status")
public func mcpopt_error_status(_ error: OpaquePointer?) -> Int32 {
    mco_error_status(error)
}

@_cdecl("mcpopt_error_message")
public func mcpopt_error_message(_ error: OpaquePointer?) -> UnsafePointer<CChar> {
    mco_error_message(error)
}

@_cdecl("mcpopt_error_issue_count")
public func mcpopt_error_issue_count(_ error: OpaquePointer?) -> Int {
    mco_error_issue_count(error)
}

@_cdecl("mcpopt_error_issue_path")
public func mcpopt_error_issue_path(_ error: OpaquePointer?, _ index: Int) -> UnsafePointer<CChar>? {
    mco_error_issue_path(error, index)
}

@_cdecl("mcpopt_error_issue_message")
public func mcpopt_error_issue_message(_ error: OpaquePointer?, _ index: Int) -> UnsafePointer<CChar>? {
    mco_error_issue_message(error, index)
}

@_cdecl("mcpopt_error_free")
public func mcpopt_error_free(_ error: OpaquePointer?) {
    mco_error_free(error)
}

@_cdecl("mcpopt_free")
public func mcpopt_free(_ pointer: UnsafeMutableRawPointer?) {
    free(pointer)
}
