import Testing
@testable import SamepageCore

/// `clients` answered from the sessions' state, and only for the caller's own dedup domain.
@Suite("Service: clients")
struct ServiceClientsTests {
    private func list(_ f: ServiceHarness, _ client: SessionClient) throws -> ClientList {
        let replies = f.send(.clients, client)
        guard replies.count == 1, case .clientList(let list) = replies[0] else {
            Issue.record("clients answered \(replies)")
            throw Unexpected()
        }
        return list
    }

    private struct Unexpected: Error {}

    @Test func listsTheCallersDomainWithEachSessionsFigures() throws {
        let f = ServiceHarness()
        let a = SessionClient(try f.service.openSession(peer: PeerIdentity(pid: 11, uid: 1000, gid: 1000),
                                                        clientName: "writer", connectedSince: 1_700_000_000), stagingPages: 8)
        let b = SessionClient(try f.service.openSession(peer: PeerIdentity(pid: 12, uid: 1000, gid: 1000),
                                                        clientName: "reader\u{1B}[31m", connectedSince: 1_700_000_005), stagingPages: 8)
        let stranger = try f.client(uid: 2000, pid: 13)

        // a: one object committed and mapped twice, one upload left open.
        a.staging.fill(0, id: 1)
        #expect(f.send(.putBegin(upload: 1, length: 4096), a) == [.done])
        #expect(f.send(.putPages(upload: 1, stagingPage: 0, pageCount: 1), a) == [.done])
        guard case .committed(let id)? = f.send(.putCommit(upload: 1), a).first else { Issue.record("no commit"); return }
        #expect(f.send(.map(id), a).count == 2)
        #expect(f.send(.map(id), a).count == 2)
        #expect(f.send(.putBegin(upload: 2, length: 8192), a) == [.done])
        // b: two equal pages of its own memory merged, and a scan report.
        b.staging.fill(0, id: 7)
        b.staging.fill(1, id: 7)
        _ = f.send(.mergeScan(round: 1, flags: [], stagingPage: 0, keys: [0x1000, 0x2000]), b)
        var report = ScanReport()
        report.rmapItems = 2
        #expect(f.send(.scanReport(report), b) == [.done])
        // The stranger of another domain is busy too.
        #expect(f.send(.putBegin(upload: 1, length: 4096), stranger) == [.done])

        let seenByA = try list(f, a)
        #expect(seenByA.total == 2)
        #expect(seenByA.clients.map(\.pid) == [11, 12], "the other domain's client is not listed")
        let (mine, theirs) = (seenByA.clients[0], seenByA.clients[1])
        #expect(mine.isCaller && !theirs.isCaller)
        #expect(mine.name == "writer" && theirs.name == "reader[31m", "names are printable")
        #expect(mine.uid == 1000 && mine.connectedSince == 1_700_000_000 && theirs.connectedSince == 1_700_000_005)
        #expect(mine.objectsMapped == 2 && mine.uploadsOpen == 1 && mine.mergedPages == 0 && mine.mergeablePages == 0)
        #expect(mine.requestsServed == 6, "putBegin, putPages, putCommit, map, map, putBegin; this clients request not yet")
        #expect(theirs.objectsMapped == 0 && theirs.uploadsOpen == 0)
        #expect(theirs.mergedPages == 2 && theirs.mergeablePages == 2)
        #expect(theirs.requestsServed == 2)

        let seenByStranger = try list(f, stranger)
        #expect(seenByStranger.total == 1)
        #expect(seenByStranger.clients.map(\.pid) == [13])
        #expect(seenByStranger.clients[0].isCaller && seenByStranger.clients[0].uploadsOpen == 1)

        // A closed session leaves the list.
        f.service.close(b.session)
        #expect(try list(f, a).clients.map(\.pid) == [11])
        #expect(try list(f, a).clients[0].requestsServed == 8, "the earlier clients requests count once answered")
    }

    @Test func aDomainGroupListsEveryUidInIt() throws {
        let f = ServiceHarness()
        f.service.policy = AccessPolicy(serverUID: 0, allowedUIDs: [1, 2, 3], domains: ["team": [1, 2]])
        let one = try f.client(uid: 1, pid: 101)
        _ = try f.client(uid: 2, pid: 102)
        _ = try f.client(uid: 3, pid: 103)
        let seen = try list(f, one)
        #expect(seen.clients.map(\.pid) == [101, 102])
        #expect(seen.clients.map(\.uid) == [1, 2])
    }
}
