import Testing
@testable import SamepageCore

/// A hardened region frees memory a whole segment at a time: the store must tell the backing
/// exactly when a segment has no allocated page left, no sooner (a page in use, or reserved
/// for a submission under way) and not twice.
@Suite("Segment accounting")
struct SegmentAccountingTests {
    private func store(pages: UInt32 = 64, segmentPages: UInt32 = 16) -> (PageStore, MemoryBacking, PageBuffer) {
        let backing = MemoryBacking(pageCount: pages, segmentPages: segmentPages)
        let store = PageStore(backing: backing, budget: PageBudget(limit: UInt64(pages)), seed: 1)
        return (store, backing, PageBuffer(pages: Int(pages)))
    }

    private func put(_ store: PageStore, _ staging: PageBuffer, ids: [UInt64]) throws -> [PageRun] {
        for (i, id) in ids.enumerated() { staging.fill(i, id: id) }
        var placement: PageStore.Placement?
        var runs = RunBuilder()
        try store.ingest(staging.page(0), pageCount: ids.count, validBytesInLastPage: Page.size,
                         wantedAhead: UInt64(ids.count), placement: &placement, into: &runs)
        store.finish(&placement)
        return runs.runs
    }

    @Test func aSegmentEmptiesWhenItsLastPageGoes() throws {
        let (store, backing, staging) = store()
        // 24 distinct pages: segment 0 full, segment 1 half.
        let runs = try put(store, staging, ids: Array(1...24))
        #expect(store.allocatedPagesPerSegment == [16, 8, 0, 0])
        #expect(backing.emptied.isEmpty)
        store.release(runs)
        #expect(backing.emptied.sorted() == [0, 1])
        #expect(store.allocatedPagesPerSegment == [0, 0, 0, 0])
    }

    @Test func aSharedPageKeepsItsSegment() throws {
        let (store, backing, staging) = store()
        let first = try put(store, staging, ids: Array(1...4))
        let second = try put(store, staging, ids: [3])
        store.release(first)
        #expect(backing.emptied.isEmpty, "page 3 still has an owner")
        store.release(second)
        #expect(backing.emptied == [0])
    }

    @Test func anUnfilledPlacementIsGivenBackToItsSegment() throws {
        let (store, backing, staging) = store()
        // Ask for 20 pages' placement, store 2 new ones (the rest are duplicates): the 18 reserved
        // but unused pages return at finish and must not count as allocated.
        let base = try put(store, staging, ids: [7])
        for i in 0..<20 { staging.fill(i, id: i < 2 ? UInt64(100 + i) : 7) }
        var placement: PageStore.Placement?
        var runs = RunBuilder()
        try store.ingest(staging.page(0), pageCount: 20, validBytesInLastPage: Page.size, wantedAhead: 20,
                         placement: &placement, into: &runs)
        store.finish(&placement)
        #expect(store.allocatedPagesPerSegment.reduce(0, +) == 3)
        store.release(runs.runs)
        store.release(base)
        #expect(store.allocatedPagesPerSegment.reduce(0, +) == 0)
        #expect(Set(backing.emptied).count == backing.emptied.count, "a segment emptied twice without refilling")
    }

    @Test func oneSegmentRegionsKeepNoCounts() throws {
        let (store, backing, staging) = store(pages: 32, segmentPages: 32)
        let runs = try put(store, staging, ids: [1, 2])
        store.release(runs)
        #expect(store.allocatedPagesPerSegment.isEmpty)
        #expect(backing.emptied.isEmpty)
    }
}
