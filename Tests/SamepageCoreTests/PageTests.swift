import Testing
@testable import SamepageCore

@Suite("Page and RunBuilder")
struct PageTests {
    @Test func constants() {
        #expect(Page.size == 4096)
        #expect(1 << Page.shift == Page.size)
        #expect(PageRun.zeroStart == .max)
        #expect(PageRun(start: .max, count: 3).isZero)
        #expect(!PageRun(start: 0, count: 3).isZero)
    }

    @Test(arguments: [
        (0 as UInt64, 0 as UInt64), (1, 1), (4095, 1), (4096, 1), (4097, 2), (8192, 2),
        (UInt64(UInt32.max) * 4096, UInt64(UInt32.max)),
        (UInt64.max - 4095, UInt64.max >> 12),
        (UInt64.max, (UInt64.max >> 12) + 1), // must not overflow: clients choose lengths
    ])
    func pageCountRoundsUp(_ bytes: UInt64, _ pages: UInt64) {
        #expect(Page.count(forBytes: bytes) == pages)
    }

    @Test func runBuilderMergesConsecutivePages() {
        var b = RunBuilder()
        for p in [5, 6, 7, 9, 10, 3] as [PageNumber] { b.append(p) }
        #expect(b.runs == [PageRun(start: 5, count: 3), PageRun(start: 9, count: 2), PageRun(start: 3, count: 1)])
        #expect(b.pageCount == 6)
    }

    @Test func runBuilderMergesZeroPagesButNotWithRegionPages() {
        var b = RunBuilder()
        b.appendZero()
        b.appendZero()
        b.append(0)
        b.appendZero()
        b.append(PageRun(start: PageRun.zeroStart, count: 5))
        b.append(1) // not consecutive with page 0: a zero run came between
        #expect(b.runs == [PageRun(start: .max, count: 2), PageRun(start: 0, count: 1),
                           PageRun(start: .max, count: 6), PageRun(start: 1, count: 1)])
        #expect(b.pageCount == 10)
    }

    @Test func runBuilderDoesNotMergeTheSamePageTwice() {
        var b = RunBuilder()
        b.append(4)
        b.append(4)
        b.append(PageRun(start: 5, count: 2))
        #expect(b.runs == [PageRun(start: 4, count: 1), PageRun(start: 4, count: 3)])
        #expect(b.pageCount == 4)
    }

    @Test func runBuilderDoesNotOverflowARunCount() {
        var b = RunBuilder()
        b.append(PageRun(start: PageRun.zeroStart, count: .max))
        b.appendZero()
        #expect(b.runs == [PageRun(start: .max, count: .max), PageRun(start: .max, count: 1)])
        #expect(b.pageCount == UInt64(UInt32.max) + 1)
    }

    @Test func runBuilderDoesNotMergeRegionRunIntoZeroStart() {
        // A region run ending right before page 0xFFFFFFFF must not absorb a zero page.
        var b = RunBuilder()
        b.append(PageRun(start: PageRun.zeroStart - 2, count: 2))
        b.appendZero()
        #expect(b.runs.count == 2)
        #expect(b.runs[1].isZero)
    }
}
