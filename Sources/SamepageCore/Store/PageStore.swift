// The page store of one dedup domain.
//
// How a page is stored
// --------------------
// A submitted page is hashed with XXH3 (seeded per domain) where the client put it, and:
//
//   1. if it is all zeros it is not stored at all: the object records a zero run, the client
//      maps anonymous zero-fill memory there, and `ksm_zero_pages` counts it;
//   2. otherwise the stable tree yields the region pages filed under the hash's tag, and each is
//      compared with the page by memcmp. The first equal page that still has fewer than
//      `max_page_sharing` owners gains an owner: that is a share. The client may rewrite its
//      page meanwhile; it fools only itself, since its object then holds the stored bytes;
//   3. otherwise the page is copied into a scratch page the server owns and hashed again there
//      (everything after looks only at the copy), then goes into a fresh region page, taken
//      from the submission's placement (a contiguous extent reserved for it), and is filed in
//      the tree. The backing may defer the write (RegionWriter: pwrite in runs).
//
// The hash only narrows the candidates. memcmp decides, always: a collision costs a compare.
//
// Owners and freeing
// ------------------
// `owners[p]` counts the references to page p: one per page of each object that holds it (and,
// later, one per merged page of mergeable memory). It is what KSM calls the mappers of a stable
// node, and the statistics follow from it exactly as in KSM:
//   owners == 1      the page is stored once, nothing shares it      -> pages_unshared
//   owners == n >= 2 one page serves n users                         -> pages_shared += 1,
//                                                                       pages_sharing += n - 1
// When owners drops to 0 the page leaves the tree, its memory is given back to the kernel (hole
// punch) and its number returns to the allocator. Callers guarantee that no client can still map
// a page whose last owner goes: mappings pin objects, and objects own pages.
//
// max_page_sharing
// ----------------
// As in KSM, a page takes at most `max_page_sharing` owners. A further equal page starts a new
// copy (a "dup"); contents with more than one copy are "chains". `stable_node_chains` counts
// chains and `stable_node_dups` counts the copies in them.
//
// Invariants (checked by _checkInvariants in tests)
//   - every page with owners > 0 is in the tree exactly once, under the tag of its content;
//   - no page in the tree is free in the allocator;
//   - pages_unshared + pages_shared == pages in use;
//   - pages_sharing == sum over pages of (owners - 1) for owners >= 2.

/// Statistics kept by a store, named as in KSM (see docs/statistics.md).
public struct StoreCounters: Equatable, Sendable {
    public var pagesShared: Int64 = 0
    public var pagesSharing: Int64 = 0
    public var pagesUnshared: Int64 = 0
    public var stableNodeChains: Int64 = 0
    public var stableNodeDups: Int64 = 0
    public var zeroPages: Int64 = 0
    public init() {}
}

public enum StoreError: Error, Equatable, Sendable {
    /// No region page is left (the domain's address space, or the server-wide budget).
    case regionFull
}

public final class PageStore {
    public let hasher: PageHasher
    public let backing: any RegionBacking
    public let budget: PageBudget
    public var maxPageSharing: UInt32
    public private(set) var counters = StoreCounters()

    private var allocator: ExtentAllocator
    private var tree = StableTree()
    /// Indexed by page number, grown to the highest page handed out.
    private var owners: [UInt32] = []
    private let scratch: UnsafeMutableRawPointer
    /// The digest index (PageStore+Digests.swift): stored pages by their unseeded digest, and a
    /// bit per page saying it is filed there.
    var byDigest = PageMap()
    var digestFiled: [UInt64] = []
    /// Allocated pages per segment, when the region has several (hardened); empty otherwise.
    private var allocatedInSegment: [UInt32]
    private let segmentPages: UInt32

    public init(backing: any RegionBacking, budget: PageBudget, seed: UInt64, maxPageSharing: UInt32 = 256) {
        self.backing = backing
        self.budget = budget
        self.hasher = PageHasher(seed: seed)
        self.maxPageSharing = max(2, maxPageSharing)
        self.allocator = ExtentAllocator(totalPages: backing.pageCount)
        self.scratch = .allocate(byteCount: Page.size, alignment: Page.size)
        segmentPages = max(1, min(backing.segmentPages, backing.pageCount))
        let segments = (backing.pageCount + segmentPages - 1) / segmentPages
        allocatedInSegment = segments > 1 ? Array(repeating: 0, count: Int(segments)) : []
    }

    deinit { scratch.deallocate() }

    /// Pages holding content (not counting reserved, unwritten placement).
    public var pagesInUse: Int64 { counters.pagesShared + counters.pagesUnshared }

    /// Memory the store's own bookkeeping takes, for `general_profit`.
    public var metadataBytes: Int64 {
        Int64(tree.memoryBytes + owners.capacity * 4 + digestIndexBytes)
    }

    public func owners(of page: PageNumber) -> UInt32 {
        Int(page) < owners.count ? owners[Int(page)] : 0
    }

    /// Region pages that may have owners (the highest page ever handed out, plus one).
    public var pageLimit: Int { owners.count }

    // MARK: Placement

    /// Contiguous pages reserved for one submission's new content.
    public struct Placement: Sendable {
        var next: PageNumber
        var end: PageNumber
        /// Pages before this one have been prepared (faulted in) by the backing.
        var preparedEnd: PageNumber
        var isEmpty: Bool { next == end }
    }

    /// How many pages ahead a batch with digests prefetches their index slots: the index of a
    /// large store is megabytes, and a lookup's cache miss (~100 ns here) was a third of a
    /// duplicate put's time next to the page's memcmp.
    static let prefetchDistance = 8

    /// Pages prepared at a time ahead of the placement cursor: enough to make the fault-in one
    /// call per 256 KiB, few enough that a submission that turns out to be all duplicates leaves
    /// little prepared-but-unused memory behind.
    static let prepareAhead: UInt32 = 64

    /// Gives back the pages a placement reserved but did not fill.
    public func finish(_ placement: inout Placement?) {
        if let p = placement, !p.isEmpty {
            // Pages faulted in ahead but not filled go back to the kernel too: the region's memory
            // must be what its content needs, nothing more.
            if p.preparedEnd > p.next { backing.release(.init(start: p.next, count: p.preparedEnd - p.next)) }
            freeExtent(.init(start: p.next, count: p.end - p.next))
        }
        placement = nil
    }

    // MARK: Storing

    /// Stores `pageCount` pages read from `source` and appends them to `runs`. `wantedAhead` is
    /// how many pages the whole submission still has (this call's included), so that a
    /// placement is reserved for all of them at once and stays contiguous across calls.
    /// `validBytesInLastPage` < 4096 zero-fills the tail of the last page (objects whose length
    /// is not a page multiple), whatever the client left there.
    ///
    /// On `regionFull`, the pages already appended to `runs` keep their owners: the caller
    /// releases `runs` when it abandons the submission.
    ///
    /// With `digests` (one per page, from the client), a page is first looked up by digest and
    /// compared with the page found; a page stored anew is filed by the digest the server
    /// computes from its copy, so later puts with digests find it.
    public func ingest(
        _ source: UnsafeRawPointer, pageCount: Int, digests: [UInt64]? = nil, validBytesInLastPage: Int = Page.size,
        wantedAhead: UInt64, placement: inout Placement?, into runs: inout RunBuilder
    ) throws(StoreError) {
        for i in 0..<pageCount {
            let page: PageNumber?
            if let digests, i + Self.prefetchDistance < pageCount { prefetch(digest: digests[i + Self.prefetchDistance]) }
            if let digests, !(i == pageCount - 1 && validBytesInLastPage < Page.size) {
                let content = source + i * Page.size
                if let found = self.page(forDigest: digests[i]), memcmpPage(regionPage(found), content) {
                    addOwner(found)
                    page = found
                } else {
                    page = try store(fromClient: content, placement: &placement, wantedAhead: wantedAhead - UInt64(i),
                                     fileByDigest: true)
                }
            } else if i == pageCount - 1, validBytesInLastPage < Page.size {
                copyPage(to: scratch, from: source + i * Page.size)
                (scratch + validBytesInLastPage).initializeMemory(
                    as: UInt8.self, repeating: 0, count: Page.size - validBytesInLastPage)
                page = try store(scratch, placement: &placement, wantedAhead: wantedAhead - UInt64(i))
            } else {
                page = try store(fromClient: source + i * Page.size, placement: &placement, wantedAhead: wantedAhead - UInt64(i))
            }
            if let page { runs.append(page) } else { runs.appendZero() }
        }
    }

    /// Stores one page read where the client put it. A page already stored costs a hash and a
    /// compare, and no copy: the client may rewrite its page meanwhile and so fool only itself,
    /// since a share happens only when memcmp finds the bytes equal to a stored page (the object
    /// then holds that page's bytes). A new page is copied first, and everything after looks only
    /// at the copy, which is hashed again: what goes into the region and the tree is what the
    /// server owns.
    private func store(fromClient source: UnsafeRawPointer, placement: inout Placement?, wantedAhead: UInt64,
                       fileByDigest: Bool = false) throws(StoreError) -> PageNumber? {
        let hash = hasher.hash(source)
        if hasher.isZero(source, hash: hash) {
            counters.zeroPages += 1
            return nil
        }
        let lookup = share(source, hash: hash)
        if let page = lookup.page {
            // Filed from the region's copy (once: the bitmap remembers), so the next put with
            // digests finds it without hashing.
            if fileByDigest { fileDigest(page) }
            return page
        }
        copyPage(to: scratch, from: source)
        guard hasher.hash(scratch) == hash else {
            // The client changed the page between the hash and the copy: start over on the copy.
            return try store(scratch, placement: &placement, wantedAhead: wantedAhead)
        }
        let page = try insert(scratch, hash: hash, copies: lookup.copies, placement: &placement, wantedAhead: wantedAhead)
        if fileByDigest { fileDigest(page, digest: Self.digest(scratch)) }
        return page
    }

    /// Stores one page that the server owns; nil means it was all zeros.
    private func store(_ content: UnsafeRawPointer, placement: inout Placement?, wantedAhead: UInt64) throws(StoreError) -> PageNumber? {
        let hash = hasher.hash(content)
        if hasher.isZero(content, hash: hash) {
            counters.zeroPages += 1
            return nil
        }
        let lookup = share(content, hash: hash)
        if let page = lookup.page { return page }
        return try insert(content, hash: hash, copies: lookup.copies, placement: &placement, wantedAhead: wantedAhead)
    }

    /// Finds a stored page equal to `content` (by memcmp) that can take another owner, and gives
    /// it one. Otherwise returns how many full copies of the content exist (for chain counts).
    ///
    /// Full pages are passed over without a compare: a content put many times has a chain of
    /// full copies under its tag, and comparing with each of them on every share made a share
    /// cost a memcmp per copy. They are compared only when no copy has room, once per
    /// `max_page_sharing` shares, to count them.
    func share(_ content: UnsafeRawPointer, hash: UInt64) -> (page: PageNumber?, copies: Int) {
        let tag = StableTree.tag(forHash: hash)
        var shared: PageNumber?
        var sawFull = false
        tree.forEachCandidate(tag: tag) { page in
            guard owners[Int(page)] < maxPageSharing else {
                sawFull = true
                return true
            }
            guard memcmpPage(regionPage(page), content) else { return true }
            shared = page
            return false
        }
        if let page = shared {
            addOwner(page)
            return (page, 0)
        }
        guard sawFull else { return (nil, 0) }
        var copies = 0
        tree.forEachCandidate(tag: tag) { page in
            if owners[Int(page)] >= maxPageSharing, memcmpPage(regionPage(page), content) { copies += 1 }
            return true
        }
        return (nil, copies)
    }

    /// Stores `content` in a fresh page with one owner and files it in the stable tree.
    /// `readAgain` tells the backing whether the page will likely be compared again (objects)
    /// or found by its digest (merges).
    func insert(_ content: UnsafeRawPointer, hash: UInt64, copies: Int,
                placement: inout Placement?, wantedAhead: UInt64, readAgain: Bool = true) throws(StoreError) -> PageNumber {
        let tag = StableTree.tag(forHash: hash)
        let page = try takeFreshPage(placement: &placement, wantedAhead: wantedAhead)
        backing.write(content, toPage: page, readAgain: readAgain)
        owners[Int(page)] = 1
        tree.insert(tag: tag, page: page)
        counters.pagesUnshared += 1
        if copies == 1 {
            counters.stableNodeChains += 1
            counters.stableNodeDups += 2
        } else if copies > 1 {
            counters.stableNodeDups += 1
        }
        return page
    }

    /// Copies a page out of client memory into the store's scratch page (which the client
    /// cannot touch) and hashes the copy.
    func copyToScratch(_ source: UnsafeRawPointer) -> (content: UnsafeRawPointer, hash: UInt64) {
        copyPage(to: scratch, from: source)
        return (UnsafeRawPointer(scratch), hasher.hash(scratch))
    }

    private func takeFreshPage(placement: inout Placement?, wantedAhead: UInt64) throws(StoreError) -> PageNumber {
        guard budget.take(1) else { throw .regionFull }
        if placement == nil || placement!.isEmpty {
            let want = UInt32(clamping: max(1, wantedAhead))
            guard let extent = allocateExtent(upTo: want) else {
                budget.give(1)
                throw .regionFull
            }
            placement = Placement(next: extent.start, end: extent.start + extent.count, preparedEnd: extent.start)
            let needed = Int(extent.start + extent.count)
            if owners.count < needed {
                let grown = max(needed, min(Int(backing.pageCount), owners.count * 2))
                owners.append(contentsOf: repeatElement(0, count: grown - owners.count))
            }
        }
        let page = placement!.next
        if page >= placement!.preparedEnd {
            let count = min(Self.prepareAhead, placement!.end - page)
            backing.prepare(.init(start: page, count: count))
            placement!.preparedEnd = page + count
        }
        placement!.next += 1
        return page
    }

    /// Gives an in-use page one more owner (a reservation for a merge the server asked of a client).
    func addOwner(_ page: PageNumber) {
        let before = owners[Int(page)]
        owners[Int(page)] = before + 1
        if before == 1 {
            counters.pagesUnshared -= 1
            counters.pagesShared += 1
        }
        counters.pagesSharing += 1
    }

    // MARK: Releasing

    /// Drops one owner of every page in `runs` (zero runs only update the zero-page count).
    /// Pages left without owners are freed, and their memory is given back in whole runs.
    public func release(_ runs: [PageRun]) {
        var freed: ExtentAllocator.Extent?
        for run in runs {
            if run.isZero {
                counters.zeroPages -= Int64(run.count)
                continue
            }
            for page in run.start..<(run.start + run.count) where dropOwner(page) {
                if let f = freed, f.end == UInt64(page) {
                    freed!.count += 1
                } else {
                    if let f = freed { giveBack(f) }
                    freed = .init(start: page, count: 1)
                }
            }
        }
        if let f = freed { giveBack(f) }
        // After most pages went (the processes that shared them left), the index goes too.
        tree.shrinkIfSparse()
        byDigest.shrinkIfSparse()
    }

    /// Returns true when the page lost its last owner (and left the tree).
    private func dropOwner(_ page: PageNumber) -> Bool {
        let before = owners[Int(page)]
        precondition(before > 0, "release of free page \(page)")
        owners[Int(page)] = before - 1
        switch before {
        case 1:
            // The tag is not kept per page (4 bytes a page of metadata): it is the hash of the
            // content, which is still intact here.
            let tag = StableTree.tag(forHash: hasher.hash(regionPage(page)))
            counters.pagesUnshared -= 1
            forgetChainMembership(page, tag: tag)
            tree.remove(tag: tag, page: page)
            unfileDigest(page)
            return true
        case 2:
            counters.pagesShared -= 1
            counters.pagesSharing -= 1
            counters.pagesUnshared += 1
        default:
            counters.pagesSharing -= 1
        }
        return false
    }

    private func forgetChainMembership(_ page: PageNumber, tag: UInt32) {
        let content = regionPage(page)
        // Only 0, 1 or "more than one" other copy matters: stop at two. (Counting them all made
        // freeing a chain of k copies cost k² compares: seconds of the event loop for the copies
        // of one page put a million times.)
        var others = 0
        tree.forEachCandidate(tag: tag) { other in
            if other != page, memcmpPage(regionPage(other), content) { others += 1 }
            return others < 2
        }
        if others == 1 {
            counters.stableNodeChains -= 1
            counters.stableNodeDups -= 2
        } else if others > 1 {
            counters.stableNodeDups -= 1
        }
    }

    private func giveBack(_ extent: ExtentAllocator.Extent) {
        backing.release(extent)
        freeExtent(extent)
        budget.give(UInt64(extent.count))
    }

    // MARK: Segments

    private func allocateExtent(upTo pages: UInt32) -> ExtentAllocator.Extent? {
        guard let extent = allocator.allocate(upTo: pages) else { return nil }
        if !allocatedInSegment.isEmpty {
            forEachSegment(of: extent) { segment, count in allocatedInSegment[Int(segment)] += count }
        }
        return extent
    }

    /// Frees an extent; a segment left with no allocated page is handed to the backing to free.
    private func freeExtent(_ extent: ExtentAllocator.Extent) {
        allocator.free(extent)
        guard !allocatedInSegment.isEmpty else { return }
        forEachSegment(of: extent) { segment, count in
            precondition(allocatedInSegment[Int(segment)] >= count, "segment \(segment) freed more than allocated")
            allocatedInSegment[Int(segment)] -= count
            if allocatedInSegment[Int(segment)] == 0 { backing.segmentEmptied(segment) }
        }
    }

    private func forEachSegment(of extent: ExtentAllocator.Extent, _ body: (UInt32, UInt32) -> Void) {
        var page = extent.start
        let end = extent.start + extent.count
        while page < end {
            let segment = page / segmentPages
            let segmentEnd = min(end, (segment + 1) * segmentPages)
            body(segment, segmentEnd - page)
            page = segmentEnd
        }
    }

    /// Allocated pages in each segment (hardened regions; empty for a one-segment region).
    public var allocatedPagesPerSegment: [UInt32] { allocatedInSegment }

    // MARK: Checking

    /// A region page's bytes, for reading: deferred writes to it are completed first.
    func regionPage(_ page: PageNumber) -> UnsafeMutableRawPointer {
        backing.willRead(page)
        return backing.base + Int(page) * Page.size
    }

    public func _checkInvariants() {
        backing.flushWrites()
        allocator._checkInvariants()
        tree._checkInvariants()
        var inUse: Int64 = 0, shared: Int64 = 0, sharing: Int64 = 0
        for (page, n) in owners.enumerated() where n > 0 {
            inUse += 1
            if n >= 2 { shared += 1; sharing += Int64(n) - 1 }
            var found = 0
            let tag = StableTree.tag(forHash: hasher.hash(backing.base + page * Page.size))
            tree.forEachCandidate(tag: tag) { p in
                if p == PageNumber(page) { found += 1 }
                return true
            }
            // Not found under its content's tag: filed twice, or changed under the store.
            precondition(found == 1, "page \(page) filed \(found) times under its content's tag")
        }
        precondition(tree.count == Int(inUse))
        _checkDigestIndex()
        precondition(counters.pagesShared == shared && counters.pagesSharing == sharing)
        precondition(counters.pagesUnshared == inUse - shared)
    }
}
