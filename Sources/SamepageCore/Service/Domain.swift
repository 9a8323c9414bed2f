/// A dedup domain: the set of clients whose pages may be shared with each other. Each domain has
/// its own region (so a client's read-only region fd shows only its own domain's pages), its own
/// store and its own objects. By default a domain is one uid (design.md section 5).
public final class Domain {
    public let name: String
    public let store: PageStore
    public internal(set) var clients = 0

    var objects: [UInt64: StoredObject] = [:]
    /// Connected sessions by id (merge hints are delivered to them).
    var sessions: [UInt64: Session] = [:]
    var unstable = UnstableTree()
    /// Full scans of the whole domain: one is complete when every scanning client has completed
    /// a full scan of its own since the last one (as KSM counts a pass over all mergeable areas).
    public private(set) var fullScans: UInt64 = 0
    private var scannedThisRound: Set<UInt64> = []
    /// Cumulative scanner counters of clients that have gone away.
    private var departed = ScanReport()
    var keyByID: [ObjectID: UInt64] = [:]
    private var nextKey: UInt64 = 1
    /// Run entries held by all objects, for `general_profit`.
    private(set) var runEntries = 0

    public init(name: String, store: PageStore) {
        self.name = name
        self.store = store
    }

    /// Takes a client's scanner report into the domain's figures.
    func record(_ report: ScanReport, from session: Session) {
        // The figures come from a client: bound each one, so that no report can overflow the
        // domain's sums (the fuzzer found that one could crash the server's statistics).
        var report = report
        let bound: UInt64 = 1 << 40
        report.pagesScanned = min(report.pagesScanned, bound)
        report.fullScans = min(report.fullScans, bound)
        report.pagesSkipped = min(report.pagesSkipped, bound)
        report.pagesVolatile = min(report.pagesVolatile, bound)
        report.zeroPages = min(report.zeroPages, bound)
        report.mergingPages = min(report.mergingPages, bound)
        report.rmapItems = min(report.rmapItems, bound)
        let previous = session.scanReport
        session.scanReport = report
        if report.fullScans > (previous?.fullScans ?? 0) { scannedThisRound.insert(session.id) }
        let scanning = sessions.values.filter { $0.scanReport != nil }.map(\.id)
        if !scanning.isEmpty && scanning.allSatisfy(scannedThisRound.contains) {
            fullScans += 1
            scannedThisRound.removeAll()
        }
    }

    func forget(_ session: Session) {
        sessions[session.id] = nil
        scannedThisRound.remove(session.id)
        if let report = session.scanReport {
            // Cumulative over every client that ever scanned: saturate rather than overflow.
            departed.pagesScanned = min(departed.pagesScanned + report.pagesScanned, UInt64(Int64.max) / 2)
            departed.pagesSkipped = min(departed.pagesSkipped + report.pagesSkipped, UInt64(Int64.max) / 2)
        }
    }

    /// The scanner figures of the domain: cumulative counters include departed clients, current
    /// values only connected ones.
    public var scanTotals: ScanReport {
        var total = departed
        total.fullScans = fullScans
        // Each report is bounded (record) and the sessions are bounded by the fds a server can
        // hold, so these sums cannot overflow.
        for report in sessions.values.compactMap(\.scanReport) {
            total.pagesScanned += report.pagesScanned
            total.pagesSkipped += report.pagesSkipped
            total.pagesVolatile += report.pagesVolatile
            total.zeroPages += report.zeroPages
            total.mergingPages += report.mergingPages
            total.rmapItems += report.rmapItems
        }
        return total
    }

    /// Candidates waiting in the unstable tree.
    public var unstableCount: Int { unstable.count }

    /// Objects that can be looked up by id (deleted-but-mapped ones are not counted).
    public var objectCount: Int { keyByID.count }

    func insert(_ object: StoredObject, id: ObjectID) -> UInt64 {
        let key = nextKey
        nextKey += 1
        objects[key] = object
        keyByID[id] = key
        runEntries += object.runs.count
        return key
    }

    /// Drops an object's pages once it is deleted and nothing maps it.
    func releaseIfUnused(_ key: UInt64) {
        guard let object = objects[key], object.deleted, object.pins == 0 else { return }
        objects[key] = nil
        runEntries -= object.runs.count
        store.release(object.runs)
    }

    public var metadataBytes: Int64 {
        store.metadataBytes + Int64(runEntries * MemoryLayout<PageRun>.stride)
            + Int64(objects.count * (MemoryLayout<StoredObject>.stride + 48))
    }
}

/// An object: its length and where its pages are, as runs.
struct StoredObject {
    var length: UInt64
    var runs: [PageRun]
    /// Live mappings; the pages stay until the object is deleted and unpinned.
    var pins = 0
    var deleted = false
}

/// An object being uploaded by one connection. Its pages are owned from the moment they are
/// stored, and released if the upload is aborted or the client goes away.
struct Upload {
    var length: UInt64
    var totalPages: UInt64
    var runs = RunBuilder()
    var placement: PageStore.Placement?

    var receivedPages: UInt64 { runs.pageCount }
}
