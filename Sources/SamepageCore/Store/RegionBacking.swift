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
}

extension RegionBacking {
    public func prepare(_ extent: ExtentAllocator.Extent) {}
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
