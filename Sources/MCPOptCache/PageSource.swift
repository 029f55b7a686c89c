import CMCPOptCache

/// Slab pages: from a jemalloc arena of the cache's own when the process runs jemalloc (so the
/// cache's pages do not fragment the host's heap), from mmap otherwise; carved from regions
/// advised for huge pages. Pages are only ever given back all at once, when the cache goes.
final class PageSource: @unchecked Sendable {
    private let source: OpaquePointer
    let pageSize: Int

    init?(forceMmap: Bool, pageSize: Int, maxBytes: Int) {
        guard let source = mco_page_source_new(forceMmap ? 1 : 0, pageSize, maxBytes) else { return nil }
        self.source = source
        self.pageSize = pageSize
    }

    deinit { mco_page_source_free(source) }

    var name: String { mco_page_source_is_jemalloc(source) != 0 ? "jemalloc" : "mmap" }

    func allocate() -> UnsafeMutableRawPointer? { mco_page_alloc(source) }
}
