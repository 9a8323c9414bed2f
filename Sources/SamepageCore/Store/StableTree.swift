/// The content index: page hash -> region pages with that hash.
///
/// KSM keeps its stable tree as a red-black tree ordered by memcmp; here the order is the XXH3
/// hash and the structure is an open-addressing table with linear probing. A slot packs a
/// 32-bit tag (the high half of the page's hash) with the page number, 8 bytes in all. The tag
/// only narrows the candidates: callers confirm every candidate with memcmp, so a tag or hash
/// collision can cost a comparison, never a wrong share. Several slots may carry the same tag:
/// different contents that collide, and the dups of one content past `max_page_sharing`.
///
/// Deletion shifts later slots of the probe run back (no tombstones), so a lookup stops at the
/// first empty slot and the load factor stays the real one.
public struct StableTree: ~Copyable {
    private var slots: UnsafeMutablePointer<UInt64>
    private var mask: Int
    public private(set) var count = 0

    /// 0 marks an empty slot, so pages are stored +1.
    @inline(__always) private static func pack(tag: UInt32, page: PageNumber) -> UInt64 {
        UInt64(tag) << 32 | UInt64(page &+ 1)
    }
    @inline(__always) private static func tag(of slot: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: slot >> 32) }
    @inline(__always) private static func page(of slot: UInt64) -> PageNumber { PageNumber(truncatingIfNeeded: slot) &- 1 }

    /// The tag a page hash is filed under.
    @inline(__always) public static func tag(forHash hash: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: hash >> 32)
    }

    public init(minimumCapacity: Int = 1024) {
        var capacity = 16
        while capacity < minimumCapacity { capacity <<= 1 }
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: 0, count: capacity)
        mask = capacity - 1
    }

    deinit { slots.deallocate() }

    public var capacity: Int { mask + 1 }
    /// Bytes of memory the table itself holds (for general_profit).
    public var memoryBytes: Int { capacity * MemoryLayout<UInt64>.stride }

    @inline(__always) private func bucket(_ tag: UInt32) -> Int {
        // The hash is already well mixed; spread the tag over the table with a multiply so that
        // tables larger than 2^32 slots (never, in practice) would still use every bit.
        Int(truncatingIfNeeded: (UInt64(tag) &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    public mutating func insert(tag: UInt32, page: PageNumber) {
        if (count + 1) * 10 > capacity * 7 { grow() }
        var i = bucket(tag)
        while slots[i] != 0 { i = (i + 1) & mask }
        slots[i] = Self.pack(tag: tag, page: page)
        count += 1
    }

    /// Calls `body` with each page filed under `tag`, until it returns false.
    @inline(__always)
    public func forEachCandidate(tag: UInt32, _ body: (PageNumber) throws -> Bool) rethrows {
        var i = bucket(tag)
        while true {
            let slot = slots[i]
            if slot == 0 { return }
            if Self.tag(of: slot) == tag, try !body(Self.page(of: slot)) { return }
            i = (i + 1) & mask
        }
    }

    /// Removes the entry of `page`; returns false if it was not there.
    @discardableResult
    public mutating func remove(tag: UInt32, page: PageNumber) -> Bool {
        let wanted = Self.pack(tag: tag, page: page)
        var i = bucket(tag)
        while slots[i] != wanted {
            if slots[i] == 0 { return false }
            i = (i + 1) & mask
        }
        // Backward-shift deletion: move later members of the run into the hole when their home
        // bucket is at or before the hole (cyclically).
        var hole = i
        var j = (i + 1) & mask
        while slots[j] != 0 {
            let home = bucket(Self.tag(of: slots[j]))
            let distanceToHole = (hole - home) & mask
            let distanceToJ = (j - home) & mask
            if distanceToHole < distanceToJ {
                slots[hole] = slots[j]
                hole = j
            }
            j = (j + 1) & mask
        }
        slots[hole] = 0
        count -= 1
        return true
    }

    private mutating func grow() {
        let oldSlots = slots
        let oldCapacity = capacity
        let newCapacity = oldCapacity * 2
        slots = .allocate(capacity: newCapacity)
        slots.initialize(repeating: 0, count: newCapacity)
        mask = newCapacity - 1
        for k in 0..<oldCapacity where oldSlots[k] != 0 {
            var i = bucket(Self.tag(of: oldSlots[k]))
            while slots[i] != 0 { i = (i + 1) & mask }
            slots[i] = oldSlots[k]
        }
        oldSlots.deallocate()
    }

    /// Every entry reachable from its home bucket without crossing an empty slot; count right;
    /// load factor bounded. Debug builds and tests only.
    public func _checkInvariants() {
        var seen = 0
        for k in 0...mask where slots[k] != 0 {
            seen += 1
            var i = bucket(Self.tag(of: slots[k]))
            while i != k {
                precondition(slots[i] != 0, "entry at \(k) unreachable from its home bucket")
                i = (i + 1) & mask
            }
        }
        precondition(seen == count)
        precondition(count * 10 <= capacity * 7)
    }
}
