import Testing
@testable import SamepageCore

private typealias Entry = UnstableTree.Entry

@Suite("Unstable tree")
struct UnstableTreeTests {
    @Test func emptyTreeHasNoPartners() {
        var tree = UnstableTree()
        #expect(tree.count == 0)
        #expect(tree.takePartner(hash: 1, excluding: Entry(session: 1, key: 1)) == nil)
        tree.removeAll(of: 1, hashes: [1, 2, 3])
        #expect(tree.count == 0)
    }

    @Test func aPartnerIsTakenOnce() {
        var tree = UnstableTree()
        tree.insert(hash: 7, Entry(session: 1, key: 0x1000))
        #expect(tree.count == 1)
        // Another hash finds nothing and changes nothing.
        #expect(tree.takePartner(hash: 8, excluding: Entry(session: 2, key: 0x2000)) == nil)
        #expect(tree.count == 1)
        #expect(tree.takePartner(hash: 7, excluding: Entry(session: 2, key: 0x2000)) == Entry(session: 1, key: 0x1000))
        #expect(tree.count == 0)
        #expect(tree.takePartner(hash: 7, excluding: Entry(session: 2, key: 0x2000)) == nil)
    }

    @Test func anEntryNeverPairsWithItself() {
        var tree = UnstableTree()
        let me = Entry(session: 3, key: 0x4000)
        tree.insert(hash: 9, me)
        #expect(tree.takePartner(hash: 9, excluding: me) == nil)
        #expect(tree.count == 1) // still there for someone else
        // Another page of the same session (another key) does pair with it.
        #expect(tree.takePartner(hash: 9, excluding: Entry(session: 3, key: 0x5000)) == me)
        #expect(tree.count == 0)
    }

    @Test func theSameKeyOfAnotherSessionPairs() {
        // Keys are addresses, so two processes can use the same key for different pages.
        var tree = UnstableTree()
        tree.insert(hash: 9, Entry(session: 1, key: 0x4000))
        #expect(tree.takePartner(hash: 9, excluding: Entry(session: 2, key: 0x4000)) == Entry(session: 1, key: 0x4000))
        #expect(tree.count == 0)
    }

    @Test func partnersComeOldestFirstAndSkipTheExcludedEntry() {
        var tree = UnstableTree()
        let a = Entry(session: 1, key: 1), b = Entry(session: 2, key: 2), c = Entry(session: 1, key: 3)
        tree.insert(hash: 5, a)
        tree.insert(hash: 5, b)
        tree.insert(hash: 5, c)
        #expect(tree.count == 3)
        #expect(tree.takePartner(hash: 5, excluding: a) == b) // a is skipped, not removed
        #expect(tree.count == 2)
        #expect(tree.takePartner(hash: 5, excluding: Entry(session: 9, key: 9)) == a)
        #expect(tree.takePartner(hash: 5, excluding: c) == nil)
        #expect(tree.count == 1)
        #expect(tree.takePartner(hash: 5, excluding: b) == c)
        #expect(tree.count == 0)
    }

    @Test func removeAllTakesOnlyThatSessionsEntriesUnderTheGivenHashes() {
        var tree = UnstableTree()
        tree.insert(hash: 1, Entry(session: 1, key: 10))
        tree.insert(hash: 1, Entry(session: 2, key: 20))
        tree.insert(hash: 1, Entry(session: 1, key: 11))
        tree.insert(hash: 2, Entry(session: 1, key: 12))
        tree.insert(hash: 3, Entry(session: 1, key: 13))
        tree.insert(hash: 3, Entry(session: 2, key: 21))
        #expect(tree.count == 6)

        // Hash 3 is not listed: session 1's entry under it stays. Hash 4 holds nothing.
        tree.removeAll(of: 1, hashes: [1, 2, 4])
        #expect(tree.count == 3)
        let other = Entry(session: 7, key: 0)
        #expect(tree.takePartner(hash: 1, excluding: other) == Entry(session: 2, key: 20))
        #expect(tree.takePartner(hash: 1, excluding: other) == nil)
        #expect(tree.takePartner(hash: 2, excluding: other) == nil)
        #expect(tree.takePartner(hash: 3, excluding: other) == Entry(session: 1, key: 13))
        #expect(tree.takePartner(hash: 3, excluding: other) == Entry(session: 2, key: 21))
        #expect(tree.count == 0)

        // Removing again, or for a session with nothing filed, is harmless.
        tree.removeAll(of: 1, hashes: [1, 2, 3])
        tree.removeAll(of: 2, hashes: [])
        #expect(tree.count == 0)
    }

    /// Processes scanning in step file a burst of entries; once the round's entries go, the
    /// memory goes with them, and the entries left are all still found, oldest first.
    @Test func aRoundsEntriesLeavingGiveTheMemoryBack() {
        var tree = UnstableTree()
        for key in 0..<100_000 as Range<UInt64> { tree.insert(hash: key % 50_000, Entry(session: key < 99_000 ? 1 : 2, key: key)) }
        let burst = tree.memoryBytes
        #expect(burst >= 100_000 * 24)
        tree.removeAll(of: 1, hashes: 0..<50_000)
        tree._checkInvariants()
        #expect(tree.count == 1000)
        #expect(tree.memoryBytes * 16 <= burst, "\(tree.memoryBytes) of \(burst) bytes")
        let other = Entry(session: 9, key: 0)
        for key in 99_000..<100_000 as Range<UInt64> {
            #expect(tree.takePartner(hash: key % 50_000, excluding: other) == Entry(session: 2, key: key))
        }
        #expect(tree.count == 0)
    }

    @Test func aHashCanBeUsedAgainAfterItsListEmptied() {
        var tree = UnstableTree()
        tree.insert(hash: 1, Entry(session: 1, key: 1))
        tree.removeAll(of: 1, hashes: [1])
        #expect(tree.count == 0)
        tree.insert(hash: 1, Entry(session: 1, key: 2))
        #expect(tree.count == 1)
        #expect(tree.takePartner(hash: 1, excluding: Entry(session: 2, key: 1)) == Entry(session: 1, key: 2))
        #expect(tree.count == 0)
    }

    @Test func theSameEntryIsFiledOnce() {
        var tree = UnstableTree()
        let me = Entry(session: 1, key: 0x1000)
        let first = tree.insert(hash: 3, me)
        #expect(first)
        // A client sending the same page again, any number of times, adds nothing: no probe run
        // of copies for later inserts and removals to walk.
        var refilled = 0
        for _ in 0..<100_000 where tree.insert(hash: 3, me) { refilled += 1 }
        #expect(refilled == 0)
        #expect(tree.count == 1)
        // The same key under another hash, or another key under this hash, is another entry.
        let otherHash = tree.insert(hash: 4, me)
        let otherKey = tree.insert(hash: 3, Entry(session: 1, key: 0x2000))
        #expect(otherHash && otherKey)
        #expect(tree.count == 3)
        tree.removeAll(of: 1, hashes: [3, 3, 3, 4])
        #expect(tree.count == 0)
        tree._checkInvariants()
    }

    /// Random operations against a plain list of (hash, entry), oldest first.
    @Test(arguments: [1, 2, 3, 42] as [UInt64])
    func matchesAReferenceModel(seed: UInt64) {
        var g = SplitMix64(seed: seed)
        var tree = UnstableTree()
        var model: [(hash: UInt64, entry: Entry)] = []
        var hashesOf: [UInt64: Set<UInt64>] = [:]
        for step in 0..<5000 {
            let hash = g.next() % 8
            let entry = Entry(session: g.next() % 4, key: g.next() % 6)
            switch g.next() % 10 {
            case 0..<5:
                let filed = tree.insert(hash: hash, entry)
                let duplicate = model.contains { $0.hash == hash && $0.entry == entry }
                #expect(filed == !duplicate, "step \(step)")
                if !duplicate { model.append((hash, entry)) }
                hashesOf[entry.session, default: []].insert(hash)
            case 5..<9:
                let got = tree.takePartner(hash: hash, excluding: entry)
                if let i = model.firstIndex(where: { $0.hash == hash && $0.entry != entry }) {
                    #expect(got == model[i].entry, "step \(step)")
                    model.remove(at: i)
                } else {
                    #expect(got == nil, "step \(step)")
                }
            default:
                let session = entry.session
                let hashes = hashesOf[session] ?? []
                tree.removeAll(of: session, hashes: hashes)
                model.removeAll { $0.entry.session == session && hashes.contains($0.hash) }
                hashesOf[session] = nil
            }
            #expect(tree.count == model.count, "step \(step)")
        }
    }
}
