/// The server's request handling, with no I/O: decoded requests in, replies out. The event loop
/// owns sockets and fds and calls this; tests and the fuzzer call it directly.
public final class Service {
    public let regionBytes: UInt64
    public let budget: PageBudget
    public var limits = SessionLimits()
    /// Digests a client's list (Session.unstableHashes) may hold before it is first compacted
    /// (see `compactUnstableHashes`); tests make it small.
    var unstableHashesSlack = 1 << 16
    /// Called when a request runs into a cap (the request is refused as well).
    public var onLimitHit: ((LimitKind, Session) -> Void)?
    /// Answers `verify` (tests and diagnosis; it walks every page of the domain).
    public var selfCheck = false
    public var maxPageSharing: UInt32
    private var domains: [String: Domain] = [:]
    private let makeBacking: (String) throws -> any RegionBacking
    private var seeds = SystemRandomNumberGenerator()
    private var nextSessionID: UInt64 = 1

    /// `makeBacking` creates the region of a new domain (a memfd in the server).
    /// Who may connect and which uids share a dedup domain.
    public var policy: AccessPolicy

    public init(regionBytes: UInt64, maxPageSharing: UInt32 = 256, policy: AccessPolicy = AccessPolicy(serverUID: 0),
                makeBacking: @escaping (String) throws -> any RegionBacking) {
        self.policy = policy
        self.regionBytes = regionBytes
        self.budget = PageBudget(limit: regionBytes / UInt64(Page.size))
        self.maxPageSharing = maxPageSharing
        self.makeBacking = makeBacking
    }

    public var allDomains: [Domain] { Array(domains.values) }

    /// The domain a peer belongs to: its named group (`--domain`), else its own uid's.
    public func domainName(for peer: PeerIdentity) -> String { policy.domain(of: peer) }

    /// `clientName` (from hello) and `connectedSince` (the server's wall clock, seconds since the
    /// epoch) are only reported by `clients`.
    public func openSession(peer: PeerIdentity, clientName: String = "", connectedSince: Int64 = 0) throws -> Session {
        let name = domainName(for: peer)
        let domain: Domain
        if let d = domains[name] {
            domain = d
        } else {
            let store = PageStore(backing: try makeBacking(name), budget: budget,
                                  seed: seeds.next(), maxPageSharing: maxPageSharing)
            domain = Domain(name: name, store: store)
            domains[name] = domain
        }
        domain.clients += 1
        let session = Session(id: nextSessionID, domain: domain, peer: peer,
                              clientName: clientName, connectedSince: connectedSince)
        nextSessionID += 1
        domain.sessions[session.id] = session
        return session
    }

    /// Releases everything a connection held: unfinished uploads and mappings.
    public func close(_ session: Session) {
        let domain = session.domain
        for (_, var upload) in session.uploads {
            domain.store.finish(&upload.placement)
            domain.store.release(upload.runs.runs)
        }
        session.uploads.removeAll()
        for (_, key) in session.mappings { unpin(key, in: domain) }
        session.mappings.removeAll()
        session.buffers.removeAll()
        closeMerging(session)
        domain.clients -= 1
    }

    /// Answers one request. `hello` is the event loop's business and is refused here.
    public func handle(_ request: Request, session: Session) -> [Reply] {
        defer {
            session.requestsServed &+= 1
            // The reply may name new pages: their bytes must be in the region before it goes.
            session.domain.store.backing.flushWrites()
        }
        do {
            return try dispatch(request, session: session)
        } catch {
            return [.failure(error.code, error.message)]
        }
    }

    private func dispatch(_ request: Request, session: Session) throws(RequestFailure) -> [Reply] {
        let domain = session.domain
        switch request {
        case .hello:
            throw RequestFailure(.badRequest, "hello may only be sent once, first")
        case .ping:
            return [.pong]
        case .stats:
            return [.statistics(statistics(of: domain))]
        case .clients:
            return [.clientList(clientList(for: session))]
        case .mergeScan(_, let flags, let stagingPage, let keys):
            // The round matters to look-ups only (a promise holds others up for one round).
            return try mergeScan(flags: flags, stagingPage: stagingPage, keys: keys, session: session)
        case .mergeLookup(let round, let flags, let keys, let digests, let withdrawn):
            return try mergeLookup(round: round, flags: flags, keys: keys, digests: digests, withdrawn: withdrawn, session: session)
        case .mergeRelease(let pages):
            return try mergeRelease(pages, session: session)
        case .scanReport(let report):
            return scanReport(report, session: session)
        case .verify:
            guard selfCheck else { throw RequestFailure(.notPermitted, "verify needs a server started with --self-check") }
            let problems = verify(domain)
            guard problems.isEmpty else {
                throw RequestFailure(.internalError, "\(problems.count) problems: " + problems.prefix(5).joined(separator: "; "))
            }
            return [.done]
        case .configure(let name, let value):
            guard name == "max_page_sharing" else { throw RequestFailure(.badRequest, "unknown parameter \(name)") }
            guard value >= 2 && value <= UInt64(UInt32.max) else { throw RequestFailure(.badRequest, "max_page_sharing must be at least 2") }
            guard domain.store.pagesInUse == 0 else {
                throw RequestFailure(.notPermitted, "max_page_sharing can change only while the domain stores no pages (as in KSM)")
            }
            domain.store.maxPageSharing = UInt32(value)
            return [.done]
        case .putBegin(let handle, let length):
            guard session.uploads[handle] == nil else { throw RequestFailure(.badRequest, "upload \(handle) already open") }
            guard session.uploads.count < limits.maxUploads else {
                throw limitReached(.uploads, session, "more than \(limits.maxUploads) uploads open")
            }
            guard domain.objectCount < limits.maxDomainObjects else {
                throw limitReached(.objects, session, "the domain holds \(limits.maxDomainObjects) objects, its limit")
            }
            let pages = Page.count(forBytes: length)
            guard pages <= UInt64(UInt32.max) else { throw RequestFailure(.badRequest, "object of \(length) bytes is too large") }
            guard session.uploadPages + pages <= limits.maxUploadPages else {
                throw limitReached(.uploadPages, session, "uploads open on this connection would exceed \(limits.maxUploadPages) pages")
            }
            session.uploads[handle] = Upload(length: length, totalPages: pages)
            return [.done]
        case .putPages(let handle, let stagingPage, let count):
            guard let staging = session.staging else { throw RequestFailure(.badStaging, "no staging memory") }
            try putPages(handle, from: staging, named: "the staging memory", firstPage: stagingPage, count: count, session: session)
            return [.done]
        case .putBuffer(let handle, let buffer, let firstPage, let count, let digests):
            guard let memory = session.buffers[buffer] else {
                throw RequestFailure(.unknownHandle, "no buffer \(buffer) attached on this connection")
            }
            try putPages(handle, from: memory, named: "buffer \(buffer)", firstPage: firstPage, count: count,
                         digests: digests.isEmpty ? nil : digests, session: session)
            return [.done]
        case .attachBuffer:
            // The server's event loop answers it (it maps the memfd the request carries).
            throw RequestFailure(.badRequest, "attachBuffer must carry a sealed memfd")
        case .detachBuffer(let buffer):
            guard session.buffers.removeValue(forKey: buffer) != nil else {
                throw RequestFailure(.unknownHandle, "no buffer \(buffer) attached on this connection")
            }
            return [.done]
        case .putCommit(let handle):
            guard var upload = session.uploads[handle] else { throw RequestFailure(.unknownHandle, "no upload \(handle)") }
            guard upload.receivedPages == upload.totalPages else {
                throw RequestFailure(.badRequest, "upload \(handle) has \(upload.receivedPages) of \(upload.totalPages) pages")
            }
            session.uploads[handle] = nil
            domain.store.finish(&upload.placement)
            guard domain.objectCount < limits.maxDomainObjects else {
                // Others filled the domain while this upload ran: it is dropped, not half-kept.
                domain.store.release(upload.runs.runs)
                throw limitReached(.objects, session, "the domain holds \(limits.maxDomainObjects) objects, its limit")
            }
            var id = ObjectID.random()
            while domain.keyByID[id] != nil { id = ObjectID.random() }
            _ = domain.insert(StoredObject(length: upload.length, runs: upload.runs.runs), id: id)
            return [.committed(id)]
        case .putAbort(let handle):
            guard var upload = session.uploads.removeValue(forKey: handle) else {
                throw RequestFailure(.unknownHandle, "no upload \(handle)")
            }
            domain.store.finish(&upload.placement)
            domain.store.release(upload.runs.runs)
            return [.done]
        case .map(let id):
            guard let key = domain.keyByID[id] else { throw RequestFailure(.unknownObject, "no object \(id)") }
            guard session.mappings.count < limits.maxMappings else {
                throw limitReached(.mappings, session, "more than \(limits.maxMappings) mappings")
            }
            // The counter wraps after 2^32 maps; skip handles still in use (at most maxMappings),
            // or the new mapping would replace an old one and that one's pin would never go.
            var handle = session.nextHandle
            while session.mappings[handle] != nil { handle &+= 1 }
            session.nextHandle = handle &+ 1
            session.mappings[handle] = key
            domain.objects[key]!.pins += 1
            let object = domain.objects[key]!
            var replies: [Reply] = [.mapped(handle: handle, length: object.length, runCount: UInt32(object.runs.count))]
            var index = 0
            repeat {
                let end = min(object.runs.count, index + Reply.runsPerFrame)
                replies.append(.runs(Array(object.runs[index..<end]), more: end < object.runs.count))
                index = end
            } while index < object.runs.count
            return replies
        case .unmap(let handle):
            guard let key = session.mappings.removeValue(forKey: handle) else {
                throw RequestFailure(.unknownHandle, "no mapping \(handle) on this connection")
            }
            unpin(key, in: domain)
            return [.done]
        case .delete(let id):
            guard let key = domain.keyByID.removeValue(forKey: id) else {
                throw RequestFailure(.unknownObject, "no object \(id)")
            }
            domain.objects[key]!.deleted = true
            domain.releaseIfUnused(key)
            return [.done]
        }
    }

    /// Where the server may read a shared buffer: checks a new one against the limits and
    /// records it (the reply is `done` or the failure); the event loop maps the memfd and keeps
    /// the mapping alive until detach.
    public func attach(buffer: UInt32, bytes: UnsafeRawBufferPointer, session: Session) -> Reply {
        guard session.buffers[buffer] == nil else { return .failure(.badRequest, "buffer \(buffer) already attached") }
        guard session.buffers.count < limits.maxBuffers else {
            let failure = limitReached(.buffers, session, "more than \(limits.maxBuffers) buffers attached")
            return .failure(failure.code, failure.message)
        }
        session.buffers[buffer] = bytes
        return .done
    }

    private func putPages(_ handle: UInt32, from memory: UnsafeRawBufferPointer, named name: String, firstPage stagingPage: UInt32,
                          count: UInt32, digests: [UInt64]? = nil, session: Session) throws(RequestFailure) {
        guard var upload = session.uploads[handle] else { throw RequestFailure(.unknownHandle, "no upload \(handle)") }
        let staging = memory
        let stagingPages = UInt64(staging.count / Page.size)
        guard count > 0, UInt64(stagingPage) + UInt64(count) <= stagingPages else {
            throw RequestFailure(.badRequest, "pages \(stagingPage)+\(count) outside \(name) (\(stagingPages) pages)")
        }
        guard upload.receivedPages + UInt64(count) <= upload.totalPages else {
            throw RequestFailure(.badRequest, "more pages than the object's length")
        }
        let isLast = upload.receivedPages + UInt64(count) == upload.totalPages
        let tail = Int(upload.length % UInt64(Page.size))
        let source = staging.baseAddress! + Int(stagingPage) * Page.size
        let store = session.domain.store
        do {
            try store.ingest(source, pageCount: Int(count), digests: digests,
                             validBytesInLastPage: isLast && tail != 0 ? tail : Page.size,
                             wantedAhead: upload.totalPages - upload.receivedPages,
                             placement: &upload.placement, into: &upload.runs)
        } catch {
            // The whole object is abandoned: a partial object is of no use to anyone, and its
            // pages would otherwise sit in the region until the client went away.
            store.finish(&upload.placement)
            store.release(upload.runs.runs)
            upload.runs = RunBuilder()
            session.uploads[handle] = nil
            throw limitReached(.region, session, "region full: \(budget.used) of \(budget.limit) pages in use", code: .regionFull)
        }
        // Not a `defer`: on failure the upload is dropped, and a deferred write would put it back.
        session.uploads[handle] = upload
    }

    private func unpin(_ key: UInt64, in domain: Domain) {
        domain.objects[key]!.pins -= 1
        domain.releaseIfUnused(key)
    }

    /// The statistics of one domain, with KSM's names (docs/statistics.md).
    public func statistics(of domain: Domain) -> [Statistic] {
        let c = domain.store.counters
        let scan = domain.scanTotals
        let zeroPages = c.zeroPages + Int64(scan.zeroPages)
        let saved = (c.pagesSharing + zeroPages) * Int64(Page.size)
        // KSM subtracts its rmap items; a client keeps 16 bytes of scan state per page.
        let metadata = domain.metadataBytes + Int64(scan.rmapItems) * 16
        return [
            Statistic(name: "pages_shared", value: c.pagesShared),
            Statistic(name: "pages_sharing", value: c.pagesSharing),
            Statistic(name: "pages_unshared", value: c.pagesUnshared + Int64(domain.unstableCount)),
            Statistic(name: "pages_volatile", value: Int64(scan.pagesVolatile)),
            Statistic(name: "pages_scanned", value: Int64(scan.pagesScanned)),
            Statistic(name: "pages_skipped", value: Int64(scan.pagesSkipped)),
            Statistic(name: "full_scans", value: Int64(scan.fullScans)),
            Statistic(name: "stable_node_chains", value: c.stableNodeChains),
            Statistic(name: "stable_node_dups", value: c.stableNodeDups),
            Statistic(name: "ksm_zero_pages", value: zeroPages),
            Statistic(name: "general_profit", value: saved - metadata),
            Statistic(name: "region_bytes_used", value: domain.store.pagesInUse * Int64(Page.size)),
            Statistic(name: "objects", value: Int64(domain.objectCount)),
            Statistic(name: "clients", value: Int64(domain.clients)),
        ]
    }
}

/// A request that failed for a reason the client should hear about.
struct RequestFailure: Error {
    var code: ErrorCode
    var message: String
    init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }
}
