import Testing
@testable import SamepageCore

@Suite("StableTree")
struct StableTreeTests {
    /// Every page filed under `tag`, sorted.
    private func candidates(_ tree: borrowing StableTree, _ tag: UInt32) -> [PageNumber] {
        var pages: [PageNumber] = []
        tree.forEachCandidate(tag: tag) { page in
            pages.append(page)
            return true
        }
        return pages.sorted()
    }

    private func removed(_ tree: inout StableTree, tag: UInt32, page: PageNumber) -> Bool {
        tree.remove(tag: tag, page: page)
    }

    @Test func capacityIsAPowerOfTwoAtLeastTheMinimum() {
        #expect(StableTree(minimumCapacity: 1).capacity == 16)
        #expect(StableTree(minimumCapacity: 16).capacity == 16)
        #expect(StableTree(minimumCapacity: 17).capacity == 32)
        #expect(StableTree(minimumCapacity: 1000).capacity == 1024)
        #expect(StableTree().capacity == 1024)
        #expect(StableTree(minimumCapacity: 64).memoryBytes == 64 * 8)
    }

    @Test func tagIsTheHighHalfOfTheHash() {
        #expect(StableTree.tag(forHash: 0x1234_5678_9ABC_DEF0) == 0x1234_5678)
        #expect(StableTree.tag(forHash: 0xFFFF_FFFF) == 0)
    }

    @Test func insertThenFind() {
        var tree = StableTree(minimumCapacity: 16)
        tree.insert(tag: 7, page: 100)
        tree.insert(tag: 9, page: 200)
        #expect(tree.count == 2)
        #expect(candidates(tree, 7) == [100])
        #expect(candidates(tree, 9) == [200])
        #expect(candidates(tree, 8) == [])
        tree._checkInvariants()
    }

    @Test func pageZeroAndTagZeroAreNotMistakenForEmptySlots() {
        var tree = StableTree(minimumCapacity: 16)
        tree.insert(tag: 0, page: 0)
        tree.insert(tag: 0, page: PageRun.zeroStart - 1)
        tree.insert(tag: .max, page: 0)
        #expect(tree.count == 3)
        #expect(candidates(tree, 0) == [0, PageRun.zeroStart - 1])
        #expect(candidates(tree, .max) == [0])
        #expect(removed(&tree, tag: 0, page: 0))
        #expect(candidates(tree, 0) == [PageRun.zeroStart - 1])
        tree._checkInvariants()
    }

    @Test func chainsOfOneTag() {
        var tree = StableTree(minimumCapacity: 16)
        for p in 0..<10 as Range<PageNumber> { tree.insert(tag: 42, page: p) }
        #expect(tree.count == 10)
        #expect(candidates(tree, 42) == Array(0..<10))
        tree._checkInvariants()
    }

    @Test func forEachCandidateStopsWhenTheBodySaysSo() {
        var tree = StableTree(minimumCapacity: 16)
        for p in 0..<5 as Range<PageNumber> { tree.insert(tag: 3, page: p) }
        var calls = 0
        tree.forEachCandidate(tag: 3) { _ in
            calls += 1
            return calls < 2
        }
        #expect(calls == 2)
    }

    @Test func forEachCandidateRethrows() {
        struct Stop: Error {}
        var tree = StableTree(minimumCapacity: 16)
        tree.insert(tag: 3, page: 1)
        #expect(throws: Stop.self) {
            try tree.forEachCandidate(tag: 3) { _ in throw Stop() }
        }
    }

    @Test func removeReportsAbsentEntries() {
        var tree = StableTree(minimumCapacity: 16)
        tree.insert(tag: 5, page: 1)
        #expect(!removed(&tree, tag: 5, page: 2)) // tag there, page not
        #expect(!removed(&tree, tag: 6, page: 1)) // page there, under another tag
        #expect(tree.count == 1)
        #expect(removed(&tree, tag: 5, page: 1))
        #expect(!removed(&tree, tag: 5, page: 1))
        #expect(tree.count == 0)
        #expect(candidates(tree, 5) == [])
        tree._checkInvariants()
    }

    @Test func removingFromTheMiddleOfAProbeRunKeepsTheRestReachable() {
        // 11 entries in 16 slots: probe runs are long, wrap around the end, and mix tags. Remove
        // each position of every run, one at a time, in a fresh table each time.
        let entries: [(tag: UInt32, page: PageNumber)] =
            (0..<6).map { (tag: 77, page: PageNumber($0)) } +
            (0..<5).map { (tag: UInt32(1000 + $0 % 2), page: PageNumber(100 + $0)) }
        for victim in entries.indices {
            var tree = StableTree(minimumCapacity: 16)
            for e in entries { tree.insert(tag: e.tag, page: e.page) }
            #expect(tree.capacity == 16)
            #expect(removed(&tree, tag: entries[victim].tag, page: entries[victim].page))
            tree._checkInvariants()
            #expect(tree.count == entries.count - 1)
            for tag in Set(entries.map(\.tag)) {
                let expected = entries.indices.filter { $0 != victim && entries[$0].tag == tag }
                    .map { entries[$0].page }.sorted()
                #expect(candidates(tree, tag) == expected, "after removing entry \(victim)")
            }
        }
    }

    @Test func removeEverythingInEveryOrderOfAFullSmallTable() {
        // Many distinct tags into 16 slots collide on buckets; removal order is shuffled.
        var rng = SplitMix64(seed: 99)
        for _ in 0..<200 {
            var tree = StableTree(minimumCapacity: 16)
            var entries: [(tag: UInt32, page: PageNumber)] = []
            for i in 0..<11 {
                let tag = UInt32.random(in: 0..<20, using: &rng) // few tags: collisions on purpose
                entries.append((tag, PageNumber(i)))
                tree.insert(tag: tag, page: PageNumber(i))
            }
            entries.shuffle(using: &rng)
            while let e = entries.popLast() {
                #expect(removed(&tree, tag: e.tag, page: e.page))
                tree._checkInvariants()
                for tag in Set(entries.map(\.tag)) {
                    #expect(candidates(tree, tag) == entries.filter { $0.tag == tag }.map(\.page).sorted())
                }
            }
            #expect(tree.count == 0)
        }
    }

    @Test func growsAtEightyPercentLoadAndKeepsEveryEntry() {
        var tree = StableTree(minimumCapacity: 16)
        var expected: [UInt32: [PageNumber]] = [:]
        func add(_ tag: UInt32, _ page: PageNumber) {
            tree.insert(tag: tag, page: page)
            expected[tag, default: []].append(page)
        }
        for p in 0..<12 as Range<PageNumber> { add(p % 3, p) }
        #expect(tree.capacity == 16) // 12/16 <= 0.8
        add(0, 12)
        #expect(tree.capacity == 32) // 13/16 > 0.8
        tree._checkInvariants()
        for p in 13..<1000 as Range<PageNumber> { add(p % 37, p) }
        tree._checkInvariants()
        #expect(tree.count == 1000)
        #expect(tree.capacity == 2048)
        #expect(tree.memoryBytes == 2048 * 8)
        for (tag, pages) in expected {
            #expect(candidates(tree, tag) == pages.sorted())
        }
    }

    @Test(arguments: [7 as UInt64, 8, 9])
    func randomizedAgainstShadowMultiset(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        var tree = StableTree(minimumCapacity: 16)
        var shadow: [UInt32: [PageNumber]] = [:]
        var total = 0
        // A handful of hot tags (chains and bucket collisions) plus random ones.
        let hotTags: [UInt32] = [0, 1, 2, 0xFFFF_FFFF, 0x8000_0000, 12345]
        func randomTag() -> UInt32 {
            Bool.random(using: &rng) ? hotTags.randomElement(using: &rng)! : UInt32.random(in: 0...UInt32.max, using: &rng)
        }
        for step in 0..<3000 {
            let roll = Int.random(in: 0..<100, using: &rng)
            if roll < 55 || total == 0 {
                let tag = randomTag()
                let page = PageNumber.random(in: 0..<500, using: &rng) // repeats allowed: a multiset
                tree.insert(tag: tag, page: page)
                shadow[tag, default: []].append(page)
                total += 1
            } else if roll < 90 {
                let tag = shadow.keys.sorted().randomElement(using: &rng)!
                let index = Int.random(in: 0..<shadow[tag]!.count, using: &rng)
                let page = shadow[tag]!.remove(at: index)
                if shadow[tag]!.isEmpty { shadow[tag] = nil }
                #expect(removed(&tree, tag: tag, page: page))
                total -= 1
            } else {
                let tag = randomTag()
                let page = PageNumber.random(in: 500..<600, using: &rng) // never inserted
                #expect(!removed(&tree, tag: tag, page: page))
            }
            tree._checkInvariants()
            #expect(tree.count == total)
            if step % 10 == 0 || total < 40 {
                for (tag, pages) in shadow {
                    #expect(candidates(tree, tag) == pages.sorted(), "step \(step), tag \(tag)")
                }
                for tag in hotTags where shadow[tag] == nil {
                    #expect(candidates(tree, tag) == [])
                }
            }
        }
    }
}
