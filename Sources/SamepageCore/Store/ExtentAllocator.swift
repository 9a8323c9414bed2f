/// Hands out contiguous extents of region pages and takes them back, coalescing neighbours.
///
/// Placement is the point (design.md section 1): the new pages of one submission should sit
/// next to each other, so that a client later maps them with one `mmap` and one VMA. So the
/// allocator is asked for "up to n pages", and gives the largest extent it can up to n: a whole
/// fitting extent if one exists, otherwise the largest it has. Free extents are kept in size
/// classes (powers of two), so both questions cost a few dictionary operations.
public struct ExtentAllocator: Sendable {
    public struct Extent: Equatable, Sendable {
        public var start: PageNumber
        public var count: UInt32
        public init(start: PageNumber, count: UInt32) {
            self.start = start
            self.count = count
        }
        public var end: UInt64 { UInt64(start) + UInt64(count) }
    }

    public let totalPages: UInt32
    public private(set) var freePages: UInt32
    private var lengthByStart: [PageNumber: UInt32] = [:]
    private var startByEnd: [UInt64: PageNumber] = [:]
    /// classes[k] holds the starts of free extents whose length is in [2^k, 2^(k+1)).
    private var classes: [Set<PageNumber>] = Array(repeating: [], count: 33)

    public init(totalPages: UInt32) {
        self.totalPages = totalPages
        self.freePages = 0
        if totalPages > 0 { insertFree(Extent(start: 0, count: totalPages)) }
    }

    public var usedPages: UInt32 { totalPages - freePages }
    public var freeExtentCount: Int { lengthByStart.count }

    /// The largest extent of at most `pages` pages, or nil when nothing is free.
    public mutating func allocate(upTo pages: UInt32) -> Extent? {
        precondition(pages > 0)
        guard let chosen = findFitting(pages) ?? findLargest() else { return nil }
        removeFree(chosen)
        let taken = min(pages, chosen.count)
        if taken < chosen.count {
            insertFree(Extent(start: chosen.start + taken, count: chosen.count - taken))
        }
        return Extent(start: chosen.start, count: taken)
    }

    /// Gives pages back. Freeing an extent whose first page is already free traps (a caller bug);
    /// a partly overlapping free is not detected here, and the store never issues one.
    public mutating func free(_ extent: Extent) {
        precondition(extent.count > 0 && extent.end <= UInt64(totalPages))
        var merged = extent
        if let leftStart = startByEnd[UInt64(extent.start)] {
            let left = Extent(start: leftStart, count: lengthByStart[leftStart]!)
            removeFree(left)
            merged = Extent(start: left.start, count: left.count + merged.count)
        }
        if let rightCount = lengthByStart[PageNumber(truncatingIfNeeded: extent.end)], extent.end < UInt64(totalPages) {
            let right = Extent(start: PageNumber(extent.end), count: rightCount)
            removeFree(right)
            merged = Extent(start: merged.start, count: merged.count + right.count)
        }
        insertFree(merged)
    }

    private func sizeClass(_ count: UInt32) -> Int { 31 - count.leadingZeroBitCount }

    private func findFitting(_ pages: UInt32) -> Extent? {
        let exactClass = sizeClass(pages)
        // Any extent in a class above the one of `pages` is long enough.
        let firstSure = pages.nonzeroBitCount == 1 ? exactClass : exactClass + 1
        if firstSure <= 32 {
            for k in firstSure...32 where !classes[k].isEmpty {
                let start = classes[k].first!
                return Extent(start: start, count: lengthByStart[start]!)
            }
        }
        for start in classes[exactClass] where lengthByStart[start]! >= pages {
            return Extent(start: start, count: lengthByStart[start]!)
        }
        return nil
    }

    private func findLargest() -> Extent? {
        for k in stride(from: 32, through: 0, by: -1) where !classes[k].isEmpty {
            let best = classes[k].max { lengthByStart[$0]! < lengthByStart[$1]! }!
            return Extent(start: best, count: lengthByStart[best]!)
        }
        return nil
    }

    private mutating func insertFree(_ e: Extent) {
        precondition(lengthByStart[e.start] == nil, "double free of page \(e.start)")
        lengthByStart[e.start] = e.count
        startByEnd[e.end] = e.start
        classes[sizeClass(e.count)].insert(e.start)
        freePages += e.count
    }

    private mutating func removeFree(_ e: Extent) {
        lengthByStart[e.start] = nil
        startByEnd[e.end] = nil
        classes[sizeClass(e.count)].remove(e.start)
        freePages -= e.count
    }

    /// Checks that free extents do not overlap or touch (they would have been coalesced), and
    /// that the counters agree with them. Debug builds and tests only.
    public func _checkInvariants() {
        let extents = lengthByStart.map { Extent(start: $0.key, count: $0.value) }.sorted { $0.start < $1.start }
        var total: UInt32 = 0
        for (i, e) in extents.enumerated() {
            precondition(e.count > 0)
            precondition(startByEnd[e.end] == e.start)
            precondition(classes[sizeClass(e.count)].contains(e.start))
            if i > 0 { precondition(extents[i - 1].end < UInt64(e.start), "free extents touch or overlap") }
            total += e.count
        }
        precondition(total == freePages)
        precondition(classes.reduce(0) { $0 + $1.count } == extents.count)
    }
}
