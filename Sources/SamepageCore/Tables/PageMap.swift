/// A map from 32-bit keys to 32-bit values in 8-byte slots: the digest index (digest bits ->
/// region page) and a connection's merge references (region page -> references held).
struct PageMap: ~Copyable {
    /// The key in the high half, the value + 1 in the low half: 0 is an empty slot.
    struct Slot: OpenTableSlot {
        var bits: UInt64
        static var empty: Slot { Slot(bits: 0) }
        var isEmpty: Bool { bits == 0 }
        var tableKey: UInt64 { bits >> 32 }
        var value: UInt32 { UInt32(truncatingIfNeeded: bits) &- 1 }

        init(bits: UInt64) { self.bits = bits }
        init(key: UInt32, value: UInt32) {
            precondition(value != .max, "PageMap values stop below UInt32.max")
            bits = UInt64(key) << 32 | UInt64(value &+ 1)
        }
    }

    private var table: OpenTable<Slot>

    init(minimumCapacity: Int = 16) {
        table = OpenTable(minimumCapacity: minimumCapacity)
    }

    var count: Int { table.count }
    var capacity: Int { table.capacity }
    var memoryBytes: Int { table.memoryBytes }

    subscript(key: UInt32) -> UInt32? {
        get {
            table.firstIndex(key: UInt64(key)).map { table[$0].value }
        }
        set {
            let index = table.firstIndex(key: UInt64(key))
            switch (index, newValue) {
            case let (index?, value?): table.replace(at: index, with: Slot(key: key, value: value))
            case let (index?, nil): table.remove(at: index)
            case let (nil, value?): table.insert(Slot(key: key, value: value))
            case (nil, nil): break
            }
        }
    }

    @inline(__always) func prefetch(_ key: UInt32) { table.prefetch(key: UInt64(key)) }

    /// Adds `amount` to the value of `key` (a missing key counts as 0).
    @inline(__always)
    mutating func add(_ amount: UInt32, to key: UInt32) {
        if let index = table.firstIndex(key: UInt64(key)) {
            table.replace(at: index, with: Slot(key: key, value: table[index].value + amount))
        } else {
            table.insert(Slot(key: key, value: amount))
        }
    }

    /// Every (key, value), in no particular order.
    func forEach(_ body: (UInt32, UInt32) throws -> Void) rethrows {
        try table.forEachSlot { try body(UInt32(truncatingIfNeeded: $0.tableKey), $0.value) }
    }

    /// Every (key, value), by key.
    var sortedByKey: [(key: UInt32, value: UInt32)] {
        var pairs: [(key: UInt32, value: UInt32)] = []
        pairs.reserveCapacity(count)
        forEach { pairs.append(($0, $1)) }
        return pairs.sorted { $0.key < $1.key }
    }

    /// The pairs as a Dictionary, for tests and reports.
    var dictionary: [UInt32: UInt32] {
        var result: [UInt32: UInt32] = [:]
        forEach { result[$0] = $1 }
        return result
    }

    mutating func removeAll() { table.removeAll() }

    /// See OpenTable.shrinkIfSparse.
    mutating func shrinkIfSparse() { table.shrinkIfSparse() }

    func _checkInvariants() { table._checkInvariants() }
}
