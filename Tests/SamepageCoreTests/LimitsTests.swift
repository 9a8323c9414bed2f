import SamepageCore
import Testing

/// Per-client and per-domain caps: a client over its cap gets `limitExceeded`, nothing it held
/// is lost, and other clients go on.
@Suite("Limits")
struct LimitsTests {
    func put(_ harness: ServiceHarness, _ client: SessionClient, upload: UInt32, content: UInt64) -> Reply? {
        client.staging.fill(0, id: content)
        _ = harness.send(.putBegin(upload: upload, length: 4096), client)
        _ = harness.send(.putPages(upload: upload, stagingPage: 0, pageCount: 1), client)
        return harness.send(.putCommit(upload: upload), client).first
    }

    @Test func aDomainHoldsAtMostMaxDomainObjects() throws {
        let harness = ServiceHarness()
        harness.service.limits.maxDomainObjects = 2
        let a = try harness.client(uid: 1000)
        #expect(put(harness, a, upload: 1, content: 1)?.kind == .committed)
        #expect(put(harness, a, upload: 2, content: 2)?.kind == .committed)
        let refused = harness.send(.putBegin(upload: 3, length: 4096), a)
        #expect(refused.first?.failureCode == .limitExceeded)
        let other = try harness.client(uid: 2000)
        #expect(put(harness, other, upload: 1, content: 1)?.kind == .committed, "another domain is not affected")
        #expect(a.session.domain.objectCount == 2)
    }

    @Test func uploadsOfOneClientAddUpToAtMostMaxUploadPages() throws {
        let harness = ServiceHarness()
        harness.service.limits.maxUploadPages = 10
        let a = try harness.client(uid: 1000), b = try harness.client(uid: 1000, pid: 2)
        #expect(harness.send(.putBegin(upload: 1, length: 6 * 4096), a).first == .done)
        let refused = harness.send(.putBegin(upload: 2, length: 5 * 4096), a).first
        #expect(refused?.failureCode == .limitExceeded, "6 + 5 pages open on one connection")
        #expect(harness.send(.putBegin(upload: 2, length: 4 * 4096), a).first == .done, "6 + 4 fits")
        #expect(harness.send(.putBegin(upload: 1, length: 10 * 4096), b).first == .done, "another client has its own cap")
        // Finishing an upload frees its share of the cap.
        #expect(harness.send(.putAbort(upload: 1), a).first == .done)
        #expect(harness.send(.putBegin(upload: 3, length: 6 * 4096), a).first == .done)
    }

    @Test func anUploadCommittedPastTheCapIsDroppedWhole() throws {
        let harness = ServiceHarness()
        harness.service.limits.maxDomainObjects = 1
        let a = try harness.client(uid: 1000), b = try harness.client(uid: 1000, pid: 2)
        a.staging.fill(0, id: 7)
        b.staging.fill(0, id: 8)
        for client in [a, b] {
            _ = harness.send(.putBegin(upload: 1, length: 4096), client)
            _ = harness.send(.putPages(upload: 1, stagingPage: 0, pageCount: 1), client)
        }
        #expect(harness.send(.putCommit(upload: 1), a).first?.kind == .committed)
        #expect(harness.send(.putCommit(upload: 1), b).first?.failureCode == .limitExceeded)
        let store = a.session.domain.store
        #expect(store.pagesInUse == 1, "the refused upload's page was released")
        #expect(harness.service.verify(a.session.domain).isEmpty)
        store._checkInvariants()
    }

    @Test func unstableEntriesPerClientAreCapped() throws {
        let harness = ServiceHarness()
        harness.service.limits.maxUnstableEntries = 4
        let a = try harness.client()
        for page in 0..<6 { a.staging.fill(page, id: UInt64(100 + page)) }
        let five = harness.send(.mergeScan(round: 1, flags: [], stagingPage: 0, keys: [1, 2, 3, 4, 5]), a)
        #expect(five.first?.failureCode == .limitExceeded)
        #expect(a.session.domain.unstableCount == 0, "a refused request files nothing")
        let four = harness.send(.mergeScan(round: 1, flags: [], stagingPage: 0, keys: [1, 2, 3, 4]), a)
        #expect(four.first?.kind == .mergeResults)
        let more = harness.send(.mergeScan(round: 1, flags: [], stagingPage: 4, keys: [5]), a)
        #expect(more.first?.failureCode == .limitExceeded, "the cap counts every entry filed")
        let nextRound = harness.send(.mergeScan(round: 2, flags: [], stagingPage: 4, keys: [5]), a)
        #expect(nextRound.first?.failureCode == .limitExceeded, "entries stay filed across rounds")
        // A refused request withdraws nothing either; withdrawals alone go through.
        let both = harness.send(.mergeLookup(round: 2, flags: [], keys: [7], digests: [7],
                                             withdrawn: [MergeWithdrawal(key: 1, digest: PageStore.digest(a.staging.page(0)))]), a)
        #expect(both.first?.failureCode == .limitExceeded)
        #expect(a.session.domain.unstableCount == 4)
        // Withdrawing one makes room.
        let withdraw = harness.send(.mergeLookup(round: 2, flags: [], keys: [], digests: [], withdrawn: [MergeWithdrawal(key: 1, digest: PageStore.digest(a.staging.page(0)))]), a)
        #expect(withdraw.first?.kind == .mergeResults)
        let room = harness.send(.mergeScan(round: 2, flags: [], stagingPage: 4, keys: [5]), a)
        #expect(room.first?.kind == .mergeResults)
        let other = try harness.client(pid: 2)
        other.staging.fill(0, id: 100)
        other.staging.fill(1, id: 101)
        let pair = harness.send(.mergeScan(round: 1, flags: [], stagingPage: 0, keys: [9, 10]), other)
        guard case .mergeResults(let outcomes, _) = pair.first else { Issue.record("no results"); return }
        #expect(outcomes.first?.page == nil, "the first client withdrew its page of 100: nothing to pair with")
        #expect(outcomes.last?.page != nil, "its page of 101 is still filed")
        #expect(harness.service.verify(a.session.domain).isEmpty)
    }
}

private extension Reply {
    var failureCode: ErrorCode? {
        if case .failure(let code, _) = self { return code }
        return nil
    }
}
