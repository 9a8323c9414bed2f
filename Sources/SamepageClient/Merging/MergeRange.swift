/// One range of mergeable memory and the scanner's state for each of its pages: what KSM keeps
/// in its rmap items (17 bytes a page here).
final class MergeRange {
    enum State: UInt8 {
        case normal
        /// Mapped from region page `region[i]`; this process holds a reference on it.
        case merged
        /// Discarded with MADV_DONTNEED: reads the kernel's zero page.
        case zero
    }

    let start: UInt
    let pageCount: Int
    /// Whether the kernel tells which pages were written (WriteTracker).
    var tracksWrites = false
    /// The page's digest when a scan last read it (KSM's checksum is its low half); `unseen`
    /// (never seen resident); or `seen`: resident, but changed since it was last read (written,
    /// or its merge or discard ended), so its digest is not known.
    var digest: [UInt64]
    static let unseen: UInt64 = 0
    static let seen: UInt64 = 1
    var state: [State]
    var region: [PageNumberValue]
    /// smart_scan: consecutive scans without a merge, and scans still to skip.
    var misses: [UInt8]
    var skip: [UInt8]
    /// Whether the page is filed in the server's unstable tree (under `digest`): it stays filed,
    /// and is not sent again, until a scan sees it changed or gone and withdraws it.
    var filed: [Bool]
    /// Hot slices (see MergeEngine.restIfHot), per slice of `MergeEngine.slicePages` pages: when
    /// the current run of walks that found it written began, and the last of them; rests in a
    /// row; until when it rests, unarmed and unread; and whether its next walk comes out of a
    /// rest (it re-arms, and judges nothing).
    var sliceHotSince: [ContinuousClock.Instant?]
    var sliceWrittenAt: [ContinuousClock.Instant?]
    var sliceHeat: [UInt8]
    var sliceRestsUntil: [ContinuousClock.Instant?]
    var sliceWakes: [Bool]

    typealias PageNumberValue = UInt32

    /// The state kept per page: digest, state, region page, misses, skip, filed.
    static let bytesPerPage = 8 + 1 + 4 + 1 + 1 + 1

    init(start: UInt, pageCount: Int) {
        self.start = start
        self.pageCount = pageCount
        digest = Array(repeating: Self.unseen, count: pageCount)
        state = Array(repeating: .normal, count: pageCount)
        region = Array(repeating: 0, count: pageCount)
        misses = Array(repeating: 0, count: pageCount)
        skip = Array(repeating: 0, count: pageCount)
        filed = Array(repeating: false, count: pageCount)
        let slices = (pageCount + MergeEngine.slicePages - 1) / MergeEngine.slicePages
        sliceHotSince = Array(repeating: nil, count: slices)
        sliceWrittenAt = Array(repeating: nil, count: slices)
        sliceHeat = Array(repeating: 0, count: slices)
        sliceRestsUntil = Array(repeating: nil, count: slices)
        sliceWakes = Array(repeating: false, count: slices)
    }

    /// Forgets which slices were hot (their pages are walked again from the next scan on).
    func coolSlices() {
        for s in sliceHeat.indices {
            sliceHeat[s] = 0
            sliceHotSince[s] = nil
            sliceWrittenAt[s] = nil
            sliceWakes[s] = sliceRestsUntil[s] != nil || sliceWakes[s]
            sliceRestsUntil[s] = nil
        }
    }

    var end: UInt { start + UInt(pageCount) * 4096 }

    func address(_ index: Int) -> UInt { start + UInt(index) * 4096 }

    func index(of address: UInt) -> Int? {
        address >= start && address < end ? Int((address - start) / 4096) : nil
    }

    /// A copy of pages [from, to) as a range of its own (for splitting on unmerge).
    func slice(_ from: Int, _ to: Int) -> MergeRange {
        let piece = MergeRange(start: address(from), pageCount: to - from)
        piece.tracksWrites = tracksWrites
        piece.digest = Array(digest[from..<to])
        piece.state = Array(state[from..<to])
        piece.region = Array(region[from..<to])
        piece.misses = Array(misses[from..<to])
        piece.skip = Array(skip[from..<to])
        piece.filed = Array(filed[from..<to])
        return piece
    }
}
