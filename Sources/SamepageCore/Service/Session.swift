/// What the server knows about one connection. Handles (uploads, mappings) are numbers that mean
/// something only on this connection: another connection using them gets `unknownHandle`.
public final class Session {
    public let id: UInt64
    public let domain: Domain
    public let peer: PeerIdentity
    /// The name the client sent in hello, printable (`ClientInfo.printableName`).
    public let clientName: String
    /// When hello was accepted, in seconds since the Unix epoch (the server's clock; the
    /// service itself reads no clock).
    public let connectedSince: Int64
    /// Requests answered after hello, for `samepage clients`.
    public internal(set) var requestsServed: UInt64 = 0
    /// The client's staging memory, mapped read-only by the server once it has been validated.
    public var staging: UnsafeRawBufferPointer?
    /// Shared buffers the client attached (objects written in place, put without a copy through
    /// staging), by the client's name for them; mapped read-only by the event loop.
    public internal(set) var buffers: [UInt32: UnsafeRawBufferPointer] = [:]

    var uploads: [UInt32: Upload] = [:]
    var mappings: [UInt32: UInt64] = [:]
    var nextHandle: UInt32 = 1

    // Mergeable memory.
    /// References this connection holds on region pages for merged memory, by page.
    var merged = MergeReferences()
    /// Merges asked of this client's pages by other clients' scans, delivered with its next scan.
    var pendingHints: [MergeHint] = []
    /// Digests under which this client filed unstable-tree entries, for its leaving: an entry
    /// stays until the client withdraws it (its page changed), a pair takes it, or the client
    /// leaves (see UnstableTree). Digests of entries gone since are dropped from the list now and
    /// then (`Service.compactUnstableHashes`); its length bounds the client's entries.
    var unstableHashes: [UInt64] = []
    /// The list's length after its last compaction.
    var unstableHashesCompacted = 0
    /// Digests whose bytes this client was asked for in its last scan request (UnstableTree's
    /// promises), withdrawn at its next.
    var promisedHashes: [UInt64] = []
    var scanReport: ScanReport?

    init(id: UInt64, domain: Domain, peer: PeerIdentity, clientName: String, connectedSince: Int64) {
        self.id = id
        self.domain = domain
        self.peer = peer
        self.clientName = ClientInfo.printableName(clientName)
        self.connectedSince = connectedSince
    }

    public var mappingCount: Int { mappings.count }
    /// Pages the open uploads declared (what `maxUploadPages` bounds).
    var uploadPages: UInt64 { uploads.values.reduce(0) { $0 + $1.totalPages } }
    public var uploadCount: Int { uploads.count }
    /// Region-page references held for merged memory.
    /// The merge references by page, as a Dictionary (tests, reports).
    var mergedByPage: [PageNumber: UInt32] { merged.dictionary }
    public var mergedReferences: Int {
        var total = 0
        merged.forEach { total += Int($1) }
        return total
    }
}

/// The credentials of a connected process (SO_PEERCRED).
public struct PeerIdentity: Sendable, Equatable {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }
}

/// Per-connection caps, so that one client cannot take the server's memory for bookkeeping.
public struct SessionLimits: Sendable, Equatable {
    /// Uploads one connection may have open at once.
    public var maxUploads = 64
    /// Objects one connection may have mapped at once.
    public var maxMappings = 1 << 16
    /// Mergeable-memory candidates one connection may leave waiting in the unstable tree (16 GiB
    /// of pages by default).
    public var maxUnstableEntries = 1 << 22
    /// Objects a dedup domain may hold.
    public var maxDomainObjects = 1 << 20
    /// Pages one connection's open uploads may add up to (declared lengths, before commit):
    /// 16 GiB by default. Committed objects belong to the domain and count against
    /// `maxDomainObjects` and the region instead.
    public var maxUploadPages: UInt64 = 1 << 22
    /// Shared buffers one connection may have attached.
    public var maxBuffers = 16
    public init() {}
}
