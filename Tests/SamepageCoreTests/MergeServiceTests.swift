import Testing
@testable import SamepageCore

// The mergeable-memory half of the service (ServiceMerging.swift): mergeScan, mergeRelease,
// scanReport, configure and what close() does with merge state. No sockets: requests go to
// Service.handle directly, staging memory is a PageBuffer and regions are MemoryBackings.

/// One connection: a session and the staging memory its candidates are copied to.
private typealias MergeClient = SessionClient

private struct ScanResult: Equatable {
    var outcomes: [MergeOutcome]
    var hints: [MergeHint]
}

private struct UnexpectedReply: Error {}

private extension Reply {
    var failureCode: ErrorCode? {
        if case .failure(let code, _) = self { code } else { nil }
    }
}

/// Keys (the client's page addresses) `base`, `base + 4096`, ...
private func keys(_ base: UInt64, _ count: Int) -> [UInt64] {
    (0..<count).map { base + UInt64($0) * 4096 }
}

private final class MergeFixture: ServiceHarness {
    func store(_ client: MergeClient) -> PageStore { client.session.domain.store }
    func owners(_ client: MergeClient, _ page: PageNumber) -> UInt32 { store(client).owners(of: page) }

    /// Copies `contents` to staging pages from `first` and submits them as candidates `keys`.
    func scan(_ client: MergeClient, round: UInt32 = 1, flags: MergeFlags = [], _ contents: [UInt64], keys: [UInt64],
              at first: Int = 0, sourceLocation: SourceLocation = #_sourceLocation) throws -> ScanResult {
        precondition(contents.count == keys.count)
        for (i, id) in contents.enumerated() { client.staging.fill(first + i, id: id) }
        let replies = send(.mergeScan(round: round, flags: flags, stagingPage: UInt32(first), keys: keys), client)
        guard replies.count == 1, case .mergeResults(let outcomes, let hints) = replies[0] else {
            Issue.record("mergeScan answered \(replies)", sourceLocation: sourceLocation)
            throw UnexpectedReply()
        }
        #expect(outcomes.count == keys.count, sourceLocation: sourceLocation)
        return ScanResult(outcomes: outcomes, hints: hints)
    }

    /// Uploads an object of `contents` through putBegin/putPages/putCommit and returns its id.
    func upload(_ client: MergeClient, _ contents: [UInt64], handle: UInt32 = 1, at first: Int = 0,
                sourceLocation: SourceLocation = #_sourceLocation) throws -> ObjectID {
        for (i, id) in contents.enumerated() { client.staging.fill(first + i, id: id) }
        #expect(send(.putBegin(upload: handle, length: UInt64(contents.count * Page.size)), client) == [.done],
                sourceLocation: sourceLocation)
        #expect(send(.putPages(upload: handle, stagingPage: UInt32(first), pageCount: UInt32(contents.count)), client)
                == [.done], sourceLocation: sourceLocation)
        let replies = send(.putCommit(upload: handle), client)
        guard replies.count == 1, case .committed(let id) = replies[0] else {
            Issue.record("putCommit answered \(replies)", sourceLocation: sourceLocation)
            throw UnexpectedReply()
        }
        return id
    }

    func stats(_ client: MergeClient) -> [String: Int64] {
        Dictionary(uniqueKeysWithValues: service.statistics(of: client.session.domain).map { ($0.name, $0.value) })
    }

    /// The figures that describe sharing, with region usage in pages.
    func expectSharing(_ client: MergeClient, shared: Int64, sharing: Int64, unshared: Int64, usedPages: Int64,
                       sourceLocation: SourceLocation = #_sourceLocation) {
        let s = stats(client)
        #expect(s["pages_shared"] == shared, "pages_shared", sourceLocation: sourceLocation)
        #expect(s["pages_sharing"] == sharing, "pages_sharing", sourceLocation: sourceLocation)
        #expect(s["pages_unshared"] == unshared, "pages_unshared", sourceLocation: sourceLocation)
        #expect(s["region_bytes_used"] == usedPages * Int64(Page.size), "region_bytes_used", sourceLocation: sourceLocation)
    }

    func expectFailure(_ replies: [Reply], _ code: ErrorCode, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(replies.count == 1, sourceLocation: sourceLocation)
        #expect(replies.first?.failureCode == code, "got \(replies)", sourceLocation: sourceLocation)
    }

    /// The store's own invariants, and that every merge reference a live session holds is an owner.
    func checkInvariants(sourceLocation: SourceLocation = #_sourceLocation) {
        for domain in service.allDomains {
            domain.store._checkInvariants()
            var held: [PageNumber: UInt32] = [:]
            for session in domain.sessions.values {
                session.merged.forEach { page, n in held[page, default: 0] += n }
            }
            for (page, n) in held {
                #expect(domain.store.owners(of: page) >= n, "page \(page) has fewer owners than merge references",
                        sourceLocation: sourceLocation)
            }
        }
    }
}

@Suite("Mergeable memory service")
struct MergeServiceTests {
    // MARK: Stable tree

    @Test func aCandidateEqualToAStoredPageMerges() throws {
        let f = MergeFixture()
        let owner = try f.client(pid: 1)
        let c = try f.client(pid: 2)
        let id = try f.upload(owner, [7, 8]) // region pages 0 and 1
        f.expectSharing(c, shared: 0, sharing: 0, unshared: 2, usedPages: 2)

        let r = try f.scan(c, [8, 7, 9], keys: keys(0x10_0000, 3))
        #expect(r == ScanResult(outcomes: [.merge(1), .merge(0), .unstable], hints: []))
        #expect(f.owners(c, 0) == 2)
        #expect(f.owners(c, 1) == 2)
        #expect(c.session.mergedReferences == 2)
        #expect(c.session.mergedByPage == [0: 1, 1: 1])
        #expect(owner.session.mergedReferences == 0)
        // Two pages gained an owner each; content 9 waits in the unstable tree.
        f.expectSharing(c, shared: 2, sharing: 2, unshared: 1, usedPages: 2)
        #expect(c.session.domain.unstableCount == 1)
        f.checkInvariants()

        #expect(f.send(.mergeRelease(pages: [1]), c) == [.done])
        #expect(f.owners(c, 1) == 1)
        #expect(c.session.mergedByPage == [0: 1])
        f.expectSharing(c, shared: 1, sharing: 1, unshared: 2, usedPages: 2)
        #expect(f.send(.mergeRelease(pages: [0]), c) == [.done])
        #expect(f.owners(c, 0) == 1)
        #expect(c.session.mergedReferences == 0)
        f.expectSharing(c, shared: 0, sharing: 0, unshared: 3, usedPages: 2)
        // The object is intact, and nothing was given back to the kernel.
        #expect(Content.matches(f.backing(c).page(0), id: 7))
        #expect(Content.matches(f.backing(c).page(1), id: 8))
        #expect(f.backing(c).released.isEmpty)
        #expect(f.send(.delete(id), owner) == [.done])
        f.expectSharing(c, shared: 0, sharing: 0, unshared: 1, usedPages: 0)
        f.checkInvariants()
    }

    @Test func aMergeReferenceKeepsAPageAfterItsObjectIsDeleted() throws {
        let f = MergeFixture()
        let c = try f.client()
        let id = try f.upload(c, [5])
        #expect(try f.scan(c, [5], keys: [0x4000]).outcomes == [.merge(0)])
        #expect(f.send(.delete(id), c) == [.done])
        #expect(f.owners(c, 0) == 1)
        #expect(f.service.budget.used == 1)
        #expect(Content.matches(f.backing(c).page(0), id: 5))
        #expect(f.backing(c).released.isEmpty)
        #expect(f.send(.mergeRelease(pages: [0]), c) == [.done])
        #expect(f.owners(c, 0) == 0)
        #expect(f.service.budget.used == 0)
        #expect(f.backing(c).released == [ExtentAllocator.Extent(start: 0, count: 1)])
        f.checkInvariants()
    }

    // MARK: Unstable tree

    @Test func twoSessionsOfOneUIDPairThroughTheUnstableTree() throws {
        let f = MergeFixture()
        let a = try f.client(pid: 1)
        let b = try f.client(pid: 2)

        #expect(try f.scan(a, [5], keys: [0xA000]) == ScanResult(outcomes: [.unstable], hints: []))
        #expect(a.session.domain.unstableCount == 1)
        f.expectSharing(a, shared: 0, sharing: 0, unshared: 1, usedPages: 0) // the unstable entry

        // The second page pairs: it is stored, the submitter merges, a reference is taken for a.
        #expect(try f.scan(b, [5], keys: [0xB000]) == ScanResult(outcomes: [.merge(0)], hints: []))
        #expect(Content.matches(f.backing(a).page(0), id: 5))
        #expect(f.owners(a, 0) == 2)
        #expect(a.session.domain.unstableCount == 0)
        f.expectSharing(a, shared: 1, sharing: 1, unshared: 0, usedPages: 1)
        #expect(a.session.mergedByPage == [0: 1])
        #expect(b.session.mergedByPage == [0: 1])
        #expect(a.session.pendingHints == [MergeHint(key: 0xA000, page: 0)])
        #expect(b.session.pendingHints.isEmpty)
        f.checkInvariants()

        // b's next scan does not carry a's hint; a's next scan does, once.
        #expect(try f.scan(b, [6], keys: [0xB001]) == ScanResult(outcomes: [.unstable], hints: []))
        #expect(try f.scan(a, [7], keys: [0xA001]) ==
                ScanResult(outcomes: [.unstable], hints: [MergeHint(key: 0xA000, page: 0)]))
        #expect(a.session.pendingHints.isEmpty)
        #expect(f.send(.mergeScan(round: 1, flags: [], stagingPage: 0, keys: []), a) == [.mergeResults([], hints: [])])
        #expect(f.owners(a, 0) == 2) // delivering a hint takes no further reference

        // a could not complete the merge: it gives the reference back.
        #expect(f.send(.mergeRelease(pages: [0]), a) == [.done])
        #expect(f.owners(a, 0) == 1)
        f.expectSharing(a, shared: 0, sharing: 0, unshared: 3, usedPages: 1) // page 0, contents 6 and 7
        f.checkInvariants()
    }

    @Test func hintsAreDeliveredWithAScanWithoutCandidates() throws {
        let f = MergeFixture()
        let a = try f.client(pid: 1)
        let b = try f.client(pid: 2)
        _ = try f.scan(a, [1, 2], keys: [0xA000, 0xA001])
        #expect(try f.scan(b, [2, 1], keys: [0xB000, 0xB001]).outcomes == [.merge(0), .merge(1)])
        #expect(f.send(.mergeScan(round: 1, flags: [], stagingPage: 0, keys: []), a)
                == [.mergeResults([], hints: [MergeHint(key: 0xA001, page: 0), MergeHint(key: 0xA000, page: 1)])])
        f.expectSharing(a, shared: 2, sharing: 2, unshared: 0, usedPages: 2)
        #expect(a.session.mergedByPage == [0: 1, 1: 1])
        f.checkInvariants()
    }

    @Test func twoEqualPagesOfOneBatchPair() throws {
        let f = MergeFixture()
        let c = try f.client()
        let r = try f.scan(c, [3, 4, 3], keys: [0x1000, 0x2000, 0x3000])
        #expect(r == ScanResult(outcomes: [.unstable, .unstable, .merge(0)], hints: [MergeHint(key: 0x1000, page: 0)]))
        #expect(f.owners(c, 0) == 2)
        #expect(c.session.mergedByPage == [0: 2]) // the merge and the hint
        #expect(c.session.pendingHints.isEmpty)
        f.expectSharing(c, shared: 1, sharing: 1, unshared: 1, usedPages: 1) // content 4 is unstable
        #expect(Content.matches(f.backing(c).page(0), id: 3))
        // The hint went out with this reply, not with the next.
        #expect(try f.scan(c, [9], keys: [0x4000]).hints == [])
        f.checkInvariants()
    }

    @Test func pendingHintsComeBeforeTheBatchsOwn() throws {
        let f = MergeFixture()
        let a = try f.client(pid: 1)
        let b = try f.client(pid: 2)
        _ = try f.scan(a, [1], keys: [0xA000])
        _ = try f.scan(b, [1], keys: [0xB000]) // page 0, hint for a
        let r = try f.scan(a, [2, 2], keys: [0xA001, 0xA002])
        #expect(r == ScanResult(outcomes: [.unstable, .merge(1)],
                                hints: [MergeHint(key: 0xA000, page: 0), MergeHint(key: 0xA001, page: 1)]))
        #expect(a.session.mergedByPage == [0: 1, 1: 2])
        f.expectSharing(a, shared: 2, sharing: 2, unshared: 0, usedPages: 2)
        f.checkInvariants()
    }

    @Test func aCandidateDoesNotPairWithItsOwnEarlierSubmission() throws {
        // The same key submitted again (same content) must not be told to merge with itself.
        let f = MergeFixture()
        let c = try f.client()
        #expect(try f.scan(c, [5], keys: [0x1000]).outcomes == [.unstable])
        #expect(try f.scan(c, [5], keys: [0x1000]) == ScanResult(outcomes: [.unstable], hints: []))
        #expect(f.service.budget.used == 0)
        #expect(c.session.mergedReferences == 0)
        f.checkInvariants()
    }

    @Test func sessionsOfDifferentUIDsNeverPair() throws {
        let f = MergeFixture()
        let a = try f.client(uid: 1000, pid: 1)
        let b = try f.client(uid: 2000, pid: 2)
        #expect(a.session.domain !== b.session.domain)
        _ = try f.upload(a, [5]) // a stored page in a's domain
        #expect(try f.scan(a, [6], keys: [0x1000]).outcomes == [.unstable])
        // Equal contents, even equal keys: b's domain has neither a stored page nor an entry.
        #expect(try f.scan(b, [5, 6], keys: [0x2000, 0x1000]) == ScanResult(outcomes: [.unstable, .unstable], hints: []))
        #expect(f.owners(a, 0) == 1)
        #expect(a.session.pendingHints.isEmpty)
        #expect(a.session.mergedReferences == 0 && b.session.mergedReferences == 0)
        f.expectSharing(a, shared: 0, sharing: 0, unshared: 2, usedPages: 1)
        f.expectSharing(b, shared: 0, sharing: 0, unshared: 2, usedPages: 0)
        #expect(f.service.budget.used == 1)

        // A third session of b's uid pairs with b's entry, in b's region.
        let c = try f.client(uid: 2000, pid: 3)
        #expect(try f.scan(c, [6], keys: [0x3000]).outcomes == [.merge(0)])
        #expect(Content.matches(f.backing(b).page(0), id: 6))
        #expect(b.session.pendingHints == [MergeHint(key: 0x1000, page: 0)])
        #expect(a.session.pendingHints.isEmpty)
        f.expectSharing(b, shared: 1, sharing: 1, unshared: 1, usedPages: 1)
        f.expectSharing(a, shared: 0, sharing: 0, unshared: 2, usedPages: 1)
        #expect(f.service.budget.used == 2)
        f.checkInvariants()
    }

    // MARK: Zero pages

    @Test func useZeroPagesAnswersZeroForAllZeroCandidates() throws {
        let f = MergeFixture()
        let c = try f.client()
        let r = try f.scan(c, flags: .useZeroPages, [0, 1, 0], keys: keys(0x1000, 3))
        #expect(r == ScanResult(outcomes: [.zero, .unstable, .zero], hints: []))
        #expect(f.service.budget.used == 0)
        #expect(c.session.domain.unstableCount == 1)
        #expect(c.session.mergedReferences == 0)
        let s = f.stats(c)
        #expect(s["ksm_zero_pages"] == 0) // the client reports its discarded pages (scanReport)
        #expect(s["pages_unshared"] == 1)
        // Zeros submitted with the flag are not filed: a later zero page finds no partner.
        #expect(try f.scan(c, [0], keys: [0x9000], at: 5).outcomes == [.unstable])
        #expect(f.service.budget.used == 0)
        f.checkInvariants()
    }

    @Test func withoutUseZeroPagesAZeroPagePairsLikeAnyContent() throws {
        let f = MergeFixture()
        let a = try f.client(pid: 1)
        let b = try f.client(pid: 2)
        let r = try f.scan(a, [0, 0], keys: [0x1000, 0x2000])
        #expect(r == ScanResult(outcomes: [.unstable, .merge(0)], hints: [MergeHint(key: 0x1000, page: 0)]))
        #expect(Content.isZero(f.backing(a).page(0)))
        #expect(f.owners(a, 0) == 2)
        f.expectSharing(a, shared: 1, sharing: 1, unshared: 0, usedPages: 1)
        #expect(f.stats(a)["ksm_zero_pages"] == 0)
        // The stored page of zeros is in the stable tree like any page...
        #expect(try f.scan(b, [0], keys: [0x3000]).outcomes == [.merge(0)])
        #expect(f.owners(a, 0) == 3)
        // ...but with the flag, zeros are answered .zero even though it exists.
        #expect(try f.scan(b, flags: .useZeroPages, [0], keys: [0x4000]).outcomes == [.zero])
        #expect(f.owners(a, 0) == 3)
        f.expectSharing(a, shared: 1, sharing: 2, unshared: 0, usedPages: 1)
        f.checkInvariants()
    }

    // MARK: max_page_sharing

    /// KSM's expectation (ksm_tests.c, check_ksm_max_page_sharing and its counting): N equal
    /// pages under a cap of M give
    ///     N % M in {0, 1}: pages_shared == N / M,      pages_sharing == pages_shared * (M - 1)
    ///     otherwise:       pages_shared == N / M + 1,  pages_sharing == N - pages_shared
    static func ksmRule(n: Int, m: Int) -> (shared: Int64, sharing: Int64) {
        let shared = n % m <= 1 ? n / m : n / m + 1
        let sharing = n % m <= 1 ? shared * (m - 1) : n - shared
        return (Int64(shared), Int64(sharing))
    }

    static let capsAndCounts: [(Int, Int)] = [2, 3, 5].flatMap { m in (1...(3 * m + 2)).map { (m, $0) } }

    /// One session, N equal pages, one mergeScan a round (the scanner feeds each page once a
    /// round). The server alone produces KSM's counts in the first round: a pair found in the
    /// unstable tree is stored at once with a reference taken for both pages (the earlier one's
    /// as a hint in the same reply), and later equal pages share the stored page until it has M
    /// owners. So the pages go in groups of M: the first of each group is .unstable when it is
    /// looked at, the second pairs with it (.merge(p) plus a hint for the first), the rest
    /// .merge(p). A last group of one page finds no partner and stays unstable; resubmitting it
    /// in later rounds changes nothing, as in KSM (whose leftover page also stays unshared).
    @Test(arguments: capsAndCounts)
    func maxPageSharingFollowsKSMsCountRule(m: Int, n: Int) throws {
        let f = MergeFixture()
        let c = try f.client(stagingPages: n)
        #expect(f.send(.configure(name: "max_page_sharing", value: UInt64(m)), c) == [.done])
        #expect(f.store(c).maxPageSharing == UInt32(m))
        let pageKeys = keys(0x7F00_0000_0000, n)
        let r = try f.scan(c, round: 1, Array(repeating: 42, count: n), keys: pageKeys)

        let groups = (n + m - 1) / m
        let stored = n % m == 1 ? groups - 1 : groups
        let expectedOutcomes: [MergeOutcome] = (0..<n).map { i in i % m == 0 ? .unstable : .merge(PageNumber(i / m)) }
        let expectedHints = (0..<stored).map { g in MergeHint(key: pageKeys[g * m], page: PageNumber(g)) }
        #expect(r == ScanResult(outcomes: expectedOutcomes, hints: expectedHints))

        let rule = Self.ksmRule(n: n, m: m)
        let leftover: Int64 = n % m == 1 ? 1 : 0
        f.expectSharing(c, shared: rule.shared, sharing: rule.sharing, unshared: leftover, usedPages: Int64(stored))
        #expect(Int64(stored) == rule.shared)
        let s = f.stats(c)
        #expect(s["stable_node_chains"] == (stored >= 2 ? 1 : 0))
        #expect(s["stable_node_dups"] == Int64(stored >= 2 ? stored : 0))
        for g in 0..<stored {
            #expect(f.owners(c, PageNumber(g)) == UInt32(min(m, n - g * m)), "page \(g)")
        }
        #expect(c.session.mergedReferences == n - Int(leftover))
        f.checkInvariants()

        // Round 2: the scanner resubmits only the page that did not merge (merged pages are
        // region mappings now). Every copy is full, so it stays unstable; nothing changes.
        if leftover == 1 {
            let again = try f.scan(c, round: 2, [42], keys: [pageKeys[n - 1]])
            #expect(again == ScanResult(outcomes: [.unstable], hints: []))
        }
        f.expectSharing(c, shared: rule.shared, sharing: rule.sharing, unshared: leftover, usedPages: Int64(stored))
        #expect(c.session.domain.unstableCount == Int(leftover))
        f.checkInvariants()
    }

    /// The same rule when each of N processes submits one page.
    @Test(arguments: [(2, 5), (3, 7), (3, 8), (4, 9)])
    func maxPageSharingAcrossSessions(m: Int, n: Int) throws {
        let f = MergeFixture()
        var clients: [MergeClient] = []
        for i in 0..<n { clients.append(try f.client(pid: Int32(i + 1), stagingPages: 1)) }
        #expect(f.send(.configure(name: "max_page_sharing", value: UInt64(m)), clients[0]) == [.done])
        for (i, c) in clients.enumerated() {
            let expected: MergeOutcome = i % m == 0 ? .unstable : .merge(PageNumber(i / m))
            #expect(try f.scan(c, [42], keys: [0x1000]) == ScanResult(outcomes: [expected], hints: []), "client \(i)")
        }
        let rule = Self.ksmRule(n: n, m: m)
        let leftover: Int64 = n % m == 1 ? 1 : 0
        f.expectSharing(clients[0], shared: rule.shared, sharing: rule.sharing, unshared: leftover, usedPages: rule.shared)
        // The first of each group got a hint and holds a reference already.
        for (i, c) in clients.enumerated() where i % m == 0 {
            let paired = Int64(i / m) < rule.shared
            #expect(c.session.pendingHints == (paired ? [MergeHint(key: 0x1000, page: PageNumber(i / m))] : []), "client \(i)")
            #expect(c.session.mergedReferences == (paired ? 1 : 0), "client \(i)")
        }
        f.checkInvariants()
    }

    // MARK: configure

    @Test func configureMaxPageSharing() throws {
        let f = MergeFixture(maxPageSharing: 256)
        let c = try f.client(pid: 1)
        for value: UInt64 in [0, 1, UInt64(UInt32.max) + 1, .max] {
            f.expectFailure(f.send(.configure(name: "max_page_sharing", value: value), c), .badRequest)
        }
        for name in ["pages_to_scan", "", "MAX_PAGE_SHARING", "max_page_sharing "] {
            f.expectFailure(f.send(.configure(name: name, value: 2), c), .badRequest)
        }
        #expect(f.store(c).maxPageSharing == 256)
        #expect(f.send(.configure(name: "max_page_sharing", value: 2), c) == [.done])
        #expect(f.store(c).maxPageSharing == 2)
        #expect(f.send(.configure(name: "max_page_sharing", value: UInt64(UInt32.max)), c) == [.done])
        #expect(f.store(c).maxPageSharing == UInt32.max)
        #expect(f.send(.configure(name: "max_page_sharing", value: 2), c) == [.done])

        // Pages stored by an object: refused, even by the same value.
        let id = try f.upload(c, [1])
        f.expectFailure(f.send(.configure(name: "max_page_sharing", value: 3), c), .notPermitted)
        f.expectFailure(f.send(.configure(name: "max_page_sharing", value: 2), c), .notPermitted)
        #expect(f.store(c).maxPageSharing == 2)
        // A bad value is a bad request whatever the store holds.
        f.expectFailure(f.send(.configure(name: "max_page_sharing", value: 1), c), .badRequest)
        #expect(f.send(.delete(id), c) == [.done])
        #expect(f.send(.configure(name: "max_page_sharing", value: 3), c) == [.done])
        #expect(f.store(c).maxPageSharing == 3)

        // Pages kept by merge references only: refused too.
        #expect(try f.scan(c, [5, 5], keys: [0x1000, 0x2000]).outcomes == [.unstable, .merge(0)])
        f.expectFailure(f.send(.configure(name: "max_page_sharing", value: 4), c), .notPermitted)
        #expect(f.send(.mergeRelease(pages: [0, 0]), c) == [.done])
        #expect(f.service.budget.used == 0)

        // Unstable entries store nothing: allowed.
        #expect(try f.scan(c, [6], keys: [0x3000]).outcomes == [.unstable])
        #expect(f.send(.configure(name: "max_page_sharing", value: 4), c) == [.done])
        #expect(f.store(c).maxPageSharing == 4)

        // The setting is the domain's: another uid keeps the server's default.
        let other = try f.client(uid: 2, pid: 2)
        #expect(f.store(other).maxPageSharing == 256)
        #expect(f.service.maxPageSharing == 256)
        f.checkInvariants()
    }

    // MARK: Scan rounds

    /// KSM rebuilds its unstable tree every full scan; here an entry stays filed across the
    /// client's rounds until the client withdraws it (its page changed or went away), a pair
    /// takes it, or the client leaves.
    @Test func unstableEntriesStayAcrossRoundsUntilWithdrawnTakenOrClosed() throws {
        let f = MergeFixture()
        let a = try f.client(pid: 1)
        let b = try f.client(pid: 2)
        let domain = a.session.domain
        #expect(try f.scan(a, round: 1, [5], keys: [0xA000]).outcomes == [.unstable])
        #expect(try f.scan(a, round: 1, [6], keys: [0xA001]).outcomes == [.unstable])
        #expect(try f.scan(b, round: 1, [7], keys: [0xB000]).outcomes == [.unstable])
        #expect(domain.unstableCount == 3)

        // a's round 2: its round-1 entries stay.
        #expect(try f.scan(a, round: 2, [8], keys: [0xA002]).outcomes == [.unstable])
        #expect(domain.unstableCount == 4)
        f.expectSharing(a, shared: 0, sharing: 0, unshared: 4, usedPages: 0)

        // a withdraws 0xA000 (filed under the digest of 5); a withdrawal naming another digest,
        // or a key never filed, is ignored.
        let withdrawn = [MergeWithdrawal(key: 0xA000, digest: digest(of: 5)), MergeWithdrawal(key: 0xA001, digest: digest(of: 5)),
                         MergeWithdrawal(key: 0xDEAD_0000, digest: digest(of: 5))]
        #expect(f.send(.mergeLookup(round: 2, flags: [], keys: [], digests: [], withdrawn: withdrawn), a)
                == [.mergeResults([], hints: [])])
        #expect(domain.unstableCount == 3)
        #expect(try f.scan(b, round: 1, [5], keys: [0xB001]).outcomes == [.unstable])
        #expect(f.service.budget.used == 0)

        // a's 6, filed in round 1, pairs with b's 6 now; the pair takes it.
        #expect(try f.scan(b, round: 1, [6], keys: [0xB002]).outcomes == [.merge(0)])
        #expect(a.session.pendingHints == [MergeHint(key: 0xA001, page: 0)])
        #expect(domain.unstableCount == 3)
        f.checkInvariants()

        // A leaving client's entries go with it.
        f.service.close(a.session)
        #expect(domain.unstableCount == 2)
        f.checkInvariants()
    }

    // MARK: mergeRelease

    @Test func mergeReleaseOfReferencesNotHeldChangesNothing() throws {
        let f = MergeFixture()
        let c = try f.client(pid: 1)
        let other = try f.client(pid: 2)
        _ = try f.upload(other, [1]) // page 0, an object's
        #expect(try f.scan(c, [2, 2], keys: [0x1000, 0x2000]) ==
                ScanResult(outcomes: [.unstable, .merge(1)], hints: [MergeHint(key: 0x1000, page: 1)]))
        #expect(c.session.mergedByPage == [1: 2])
        let before = f.stats(c)
        let usedBefore = f.service.budget.used

        for pages: [PageNumber] in [[0], [5], [.max], [1, 1, 1], [1, 0], [0, 1], [1, 1, 2]] {
            f.expectFailure(f.send(.mergeRelease(pages: pages), c), .badRequest)
            #expect(c.session.mergedByPage == [1: 2], "\(pages)")
        }
        // Another connection of the domain holds no reference on page 1.
        f.expectFailure(f.send(.mergeRelease(pages: [1]), other), .badRequest)
        #expect(f.owners(c, 0) == 1)
        #expect(f.owners(c, 1) == 2)
        #expect(f.stats(c) == before)
        #expect(f.service.budget.used == usedBefore)
        #expect(f.backing(c).released.isEmpty)
        f.checkInvariants()

        #expect(f.send(.mergeRelease(pages: []), c) == [.done])
        #expect(f.send(.mergeRelease(pages: [1, 1]), c) == [.done])
        #expect(c.session.mergedByPage.isEmpty)
        #expect(f.owners(c, 1) == 0)
        #expect(f.backing(c).released == [ExtentAllocator.Extent(start: 1, count: 1)])
        #expect(f.service.budget.used == 1)
        f.expectFailure(f.send(.mergeRelease(pages: [1]), c), .badRequest)
        f.expectSharing(c, shared: 0, sharing: 0, unshared: 1, usedPages: 1)
        f.checkInvariants()
    }

    // MARK: mergeScan validation

    @Test func mergeScanOutsideTheStagingMemoryIsABadRequest() throws {
        let f = MergeFixture()
        let c = try f.client(stagingPages: 4)
        for (page, count) in [(3, 2), (4, 1), (0, 5), (Int(UInt32.max), 1), (5, 0)] as [(Int, Int)] {
            f.expectFailure(f.send(.mergeScan(round: 1, flags: [], stagingPage: UInt32(page), keys: keys(0x1000, count)), c),
                            .badRequest)
        }
        #expect(c.session.domain.unstableCount == 0)
        // The last page, and an empty batch at the end, are inside.
        #expect(f.send(.mergeScan(round: 1, flags: [], stagingPage: 4, keys: []), c) == [.mergeResults([], hints: [])])
        #expect(try f.scan(c, [1, 2, 3, 4], keys: keys(0x1000, 4)).outcomes == Array(repeating: .unstable, count: 4))
        #expect(try f.scan(c, [1], keys: [0x9000], at: 3).outcomes == [.merge(0)])
        f.checkInvariants()
    }

    @Test func tooManyCandidatesExceedTheLimit() throws {
        let f = MergeFixture()
        let small = try f.client(stagingPages: 4)
        f.expectFailure(f.send(.mergeScan(round: 1, flags: [], stagingPage: 0, keys: keys(0, Service.maxMergeBatch + 1)), small),
                        .limitExceeded)
        // A full batch is accepted (all zeros, answered .zero under use_zero_pages).
        let big = try f.client(stagingPages: Service.maxMergeBatch + 1)
        f.expectFailure(f.send(.mergeScan(round: 1, flags: .useZeroPages, stagingPage: 0,
                                          keys: keys(0, Service.maxMergeBatch + 1)), big), .limitExceeded)
        #expect(f.send(.mergeScan(round: 1, flags: .useZeroPages, stagingPage: 1, keys: keys(0, Service.maxMergeBatch)), big)
                == [.mergeResults(Array(repeating: .zero, count: Service.maxMergeBatch), hints: [])])
        #expect(f.service.budget.used == 0)
    }

    @Test func mergeScanWithoutStagingIsBadStaging() throws {
        let f = MergeFixture()
        let c = try f.client()
        c.session.staging = nil
        f.expectFailure(f.send(.mergeScan(round: 1, flags: [], stagingPage: 0, keys: [0x1000]), c), .badStaging)
        f.expectFailure(f.send(.mergeScan(round: 1, flags: [], stagingPage: 0, keys: []), c), .badStaging)
        #expect(c.session.domain.unstableCount == 0)
    }

    @Test func aRefusedScanChangesNothing() throws {
        let f = MergeFixture()
        let a = try f.client(pid: 1, stagingPages: 2)
        let b = try f.client(pid: 2)
        _ = try f.scan(a, round: 1, [1, 2], keys: [0xA000, 0xA001])
        _ = try f.scan(b, round: 1, [1], keys: [0xB000]) // hint for a's 0xA000
        #expect(a.session.domain.unstableCount == 1)
        // A refused request neither withdraws, nor files, nor takes the hints.
        f.expectFailure(f.send(.mergeScan(round: 2, flags: [], stagingPage: 2, keys: [0xA002]), a), .badRequest)
        f.expectFailure(f.send(.mergeScan(round: 2, flags: [], stagingPage: 0, keys: keys(0, Service.maxMergeBatch + 1)), a),
                        .limitExceeded)
        let withdrawal = [MergeWithdrawal(key: 0xA001, digest: digest(of: 2))]
        f.expectFailure(f.send(.mergeLookup(round: 2, flags: [], keys: keys(0, Service.maxMergeBatch + 1),
                                            digests: Array(repeating: 7, count: Service.maxMergeBatch + 1), withdrawn: withdrawal), a),
                        .limitExceeded)
        #expect(a.session.domain.unstableCount == 1)
        #expect(a.session.pendingHints == [MergeHint(key: 0xA000, page: 0)])
        // a's entry for 2 still pairs.
        #expect(try f.scan(b, round: 1, [2], keys: [0xB001]).outcomes == [.merge(1)])
        #expect(f.send(.mergeScan(round: 2, flags: [], stagingPage: 0, keys: []), a)
                == [.mergeResults([], hints: [MergeHint(key: 0xA000, page: 0), MergeHint(key: 0xA001, page: 1)])])
        f.checkInvariants()
    }

    // MARK: Region full

    @Test func aPairThatFindsNoRoomStaysUnstable() throws {
        let f = MergeFixture(regionPages: 1)
        let c = try f.client()
        let id = try f.upload(c, [9]) // the only page
        let r = try f.scan(c, [4, 4], keys: [0x1000, 0x2000])
        #expect(r == ScanResult(outcomes: [.unstable, .unstable], hints: []))
        #expect(c.session.domain.unstableCount == 2)
        #expect(c.session.mergedReferences == 0)
        f.expectSharing(c, shared: 0, sharing: 0, unshared: 3, usedPages: 1)
        f.checkInvariants()

        // Room again: the next equal page pairs with the oldest entry, and the other entry of
        // the digest is handed the page too.
        #expect(f.send(.delete(id), c) == [.done])
        let r2 = try f.scan(c, [4], keys: [0x3000])
        #expect(r2 == ScanResult(outcomes: [.merge(0)], hints: [MergeHint(key: 0x1000, page: 0), MergeHint(key: 0x2000, page: 0)]))
        #expect(c.session.domain.unstableCount == 0)
        f.expectSharing(c, shared: 1, sharing: 2, unshared: 0, usedPages: 1)
        // A stored page can always take an owner, region full or not.
        #expect(try f.scan(c, [4], keys: [0x4000]).outcomes == [.merge(0)])
        #expect(f.owners(c, 0) == 4)
        f.checkInvariants()
    }

    // MARK: Hints per reply

    @Test func hintsBeyondOneReplyWaitForTheNextScan() throws {
        // A client that stops scanning while others pair with its entries accumulates hints;
        // one reply carries at most maxHintsPerReply of them, so that it fits in a frame.
        let f = MergeFixture()
        let c = try f.client()
        let total = Service.maxHintsPerReply + 10
        let pending = (0..<total).map { MergeHint(key: UInt64($0), page: PageNumber($0)) }
        c.session.pendingHints = pending
        let replies = f.send(.mergeScan(round: 1, flags: [], stagingPage: 0, keys: []), c)
        #expect(replies == [.mergeResults([], hints: Array(pending.prefix(Service.maxHintsPerReply)))])
        #expect(replies[0].encode(requestID: 1).count <= FrameHeader.size + Int(FrameHeader.maxReplyPayload))
        #expect(c.session.pendingHints == Array(pending.suffix(10)))
        #expect(f.send(.mergeScan(round: 1, flags: [], stagingPage: 0, keys: []), c)
                == [.mergeResults([], hints: Array(pending.suffix(10)))])
        #expect(c.session.pendingHints.isEmpty)
    }

    // MARK: close

    @Test func closeReleasesEveryMergeReferenceAndEntry() throws {
        let f = MergeFixture()
        let other = try f.client(pid: 1)
        let c = try f.client(pid: 2)
        let d = try f.client(pid: 3)
        _ = try f.upload(other, [1, 2]) // pages 0, 1
        // c: shares the object's page 0, pairs 3 with itself (page 2), leaves 4 unstable.
        let r = try f.scan(c, [1, 3, 3, 4], keys: keys(0xC000, 4))
        #expect(r == ScanResult(outcomes: [.merge(0), .unstable, .merge(2), .unstable], hints: [MergeHint(key: 0xD000, page: 2)]))
        // c's 5 waits; d pairs with it (page 3): a pending hint with a reference for c.
        #expect(try f.scan(c, [5], keys: [0xC100]).outcomes == [.unstable])
        #expect(try f.scan(d, [5], keys: [0xD100]).outcomes == [.merge(3)])
        // other's 6 waits too.
        #expect(try f.scan(other, [6], keys: [0x0100]).outcomes == [.unstable])
        #expect(c.session.mergedByPage == [0: 1, 2: 2, 3: 1])
        #expect(c.session.pendingHints == [MergeHint(key: 0xC100, page: 3)])
        #expect(c.session.domain.unstableCount == 2)
        f.expectSharing(c, shared: 3, sharing: 3, unshared: 3, usedPages: 4)
        #expect(f.stats(c)["clients"] == 3)
        f.checkInvariants()
        let releasedBefore = f.backing(c).released

        f.service.close(c.session)
        #expect(c.session.mergedReferences == 0)
        #expect(c.session.pendingHints.isEmpty)
        #expect(c.session.domain.sessions[c.session.id] == nil)
        // Left: the object (0, 1), d's page 3 and other's unstable 6.
        #expect(f.owners(other, 0) == 1)
        #expect(f.owners(other, 1) == 1)
        #expect(f.owners(other, 2) == 0)
        #expect(f.owners(other, 3) == 1)
        #expect(f.backing(other).released == releasedBefore + [ExtentAllocator.Extent(start: 2, count: 1)])
        #expect(other.session.domain.unstableCount == 1)
        f.expectSharing(other, shared: 0, sharing: 0, unshared: 4, usedPages: 3)
        #expect(f.stats(other)["clients"] == 2)
        #expect(f.service.budget.used == 3)
        f.checkInvariants()

        // c's entry for 4 is gone: 4 finds no partner now.
        #expect(try f.scan(d, [4], keys: [0xD200]).outcomes == [.unstable])
        #expect(f.service.budget.used == 3)
        // d lets go of page 3 and other of nothing: only the object is left.
        #expect(f.send(.mergeRelease(pages: [3]), d) == [.done])
        f.service.close(d.session)
        f.expectSharing(other, shared: 0, sharing: 0, unshared: 3, usedPages: 2) // 0, 1 and other's 6
        #expect(f.service.budget.used == 2)
        f.checkInvariants()
    }

    @Test func closeDropsTheReferenceOfAnUndeliveredHint() throws {
        let f = MergeFixture()
        let a = try f.client(pid: 1)
        let b = try f.client(pid: 2)
        _ = try f.scan(a, [5], keys: [0xA000])
        _ = try f.scan(b, [5], keys: [0xB000])
        #expect(f.owners(a, 0) == 2)
        f.service.close(a.session)
        #expect(f.owners(b, 0) == 1)
        f.expectSharing(b, shared: 0, sharing: 0, unshared: 1, usedPages: 1)
        f.service.close(b.session)
        #expect(f.owners(b, 0) == 0)
        #expect(f.service.budget.used == 0)
        f.expectSharing(b, shared: 0, sharing: 0, unshared: 0, usedPages: 0)
        #expect(f.stats(b)["clients"] == 0)
        f.checkInvariants()
    }

    // MARK: Scanner reports

    private static func report(scanned: UInt64 = 0, fullScans: UInt64 = 0, skipped: UInt64 = 0, volatile: UInt64 = 0,
                               zero: UInt64 = 0) -> ScanReport {
        var r = ScanReport()
        r.pagesScanned = scanned
        r.fullScans = fullScans
        r.pagesSkipped = skipped
        r.pagesVolatile = volatile
        r.zeroPages = zero
        return r
    }

    @Test func fullScansCountWhenEveryScanningSessionCompletedOne() throws {
        let f = MergeFixture()
        let a = try f.client(pid: 1)
        let b = try f.client(pid: 2)
        let idle = try f.client(pid: 3) // never reports: not scanning, never waited for
        #expect(f.stats(idle)["clients"] == 3)
        func fullScans() -> Int64? { f.stats(a)["full_scans"] }
        func report(_ c: MergeClient, _ n: UInt64) { #expect(f.send(.scanReport(Self.report(fullScans: n)), c) == [.done]) }

        report(a, 0)
        #expect(fullScans() == 0)
        report(a, 1) // a is the only scanning session
        #expect(fullScans() == 1)
        report(b, 0) // b starts scanning
        #expect(fullScans() == 1)
        report(a, 2)
        #expect(fullScans() == 1)
        report(a, 3) // a again: still waiting for b
        #expect(fullScans() == 1)
        report(b, 0)
        #expect(fullScans() == 1)
        report(b, 1)
        #expect(fullScans() == 2)
        report(b, 1) // no new full scan
        report(a, 3)
        #expect(fullScans() == 2)
        report(b, 2)
        #expect(fullScans() == 2)
        report(a, 4)
        #expect(fullScans() == 3)
        #expect(f.send(.stats, a) == [.statistics(f.service.statistics(of: a.session.domain))])

        // A session that goes away is no longer waited for: once a has completed a full scan,
        // its next report completes the domain's.
        report(a, 5)
        #expect(fullScans() == 3)
        f.service.close(b.session)
        #expect(fullScans() == 3)
        report(a, 5)
        #expect(fullScans() == 4)
        report(a, 5)
        #expect(fullScans() == 4)
    }

    @Test func scanCountersAcrossSessions() throws {
        let f = MergeFixture()
        let a = try f.client(pid: 1)
        let b = try f.client(pid: 2)
        #expect(f.send(.scanReport(Self.report(scanned: 100, skipped: 10, volatile: 7, zero: 3)), a) == [.done])
        #expect(f.send(.scanReport(Self.report(scanned: 50, skipped: 5, volatile: 5, zero: 2)), b) == [.done])
        var s = f.stats(a)
        #expect(s["pages_scanned"] == 150)
        #expect(s["pages_skipped"] == 15)
        #expect(s["pages_volatile"] == 12)
        #expect(s["ksm_zero_pages"] == 5)
        // Reports replace the session's previous one.
        #expect(f.send(.scanReport(Self.report(scanned: 120, skipped: 10, volatile: 1, zero: 3)), a) == [.done])
        s = f.stats(a)
        #expect(s["pages_scanned"] == 170)
        #expect(s["pages_volatile"] == 6)

        // b goes: its cumulative counters stay, its current values go.
        f.service.close(b.session)
        s = f.stats(a)
        #expect(s["pages_scanned"] == 170)
        #expect(s["pages_skipped"] == 15)
        #expect(s["pages_volatile"] == 1)
        #expect(s["ksm_zero_pages"] == 3)
        #expect(f.send(.scanReport(Self.report(scanned: 130, skipped: 11, volatile: 0, zero: 0)), a) == [.done])
        s = f.stats(a)
        #expect(s["pages_scanned"] == 180)
        #expect(s["pages_skipped"] == 16)
        #expect(s["pages_volatile"] == 0)
        #expect(s["ksm_zero_pages"] == 0)
        f.service.close(a.session)
        s = f.stats(a)
        #expect(s["pages_scanned"] == 180)
        #expect(s["pages_skipped"] == 16)
        #expect(s["pages_volatile"] == 0)
        #expect(s["clients"] == 0)

        // Another domain's reports are its own.
        let other = try f.client(uid: 2, pid: 3)
        #expect(f.send(.scanReport(Self.report(scanned: 9, fullScans: 1)), other) == [.done])
        #expect(f.stats(other)["pages_scanned"] == 9)
        #expect(f.stats(other)["full_scans"] == 1)
        #expect(f.stats(a)["pages_scanned"] == 180)
        #expect(f.stats(a)["full_scans"] == 0)
    }
}
