// An open-addressing hash table with linear probing, the one the server's indexes are built on
// (the stable tree, the digest index, the unstable tree, a connection's merge references).
//
// Why not Dictionary: on the merge path the server does a handful of lookups per page, millions
// a second, and Swift's Dictionary spends most of each one in SipHash and generic resizing (a
// third of the event loop's time in `samepage bench --workload runs`). The keys here are hashes
// already, or page numbers; what they need is a cheap mix that an adversary cannot aim at: the
// home bucket is a keyed mix (`TableSeed`) of the key, with a secret per table, so a client that
// chooses digests or page contents cannot pile its keys into one probe run.
//
// Layout: a power-of-two array of fixed-size slots, empty ones marked by the slot type itself
// (no separate metadata). Several slots may share a key (multimaps: the stable tree's chains,
// the unstable tree's entries of one content); they lie in one probe run in the order they were
// inserted.
//
// Invariants (`_checkInvariants`, tests and debug builds):
//   - every slot is reachable from its home bucket without crossing an empty slot;
//   - `count` is the number of occupied slots, and at most 4/5 of the capacity. (At 4/5 a miss
//     probes ~13 slots, two cache lines of 8-byte slots; a lower bound would push the store's
//     metadata past 48 bytes a page just after its tables grow.)
// Deletion shifts later slots of the run back into the hole (no tombstones), so a lookup stops
// at the first empty slot and the load factor is the real one. The shift keeps the order of
// the slots it moves, so slots of one key stay oldest first.

import CPrefetch

/// What an `OpenTable` holds: a fixed-size value that is either empty or filed under a key.
protocol OpenTableSlot: BitwiseCopyable {
    static var empty: Self { get }
    var isEmpty: Bool { get }
    /// The key the slot is filed under; its home bucket is a keyed mix of it.
    var tableKey: UInt64 { get }
}

struct OpenTable<Slot: OpenTableSlot>: ~Copyable {
    private var slots: UnsafeMutablePointer<Slot>
    private(set) var mask: Int
    private(set) var count = 0
    private let seed: TableSeed

    init(minimumCapacity: Int = 16, seed: TableSeed = TableSeed()) {
        var capacity = 16
        while capacity < minimumCapacity { capacity <<= 1 }
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: .empty, count: capacity)
        mask = capacity - 1
        self.seed = seed
    }

    deinit { slots.deallocate() }

    var capacity: Int { mask + 1 }
    /// Bytes of memory the slots take.
    var memoryBytes: Int { capacity * MemoryLayout<Slot>.stride }

    @inline(__always) func home(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: seed.mix(key)) & mask
    }

    @inline(__always) subscript(index: Int) -> Slot { slots[index] }

    /// Asks the CPU to bring `key`'s home slot into the cache: callers with a batch of keys
    /// prefetch a few ahead, so that one key's cache miss overlaps the work on the others.
    @inline(__always) func prefetch(key: UInt64) {
        sp_prefetch(slots + home(key))
    }

    /// The index of the first slot filed under `key` that `matches` accepts, in probe order
    /// (oldest first among slots of one key).
    @inline(__always)
    func firstIndex(key: UInt64, where matches: (Slot) -> Bool = { _ in true }) -> Int? {
        var i = home(key)
        while true {
            let slot = slots[i]
            if slot.isEmpty { return nil }
            if slot.tableKey == key && matches(slot) { return i }
            i = (i + 1) & mask
        }
    }

    /// Calls `body` with each slot filed under `key`, oldest first, until it returns false.
    @inline(__always)
    func forEach(key: UInt64, _ body: (Slot) throws -> Bool) rethrows {
        var i = home(key)
        while true {
            let slot = slots[i]
            if slot.isEmpty { return }
            if slot.tableKey == key, try !body(slot) { return }
            i = (i + 1) & mask
        }
    }

    /// Calls `body` with every occupied slot, in no particular order.
    func forEachSlot(_ body: (Slot) throws -> Void) rethrows {
        for i in 0...mask where !slots[i].isEmpty { try body(slots[i]) }
    }

    mutating func insert(_ slot: Slot) {
        precondition(!slot.isEmpty, "an empty slot cannot be inserted")
        if (count + 1) * 5 > capacity * 4 { resize(to: capacity * 2) }
        place(slot)
        count += 1
    }

    /// Replaces the slot at `index` with one filed under the same key.
    @inline(__always)
    mutating func replace(at index: Int, with slot: Slot) {
        precondition(!slot.isEmpty && slot.tableKey == slots[index].tableKey, "a replacement must keep the key")
        slots[index] = slot
    }

    /// Removes the slot at `index` (from `firstIndex`): later members of the probe run whose
    /// home bucket is at or before the hole (cyclically) move back into it.
    mutating func remove(at index: Int) {
        precondition(!slots[index].isEmpty, "removing an empty slot")
        var hole = index
        var j = (index + 1) & mask
        while !slots[j].isEmpty {
            let home = home(slots[j].tableKey)
            if (hole - home) & mask < (j - home) & mask {
                slots[hole] = slots[j]
                hole = j
            }
            j = (j + 1) & mask
        }
        slots[hole] = .empty
        count -= 1
    }

    /// Empties the table and shrinks it back to the smallest capacity.
    mutating func removeAll() {
        if capacity > 16 {
            slots.deallocate()
            slots = .allocate(capacity: 16)
            mask = 15
        }
        slots.initialize(repeating: .empty, count: capacity)
        count = 0
    }

    /// Gives memory back after a burst: a table of more than `sparseFloor` slots that is at most
    /// a sixteenth full shrinks to the least capacity it fits at the usual load (2/5 to 4/5, as
    /// after growing: the store's tables keep their 48-byte bound); it must then lose most of its
    /// slots again before it shrinks again, so it does not shrink and grow in turn. Not done by
    /// `remove(at:)`, whose callers may hold indices: call it where none are held.
    mutating func shrinkIfSparse() {
        guard capacity > Self.sparseFloor, count * 16 <= capacity else { return }
        var newCapacity = 16
        while newCapacity * 4 < count * 5 { newCapacity <<= 1 }
        resize(to: newCapacity)
    }

    /// Tables this small are left as they are (0.5-1.5 MiB at most): a table that empties and
    /// fills again in turn (a put and a delete of thousands of pages, over and over) must not
    /// be rebuilt each time; a burst of hundreds of thousands of entries still goes back.
    static var sparseFloor: Int { 1 << 16 }

    @inline(__always) private func place(_ slot: Slot) {
        var i = home(slot.tableKey)
        while !slots[i].isEmpty { i = (i + 1) & mask }
        slots[i] = slot
    }

    private mutating func resize(to newCapacity: Int) {
        let old = slots, oldMask = mask
        slots = .allocate(capacity: newCapacity)
        slots.initialize(repeating: .empty, count: newCapacity)
        mask = newCapacity - 1
        // Start after an empty slot, so that every probe run is re-placed from its first slot:
        // slots of one key keep their order.
        var start = 0
        while !old[start].isEmpty { start += 1 }
        for k in 0...oldMask {
            let slot = old[(start + k) & oldMask]
            if !slot.isEmpty { place(slot) }
        }
        old.deallocate()
    }

    /// Every slot reachable from its home bucket without crossing an empty slot; the count
    /// right; the load factor bounded. Tests and debug builds.
    func _checkInvariants() {
        var seen = 0
        for k in 0...mask where !slots[k].isEmpty {
            seen += 1
            var i = home(slots[k].tableKey)
            while i != k {
                precondition(!slots[i].isEmpty, "slot \(k) unreachable from its home bucket")
                i = (i + 1) & mask
            }
        }
        precondition(seen == count, "\(seen) occupied slots, count says \(count)")
        precondition(count * 5 <= capacity * 4, "load factor above 0.8")
    }
}
