import CMCPOptCache

/// Slab pages: from a jemalloc arena of the cache's own when the process runs jemalloc (so the
/// cache's pages do not fragment the host's heap), from mmap otherwise.
final class PageSource: @unchecked Sendable {
    private let source: OpaquePointer

    let pageSize: Int

    init(forceMmap: Bool, pageSize: Int) {
        source = mco_page_source_new(forceMmap ? 1 : 0)
        self.pageSize = pageSize
    }

    deinit { mco_page_source_free(source) }

    var name: String { mco_page_source_is_jemalloc(source) != 0 ? "jemalloc" : "mmap" }

    func allocate() -> UnsafeMutableRawPointer? { mco_page_alloc(source, pageSize) }

    func free(_ page: UnsafeMutableRawPointer?) {
        mco_page_free(source, page, pageSize)
    }
}
