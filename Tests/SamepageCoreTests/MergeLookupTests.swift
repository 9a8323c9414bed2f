import Testing
@testable import SamepageCore

// mergeLookup (ServiceMerging.swift): candidates by digest. The server answers from its digest
// index and unstable tree without reading a byte of the candidate, asks for the bytes only to
// make a new pair, and never files a page under a digest it did not compute itself.

private func addresses(_ base: UInt64, _ count: Int) -> [UInt64] {
    (0..<count).map { base + UInt64($0) * 4096 }
}

private final class LookupFixture: ServiceHarness {
    func lookup(_ client: SessionClient, round: UInt32 = 1, flags: MergeFlags = [], _ contents: [UInt64],
                keys: [UInt64], sourceLocation: SourceLocation = #_sourceLocation) -> (outcomes: [MergeOutcome], hints: [MergeHint]) {
        let replies = send(.mergeLookup(round: round, flags: flags, keys: keys, digests: contents.map(digest(of:))), client)
        guard replies.count == 1, case .mergeResults(let outcomes, let hints) = replies[0] else {
            Issue.record("mergeLookup answered \(replies)", sourceLocation: sourceLocation)
            return ([], [])
        }
        #expect(outcomes.count == keys.count, sourceLocation: sourceLocation)
        return (outcomes, hints)
    }

    func scan(_ client: SessionClient, round: UInt32 = 1, _ contents: [UInt64], keys: [UInt64]) -> (outcomes: [MergeOutcome], hints: [MergeHint]) {
        for (i, id) in contents.enumerated() { client.staging.fill(i, id: id) }
        guard case .mergeResults(let outcomes, let hints)? = send(.mergeScan(round: round, flags: [], stagingPage: 0, keys: keys), client).first else {
            Issue.record("mergeScan failed")
            return ([], [])
        }
        return (outcomes, hints)
    }

    func stat(_ client: SessionClient, _ name: String) -> Int64? {
        service.statistics(of: client.session.domain).first { $0.name == name }?.value
    }
}

@Suite("Merge lookups by digest")
struct MergeLookupTests {
    @Test func aPairIsMadeFromTheSecondPagesBytesAndFoundByDigestAfter() throws {
        let f = LookupFixture()
        let a = try f.client(pid: 1), b = try f.client(pid: 2), c = try f.client(pid: 3)
        // A alone: filed in the unstable tree.
        #expect(f.lookup(a, [10, 11], keys: addresses(0xA000, 2)).outcomes == [.unstable, .unstable])
        // B has the same digests: the server wants B's bytes to make the pairs.
        #expect(f.lookup(b, [10, 11], keys: addresses(0xB000, 2)).outcomes == [.needContent, .needContent])
        let made = f.scan(b, [10, 11], keys: addresses(0xB000, 2))
        let pages = made.outcomes.compactMap(\.page)
        #expect(pages.count == 2)
        // A hears of the pairs with its next request.
        let hinted = f.lookup(a, [], keys: [])
        #expect(Set(hinted.hints.map(\.page)) == Set(pages))
        #expect(Set(hinted.hints.map(\.key)) == Set(addresses(0xA000, 2)))
        // C finds the stored pages by digest alone.
        let found = f.lookup(c, [11, 10], keys: addresses(0xC000, 2))
        #expect(found.outcomes == [.merge(pages[1]), .merge(pages[0])])
        let store = c.session.domain.store
        #expect(store.owners(of: pages[0]) == 3 && store.owners(of: pages[1]) == 3)
        #expect(f.stat(c, "pages_sharing") == 4)
        store._checkInvariants()
    }

    /// Pages read for the first time or changed since the last scan: KSM searches its stable
    /// tree for them, but they must not enter the unstable tree nor make pairs.
    @Test func stableOnlyLookupsFindStoredPagesAndFileNothing() throws {
        let f = LookupFixture()
        let a = try f.client(pid: 1), b = try f.client(pid: 2), c = try f.client(pid: 3)
        #expect(f.lookup(a, [10], keys: [0xA000]).outcomes == [.unstable])
        // C's stable-only lookup of content 10 finds A's unstable entry and leaves it be.
        #expect(f.lookup(c, flags: .stableOnly, [10, 30], keys: addresses(0xC000, 2)).outcomes == [.unstable, .unstable])
        #expect(f.stat(c, "pages_unshared") == 1, "only A's entry waits")
        // Nor did C file content 30: B's candidate of it finds no partner.
        #expect(f.lookup(b, [30], keys: [0xB100]).outcomes == [.unstable])
        // B pairs with A; then C's stable-only lookup merges, with a reference.
        #expect(f.lookup(b, [10], keys: [0xB000]).outcomes == [.needContent])
        let page = try #require(f.scan(b, [10], keys: [0xB000]).outcomes.first?.page)
        #expect(f.lookup(c, flags: .stableOnly, [10], keys: [0xC000]).outcomes == [.merge(page)])
        let store = c.session.domain.store
        #expect(store.owners(of: page) == 3)
        // A zero page is not answered `.zero` (KSM discards zero pages only once unchanged).
        let zero = PageStore.zeroDigest
        let replies = f.send(.mergeLookup(round: 1, flags: [.stableOnly, .useZeroPages], keys: [0xC100], digests: [zero]), c)
        guard case .mergeResults(let outcomes, _)? = replies.first else {
            Issue.record("mergeLookup answered \(replies)")
            return
        }
        #expect(outcomes == [.unstable])
        store._checkInvariants()
    }

    @Test func aFalseDigestFilesNothingUnderIt() throws {
        let f = LookupFixture()
        let a = try f.client(pid: 1), b = try f.client(pid: 2)
        #expect(f.lookup(a, [10], keys: [0xA000]).outcomes == [.unstable])
        // B claims content 10's digest, then sends other bytes (20): the server computes the
        // digest of what it got, finds no partner for it, and stores nothing.
        #expect(f.lookup(b, [10], keys: [0xB000]).outcomes == [.needContent])
        #expect(f.scan(b, [20], keys: [0xB000]).outcomes == [.unstable])
        let store = a.session.domain.store
        #expect(store.pagesInUse == 0)
        #expect(store.page(forDigest: digest(of: 10)) == nil && store.page(forDigest: digest(of: 20)) == nil)
        store._checkInvariants()
    }

    @Test func aStoredPageIsOnlyProposed_theClientsCompareDecides() throws {
        let f = LookupFixture()
        let a = try f.client(pid: 1), b = try f.client(pid: 2), c = try f.client(pid: 3)
        _ = f.lookup(a, [10], keys: [0xA000])
        _ = f.lookup(b, [10], keys: [0xB000])
        let page = try #require(f.scan(b, [10], keys: [0xB000]).outcomes.first?.page)
        // C's page holds something else but C sends 10's digest: C is offered the page with a
        // reference it must give back when its own compare fails. The stored bytes are intact.
        #expect(f.lookup(c, [10], keys: [0xC000]).outcomes == [.merge(page)])
        #expect(f.send(.mergeRelease(pages: [page]), c) == [.done])
        let backing = f.backing(c)
        let expected = PageBuffer(pages: 1)
        expected.fill(0, id: 10)
        #expect(memcmpPage(backing.page(page), expected.page(0)))
        c.session.domain.store._checkInvariants()
    }

    @Test func zeroPagesByDigestOnlyWithUseZeroPages() throws {
        let f = LookupFixture()
        let a = try f.client()
        #expect(f.lookup(a, flags: .useZeroPages, [0], keys: [0xA000]).outcomes == [.zero])
        #expect(f.lookup(a, round: 2, [0], keys: [0xA000]).outcomes == [.unstable])
    }

    @Test func objectPagesAreNotFoundByDigestUntilAMergeSharesThem() throws {
        let f = LookupFixture()
        let a = try f.client(pid: 1), b = try f.client(pid: 2)
        a.staging.fill(0, id: 30)
        _ = f.send(.putBegin(upload: 1, length: 4096), a)
        _ = f.send(.putPages(upload: 1, stagingPage: 0, pageCount: 1), a)
        _ = f.send(.putCommit(upload: 1), a)
        // KSM's stable tree holds merged pages only: the object's page is not proposed by digest.
        #expect(f.lookup(b, [30], keys: [0xB000]).outcomes == [.unstable])
        // With the bytes, the stable tree (which does hold it) shares it, and files its digest.
        let page = try #require(f.scan(b, round: 2, [30], keys: [0xB000]).outcomes.first?.page)
        let c = try f.client(pid: 3)
        #expect(f.lookup(c, [30], keys: [0xC000]).outcomes == [.merge(page)])
        c.session.domain.store._checkInvariants()
    }

    @Test func aFreedPageLeavesTheIndex() throws {
        let f = LookupFixture()
        let a = try f.client(pid: 1), b = try f.client(pid: 2)
        _ = f.lookup(a, [10], keys: [0xA000])
        _ = f.lookup(b, [10], keys: [0xB000])
        let page = try #require(f.scan(b, [10], keys: [0xB000]).outcomes.first?.page)
        f.service.close(a.session)
        #expect(f.send(.mergeRelease(pages: [page]), b) == [.done])
        let store = b.session.domain.store
        #expect(store.pagesInUse == 0)
        #expect(store.page(forDigest: digest(of: 10)) == nil)
        #expect(f.lookup(b, round: 2, [10], keys: [0xB000]).outcomes == [.unstable])
        store._checkInvariants()
    }

    @Test func aLeavingProcessGivesItsPagesBackInWholeExtents() throws {
        let f = LookupFixture()
        let a = try f.client(pid: 1), b = try f.client(pid: 2)
        let contents = Array(UInt64(100)..<116)
        _ = f.lookup(a, contents, keys: addresses(0xA000, 16))
        _ = f.lookup(b, contents, keys: addresses(0xB000, 16))
        let made = f.scan(b, contents, keys: addresses(0xB000, 16)).outcomes.compactMap(\.page)
        #expect(made.count == 16)
        _ = f.lookup(a, [], keys: [])  // A takes its hints: every page has two owners
        f.service.close(a.session)
        let backing = f.backing(b)
        let before = backing.released.count
        f.service.close(b.session)
        // 16 consecutive pages freed at once: one extent (one hole punch), not 16.
        #expect(backing.released.count - before == 1)
        #expect(backing.releasedPages >= 16)
    }

    @Test func aBatchLargerThanTheLimitIsRefused() throws {
        let f = LookupFixture()
        let a = try f.client()
        let n = Service.maxMergeBatch + 1
        let replies = f.send(.mergeLookup(round: 1, flags: [], keys: Array(repeating: 1, count: n), digests: Array(repeating: 2, count: n)), a)
        guard case .failure(let code, _)? = replies.first else { Issue.record("\(replies)"); return }
        #expect(code == .limitExceeded)
    }

    /// Entries stay filed across rounds, so a client's list of the digests it filed under (kept
    /// for its leaving) would grow with every page it files and withdraws: it is compacted now
    /// and then, and stays within a slack of the entries.
    @Test func aClientThatFilesAndWithdrawsForeverKeepsABoundedList() throws {
        let f = LookupFixture()
        f.service.unstableHashesSlack = 1024
        let a = try f.client(pid: 1)
        for round in UInt32(1)...10_000 {
            let content = UInt64(round)
            let withdrawn = round > 1 ? [MergeWithdrawal(key: 0xA000, digest: digest(of: content - 1))] : []
            let replies = f.send(.mergeLookup(round: round, flags: [], keys: [0xA000, 0xA000 + UInt64(round) * 4096],
                                              digests: [digest(of: content), digest(of: 1_000_000)], withdrawn: withdrawn), a)
            guard case .mergeResults(let outcomes, _)? = replies.first else { Issue.record("\(replies)"); return }
            #expect(outcomes.count == 2)
        }
        // One entry of 0xA000, and the pairs of 1_000_000 each round (a key of its own pairs
        // with the last one's entry, so at most one waits).
        #expect(a.session.domain.unstableCount <= 2)
        #expect(a.session.unstableHashes.count <= 4096, "\(a.session.unstableHashes.count) digests listed")
        #expect(f.service.verify(a.session.domain).isEmpty)
    }

    /// A client that sends one page (key and digest) again and again in a round files it once:
    /// copies would pile up in one probe run of the unstable tree, and every later insert and
    /// removal under that digest would walk them. Other clients are answered as before.
    @Test func theSamePageSentAgainIsFiledOnce() throws {
        let f = LookupFixture()
        let a = try f.client(pid: 1), b = try f.client(pid: 2)
        let keys = Array(repeating: UInt64(0xA000), count: Service.maxMergeBatch)
        for _ in 0..<8 {
            let outcomes = f.lookup(a, Array(repeating: 42, count: keys.count), keys: keys).outcomes
            #expect(outcomes.allSatisfy { $0 == .unstable })
        }
        #expect(a.session.domain.unstableCount == 1)
        // B's page with that content pairs with A's single entry.
        #expect(f.lookup(b, [42], keys: [0xB000]).outcomes == [.needContent])
        #expect(f.scan(b, [42], keys: [0xB000]).outcomes.compactMap(\.page).count == 1)
        #expect(a.session.domain.unstableCount == 0)
        // A's next round drops nothing that is not there.
        _ = f.lookup(a, round: 2, [], keys: [])
        #expect(a.session.domain.unstableCount == 0)
    }

    /// Processes that scan the same content in step: the first asked for a pair's bytes holds a
    /// promise, and the others are filed rather than asked for copies of the same bytes; the pair,
    /// once made, is handed to all of them.
    @Test func oneClientIsAskedForAPairsBytes_theOthersWaitAndAreHandedThePage() throws {
        let f = LookupFixture()
        let a = try f.client(pid: 1), b = try f.client(pid: 2), c = try f.client(pid: 3), d = try f.client(pid: 4)
        #expect(f.lookup(a, [10, 11], keys: addresses(0xA000, 2)).outcomes == [.unstable, .unstable])
        #expect(f.lookup(b, [10, 11], keys: addresses(0xB000, 2)).outcomes == [.needContent, .needContent])
        // B's bytes are on their way: C and D are not asked for theirs.
        #expect(f.lookup(c, [10, 11], keys: addresses(0xC000, 2)).outcomes == [.unstable, .unstable])
        #expect(f.lookup(d, [11], keys: [0xD000]).outcomes == [.unstable])
        let pages = f.scan(b, [10, 11], keys: addresses(0xB000, 2)).outcomes.compactMap(\.page)
        #expect(pages.count == 2)
        // A, C and D hear of the pairs with their next request, each with a reference.
        for (client, keys) in [(a, addresses(0xA000, 2)), (c, addresses(0xC000, 2)), (d, [0xD000])] {
            let hints = f.lookup(client, [], keys: []).hints
            #expect(Set(hints.map(\.key)) == Set(keys))
            #expect(Set(hints.map(\.page)).isSubset(of: Set(pages)) && hints.count == keys.count)
        }
        let store = a.session.domain.store
        #expect(store.owners(of: pages[0]) == 3 && store.owners(of: pages[1]) == 4)
        #expect(a.session.domain.unstableCount == 0, "every waiting entry was handed the page")
        #expect(f.stat(a, "pages_sharing") == 5)
        store._checkInvariants()
    }

    /// A promise lasts until the promiser's next scan request, with the bytes or without them (a
    /// page that went away is not sent), or until it leaves: then the next client is asked.
    @Test func aPromiseEndsWithThePromisersNextRequestOrItsLeaving() throws {
        let f = LookupFixture()
        let a = try f.client(pid: 1), b = try f.client(pid: 2), c = try f.client(pid: 3), d = try f.client(pid: 4)
        #expect(f.lookup(a, [10], keys: [0xA000]).outcomes == [.unstable])
        #expect(f.lookup(b, [10], keys: [0xB000]).outcomes == [.needContent])
        #expect(f.lookup(c, [10], keys: [0xC000]).outcomes == [.unstable])
        // B's next request is another lookup: its page went away, and its promise with it.
        #expect(f.lookup(b, [20], keys: [0xB100]).outcomes == [.unstable])
        #expect(f.lookup(d, [10], keys: [0xD000]).outcomes == [.needContent])
        // D leaves without sending: the promise goes with it.
        f.service.close(d.session)
        let e = try f.client(pid: 5)
        #expect(f.lookup(e, [10], keys: [0xE000]).outcomes == [.needContent])
        // E's bytes make the pair; A and C, filed under the digest, are handed the page.
        let page = try #require(f.scan(e, [10], keys: [0xE000]).outcomes.first?.page)
        #expect(f.lookup(a, [], keys: []).hints == [MergeHint(key: 0xA000, page: page)])
        #expect(f.lookup(c, [], keys: []).hints == [MergeHint(key: 0xC000, page: page)])
        #expect(a.session.domain.store.owners(of: page) == 3)
        a.session.domain.store._checkInvariants()
        #expect(a.session.domain.unstable.promiseCount == 0, "E's request withdrew its promise")
        a.session.domain.unstable._checkInvariants()
    }

    /// A client asked for bytes that never sends them nor anything else (stopped, or hostile)
    /// holds the pair up only until someone starts a new scan round.
    @Test func aQuietPromiserHoldsAPairUpOnlyUntilTheNextRound() throws {
        let f = LookupFixture()
        let a = try f.client(pid: 1), b = try f.client(pid: 2), c = try f.client(pid: 3)
        #expect(f.lookup(a, [10], keys: [0xA000]).outcomes == [.unstable])
        #expect(f.lookup(b, [10], keys: [0xB000]).outcomes == [.needContent])
        #expect(f.lookup(c, [10], keys: [0xC000]).outcomes == [.unstable])
        // B stays silent. C's next full scan: C is asked, and its bytes make the pair with A.
        #expect(f.lookup(c, round: 2, [10], keys: [0xC000]).outcomes == [.needContent])
        let page = try #require(f.scan(c, round: 2, [10], keys: [0xC000]).outcomes.first?.page)
        #expect(f.lookup(a, [], keys: []).hints == [MergeHint(key: 0xA000, page: page)])
        // B wakes up and sends its bytes after all: they merge with the stored page.
        #expect(f.scan(b, [10], keys: [0xB000]).outcomes == [.merge(page)])
        #expect(c.session.domain.store.owners(of: page) == 3)
        c.session.domain.store._checkInvariants()
        c.session.domain.unstable._checkInvariants()
    }

    /// The waiters handed a new pair's page are bounded by max_page_sharing, as every sharer is;
    /// the rest stay filed and pair among themselves.
    @Test func handingAPairToWaitersStopsAtMaxPageSharing() throws {
        let f = LookupFixture(maxPageSharing: 3)
        let clients = try (1...5).map { try f.client(pid: Int32($0)) }
        #expect(f.lookup(clients[0], [10], keys: [0x1000]).outcomes == [.unstable])
        #expect(f.lookup(clients[1], [10], keys: [0x2000]).outcomes == [.needContent])
        for client in clients[2...] { #expect(f.lookup(client, [10], keys: [0x3000]).outcomes == [.unstable]) }
        let page = try #require(f.scan(clients[1], [10], keys: [0x2000]).outcomes.first?.page)
        let store = clients[0].session.domain.store
        #expect(store.owners(of: page) == 3)
        #expect(clients[0].session.domain.unstableCount == 2, "two waiters left for the next pair")
        let hinted = clients.filter { !f.lookup($0, [], keys: []).hints.isEmpty }.count
        #expect(hinted == 2, "the partner and one waiter")
        store._checkInvariants()
    }
}

