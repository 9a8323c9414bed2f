import Testing
@testable import SamepageCore

@Suite("OpenTable and PageMap")
struct OpenTableTests {
    @Test func aMissingKeyReadsNil() {
        let map = PageMap()
        #expect(map[7] == nil)
        #expect(map.count == 0)
    }

    @Test func keyAndValueZeroAreNotMistakenForEmptySlots() {
        var map = PageMap()
        map[0] = 0
        map[.max] = 0
        map[1] = UInt32.max - 1
        #expect(map[0] == 0)
        #expect(map[.max] == 0)
        #expect(map[1] == UInt32.max - 1)
        #expect(map.count == 3)
        map._checkInvariants()
    }

    @Test func setReplacesAndNilRemoves() {
        var map = PageMap()
        map[5] = 1
        map[5] = 9
        #expect(map[5] == 9)
        #expect(map.count == 1)
        map[5] = nil
        #expect(map[5] == nil)
        #expect(map.count == 0)
        map[5] = nil // removing a missing key is harmless
        #expect(map.count == 0)
    }

    @Test func addCountsUpFromZero() {
        var map = PageMap()
        map.add(1, to: 3)
        map.add(2, to: 3)
        map.add(1, to: 4)
        #expect(map.dictionary == [3: 3, 4: 1])
        #expect(map.sortedByKey.map(\.key) == [3, 4])
    }

    @Test func growsAtFourFifthsLoad() {
        var map = PageMap()
        for k in 0..<12 as Range<UInt32> { map[k] = k }
        #expect(map.capacity == 16)
        map[12] = 12
        #expect(map.capacity == 32)
        #expect(map.memoryBytes == 32 * 8)
        for k in 0..<13 as Range<UInt32> { #expect(map[k] == k) }
        map._checkInvariants()
    }

    /// Keys a client could choose so that a plain `key & mask` table puts them all in one bucket
    /// (multiples of a large power of two) still spread out: the home bucket is a keyed mix.
    @Test func structuredKeysSpreadOverTheTable() {
        let table = OpenTable<PageMap.Slot>(minimumCapacity: 4096)
        var homes = Set<Int>()
        for k in 0..<2048 as Range<UInt64> { homes.insert(table.home(k << 20)) }
        #expect(homes.count > 1500, "only \(homes.count) distinct home buckets for 2048 keys")
    }

    /// Two tables (two secrets) place the same key in different buckets: where a key lands
    /// cannot be learned from another server or another run.
    @Test func theSecretDecidesTheBucket() {
        let a = OpenTable<PageMap.Slot>(minimumCapacity: 1 << 16, seed: TableSeed(secret: 1))
        let b = OpenTable<PageMap.Slot>(minimumCapacity: 1 << 16, seed: TableSeed(secret: 2))
        let differing = (0..<1000 as Range<UInt64>).filter { a.home($0) != b.home($0) }.count
        #expect(differing > 900)
    }

    @Test func removeAllEmptiesAndShrinks() {
        var map = PageMap()
        for k in 0..<1000 as Range<UInt32> { map[k] = 1 }
        #expect(map.capacity == 2048)
        map.removeAll()
        #expect(map.count == 0)
        #expect(map.capacity == 16)
        #expect(map[3] == nil)
        map[3] = 4
        #expect(map[3] == 4)
    }

    /// Random operations against a Dictionary, with deletions that shift runs back across the
    /// end of the table; invariants checked throughout.
    @Test(arguments: [1, 2, 3] as [UInt64])
    func matchesADictionary(seed: UInt64) {
        var g = SplitMix64(seed: seed)
        var map = PageMap()
        var model: [UInt32: UInt32] = [:]
        for step in 0..<20_000 {
            // Few distinct keys, so that runs are long and deletions move slots.
            let key = UInt32(truncatingIfNeeded: g.next() % 300)
            switch g.next() % 4 {
            case 0:
                map[key] = nil
                model[key] = nil
            case 1:
                map.add(1, to: key)
                model[key, default: 0] += 1
            default:
                let value = UInt32(truncatingIfNeeded: g.next() % 1000)
                map[key] = value
                model[key] = value
            }
            if step % 500 == 0 { map._checkInvariants() }
            #expect(map[key] == model[key], "step \(step)")
        }
        map._checkInvariants()
        #expect(map.dictionary == model)
    }

    @Test func aSparseTableShrinksAndASmallOneStays() {
        var map = PageMap()
        for page in 0..<200_000 as Range<UInt32> { map[page] = page }
        for page in 0..<199_900 as Range<UInt32> { map[page] = nil }
        let before = map.capacity
        map.shrinkIfSparse()
        map._checkInvariants()
        #expect(map.capacity < before / 16 && map.capacity * 4 >= 100 * 5, "\(map.capacity)")
        for page in 199_900..<200_000 as Range<UInt32> { #expect(map[page] == page) }
        // Below the floor nothing changes, however empty (a table that empties and fills in turn).
        let small = map.capacity
        map.shrinkIfSparse()
        #expect(map.capacity == small)
        var middling = PageMap()
        for page in 0..<40_000 as Range<UInt32> { middling[page] = page }
        for page in 0..<40_000 as Range<UInt32> { middling[page] = nil }
        let kept = middling.capacity
        middling.shrinkIfSparse()
        #expect(middling.capacity == kept && kept == 1 << 16)
    }

    /// Entries of one key stay oldest first through growth, even when their run wraps around the
    /// end of the table.
    @Test func entriesOfOneKeyKeepTheirOrderThroughGrowth() {
        var tree = UnstableTree()
        var expected: [UInt64] = []
        for i in 0..<200 as Range<UInt64> {
            tree.insert(hash: 42, .init(session: 1, key: i))
            tree.insert(hash: i + 1000, .init(session: 1, key: i))
            expected.append(i)
        }
        tree._checkInvariants()
        var taken: [UInt64] = []
        while let partner = tree.takePartner(hash: 42, excluding: .init(session: 2, key: 0)) { taken.append(partner.key) }
        #expect(taken == expected)
        #expect(tree.count == 200)
    }
}
