import Testing
@testable import SamepageCore

private typealias Extent = ExtentAllocator.Extent

@Suite("ExtentAllocator")
struct ExtentAllocatorTests {
    /// An allocator of `total` pages whose free extents are exactly `free`.
    private func allocator(total: UInt32, free: [Extent]) -> ExtentAllocator {
        var a = ExtentAllocator(totalPages: total)
        #expect(a.allocate(upTo: total) == Extent(start: 0, count: total))
        for e in free { a.free(e) }
        a._checkInvariants()
        return a
    }

    @Test func freshAllocatorIsOneFreeExtent() {
        let a = ExtentAllocator(totalPages: 100)
        #expect(a.totalPages == 100)
        #expect(a.freePages == 100)
        #expect(a.usedPages == 0)
        #expect(a.freeExtentCount == 1)
        a._checkInvariants()
    }

    @Test func consecutiveAllocationsAreContiguousAndInOrder() {
        var a = ExtentAllocator(totalPages: 100)
        #expect(a.allocate(upTo: 10) == Extent(start: 0, count: 10))
        #expect(a.allocate(upTo: 10) == Extent(start: 10, count: 10))
        #expect(a.allocate(upTo: 1) == Extent(start: 20, count: 1))
        #expect(a.freePages == 79)
        #expect(a.usedPages == 21)
        #expect(a.freeExtentCount == 1)
        a._checkInvariants()
    }

    @Test func extentEnd() {
        #expect(Extent(start: 5, count: 3).end == 8)
        #expect(Extent(start: .max, count: .max).end == UInt64(UInt32.max) * 2)
    }

    @Test func requestLargerThanEverythingGetsTheLargestExtent() {
        var a = ExtentAllocator(totalPages: 16)
        #expect(a.allocate(upTo: 1000) == Extent(start: 0, count: 16))
        #expect(a.freePages == 0)
        a._checkInvariants()
    }

    @Test func fittingExtentIsPreferredOverLargerRequestSplit() {
        // Free: [0,3) [10,15) [20,22)
        var a = allocator(total: 30, free: [Extent(start: 0, count: 3), Extent(start: 10, count: 5),
                                             Extent(start: 20, count: 2)])
        #expect(a.freePages == 10)
        #expect(a.freeExtentCount == 3)
        // 4 pages fit only in [10,15).
        #expect(a.allocate(upTo: 4) == Extent(start: 10, count: 4))
        a._checkInvariants()
        #expect(a.freeExtentCount == 3) // [0,3) [14,15) [20,22)
        #expect(a.freePages == 6)
    }

    @Test func noFitReturnsTheLargestExtent() {
        var a = allocator(total: 30, free: [Extent(start: 0, count: 3), Extent(start: 10, count: 5),
                                             Extent(start: 20, count: 2)])
        #expect(a.allocate(upTo: 10) == Extent(start: 10, count: 5))
        #expect(a.allocate(upTo: 10) == Extent(start: 0, count: 3))
        #expect(a.allocate(upTo: 10) == Extent(start: 20, count: 2))
        #expect(a.allocate(upTo: 10) == nil)
        a._checkInvariants()
    }

    @Test func largestWithinOneSizeClassIsFound() {
        // 5, 7 and 6 pages are all in size class 2 ([4, 8)); the largest is 7.
        var a = allocator(total: 40, free: [Extent(start: 0, count: 5), Extent(start: 10, count: 7),
                                             Extent(start: 20, count: 6)])
        #expect(a.allocate(upTo: 30) == Extent(start: 10, count: 7))
        #expect(a.allocate(upTo: 30) == Extent(start: 20, count: 6))
        #expect(a.allocate(upTo: 30) == Extent(start: 0, count: 5))
        #expect(a.allocate(upTo: 30) == nil)
    }

    @Test func fitWithinTheExactSizeClassIsFound() {
        // 6 pages wanted; 5 and 7 are both in class 2; only 7 fits.
        var a = allocator(total: 40, free: [Extent(start: 0, count: 5), Extent(start: 10, count: 7)])
        #expect(a.allocate(upTo: 6) == Extent(start: 10, count: 6))
        a._checkInvariants()
        #expect(a.freePages == 6)
    }

    @Test func exhaustingReturnsNil() {
        var a = ExtentAllocator(totalPages: 8)
        for i in 0..<8 {
            #expect(a.allocate(upTo: 1) == Extent(start: PageNumber(i), count: 1))
        }
        #expect(a.freePages == 0)
        #expect(a.usedPages == 8)
        #expect(a.freeExtentCount == 0)
        #expect(a.allocate(upTo: 1) == nil)
        #expect(a.allocate(upTo: 100) == nil)
        a._checkInvariants()
    }

    @Test func emptyAllocatorHasNothing() {
        var a = ExtentAllocator(totalPages: 0)
        #expect(a.freePages == 0)
        #expect(a.allocate(upTo: 1) == nil)
        a._checkInvariants()
    }

    @Test func freeCoalescesWithLeftNeighbour() {
        var a = ExtentAllocator(totalPages: 16)
        let x = a.allocate(upTo: 4)!, y = a.allocate(upTo: 4)!, z = a.allocate(upTo: 4)!
        #expect([x, y, z] == [Extent(start: 0, count: 4), Extent(start: 4, count: 4), Extent(start: 8, count: 4)])
        a.free(x)
        #expect(a.freeExtentCount == 2) // [0,4) [12,16)
        a.free(y)
        a._checkInvariants()
        #expect(a.freeExtentCount == 2) // [0,8) [12,16)
        #expect(a.freePages == 12)
        #expect(a.allocate(upTo: 8) == Extent(start: 0, count: 8))
    }

    @Test func freeCoalescesWithRightNeighbour() {
        var a = ExtentAllocator(totalPages: 16)
        let x = a.allocate(upTo: 4)!, y = a.allocate(upTo: 4)!
        _ = a.allocate(upTo: 8)
        a.free(y)
        #expect(a.freeExtentCount == 1)
        a.free(x)
        a._checkInvariants()
        #expect(a.freeExtentCount == 1) // [0,8)
        #expect(a.allocate(upTo: 8) == Extent(start: 0, count: 8))
    }

    @Test func freeCoalescesWithBothNeighbours() {
        var a = ExtentAllocator(totalPages: 16)
        let x = a.allocate(upTo: 4)!, y = a.allocate(upTo: 4)!, z = a.allocate(upTo: 4)!
        a.free(x)
        a.free(z) // merges with the free tail [12,16)
        #expect(a.freeExtentCount == 2) // [0,4) [8,16)
        a.free(y)
        a._checkInvariants()
        #expect(a.freeExtentCount == 1)
        #expect(a.freePages == 16)
        #expect(a.allocate(upTo: 16) == Extent(start: 0, count: 16))
    }

    @Test func freeAtTheRegionEnd() {
        var a = ExtentAllocator(totalPages: 10)
        _ = a.allocate(upTo: 10)
        a.free(Extent(start: 9, count: 1))
        a.free(Extent(start: 0, count: 1))
        a._checkInvariants()
        #expect(a.freeExtentCount == 2)
        a.free(Extent(start: 1, count: 8))
        #expect(a.freeExtentCount == 1)
        #expect(a.freePages == 10)
        a._checkInvariants()
    }

    @Test func nonAdjacentFreesStaySeparate() {
        var a = ExtentAllocator(totalPages: 10)
        _ = a.allocate(upTo: 10)
        a.free(Extent(start: 2, count: 2))
        a.free(Extent(start: 5, count: 2))
        #expect(a.freeExtentCount == 2)
        // No extent of 3: one of the two equal largest ones.
        let got = a.allocate(upTo: 3)
        #expect(got == Extent(start: 2, count: 2) || got == Extent(start: 5, count: 2))
        #expect(a.freePages == 2)
        #expect(a.freeExtentCount == 1)
        a._checkInvariants()
    }

    @Test func fullUInt32Range() {
        var a = ExtentAllocator(totalPages: .max)
        #expect(a.allocate(upTo: 1) == Extent(start: 0, count: 1))
        #expect(a.allocate(upTo: .max) == Extent(start: 1, count: .max - 1))
        #expect(a.allocate(upTo: 1) == nil)
        a.free(Extent(start: .max - 1, count: 1))
        a.free(Extent(start: 0, count: .max - 1))
        #expect(a.freePages == .max)
        #expect(a.freeExtentCount == 1)
        a._checkInvariants()
    }

    /// Maximal runs of free pages in a shadow bitmap.
    private func freeRuns(_ used: [Bool]) -> [Extent] {
        var runs: [Extent] = []
        var i = 0
        while i < used.count {
            if used[i] { i += 1; continue }
            let start = i
            while i < used.count, !used[i] { i += 1 }
            runs.append(Extent(start: PageNumber(start), count: UInt32(i - start)))
        }
        return runs
    }

    @Test(arguments: [1 as UInt64, 2, 3, 0xDEAD_BEEF])
    func randomizedAgainstShadowBitmap(seed: UInt64) {
        let total = 300
        var rng = SplitMix64(seed: seed)
        var a = ExtentAllocator(totalPages: UInt32(total))
        var used = [Bool](repeating: false, count: total)
        var held: [Extent] = []

        for _ in 0..<4000 {
            let allocating = held.isEmpty || Int.random(in: 0..<100, using: &rng) < 55
            if allocating {
                let want = UInt32.random(in: 1...(Bool.random(using: &rng) ? 8 : 64), using: &rng)
                let runs = freeRuns(used)
                let largest = runs.map(\.count).max() ?? 0
                let got = a.allocate(upTo: want)
                guard let got else {
                    #expect(largest == 0, "nil although \(largest) pages are free in one run")
                    continue
                }
                #expect(got.count > 0)
                #expect(got.count == min(want, largest), "asked \(want), got \(got.count), largest free run \(largest)")
                #expect(got.end <= UInt64(total))
                for p in Int(got.start)..<Int(got.end) {
                    #expect(!used[p], "page \(p) handed out twice")
                    used[p] = true
                }
                held.append(got)
            } else {
                let index = Int.random(in: 0..<held.count, using: &rng)
                let e = held.remove(at: index)
                // Sometimes give back only the middle of what was taken.
                if e.count >= 3, Bool.random(using: &rng) {
                    let cut1 = UInt32.random(in: 1..<(e.count - 1), using: &rng)
                    let cut2 = UInt32.random(in: (cut1 + 1)..<e.count, using: &rng)
                    held.append(Extent(start: e.start, count: cut1))
                    held.append(Extent(start: e.start + cut2, count: e.count - cut2))
                    let middle = Extent(start: e.start + cut1, count: cut2 - cut1)
                    for p in Int(middle.start)..<Int(middle.end) { used[p] = false }
                    a.free(middle)
                } else {
                    for p in Int(e.start)..<Int(e.end) { used[p] = false }
                    a.free(e)
                }
            }
            a._checkInvariants()
            let shadowFree = used.filter { !$0 }.count
            #expect(Int(a.freePages) == shadowFree)
            #expect(Int(a.usedPages) == total - shadowFree)
            #expect(a.freeExtentCount == freeRuns(used).count, "free extents not coalesced")
        }
        // Give everything back: one extent again.
        for e in held { a.free(e) }
        a._checkInvariants()
        #expect(a.freePages == UInt32(total))
        #expect(a.freeExtentCount == 1)
    }
}
