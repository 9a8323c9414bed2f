import Glibc
import Testing
@testable import SamepageCore

/// A region of sparse anonymous memory: only the pages stored are touched.
private final class SparseBacking: RegionBacking {
    let base: UnsafeMutableRawPointer
    let pageCount: UInt32
    init(pageCount: UInt32) {
        self.pageCount = pageCount
        base = mmap(nil, Int(pageCount) * Page.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)!
    }
    deinit { munmap(base, Int(pageCount) * Page.size) }
    func release(_ extent: ExtentAllocator.Extent) {
        _ = madvise(base + Int(extent.start) * Page.size, Int(extent.count) * Page.size, MADV_DONTNEED)
    }
}

/// Issue 4: the store's bookkeeping (stable tree, owners, digest index) stays within 48 bytes
/// per stored page at every size from 4096 pages on (below that the tables' first allocations,
/// 8 KiB for the tree, dominate), including just after a table grew. It counts capacities
/// (what the memory costs), not time.
@Suite("Metadata per stored page")
struct MetadataBoundTests {
    @Test(arguments: [5_000, 20_000, 60_000])
    func atMost48BytesPerPage(pages: Int) throws {
        let backing = SparseBacking(pageCount: 1 << 20)
        let store = PageStore(backing: backing, budget: PageBudget(limit: 1 << 20), seed: 7)
        let staging = PageBuffer(pages: 256)
        var placement: PageStore.Placement?
        var runs = RunBuilder()
        var done = 0
        var worst = 0.0
        while done < pages {
            let n = min(256, pages - done)
            for i in 0..<n { staging.fill(i, id: UInt64(done + i + 1)) }
            try store.ingest(staging.page(0), pageCount: n, wantedAhead: UInt64(n), placement: &placement, into: &runs)
            store.finish(&placement)
            done += n
            // Every page filed by digest too, as merged pages are: the worst case.
            for page in UInt32(done - n)..<UInt32(done) { store.fileDigest(page) }
            if done >= 4096 { worst = max(worst, Double(store.metadataBytes) / Double(done)) }
        }
        #expect(store.pagesInUse == Int64(pages))
        #expect(worst <= 48, "metadata reached \(worst) bytes per stored page")
    }

    /// When most pages go (the processes that shared them left), the index's tables shrink to
    /// the pages left; what stays is indexed by page number (owners, 4 bytes, and the digest
    /// filed, 8, per page up to the highest page used, which new pages fill again first).
    @Test func theIndexShrinksWhenMostPagesGo() throws {
        let backing = SparseBacking(pageCount: 1 << 20)
        let store = PageStore(backing: backing, budget: PageBudget(limit: 1 << 20), seed: 7)
        let staging = PageBuffer(pages: 256)
        var placement: PageStore.Placement?
        var pages: [PageNumber] = []
        for batch in 0..<400 {
            for i in 0..<256 { staging.fill(i, id: UInt64(batch * 256 + i + 1)) }
            var runs = RunBuilder()
            try store.ingest(staging.page(0), pageCount: 256, wantedAhead: 256, placement: &placement, into: &runs)
            store.finish(&placement)
            for run in runs.runs { pages += (run.start..<(run.start + run.count)).map { $0 } }
        }
        for page in pages { store.fileDigest(page) }
        let full = store.metadataBytes
        store.release(pages.dropFirst(5000).map { PageRun(start: $0, count: 1) })
        #expect(store.pagesInUse == 5000)
        let left = store.metadataBytes
        #expect(left <= Int64(48 * 5000 + 12 * pages.count), "\(left) of \(full) bytes")
        #expect(left * 3 < full, "\(left) of \(full) bytes")
        for page in pages.prefix(5000) { #expect(store.owners(of: page) == 1) }
    }
}
