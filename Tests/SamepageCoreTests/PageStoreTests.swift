import Testing
@testable import SamepageCore

/// A store over plain memory, with staging memory to ingest from.
private final class StoreFixture {
    let backing: MemoryBacking
    let budget: PageBudget
    let store: PageStore
    let staging: PageBuffer
    private var expectedPages: [UInt64: PageBuffer] = [:]

    init(pages: UInt32 = 64, budget: UInt64? = nil, maxPageSharing: UInt32 = 256, seed: UInt64 = 42,
         stagingPages: Int = 64) {
        backing = MemoryBacking(pageCount: pages)
        self.budget = PageBudget(limit: budget ?? UInt64(pages))
        store = PageStore(backing: backing, budget: self.budget, seed: seed, maxPageSharing: maxPageSharing)
        staging = PageBuffer(pages: stagingPages)
    }

    /// Ingests one object of the given contents, `chunk` pages an ingest call (one placement for
    /// the whole object, as the service does), then finishes the placement.
    func ingest(_ contents: [UInt64], chunk: Int? = nil,
                validBytesInLastPage: Int = Page.size) -> (runs: [PageRun], error: StoreError?) {
        precondition(contents.count <= staging.pageCount)
        for (i, id) in contents.enumerated() { staging.fill(i, id: id) }
        var placement: PageStore.Placement?
        var runs = RunBuilder()
        var error: StoreError?
        let chunk = max(1, chunk ?? contents.count)
        var done = 0
        while done < contents.count {
            let n = min(chunk, contents.count - done)
            let last = done + n == contents.count
            do {
                try store.ingest(staging.page(done), pageCount: n,
                                 validBytesInLastPage: last ? validBytesInLastPage : Page.size,
                                 wantedAhead: UInt64(contents.count - done), placement: &placement, into: &runs)
            } catch let e {
                error = e
                break
            }
            done += n
        }
        store.finish(&placement)
        #expect(placement == nil)
        return (runs.runs, error)
    }

    /// Ingests an object that must fit.
    func put(_ contents: [UInt64]) throws -> [PageRun] {
        let (runs, error) = ingest(contents)
        try #require(error == nil)
        return runs
    }

    /// Whether region page `page` holds content `id` (cut after `validBytes`).
    func holds(_ page: PageNumber, _ id: UInt64, validBytes: Int = Page.size) -> Bool {
        if validBytes < Page.size { return Content.matches(backing.page(page), id: id, validBytes: validBytes) }
        if expectedPages[id] == nil {
            let buffer = PageBuffer(pages: 1)
            buffer.fill(0, id: id)
            expectedPages[id] = buffer
        }
        return memcmpPage(backing.page(page), expectedPages[id]!.base)
    }

    /// Checks that `runs` hold `contents`: zero runs for content 0, region pages holding the rest.
    func expectContents(_ runs: [PageRun], _ contents: [UInt64], validBytesInLastPage: Int = Page.size,
                        sourceLocation: SourceLocation = #_sourceLocation) {
        let pages = expand(runs)
        #expect(pages.count == contents.count, sourceLocation: sourceLocation)
        for (i, (page, id)) in zip(pages, contents).enumerated() {
            let valid = i == contents.count - 1 ? validBytesInLastPage : Page.size
            if let page {
                #expect(holds(page, id, validBytes: valid),
                        "page \(i) (region page \(page)) does not hold content \(id)", sourceLocation: sourceLocation)
            } else {
                #expect(id == 0 || valid == 0, "page \(i) is a zero run but content \(id)", sourceLocation: sourceLocation)
            }
        }
    }
}

@Suite("PageStore")
struct PageStoreTests {
    @Test func distinctPagesAreStoredOnce() throws {
        let f = StoreFixture()
        let runs = try f.put([1, 2, 3])
        #expect(runs == [PageRun(start: 0, count: 3)])
        f.expectContents(runs, [1, 2, 3])
        #expect(f.store.counters == makeCounters(unshared: 3))
        #expect(f.store.pagesInUse == 3)
        #expect(f.budget.used == 3)
        for p in 0..<3 as Range<PageNumber> { #expect(f.store.owners(of: p) == 1) }
        #expect(f.store.owners(of: 3) == 0)
        #expect(f.store.owners(of: 1_000_000) == 0)
        f.store._checkInvariants()
    }

    @Test func identicalPagesInOneObjectShare() throws {
        let f = StoreFixture()
        let runs = try f.put([1, 1, 1, 2])
        #expect(runs == [PageRun(start: 0, count: 1), PageRun(start: 0, count: 1), PageRun(start: 0, count: 2)])
        f.expectContents(runs, [1, 1, 1, 2])
        #expect(f.store.owners(of: 0) == 3)
        #expect(f.store.owners(of: 1) == 1)
        // Page 0 serves 3 users: shared 1, sharing 2; page 1 unshared.
        #expect(f.store.counters == makeCounters(shared: 1, sharing: 2, unshared: 1))
        #expect(f.store.pagesInUse == 2)
        #expect(f.budget.used == 2)
        f.store._checkInvariants()
    }

    @Test func identicalPagesAcrossObjectsShare() throws {
        let f = StoreFixture()
        let a = try f.put([1, 2, 3])
        let b = try f.put([3, 2, 4])
        #expect(a == [PageRun(start: 0, count: 3)])
        #expect(b == [PageRun(start: 2, count: 1), PageRun(start: 1, count: 1), PageRun(start: 3, count: 1)])
        f.expectContents(b, [3, 2, 4])
        #expect(f.store.counters == makeCounters(shared: 2, sharing: 2, unshared: 2))
        f.store._checkInvariants()

        f.store.release(a)
        #expect(f.store.counters == makeCounters(unshared: 3))
        #expect(f.backing.released == [ExtentAllocator.Extent(start: 0, count: 1)])
        f.expectContents(b, [3, 2, 4])
        f.store._checkInvariants()
        f.store.release(b)
        #expect(f.store.counters == StoreCounters())
        #expect(f.budget.used == 0)
        f.store._checkInvariants()
    }

    @Test func pagesDifferingInTheLastByteDoNotShare() throws {
        let f = StoreFixture()
        f.staging.fill(0, id: 5)
        f.staging.fill(1, id: 5)
        f.staging.page(1).storeBytes(of: 0xA5 as UInt8, toByteOffset: Page.size - 1, as: UInt8.self)
        var placement: PageStore.Placement?
        var runs = RunBuilder()
        try f.store.ingest(f.staging.base, pageCount: 2, wantedAhead: 2, placement: &placement, into: &runs)
        f.store.finish(&placement)
        #expect(runs.runs == [PageRun(start: 0, count: 2)])
        #expect(f.store.counters == makeCounters(unshared: 2))
        #expect(memcmpPage(f.backing.page(1), f.staging.page(1)))
        f.store._checkInvariants()
    }

    @Test func zeroPagesAreNeverStored() throws {
        let f = StoreFixture()
        let runs = try f.put([0, 1, 0, 0])
        #expect(runs == [PageRun(start: .max, count: 1), PageRun(start: 0, count: 1), PageRun(start: .max, count: 2)])
        #expect(f.store.counters == makeCounters(unshared: 1, zero: 3))
        #expect(f.store.pagesInUse == 1)
        #expect(f.budget.used == 1)
        f.store._checkInvariants()

        let zeros = try f.put([0, 0])
        #expect(zeros == [PageRun(start: .max, count: 2)])
        #expect(f.store.counters.zeroPages == 5)
        #expect(f.budget.used == 1)

        f.backing.released.removeAll()  // what finish gave back of the placements
        f.store.release(runs)
        #expect(f.store.counters == makeCounters(zero: 2))
        f.store.release(zeros)
        #expect(f.store.counters == StoreCounters())
        #expect(f.backing.released == [ExtentAllocator.Extent(start: 0, count: 1)])
        f.store._checkInvariants()
    }

    @Test func seedsDoNotChangeWhatIsShared() throws {
        for seed in [0, 1, UInt64.max] {
            let f = StoreFixture(seed: seed)
            #expect(f.store.hasher.seed == seed)
            let runs = try f.put([0, 7, 7, 0])
            #expect(runs == [PageRun(start: .max, count: 1), PageRun(start: 0, count: 1),
                             PageRun(start: 0, count: 1), PageRun(start: .max, count: 1)])
            #expect(f.store.counters == makeCounters(shared: 1, sharing: 1, zero: 2))
            f.store._checkInvariants()
        }
    }

    @Test func newPagesOfOneIngestAreOneRun() throws {
        let f = StoreFixture()
        let runs = try f.put(Array(1...20))
        #expect(runs == [PageRun(start: 0, count: 20)])
        f.expectContents(runs, Array(1...20))
        f.store._checkInvariants()
    }

    @Test func newPagesStayContiguousAcrossIngestCalls() throws {
        let f = StoreFixture()
        let hole = try f.put([100]) // page 0
        _ = try f.put([101]) // page 1
        f.store.release(hole) // a one-page hole that a page-at-a-time placement would take
        // 12 new pages, in chunks of 5, 5, 2: one placement reserved for all of them.
        let (runs, error) = f.ingest(Array(1...12), chunk: 5)
        #expect(error == nil)
        #expect(runs == [PageRun(start: 2, count: 12)])
        f.expectContents(runs, Array(1...12))
        #expect(f.budget.used == 13)
        f.store._checkInvariants()
    }

    @Test func sharedAndZeroPagesDoNotBreakTheNewPagesRun() throws {
        let f = StoreFixture()
        _ = try f.put([50, 51]) // pages 0, 1
        let runs = try f.put([1, 50, 2, 0, 3, 51, 4])
        #expect(runs == [PageRun(start: 2, count: 1), PageRun(start: 0, count: 1), PageRun(start: 3, count: 1),
                         PageRun(start: .max, count: 1), PageRun(start: 4, count: 1), PageRun(start: 1, count: 1),
                         PageRun(start: 5, count: 1)])
        // The new pages 1, 2, 3, 4 went to region pages 2, 3, 4, 5: contiguous.
        f.expectContents(runs, [1, 50, 2, 0, 3, 51, 4])
        f.store._checkInvariants()
    }

    @Test func unusedPlacementIsGivenBack() throws {
        let f = StoreFixture(pages: 8)
        // 4 pages, of which only 2 are new: the placement reserved 4, finish returns 2.
        let runs = try f.put([1, 1, 2, 2])
        #expect(runs == [PageRun(start: 0, count: 1), PageRun(start: 0, count: 2), PageRun(start: 1, count: 1)])
        #expect(f.budget.used == 2)
        // All 6 remaining pages must be allocatable as one run.
        let next = try f.put(Array(10...15))
        #expect(next == [PageRun(start: 2, count: 6)])
        f.store._checkInvariants()
    }

    @Test func newObjectFillsAHoleThatFits() throws {
        let f = StoreFixture(pages: 32)
        let a = try f.put([1, 2, 3, 4])
        let b = try f.put([5, 6, 7, 8])
        let c = try f.put([9, 10, 11, 12])
        #expect([a, b, c] == [[PageRun(start: 0, count: 4)], [PageRun(start: 4, count: 4)], [PageRun(start: 8, count: 4)]])
        f.store.release(b)
        #expect(f.backing.released == [ExtentAllocator.Extent(start: 4, count: 4)])
        let d = try f.put([13, 14, 15, 16])
        #expect(d == [PageRun(start: 4, count: 4)])
        f.expectContents(d, [13, 14, 15, 16])
        f.expectContents(a, [1, 2, 3, 4])
        f.expectContents(c, [9, 10, 11, 12])
        f.store._checkInvariants()
    }

    @Test func objectLargerThanAnyHoleTakesTheLargestHolesInTurn() throws {
        let f = StoreFixture(pages: 12)
        let a = try f.put([1, 2, 3, 4])
        _ = try f.put([5, 6, 7, 8])
        let c = try f.put([9, 10, 11, 12])
        f.store.release(a)
        f.store.release(c)
        let d = try f.put([20, 21, 22, 23, 24, 25])
        #expect(d.count == 2)
        #expect(Set(d) == [PageRun(start: 0, count: 4), PageRun(start: 8, count: 2)]
                || Set(d) == [PageRun(start: 8, count: 4), PageRun(start: 0, count: 2)])
        #expect(d[0].count == 4)
        f.expectContents(d, [20, 21, 22, 23, 24, 25])
        #expect(f.budget.used == 10)
        f.store._checkInvariants()
    }

    @Test func releaseReturnsWholeRunsToTheBacking() throws {
        let f = StoreFixture()
        let a = try f.put([1, 2, 3, 4, 5, 6, 7, 8])
        let b = try f.put([4]) // shares page 3
        #expect(b == [PageRun(start: 3, count: 1)])
        f.store.release(a)
        // Page 3 stays: the rest goes back in two runs, not page by page.
        #expect(f.backing.released == [ExtentAllocator.Extent(start: 0, count: 3), ExtentAllocator.Extent(start: 4, count: 4)])
        #expect(f.store.pagesInUse == 1)
        #expect(f.budget.used == 1)
        #expect(f.store.owners(of: 3) == 1)
        f.expectContents(b, [4])
        for p in [0, 1, 2, 4, 5, 6, 7] as [PageNumber] {
            #expect(Content.isZero(f.backing.page(p)))
            #expect(f.store.owners(of: p) == 0)
        }
        f.store._checkInvariants()

        f.store.release(b)
        #expect(f.backing.released.last == ExtentAllocator.Extent(start: 3, count: 1))
        #expect(f.backing.releasedPages == 8)
        #expect(f.store.counters == StoreCounters())
        // The freed pages coalesced: a new 8-page object is one run again.
        let c = try f.put(Array(30..<38))
        #expect(c == [PageRun(start: 0, count: 8)])
        f.store._checkInvariants()
    }

    @Test func finishGivesBackPreparedPagesThatWereNotFilled() throws {
        let f = StoreFixture()
        // Three pages wanted, one of them a duplicate: the third prepared page is never filled.
        let a = try f.put([5, 6, 5])
        #expect(a == [PageRun(start: 0, count: 2), PageRun(start: 0, count: 1)])
        #expect(f.backing.released == [ExtentAllocator.Extent(start: 2, count: 1)])
        #expect(f.store.pagesInUse == 2)
        f.store._checkInvariants()
    }

    @Test func releaseCoalescesAcrossRunsAndZeroRuns() throws {
        let f = StoreFixture()
        let a = try f.put([1, 2, 0, 3, 4])
        #expect(a == [PageRun(start: 0, count: 2), PageRun(start: .max, count: 1), PageRun(start: 2, count: 2)])
        f.backing.released.removeAll()  // what finish gave back of the placement
        f.store.release(a)
        #expect(f.backing.released == [ExtentAllocator.Extent(start: 0, count: 4)])
        #expect(f.store.counters == StoreCounters())
        f.store._checkInvariants()
    }

    @Test func releaseOfAnObjectHoldingOnePageTwice() throws {
        let f = StoreFixture()
        let a = try f.put([9, 9, 8])
        #expect(f.store.owners(of: 0) == 2)
        f.backing.released.removeAll()  // what finish gave back of the placement
        f.store.release(a)
        #expect(f.store.counters == StoreCounters())
        #expect(f.backing.releasedPages == 2)
        #expect(f.budget.used == 0)
        f.store._checkInvariants()
    }

    @Test func releasingOneOwnerKeepsThePage() throws {
        let f = StoreFixture()
        let a = try f.put([1])
        let b = try f.put([1])
        let c = try f.put([1])
        #expect(f.store.counters == makeCounters(shared: 1, sharing: 2))
        f.store.release(b)
        #expect(f.store.counters == makeCounters(shared: 1, sharing: 1))
        #expect(f.backing.released.isEmpty)
        f.store.release(a)
        #expect(f.store.counters == makeCounters(unshared: 1))
        #expect(f.backing.released.isEmpty)
        f.expectContents(c, [1])
        f.store._checkInvariants()
        f.store.release(c)
        #expect(f.backing.released == [ExtentAllocator.Extent(start: 0, count: 1)])
        f.store._checkInvariants()
    }

    @Test func maxPageSharingBelowTwoIsTwo() {
        let f = StoreFixture(maxPageSharing: 1)
        #expect(f.store.maxPageSharing == 2)
        #expect(StoreFixture(maxPageSharing: 0).store.maxPageSharing == 2)
        #expect(StoreFixture(maxPageSharing: 7).store.maxPageSharing == 7)
    }

    @Test(arguments: [2 as UInt32, 3, 5], Array(1...13))
    func maxPageSharingChains(maxSharing: UInt32, copies n: Int) throws {
        let f = StoreFixture(maxPageSharing: maxSharing)
        let m = Int(maxSharing)
        var objects: [[PageRun]] = []
        for _ in 0..<n { objects.append(try f.put([77])) }
        f.store._checkInvariants()

        // n equal pages, at most m a copy: copies of m owners, then the rest.
        let owners = Array(repeating: m, count: n / m) + (n % m > 0 ? [n % m] : [])
        let pages = Set(objects.map { $0[0].start })
        #expect(pages.count == owners.count)
        #expect(pages.map { Int(f.store.owners(of: $0)) }.sorted() == owners.sorted())
        let chain = owners.count >= 2
        #expect(f.store.counters == makeCounters(
            shared: Int64(owners.filter { $0 >= 2 }.count),
            sharing: Int64(owners.filter { $0 >= 2 }.map { $0 - 1 }.reduce(0, +)),
            unshared: Int64(owners.filter { $0 == 1 }.count),
            chains: chain ? 1 : 0, dups: chain ? Int64(owners.count) : 0))

        // Release in a scrambled order; after each step the counters follow the owners.
        var rng = SplitMix64(seed: UInt64(n * 31 + m))
        objects.shuffle(using: &rng)
        while let object = objects.popLast() {
            f.store.release(object)
            f.store._checkInvariants()
            let live = pages.map { f.store.owners(of: $0) }.filter { $0 > 0 }
            #expect(live.reduce(0, +) == UInt32(objects.count))
            #expect(f.store.counters.stableNodeChains == (live.count >= 2 ? 1 : 0))
            #expect(f.store.counters.stableNodeDups == (live.count >= 2 ? Int64(live.count) : 0))
            #expect(f.store.pagesInUse == Int64(live.count))
        }
        #expect(f.store.counters == StoreCounters())
        #expect(f.budget.used == 0)
    }

    @Test func aCopyWithRoomIsReusedBeforeANewOneIsMade() throws {
        let f = StoreFixture(maxPageSharing: 2)
        let objects = try (0..<4).map { _ in try f.put([5]) } // two copies, full
        #expect(f.store.counters == makeCounters(shared: 2, sharing: 2, chains: 1, dups: 2))
        f.store.release(objects[0])
        let roomy = objects[0][0].start
        #expect(f.store.owners(of: roomy) == 1)
        #expect(f.store.counters == makeCounters(shared: 1, sharing: 1, unshared: 1, chains: 1, dups: 2))
        let again = try f.put([5])
        #expect(again == [PageRun(start: roomy, count: 1)])
        #expect(f.store.counters == makeCounters(shared: 2, sharing: 2, chains: 1, dups: 2))
        f.store._checkInvariants()
    }

    /// A content put many times makes a long chain of full copies under one tag. Its counts stay
    /// exact as it grows and as its copies are freed one by one, in any order (the free of a
    /// copy looks at two others at most, a share compares only copies with room).
    @Test func aLongChainIsCountedExactlyWhileItGrowsAndShrinks() throws {
        let f = StoreFixture(pages: 256, maxPageSharing: 2)
        var objects: [[PageRun]] = []
        for _ in 0..<200 { objects.append(try f.put([9])) }
        #expect(f.store.counters == makeCounters(shared: 100, sharing: 100, chains: 1, dups: 100))
        f.store._checkInvariants()
        var g = SplitMix64(seed: 11)
        objects.shuffle(using: &g)
        for (i, object) in objects.enumerated() {
            f.store.release(object)
            if i % 37 == 0 { f.store._checkInvariants() }
        }
        #expect(f.store.counters == makeCounters())
        #expect(f.store.pagesInUse == 0)
        f.store._checkInvariants()
    }

    @Test func chainsOfSeveralContentsAreCountedApart() throws {
        let f = StoreFixture(maxPageSharing: 2)
        _ = try f.put([1, 1, 1, 2, 2, 2, 2, 2, 3])
        // content 1: copies of 2 and 1; content 2: 2, 2, 1; content 3: 1.
        #expect(f.store.counters == makeCounters(shared: 3, sharing: 3, unshared: 3, chains: 2, dups: 5))
        #expect(f.store.pagesInUse == 6)
        f.store._checkInvariants()
    }

    @Test func budgetExhaustionIsRegionFullAndKeepsIngestedPages() throws {
        let f = StoreFixture(pages: 16, budget: 4)
        let (runs, error) = f.ingest([1, 2, 3, 4, 5, 6])
        #expect(error == .regionFull)
        #expect(runs == [PageRun(start: 0, count: 4)])
        f.expectContents(runs, [1, 2, 3, 4], validBytesInLastPage: Page.size)
        #expect(f.store.pagesInUse == 4)
        #expect(f.budget.used == 4)
        #expect(f.store.counters == makeCounters(unshared: 4))
        f.store._checkInvariants()

        // Full, but sharing and zero pages need no new page.
        let more = try f.put([2, 0, 4])
        #expect(more == [PageRun(start: 1, count: 1), PageRun(start: .max, count: 1), PageRun(start: 3, count: 1)])
        #expect(f.budget.used == 4)
        #expect(f.ingest([99]).error == .regionFull)
        #expect(f.budget.used == 4)
        f.store._checkInvariants()

        f.store.release(more)
        f.store.release(runs)
        #expect(f.budget.used == 0)
        #expect(f.store.counters == StoreCounters())
        #expect(try f.put([7, 8, 9, 10]) == [PageRun(start: 0, count: 4)])
        f.store._checkInvariants()
    }

    @Test func regionExhaustionIsRegionFullAndGivesTheBudgetBack() throws {
        let f = StoreFixture(pages: 4, budget: 100)
        let (runs, error) = f.ingest([1, 2, 3, 4, 5], chunk: 2)
        #expect(error == .regionFull)
        #expect(runs == [PageRun(start: 0, count: 4)])
        #expect(f.budget.used == 4)
        f.store._checkInvariants()
        f.store.release(runs)
        #expect(f.budget.used == 0)
        f.store._checkInvariants()
    }

    @Test func budgetIsSharedBetweenStores() throws {
        let budget = PageBudget(limit: 3)
        let b1 = MemoryBacking(pageCount: 8), b2 = MemoryBacking(pageCount: 8)
        let s1 = PageStore(backing: b1, budget: budget, seed: 1)
        let s2 = PageStore(backing: b2, budget: budget, seed: 2)
        let staging = PageBuffer(pages: 2)
        staging.fill(0, id: 1)
        staging.fill(1, id: 2)
        var p: PageStore.Placement?
        var r1 = RunBuilder(), r2 = RunBuilder()
        try s1.ingest(staging.base, pageCount: 2, wantedAhead: 2, placement: &p, into: &r1)
        s1.finish(&p)
        #expect(budget.used == 2)
        #expect(throws: StoreError.regionFull) {
            try s2.ingest(staging.base, pageCount: 2, wantedAhead: 2, placement: &p, into: &r2)
        }
        s2.finish(&p)
        // The same content in another store is not shared: s2 got one page before the budget ran out.
        #expect(r2.runs == [PageRun(start: 0, count: 1)])
        #expect(s2.counters == makeCounters(unshared: 1))
        #expect(budget.used == 3)
        s1.release(r1.runs)
        s2.release(r2.runs)
        #expect(budget.used == 0)
        s1._checkInvariants()
        s2._checkInvariants()
    }

    @Test func partialLastPageIsZeroFilled() throws {
        let f = StoreFixture()
        // Content 3 everywhere in staging; only 100 bytes of the last page count.
        let (runs, error) = f.ingest([3, 3], validBytesInLastPage: 100)
        #expect(error == nil)
        #expect(runs == [PageRun(start: 0, count: 2)]) // the cut page differs from the full one
        #expect(Content.matches(f.backing.page(0), id: 3))
        #expect(Content.matches(f.backing.page(1), id: 3, validBytes: 100))
        // Staging is untouched.
        #expect(Content.matches(f.staging.page(1), id: 3))
        f.store._checkInvariants()
    }

    @Test func partialPagesWithDifferentTailsShare() throws {
        let f = StoreFixture()
        let a = f.ingest([4], validBytesInLastPage: 8)
        // Same first 8 bytes (the word holding the content number), other garbage after it.
        f.staging.fill(0, id: 4)
        for i in 8..<Page.size { f.staging.page(0).storeBytes(of: UInt8(truncatingIfNeeded: i), toByteOffset: i, as: UInt8.self) }
        var placement: PageStore.Placement?
        var runs = RunBuilder()
        try f.store.ingest(f.staging.base, pageCount: 1, validBytesInLastPage: 8, wantedAhead: 1,
                           placement: &placement, into: &runs)
        f.store.finish(&placement)
        #expect(a.runs == [PageRun(start: 0, count: 1)])
        #expect(runs.runs == a.runs)
        #expect(f.store.counters == makeCounters(shared: 1, sharing: 1))
        f.store._checkInvariants()
    }

    @Test func partialPageWhoseValidBytesAreZeroIsAZeroPage() throws {
        let f = StoreFixture()
        f.staging.fill(0, id: 0)
        f.staging.fill(1, id: 9)
        f.staging.page(1).storeBytes(of: 0 as UInt64, toByteOffset: 0, as: UInt64.self)
        // Page 1 has zeros in its first 8 bytes and garbage after; 8 valid bytes -> zero page.
        var placement: PageStore.Placement?
        var runs = RunBuilder()
        try f.store.ingest(f.staging.base, pageCount: 2, validBytesInLastPage: 8, wantedAhead: 2,
                           placement: &placement, into: &runs)
        f.store.finish(&placement)
        #expect(runs.runs == [PageRun(start: .max, count: 2)])
        #expect(f.store.counters == makeCounters(zero: 2))
        #expect(f.budget.used == 0)
        f.store._checkInvariants()
    }

    @Test func newPagesArePreparedAheadInBatches() throws {
        let f = StoreFixture(pages: 256, stagingPages: 100)
        let batch = PageStore.prepareAhead
        #expect(batch > 1)
        let runs = try f.put((1...100).map { UInt64($0) })
        #expect(runs == [PageRun(start: 0, count: 100)])
        // One call a batch, never past the placement.
        #expect(f.backing.prepared == [ExtentAllocator.Extent(start: 0, count: min(batch, 100))]
                + (batch < 100 ? [ExtentAllocator.Extent(start: batch, count: 100 - batch)] : []))

        // Duplicates and zero pages prepare nothing; one new page prepares from its own page on.
        let before = f.backing.prepared.count
        _ = try f.put([1, 2, 0, 3])
        #expect(f.backing.prepared.count == before)
        // The placement is reserved at the first new page, for it and the pages after it.
        _ = try f.put([1, 500, 2])
        #expect(f.backing.prepared.count == before + 1)
        #expect(f.backing.prepared.last == ExtentAllocator.Extent(start: 100, count: min(batch, 2)))
        f.store._checkInvariants()
    }

    @Test func everyNewPageWasPrepared() throws {
        let f = StoreFixture(pages: 300, stagingPages: 200)
        var rng = SplitMix64(seed: 17)
        var objects: [[PageRun]] = []
        for _ in 0..<30 {
            let contents = (0..<Int.random(in: 1...150, using: &rng)).map { _ in UInt64.random(in: 0...400, using: &rng) }
            let (runs, error) = f.ingest(contents, chunk: Int.random(in: 1...70, using: &rng))
            if error != nil { f.store.release(runs); continue }
            objects.append(runs)
            if objects.count > 3 { f.store.release(objects.removeFirst()) }
        }
        var covered = Set<PageNumber>()
        for e in f.backing.prepared { for p in e.start..<(e.start + e.count) { covered.insert(p) } }
        for runs in objects { for case let p? in expand(runs) { #expect(covered.contains(p), "page \(p) never prepared") } }
        f.store._checkInvariants()
    }

    @Test func metadataBytesGrowWithTheStore() throws {
        let f = StoreFixture()
        let before = f.store.metadataBytes
        #expect(before >= Int64(StableTree().memoryBytes))
        _ = try f.put(Array(1...10))
        #expect(f.store.metadataBytes >= before + 10 * 4, "an owner count per page")
    }

    /// Random objects of a few recurring contents, ingested and released in random order; a model
    /// of owners says what the counters, the region and the sharing decisions must be.
    @Test(arguments: [1 as UInt64, 2, 3, 4])
    func randomizedAgainstAModel(seed: UInt64) throws {
        let maxSharing = 3
        let f = StoreFixture(pages: 48, budget: 40, maxPageSharing: UInt32(maxSharing), seed: seed)
        var rng = SplitMix64(seed: seed)
        var live: [(runs: [PageRun], contents: [UInt64])] = []
        var regionFulls = 0, shares = 0

        func ownersModel() -> [PageNumber: Int] {
            var owners: [PageNumber: Int] = [:]
            for object in live { for case let p? in expand(object.runs) { owners[p, default: 0] += 1 } }
            return owners
        }

        func checkState(_ step: Int) {
            f.store._checkInvariants()
            let owners = ownersModel()
            var contentOf: [PageNumber: UInt64] = [:]
            var zero: Int64 = 0
            for object in live {
                f.expectContents(object.runs, object.contents)
                for (page, id) in zip(expand(object.runs), object.contents) {
                    if let page { contentOf[page] = id } else { zero += 1 }
                }
            }
            for p in 0..<f.backing.pageCount {
                #expect(Int(f.store.owners(of: p)) == owners[p] ?? 0, "step \(step) page \(p)")
            }
            #expect(owners.values.allSatisfy { $0 <= maxSharing })
            var copies: [UInt64: Int] = [:]
            for (_, id) in contentOf { copies[id, default: 0] += 1 }
            let chains = copies.values.filter { $0 >= 2 }
            #expect(f.store.counters == makeCounters(
                shared: Int64(owners.values.filter { $0 >= 2 }.count),
                sharing: Int64(owners.values.filter { $0 >= 2 }.map { $0 - 1 }.reduce(0, +)),
                unshared: Int64(owners.values.filter { $0 == 1 }.count),
                chains: Int64(chains.count), dups: Int64(chains.reduce(0, +)), zero: zero), "step \(step)")
            #expect(f.budget.used == UInt64(owners.count))
            #expect(f.store.pagesInUse == Int64(owners.count))
        }

        for step in 0..<400 {
            if live.isEmpty || Int.random(in: 0..<100, using: &rng) < 60 {
                let count = Int.random(in: 1...8, using: &rng)
                let contents = (0..<count).map { _ in
                    Int.random(in: 0..<10, using: &rng) == 0 ? 0 : UInt64.random(in: 1...12, using: &rng)
                }
                let before = f.store.counters
                let usedBefore = f.budget.used
                var running = ownersModel()
                var contentOf: [PageNumber: UInt64] = [:]
                for object in live {
                    for case let (p?, id) in zip(expand(object.runs), object.contents) { contentOf[p] = id }
                }
                let (runs, error) = f.ingest(contents, chunk: Int.random(in: 1...4, using: &rng))
                // Replay the sharing decisions: an existing copy with room is used, else a fresh page.
                for (page, id) in zip(expand(runs), contents) {
                    guard let page else { #expect(id == 0); continue }
                    let withRoom = contentOf.filter { $0.value == id && running[$0.key, default: 0] < maxSharing }.map(\.key)
                    if withRoom.isEmpty {
                        #expect(running[page] == nil, "step \(step): page \(page) reused although not free")
                        contentOf[page] = id
                    } else {
                        #expect(withRoom.contains(page), "step \(step): new copy although one had room")
                        shares += 1
                    }
                    running[page, default: 0] += 1
                }
                if let error {
                    #expect(error == .regionFull)
                    #expect(expand(runs).count < contents.count)
                    regionFulls += 1
                    // Abandon the object, as the service does: usage goes back to what it was.
                    f.store.release(runs)
                    #expect(f.store.counters == before)
                    #expect(f.budget.used == usedBefore)
                } else {
                    live.append((runs, contents))
                }
            } else {
                let object = live.remove(at: Int.random(in: 0..<live.count, using: &rng))
                f.store.release(object.runs)
            }
            checkState(step)
        }
        for object in live { f.store.release(object.runs) }
        live.removeAll()
        checkState(-1)
        #expect(f.store.counters == StoreCounters())
        #expect(f.backing.releasedPages > 0)
        // The run exercised what it is meant to.
        #expect(regionFulls > 0)
        #expect(shares > 100)
    }
}
