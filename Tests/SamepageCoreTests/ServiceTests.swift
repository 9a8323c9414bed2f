import Testing
@testable import SamepageCore

/// The regions a service created, by domain name.
private typealias Client = SessionClient

private extension Reply {
    var committedID: ObjectID? {
        if case .committed(let id) = self { id } else { nil }
    }
    var failureCode: ErrorCode? {
        if case .failure(let code, _) = self { code } else { nil }
    }
}

private final class ServiceFixture: ServiceHarness {
    /// Uploads an object of `contents` (one staging page each, from staging page `at`), in
    /// putPages of `chunk` pages, and returns its id.
    func upload(_ client: Client, _ contents: [UInt64], length: UInt64? = nil, handle: UInt32 = 1,
                at firstStagingPage: Int = 0, chunk: Int? = nil,
                sourceLocation: SourceLocation = #_sourceLocation) throws -> ObjectID {
        for (i, id) in contents.enumerated() { client.staging.fill(firstStagingPage + i, id: id) }
        let length = length ?? UInt64(contents.count * Page.size)
        #expect(send(.putBegin(upload: handle, length: length), client) == [.done], sourceLocation: sourceLocation)
        let chunk = max(1, chunk ?? contents.count)
        var sent = 0
        while sent < contents.count {
            let n = min(chunk, contents.count - sent)
            #expect(send(.putPages(upload: handle, stagingPage: UInt32(firstStagingPage + sent), pageCount: UInt32(n)), client)
                    == [.done], sourceLocation: sourceLocation)
            sent += n
        }
        let replies = send(.putCommit(upload: handle), client)
        #expect(replies.count == 1, sourceLocation: sourceLocation)
        return try #require(replies.first?.committedID, "commit answered \(replies)", sourceLocation: sourceLocation)
    }

    /// Maps an object; checks the reply sequence and returns the handle, length and runs.
    func map(_ client: Client, _ id: ObjectID,
             sourceLocation: SourceLocation = #_sourceLocation) throws -> (handle: UInt32, length: UInt64, runs: [PageRun]) {
        let replies = send(.map(id), client)
        guard case .mapped(let handle, let length, let runCount)? = replies.first else {
            Issue.record("map answered \(replies)", sourceLocation: sourceLocation)
            throw MapFailed()
        }
        var runs: [PageRun] = []
        for (i, reply) in replies.dropFirst().enumerated() {
            guard case .runs(let some, let more) = reply else {
                Issue.record("expected runs, got \(reply)", sourceLocation: sourceLocation)
                throw MapFailed()
            }
            #expect(more == (i < replies.count - 2), sourceLocation: sourceLocation)
            runs += some
        }
        #expect(runs.count == Int(runCount), sourceLocation: sourceLocation)
        return (handle, length, runs)
    }

    struct MapFailed: Error {}

    func stats(_ client: Client) -> [String: Int64] {
        let list = service.statistics(of: client.session.domain)
        return Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0.value) })
    }

    func expectFailure(_ replies: [Reply], _ code: ErrorCode, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(replies.count == 1, sourceLocation: sourceLocation)
        #expect(replies.first?.failureCode == code, "got \(replies)", sourceLocation: sourceLocation)
    }

    /// Checks that the object's pages hold `contents` in the client's region.
    func expectContents(_ client: Client, _ runs: [PageRun], _ contents: [UInt64], validBytesInLastPage: Int = Page.size,
                        sourceLocation: SourceLocation = #_sourceLocation) {
        let pages = expand(runs)
        #expect(pages.count == contents.count, sourceLocation: sourceLocation)
        let backing = backing(client)
        for (i, (page, id)) in zip(pages, contents).enumerated() {
            let valid = i == contents.count - 1 ? validBytesInLastPage : Page.size
            if let page {
                #expect(Content.matches(backing.page(page), id: id, validBytes: valid), "page \(i)", sourceLocation: sourceLocation)
            } else {
                #expect(id == 0, "page \(i) is zero", sourceLocation: sourceLocation)
            }
        }
    }

    func checkInvariants() {
        for domain in service.allDomains { domain.store._checkInvariants() }
    }
}

@Suite("Service")
struct ServiceTests {
    @Test func putAndMapAnObject() throws {
        let f = ServiceFixture()
        let c = try f.client()
        let id = try f.upload(c, [1, 2, 3], chunk: 2)
        #expect(c.session.domain.objectCount == 1)
        #expect(c.session.uploadCount == 0)

        let replies = f.send(.map(id), c)
        #expect(replies == [.mapped(handle: 1, length: 3 * 4096, runCount: 1),
                            .runs([PageRun(start: 0, count: 3)], more: false)])
        f.expectContents(c, [PageRun(start: 0, count: 3)], [1, 2, 3])
        #expect(c.session.mappingCount == 1)
        #expect(f.stats(c)["region_bytes_used"] == Int64(3 * Page.size))
        f.checkInvariants()
    }

    @Test func pagesMayComeFromAnywhereInStaging() throws {
        let f = ServiceFixture()
        let c = try f.client(stagingPages: 16)
        let id = try f.upload(c, [4, 5, 6], at: 13, chunk: 1)
        let mapped = try f.map(c, id)
        #expect(mapped.runs == [PageRun(start: 0, count: 3)])
        f.expectContents(c, mapped.runs, [4, 5, 6])
    }

    @Test func newPagesOfOneUploadAreContiguousAcrossPutPages() throws {
        let f = ServiceFixture()
        let c = try f.client()
        let hole = try f.upload(c, [1, 2]) // pages 0, 1
        _ = try f.upload(c, [3]) // page 2
        // A two-page hole: a placement sized by each putPages (2 pages) would take it.
        #expect(f.send(.delete(hole), c) == [.done])
        let id = try f.upload(c, Array(4...11), chunk: 2)
        #expect(try f.map(c, id).runs == [PageRun(start: 3, count: 8)])
        f.checkInvariants()
    }

    @Test func zeroPagesAreZeroRuns() throws {
        let f = ServiceFixture()
        let c = try f.client()
        let id = try f.upload(c, [1, 0, 0, 2])
        #expect(f.send(.map(id), c) == [.mapped(handle: 1, length: 4 * 4096, runCount: 3),
                                        .runs([PageRun(start: 0, count: 1), PageRun(start: .max, count: 2),
                                               PageRun(start: 1, count: 1)], more: false)])
        #expect(f.stats(c)["ksm_zero_pages"] == 2)
        #expect(f.service.budget.used == 2)
    }

    @Test func emptyObject() throws {
        let f = ServiceFixture()
        let c = try f.client()
        let id = try f.upload(c, [], length: 0)
        #expect(f.send(.map(id), c) == [.mapped(handle: 1, length: 0, runCount: 0), .runs([], more: false)])
        #expect(f.service.budget.used == 0)
    }

    @Test func lengthNotAPageMultipleZeroFillsTheTail() throws {
        let f = ServiceFixture()
        let c = try f.client()
        // Staging holds full pages of content 8 and 9; the object is 4096 + 100 bytes long.
        let id = try f.upload(c, [8, 9], length: 4096 + 100)
        let mapped = try f.map(c, id)
        #expect(mapped.length == 4196)
        #expect(mapped.runs == [PageRun(start: 0, count: 2)])
        f.expectContents(c, mapped.runs, [8, 9], validBytesInLastPage: 100)
        #expect(Content.matches(f.backing(c).page(1), id: 9, validBytes: 100))
        #expect(!Content.matches(f.backing(c).page(1), id: 9))
    }

    @Test func lengthOneByteIntoAPageCountsThatPage() throws {
        let f = ServiceFixture()
        let c = try f.client()
        #expect(f.send(.putBegin(upload: 1, length: 4097), c) == [.done])
        #expect(f.send(.putPages(upload: 1, stagingPage: 0, pageCount: 1), c) == [.done])
        f.expectFailure(f.send(.putCommit(upload: 1), c), .badRequest)
        #expect(f.send(.putPages(upload: 1, stagingPage: 1, pageCount: 1), c) == [.done])
        #expect(f.send(.putCommit(upload: 1), c).first?.committedID != nil)
    }

    @Test func idsAreDistinctAndPrintable() throws {
        let f = ServiceFixture()
        let c = try f.client()
        var ids: Set<ObjectID> = []
        for i in 0..<20 as Range<UInt64> { ids.insert(try f.upload(c, [i + 1])) }
        #expect(ids.count == 20)
        for id in ids { #expect(ObjectID(id.description) == id) }
        #expect(c.session.domain.objectCount == 20)
        #expect(f.stats(c)["objects"] == 20)
    }

    @Test func sameUIDSameDomainShares() throws {
        let f = ServiceFixture()
        let a = try f.client(uid: 1000, pid: 1)
        let b = try f.client(uid: 1000, pid: 2)
        #expect(a.session.domain === b.session.domain)
        #expect(f.service.allDomains.count == 1)
        #expect(a.session.peer == PeerIdentity(pid: 1, uid: 1000, gid: 1000))
        let idA = try f.upload(a, [1, 2])
        let idB = try f.upload(b, [1, 2])
        #expect(idA != idB)
        let runsA = try f.map(a, idA).runs
        let runsB = try f.map(b, idB).runs
        #expect(runsA == runsB)
        let s = f.stats(a)
        #expect(s["pages_shared"] == 2)
        #expect(s["pages_sharing"] == 2)
        #expect(s["pages_unshared"] == 0)
        #expect(s["clients"] == 2)
        #expect(s["objects"] == 2)
        #expect(f.service.budget.used == 2)
        // Objects are visible to every client of the domain.
        let cross = try f.map(b, idA)
        #expect(cross.runs == runsA)
        f.checkInvariants()
    }

    @Test func differentUIDsAreSeparateDomains() throws {
        let f = ServiceFixture()
        let a = try f.client(uid: 1000)
        let b = try f.client(uid: 1001)
        #expect(a.session.domain !== b.session.domain)
        #expect(a.session.domain.name == "uid:1000")
        #expect(b.session.domain.name == "uid:1001")
        #expect(f.service.domainName(for: PeerIdentity(pid: 5, uid: 7, gid: 8)) == "uid:7")
        #expect(f.service.allDomains.count == 2)
        #expect(f.registry.made.count == 2)

        let idA = try f.upload(a, [1, 2])
        let idB = try f.upload(b, [1, 2])
        for c in [a, b] {
            let s = f.stats(c)
            #expect(s["pages_shared"] == 0)
            #expect(s["pages_sharing"] == 0)
            #expect(s["pages_unshared"] == 2)
            #expect(s["objects"] == 1)
            #expect(s["clients"] == 1)
        }
        #expect(f.service.budget.used == 4) // the budget is shared, the pages are not
        f.expectContents(a, try f.map(a, idA).runs, [1, 2])
        f.expectContents(b, try f.map(b, idB).runs, [1, 2])
        // Neither domain can see the other's objects.
        f.expectFailure(f.send(.map(idA), b), .unknownObject)
        f.expectFailure(f.send(.delete(idA), b), .unknownObject)
        f.expectFailure(f.send(.map(idB), a), .unknownObject)
        #expect(a.session.domain.objectCount == 1)
        f.checkInvariants()
    }

    @Test func deleteUnmappedObjectReleasesItsPages() throws {
        let f = ServiceFixture()
        let c = try f.client()
        let id = try f.upload(c, [1, 2, 3])
        #expect(f.send(.delete(id), c) == [.done])
        #expect(c.session.domain.objectCount == 0)
        #expect(f.service.budget.used == 0)
        #expect(f.backing(c).released == [ExtentAllocator.Extent(start: 0, count: 3)])
        f.expectFailure(f.send(.map(id), c), .unknownObject)
        f.expectFailure(f.send(.delete(id), c), .unknownObject)
        f.checkInvariants()
    }

    @Test func deleteWhileMappedKeepsPagesUntilUnmap() throws {
        let f = ServiceFixture()
        let c = try f.client()
        let id = try f.upload(c, [1, 2, 3])
        let mapped = try f.map(c, id)
        #expect(f.send(.delete(id), c) == [.done])
        // Gone by id, but the mapping still pins the pages.
        #expect(c.session.domain.objectCount == 0)
        #expect(f.stats(c)["objects"] == 0)
        f.expectFailure(f.send(.map(id), c), .unknownObject)
        #expect(f.service.budget.used == 3)
        #expect(f.backing(c).released.isEmpty)
        f.expectContents(c, mapped.runs, [1, 2, 3])
        f.checkInvariants()

        #expect(f.send(.unmap(handle: mapped.handle), c) == [.done])
        #expect(f.service.budget.used == 0)
        #expect(f.backing(c).released == [ExtentAllocator.Extent(start: 0, count: 3)])
        f.expectFailure(f.send(.unmap(handle: mapped.handle), c), .unknownHandle)
        f.checkInvariants()
    }

    @Test func unmapWithoutDeleteKeepsTheObject() throws {
        let f = ServiceFixture()
        let c = try f.client()
        let id = try f.upload(c, [1])
        let mapped = try f.map(c, id)
        #expect(f.send(.unmap(handle: mapped.handle), c) == [.done])
        #expect(c.session.mappingCount == 0)
        #expect(f.service.budget.used == 1)
        #expect(try f.map(c, id).runs == mapped.runs)
    }

    @Test func everyMappingPinsTheObject() throws {
        let f = ServiceFixture()
        let a = try f.client(pid: 1)
        let b = try f.client(pid: 2)
        let id = try f.upload(a, [1, 2])
        let m1 = try f.map(a, id)
        let m2 = try f.map(a, id)
        let m3 = try f.map(b, id)
        #expect([m1.handle, m2.handle] == [1, 2])
        #expect(m3.handle == 1) // handles are per session
        #expect(f.send(.delete(id), b) == [.done])
        #expect(f.send(.unmap(handle: m1.handle), a) == [.done])
        #expect(f.send(.unmap(handle: m3.handle), b) == [.done])
        #expect(f.service.budget.used == 2)
        #expect(f.send(.unmap(handle: m2.handle), a) == [.done])
        #expect(f.service.budget.used == 0)
        f.checkInvariants()
    }

    @Test func mappingHandlesInUseAreNotReusedWhenTheCounterWraps() throws {
        let f = ServiceFixture()
        let c = try f.client()
        let id = try f.upload(c, [1])
        let first = try f.map(c, id) // handle 1, stays mapped
        #expect(first.handle == 1)
        c.session.nextHandle = .max // as after 2^32 - 2 map/unmap pairs
        #expect(try f.map(c, id).handle == .max)
        #expect(try f.map(c, id).handle == 0)
        // The counter is back at 1, which is still mapped: it must not be handed out again.
        let again = try f.map(c, id)
        #expect(again.handle != first.handle)
        #expect(c.session.mappingCount == 4)
        // Every mapping can be unmapped, and then the deleted object's pages go: no pin was lost.
        for handle in [first.handle, .max, 0, again.handle] {
            #expect(f.send(.unmap(handle: handle), c) == [.done])
        }
        #expect(f.send(.delete(id), c) == [.done])
        #expect(f.service.budget.used == 0)
        f.checkInvariants()
    }

    @Test func unknownObjectsAndHandles() throws {
        let f = ServiceFixture()
        let c = try f.client()
        let stranger = ObjectID(high: 1, low: 2)
        f.expectFailure(f.send(.map(stranger), c), .unknownObject)
        f.expectFailure(f.send(.delete(stranger), c), .unknownObject)
        f.expectFailure(f.send(.unmap(handle: 1), c), .unknownHandle)
        f.expectFailure(f.send(.putPages(upload: 1, stagingPage: 0, pageCount: 1), c), .unknownHandle)
        f.expectFailure(f.send(.putCommit(upload: 1), c), .unknownHandle)
        f.expectFailure(f.send(.putAbort(upload: 1), c), .unknownHandle)
        #expect(c.session.mappingCount == 0)
    }

    @Test func handlesOfAnotherSessionAreUnknown() throws {
        let f = ServiceFixture()
        let a = try f.client(pid: 1)
        let b = try f.client(pid: 2) // same domain, other connection
        let id = try f.upload(a, [1])
        let mapped = try f.map(a, id)
        f.expectFailure(f.send(.unmap(handle: mapped.handle), b), .unknownHandle)
        #expect(a.session.mappingCount == 1)

        a.staging.fill(0, id: 2)
        #expect(f.send(.putBegin(upload: 7, length: 8192), a) == [.done])
        #expect(f.send(.putPages(upload: 7, stagingPage: 0, pageCount: 1), a) == [.done])
        f.expectFailure(f.send(.putPages(upload: 7, stagingPage: 0, pageCount: 1), b), .unknownHandle)
        f.expectFailure(f.send(.putCommit(upload: 7), b), .unknownHandle)
        f.expectFailure(f.send(.putAbort(upload: 7), b), .unknownHandle)
        #expect(a.session.uploadCount == 1)

        // The owner's handles still work.
        #expect(f.send(.unmap(handle: mapped.handle), a) == [.done])
        #expect(f.send(.putPages(upload: 7, stagingPage: 0, pageCount: 1), a) == [.done])
        #expect(f.send(.putCommit(upload: 7), a).first?.committedID != nil)
        f.checkInvariants()
    }

    @Test func putPagesOutsideStagingIsABadRequest() throws {
        let f = ServiceFixture()
        let c = try f.client(stagingPages: 4)
        #expect(f.send(.putBegin(upload: 1, length: 4 * 4096), c) == [.done])
        f.expectFailure(f.send(.putPages(upload: 1, stagingPage: 4, pageCount: 1), c), .badRequest)
        f.expectFailure(f.send(.putPages(upload: 1, stagingPage: 3, pageCount: 2), c), .badRequest)
        f.expectFailure(f.send(.putPages(upload: 1, stagingPage: 0, pageCount: 5), c), .badRequest)
        f.expectFailure(f.send(.putPages(upload: 1, stagingPage: .max, pageCount: .max), c), .badRequest)
        f.expectFailure(f.send(.putPages(upload: 1, stagingPage: 1, pageCount: .max), c), .badRequest)
        f.expectFailure(f.send(.putPages(upload: 1, stagingPage: 0, pageCount: 0), c), .badRequest)
        #expect(f.service.budget.used == 0)
        // The upload is still open and intact.
        for i in 0..<4 { c.staging.fill(i, id: UInt64(i + 1)) }
        #expect(f.send(.putPages(upload: 1, stagingPage: 0, pageCount: 4), c) == [.done])
        let id = try #require(f.send(.putCommit(upload: 1), c).first?.committedID)
        f.expectContents(c, try f.map(c, id).runs, [1, 2, 3, 4])
    }

    @Test func putPagesWithoutStagingIsBadStaging() throws {
        let f = ServiceFixture()
        let c = try f.client()
        c.session.staging = nil
        #expect(f.send(.putBegin(upload: 1, length: 4096), c) == [.done])
        f.expectFailure(f.send(.putPages(upload: 1, stagingPage: 0, pageCount: 1), c), .badStaging)
    }

    @Test func morePagesThanTheLengthIsABadRequest() throws {
        let f = ServiceFixture()
        let c = try f.client()
        for i in 0..<3 { c.staging.fill(i, id: UInt64(i + 1)) }
        #expect(f.send(.putBegin(upload: 1, length: 2 * 4096), c) == [.done])
        f.expectFailure(f.send(.putPages(upload: 1, stagingPage: 0, pageCount: 3), c), .badRequest)
        #expect(f.service.budget.used == 0)
        #expect(f.send(.putPages(upload: 1, stagingPage: 0, pageCount: 2), c) == [.done])
        f.expectFailure(f.send(.putPages(upload: 1, stagingPage: 2, pageCount: 1), c), .badRequest)
        #expect(f.send(.putCommit(upload: 1), c).first?.committedID != nil)
        #expect(f.service.budget.used == 2)
    }

    @Test func commitBeforeAllPagesIsABadRequest() throws {
        let f = ServiceFixture()
        let c = try f.client()
        for i in 0..<3 { c.staging.fill(i, id: UInt64(10 + i)) }
        #expect(f.send(.putBegin(upload: 1, length: 3 * 4096), c) == [.done])
        f.expectFailure(f.send(.putCommit(upload: 1), c), .badRequest)
        #expect(f.send(.putPages(upload: 1, stagingPage: 0, pageCount: 2), c) == [.done])
        f.expectFailure(f.send(.putCommit(upload: 1), c), .badRequest)
        #expect(c.session.uploadCount == 1)
        #expect(c.session.domain.objectCount == 0)
        #expect(f.send(.putPages(upload: 1, stagingPage: 2, pageCount: 1), c) == [.done])
        let id = try #require(f.send(.putCommit(upload: 1), c).first?.committedID)
        let mapped = try f.map(c, id)
        #expect(mapped.runs == [PageRun(start: 0, count: 3)])
        f.expectContents(c, mapped.runs, [10, 11, 12])
    }

    @Test func putBeginChecks() throws {
        let f = ServiceFixture()
        let c = try f.client()
        #expect(f.send(.putBegin(upload: 1, length: 4096), c) == [.done])
        f.expectFailure(f.send(.putBegin(upload: 1, length: 4096), c), .badRequest) // already open
        // Objects of more than 2^32 - 1 pages, including lengths near 2^64.
        f.expectFailure(f.send(.putBegin(upload: 2, length: (UInt64(UInt32.max) + 1) * 4096), c), .badRequest)
        f.expectFailure(f.send(.putBegin(upload: 2, length: UInt64(UInt32.max) * 4096 + 1), c), .badRequest)
        f.expectFailure(f.send(.putBegin(upload: 2, length: .max), c), .badRequest)
        f.expectFailure(f.send(.putBegin(upload: 2, length: .max - 4094), c), .badRequest)
        #expect(c.session.uploadCount == 1)
        // Exactly 2^32 - 1 pages is allowed to begin (when --max-upload-pages allows it).
        f.expectFailure(f.send(.putBegin(upload: 2, length: UInt64(UInt32.max) * 4096), c), .limitExceeded)
        f.service.limits.maxUploadPages = UInt64(UInt32.max) + 1
        #expect(f.send(.putBegin(upload: 2, length: UInt64(UInt32.max) * 4096), c) == [.done])
        #expect(f.send(.putAbort(upload: 2), c) == [.done])
    }

    @Test func uploadLimit() throws {
        let f = ServiceFixture()
        f.service.limits.maxUploads = 2
        let c = try f.client()
        #expect(f.send(.putBegin(upload: 1, length: 1), c) == [.done])
        #expect(f.send(.putBegin(upload: 2, length: 1), c) == [.done])
        f.expectFailure(f.send(.putBegin(upload: 3, length: 1), c), .limitExceeded)
        #expect(f.send(.putAbort(upload: 1), c) == [.done])
        #expect(f.send(.putBegin(upload: 3, length: 1), c) == [.done])
        #expect(c.session.uploadCount == 2)
    }

    @Test func mappingLimit() throws {
        let f = ServiceFixture()
        f.service.limits.maxMappings = 2
        let c = try f.client()
        let id = try f.upload(c, [1])
        let m1 = try f.map(c, id)
        _ = try f.map(c, id)
        f.expectFailure(f.send(.map(id), c), .limitExceeded)
        #expect(c.session.mappingCount == 2)
        #expect(f.send(.unmap(handle: m1.handle), c) == [.done])
        #expect(try f.map(c, id).handle == 3)
    }

    @Test func abortReleasesTheUploadsPages() throws {
        let f = ServiceFixture()
        let c = try f.client(stagingPages: 64)
        let kept = try f.upload(c, [1])
        for i in 0..<3 { c.staging.fill(i, id: UInt64(i + 1)) } // page 0 shares with `kept`
        #expect(f.send(.putBegin(upload: 5, length: 4 * 4096), c) == [.done])
        #expect(f.send(.putPages(upload: 5, stagingPage: 0, pageCount: 3), c) == [.done])
        #expect(f.service.budget.used == 3)
        #expect(f.stats(c)["pages_sharing"] == 1)
        #expect(f.send(.putAbort(upload: 5), c) == [.done])
        #expect(c.session.uploadCount == 0)
        #expect(f.service.budget.used == 1)
        #expect(f.stats(c)["pages_sharing"] == 0)
        f.expectFailure(f.send(.putAbort(upload: 5), c), .unknownHandle)
        f.expectContents(c, try f.map(c, kept).runs, [1])
        // The placement reserved for all 4 pages went back too: 63 free pages in one run.
        let big = try f.upload(c, Array(100..<163), handle: 6)
        #expect(try f.map(c, big).runs == [PageRun(start: 1, count: 63)])
        f.checkInvariants()
    }

    @Test func regionFullDropsTheUploadAndRestoresUsage() throws {
        let f = ServiceFixture(regionPages: 8)
        let c = try f.client()
        let kept = try f.upload(c, [1, 2, 3, 4])
        let usedBefore = f.service.budget.used
        var statsBefore = f.stats(c)
        statsBefore["general_profit"] = nil // bookkeeping arrays may have grown meanwhile
        #expect(usedBefore == 4)

        for i in 0..<6 { c.staging.fill(i, id: UInt64(50 + i)) }
        #expect(f.send(.putBegin(upload: 2, length: 6 * 4096), c) == [.done])
        #expect(f.send(.putPages(upload: 2, stagingPage: 0, pageCount: 2), c) == [.done])
        #expect(f.send(.putPages(upload: 2, stagingPage: 2, pageCount: 2), c) == [.done])
        #expect(f.service.budget.used == 8)
        let replies = f.send(.putPages(upload: 2, stagingPage: 4, pageCount: 2), c)
        f.expectFailure(replies, .regionFull)
        if case .failure(_, let message)? = replies.first { #expect(message.contains("region full")) }

        // Usage is back to what it was, and the upload is gone.
        #expect(f.service.budget.used == usedBefore)
        var statsAfter = f.stats(c)
        statsAfter["general_profit"] = nil
        #expect(statsAfter == statsBefore)
        #expect(c.session.uploadCount == 0)
        f.expectFailure(f.send(.putCommit(upload: 2), c), .unknownHandle)
        f.expectFailure(f.send(.putPages(upload: 2, stagingPage: 4, pageCount: 1), c), .unknownHandle)
        // The handle can be used again, and the old object is intact.
        #expect(f.send(.putBegin(upload: 2, length: 4096), c) == [.done])
        #expect(f.send(.putAbort(upload: 2), c) == [.done])
        f.expectContents(c, try f.map(c, kept).runs, [1, 2, 3, 4])
        // Sharing still works when the region is full.
        _ = try f.upload(c, [4, 3, 2, 1], handle: 3)
        #expect(f.service.budget.used == 4)
        f.checkInvariants()
    }

    @Test func regionBudgetIsSharedByDomains() throws {
        let f = ServiceFixture(regionPages: 4)
        let a = try f.client(uid: 1)
        let b = try f.client(uid: 2)
        _ = try f.upload(a, [1, 2, 3])
        for i in 0..<2 { b.staging.fill(i, id: UInt64(i + 1)) }
        #expect(f.send(.putBegin(upload: 1, length: 2 * 4096), b) == [.done])
        f.expectFailure(f.send(.putPages(upload: 1, stagingPage: 0, pageCount: 2), b), .regionFull)
        #expect(f.service.budget.used == 3)
        #expect(f.stats(b)["region_bytes_used"] == 0)
        #expect(b.session.uploadCount == 0)
        f.checkInvariants()
    }

    @Test func closeReleasesUploadsAndMappings() throws {
        let f = ServiceFixture()
        let other = try f.client(pid: 1, stagingPages: 64)
        let c = try f.client(pid: 2)
        let kept = try f.upload(other, [1, 2])
        let id = try f.upload(c, [3, 4])
        let m1 = try f.map(c, id)
        _ = try f.map(c, kept)
        #expect(f.send(.delete(id), c) == [.done]) // pinned by c's mapping only
        for i in 0..<3 { c.staging.fill(i, id: UInt64([1, 5, 6][i])) }
        #expect(f.send(.putBegin(upload: 9, length: 10 * 4096), c) == [.done])
        #expect(f.send(.putPages(upload: 9, stagingPage: 0, pageCount: 3), c) == [.done])
        #expect(f.service.budget.used == 6)
        #expect(f.stats(c)["clients"] == 2)

        f.service.close(c.session)
        #expect(c.session.uploadCount == 0)
        #expect(c.session.mappingCount == 0)
        #expect(f.stats(other)["clients"] == 1)
        // Left: the other client's object only.
        #expect(f.service.budget.used == 2)
        #expect(f.stats(other)["pages_unshared"] == 2)
        #expect(f.stats(other)["pages_sharing"] == 0)
        #expect(f.stats(other)["objects"] == 1)
        f.expectFailure(f.send(.map(id), other), .unknownObject)
        let released = f.backing(other).released
        #expect(released.contains(ExtentAllocator.Extent(start: m1.runs[0].start, count: 2)))
        f.expectContents(other, try f.map(other, kept).runs, [1, 2])
        // The 10-page placement of the dropped upload went back: 62 free pages in one run.
        let big = try f.upload(other, Array(100..<162), handle: 2)
        #expect(try f.map(other, big).runs == [PageRun(start: 2, count: 62)])
        f.checkInvariants()
    }

    @Test func pingAndHello() throws {
        let f = ServiceFixture()
        let c = try f.client()
        #expect(f.send(.ping, c) == [.pong])
        f.expectFailure(f.send(.hello(version: Request.version, clientName: "x"), c), .badRequest)
    }

    @Test func statisticsNamesAndValues() throws {
        let f = ServiceFixture()
        let c = try f.client()
        _ = try f.client(pid: 2)
        _ = try f.upload(c, [1, 1, 0, 2])
        let list = f.service.statistics(of: c.session.domain)
        #expect(list.map(\.name) == ["pages_shared", "pages_sharing", "pages_unshared", "pages_volatile",
                                     "pages_scanned", "pages_skipped", "full_scans", "stable_node_chains",
                                     "stable_node_dups", "ksm_zero_pages", "general_profit",
                                     "region_bytes_used", "objects", "clients"])
        let s = f.stats(c)
        #expect(s["pages_shared"] == 1)
        #expect(s["pages_sharing"] == 1)
        #expect(s["pages_unshared"] == 1)
        #expect(s["pages_volatile"] == 0) // no client scanner has reported
        #expect(s["pages_scanned"] == 0)
        #expect(s["pages_skipped"] == 0)
        #expect(s["full_scans"] == 0)
        #expect(s["stable_node_chains"] == 0)
        #expect(s["stable_node_dups"] == 0)
        #expect(s["ksm_zero_pages"] == 1)
        #expect(s["region_bytes_used"] == Int64(2 * Page.size))
        #expect(s["objects"] == 1)
        #expect(s["clients"] == 2)
        let metadata = c.session.domain.metadataBytes
        #expect(metadata > 0)
        #expect(s["general_profit"] == (1 + 1) * 4096 - metadata)
        #expect(f.send(.stats, c) == [.statistics(list)])
    }

    @Test func statisticsFollowMaxPageSharing() throws {
        let f = ServiceFixture(maxPageSharing: 2)
        let c = try f.client()
        _ = try f.upload(c, [7, 7, 7, 7, 7])
        let s = f.stats(c)
        #expect(s["pages_shared"] == 2)
        #expect(s["pages_sharing"] == 2)
        #expect(s["pages_unshared"] == 1)
        #expect(s["stable_node_chains"] == 1)
        #expect(s["stable_node_dups"] == 3)
        #expect(s["region_bytes_used"] == Int64(3 * Page.size))
        f.checkInvariants()
    }

    @Test func generalProfitCanBeNegative() throws {
        let f = ServiceFixture()
        let c = try f.client()
        _ = try f.upload(c, [1, 2])
        let s = f.stats(c)
        #expect(s["general_profit"] == -c.session.domain.metadataBytes)
        #expect(s["general_profit"]! < 0)
    }

    @Test func backingFactoryErrorsPropagate() {
        struct NoMemfd: Error {}
        let service = Service(regionBytes: 1 << 20) { _ in throw NoMemfd() }
        #expect(throws: NoMemfd.self) { try service.openSession(peer: PeerIdentity(pid: 1, uid: 1, gid: 1)) }
        #expect(service.allDomains.isEmpty)
        #expect(service.budget.limit == 256)
    }
}
