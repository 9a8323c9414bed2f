/// The content index: page hash -> region pages with that hash.
///
/// KSM keeps its stable tree as a red-black tree ordered by memcmp; here the order is the XXH3
/// hash and the structure is an `OpenTable` (open addressing, linear probing). A slot packs a
/// 32-bit tag (the high half of the page's hash) with the page number, 8 bytes in all. The tag
/// only narrows the candidates: callers confirm every candidate with memcmp, so a tag or hash
/// collision can cost a comparison, never a wrong share. Several slots may carry the same tag:
/// different contents that collide, and the dups of one content past `max_page_sharing`.
///
/// Deletion shifts later slots of the probe run back (no tombstones), so a lookup stops at the
/// first empty slot and the load factor stays the real one.
public struct StableTree: ~Copyable {
    /// A slot packs the tag with the page (key and value of a `PageMap.Slot`).
    private var table: OpenTable<PageMap.Slot>

    /// The tag a page hash is filed under.
    @inline(__always) public static func tag(forHash hash: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: hash >> 32)
    }

    public init(minimumCapacity: Int = 1024) {
        table = OpenTable(minimumCapacity: minimumCapacity)
    }

    public var count: Int { table.count }
    public var capacity: Int { table.capacity }
    /// Bytes of memory the table itself holds (for general_profit).
    public var memoryBytes: Int { table.memoryBytes }

    /// See OpenTable.shrinkIfSparse.
    mutating func shrinkIfSparse() { table.shrinkIfSparse() }

    public mutating func insert(tag: UInt32, page: PageNumber) {
        table.insert(PageMap.Slot(key: tag, value: page))
    }

    /// Calls `body` with each page filed under `tag`, until it returns false.
    @inline(__always)
    public func forEachCandidate(tag: UInt32, _ body: (PageNumber) throws -> Bool) rethrows {
        try table.forEach(key: UInt64(tag)) { try body($0.value) }
    }

    /// Removes the entry of `page`; returns false if it was not there.
    @discardableResult
    public mutating func remove(tag: UInt32, page: PageNumber) -> Bool {
        guard let index = table.firstIndex(key: UInt64(tag), where: { $0.value == page }) else { return false }
        table.remove(at: index)
        return true
    }

    /// Every entry reachable from its home bucket without crossing an empty slot; count right;
    /// load factor bounded. Debug builds and tests only.
    public func _checkInvariants() { table._checkInvariants() }
}
