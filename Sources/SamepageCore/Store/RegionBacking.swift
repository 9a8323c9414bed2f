/// The memory behind one region, as the store sees it: a base address the server may write, and
/// a way to give pages back to the kernel. The server implements it with a memfd (hole punch);
/// tests implement it with plain memory. Keeping it a protocol keeps the store free of I/O.
public protocol RegionBacking: AnyObject {
    var base: UnsafeMutableRawPointer { get }
    var pageCount: UInt32 { get }
    /// Called when no reference to these pages remains; afterwards they read as zeros.
    func release(_ extent: ExtentAllocator.Extent)
    /// Called before new content is written to these pages: a chance to fault them in with one
    /// call instead of one page fault each (design.md: first touch dominates the cost of a put).
    func prepare(_ extent: ExtentAllocator.Extent)
    /// Pages per segment. A hardened region is made of segments that cannot give single pages
    /// back (design.md section 2: a FUTURE_WRITE seal forbids punching holes); it frees a whole
    /// segment once none of its pages is allocated. Default: one segment, the whole region.
    var segmentPages: UInt32 { get }
    /// Called when the last allocated page of a segment (of several) was freed.
    func segmentEmptied(_ segment: UInt32)
    /// Writes a new page's content. The default copies it through `base`; a backing may defer
    /// the write, as long as `willRead` and `flushWrites` complete it. `readAgain` says whether
    /// the store expects to read the page again: an object's page is compared with every later
    /// put of the same data, a merged page is found by its digest and seldom read. A backing
    /// that writes without mapping may map the first kind right away.
    func write(_ content: UnsafeRawPointer, toPage page: PageNumber, readAgain: Bool)
    /// Called before the store reads a page through `base`.
    func willRead(_ page: PageNumber)
    /// Completes every deferred write: called before a reply can let a client map the pages.
    func flushWrites()
}

extension RegionBacking {
    public func prepare(_ extent: ExtentAllocator.Extent) {}
    public var segmentPages: UInt32 { pageCount }
    public func segmentEmptied(_ segment: UInt32) {}
    public func write(_ content: UnsafeRawPointer, toPage page: PageNumber, readAgain: Bool) {
        copyPage(to: base + Int(page) * Page.size, from: content)
    }
    public func willRead(_ page: PageNumber) {}
    public func flushWrites() {}
}

/// A cap on pages in use, shared by every domain's store, so that `--region-size` bounds the
/// server's memory however many domains it serves.
public final class PageBudget: @unchecked Sendable {
    public let limit: UInt64
    public private(set) var used: UInt64 = 0

    public init(limit: UInt64) { self.limit = limit }

    func take(_ pages: UInt64) -> Bool {
        guard used + pages <= limit else { return false }
        used += pages
        return true
    }

    func give(_ pages: UInt64) {
        precondition(pages <= used)
        used -= pages
    }
}
