import Testing
@testable import SamepageCore

@Suite("MergeReferences")
struct MergeReferencesTests {
    @Test func countsFollowAddsSetsAndClears() {
        var refs = MergeReferences()
        #expect(refs[7] == nil && refs.count == 0)
        refs.add(1, to: 7)
        refs.add(2, to: 7)
        refs.add(1, to: 4096 * 3 + 5)
        #expect(refs[7] == 3)
        #expect(refs[4096 * 3 + 5] == 1)
        #expect(refs.count == 2)
        refs[7] = 1
        #expect(refs[7] == 1)
        refs[7] = nil
        #expect(refs[7] == nil && refs.count == 1)
        refs[7] = nil // clearing a page not held is harmless
        refs[0] = 5
        refs[.max] = 2
        #expect(refs[0] == 5 && refs[.max] == 2 && refs.count == 3)
        refs._checkInvariants()
        refs.removeAll()
        #expect(refs.count == 0 && refs[0] == nil && refs.sortedByKey.isEmpty)
    }

    @Test("random adds, sets and clears agree with a dictionary, and pairs come out by page")
    func agreesWithADictionary() {
        var refs = MergeReferences()
        var model: [UInt32: UInt32] = [:]
        var random = SplitMix64(seed: 0x5eed)
        for round in 0..<20_000 {
            // Clustered pages, as the store places them, and a few far away.
            let page = random.next() % 8 == 0 ? UInt32(truncatingIfNeeded: random.next()) : UInt32(random.next() % 20_000)
            switch random.next() % 4 {
            case 0, 1:
                let amount = UInt32(random.next() % 3 + 1)
                refs.add(amount, to: page)
                model[page, default: 0] += amount
            case 2:
                refs[page] = nil
                model[page] = nil
            default:
                let value = UInt32(random.next() % 4)
                refs[page] = value == 0 ? nil : value
                model[page] = value == 0 ? nil : value
            }
            if round % 5000 == 4999 {
                refs.shrinkIfSparse()
                refs._checkInvariants()
            }
        }
        refs._checkInvariants()
        #expect(refs.dictionary == model)
        #expect(refs.count == model.count)
        let pairs = refs.sortedByKey
        #expect(pairs.map(\.key) == model.keys.sorted())
        #expect(pairs.allSatisfy { model[$0.key] == $0.value })
    }

    @Test("pages held once, clustered, take about a bit each: a process's 29491 merged pages in 10 KiB, not 512")
    func heldOnceTakesABitAPage() {
        var refs = MergeReferences()
        for page in UInt32(1000)..<UInt32(1000 + 29_491) { refs.add(1, to: page) }
        var map = PageMap()
        for page in UInt32(1000)..<UInt32(1000 + 29_491) { map.add(1, to: page) }
        #expect(refs.memoryBytes < 10 * 1024, "\(refs.memoryBytes) bytes")
        #expect(map.memoryBytes >= 256 * 1024, "the PageMap this replaced: \(map.memoryBytes) bytes")
    }

    @Test("most pages gone, the chunks go back")
    func shrinksWhenMostPagesGo() {
        var refs = MergeReferences()
        for page in stride(from: UInt32(0), to: 4096 * 200, by: 7) { refs.add(1, to: page) }
        let full = refs.memoryBytes
        for page in stride(from: UInt32(0), to: 4096 * 190, by: 7) { refs[page] = nil }
        refs.shrinkIfSparse()
        refs._checkInvariants()
        #expect(refs.memoryBytes * 5 < full, "\(full) -> \(refs.memoryBytes) bytes")
        #expect(refs.count == (0..<(4096 * 200)).lazy.filter { $0 % 7 == 0 && $0 >= 4096 * 190 }.count)
        let kept = UInt32(4096 * 195 + 3)
        #expect(refs[kept] == (kept % 7 == 0 ? 1 : nil))
    }
}
