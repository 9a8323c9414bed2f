/// What a client asks. The protocol version is `Request.version`; a server refuses a hello with
/// another version with `ErrorCode.unsupportedVersion`.
///
/// Uploads are named by the client (`upload`, unique per connection) so that a client can send
/// `putBegin`, many `putPages` and `putCommit` back to back without waiting for each reply.
public enum Request: Equatable, Sendable {
    public static let version: UInt32 = 3

    /// First message of every connection. Carries the client's staging memfd as SCM_RIGHTS; it
    /// must be sealed against shrinking (`F_SEAL_SHRINK`), or the server refuses it.
    case hello(version: UInt32, clientName: String)
    case ping
    /// Starts an object of `length` bytes.
    case putBegin(upload: UInt32, length: UInt64)
    /// The next `pageCount` pages of the upload are at page `stagingPage` of the staging memfd.
    case putPages(upload: UInt32, stagingPage: UInt32, pageCount: UInt32)
    /// Seals the upload into an object; the reply carries its id.
    case putCommit(upload: UInt32)
    case putAbort(upload: UInt32)
    /// Asks for the runs of an object; the object stays alive until `unmap(handle)`.
    case map(ObjectID)
    case unmap(handle: UInt32)
    case delete(ObjectID)
    case stats
    /// Mergeable memory: `keys.count` candidate pages of the client's own memory (pages whose
    /// checksum did not change since the last scan), copied to consecutive staging pages from
    /// `stagingPage`. `keys` are the client's names for them (their addresses). `round` is the
    /// client's full-scan number (a promise of bytes holds other clients up for one round of
    /// theirs, see UnstableTree); entries it files stay until withdrawn (`mergeLookup`).
    case mergeScan(round: UInt32, flags: MergeFlags, stagingPage: UInt32, keys: [UInt64])
    /// Drops one reference this connection holds on each region page (an unmerge, a broken COW,
    /// a merge the client could not complete).
    case mergeRelease(pages: [PageNumber])
    /// The client's scanner statistics, for the domain-wide figures.
    case scanReport(ScanReport)
    /// Sets a domain-wide tunable: today `max_page_sharing`, which, as in KSM, can change only
    /// while the domain stores no pages.
    case configure(name: String, value: UInt64)
    /// Checks the domain's bookkeeping: every page's owners equal the references that objects,
    /// uploads and connections hold. Only on a server started with --self-check (tests).
    case verify
    /// Lists the clients connected in the caller's dedup domain (`samepage clients`, `top`).
    case clients
    /// Mergeable memory, the fast way in: candidates by digest only (64-bit XXH3, seed 0, of each
    /// page; `keys` are the pages' addresses as in `mergeScan`). Answered by `mergeResults`,
    /// whose outcomes may say `needContent`: send that page's bytes with `mergeScan`. A candidate
    /// answered `.unstable` stays filed in the unstable tree until the client lists it in
    /// `withdrawn` (removed before the candidates are looked at), a pair takes it, or the
    /// client leaves.
    case mergeLookup(round: UInt32, flags: MergeFlags, keys: [UInt64], digests: [UInt64], withdrawn: [MergeWithdrawal] = [])
    /// Lends the server a shared buffer: a memfd of the client's (SCM_RIGHTS), sealed against
    /// shrinking, that the client writes objects into and puts without copying them through
    /// staging. `buffer` is the client's name for it, unique per connection.
    case attachBuffer(buffer: UInt32)
    /// Like `putPages`, from page `firstPage` of an attached buffer. `digests`, empty or one per
    /// page (64-bit XXH3, seed 0, computed by the client on its own core), let the server find a
    /// stored page by digest and only compare: a wrong digest costs a compare, never a share.
    case putBuffer(upload: UInt32, buffer: UInt32, firstPage: UInt32, pageCount: UInt32, digests: [UInt64])
    case detachBuffer(buffer: UInt32)

    public var kind: MessageKind {
        switch self {
        case .hello: .hello
        case .ping: .ping
        case .putBegin: .putBegin
        case .putPages: .putPages
        case .putCommit: .putCommit
        case .putAbort: .putAbort
        case .map: .map
        case .unmap: .unmap
        case .delete: .delete
        case .stats: .stats
        case .mergeScan: .mergeScan
        case .mergeRelease: .mergeRelease
        case .scanReport: .scanReport
        case .configure: .configure
        case .verify: .verify
        case .clients: .clients
        case .mergeLookup: .mergeLookup
        case .attachBuffer: .attachBuffer
        case .putBuffer: .putBuffer
        case .detachBuffer: .detachBuffer
        }
    }

    public func encode(requestID: UInt64) -> [UInt8] {
        var w = WireWriter()
        switch self {
        case .hello(let version, let name):
            w.write(version)
            w.write(name)
        case .ping, .stats, .verify, .clients:
            break
        case .putBegin(let upload, let length):
            w.write(upload)
            w.write(length)
        case .putPages(let upload, let stagingPage, let pageCount):
            w.write(upload)
            w.write(stagingPage)
            w.write(pageCount)
        case .putCommit(let upload), .putAbort(let upload):
            w.write(upload)
        case .map(let id), .delete(let id):
            w.write(id)
        case .unmap(let handle):
            w.write(handle)
        case .mergeScan(let round, let flags, let stagingPage, let keys):
            w.write(round)
            w.write(flags.rawValue)
            w.write(stagingPage)
            w.write(UInt32(keys.count))
            w.write(count: keys.count) { keys[$0] }
        case .mergeLookup(let round, let flags, let keys, let digests, let withdrawn):
            precondition(keys.count == digests.count)
            w.write(round)
            w.write(flags.rawValue)
            w.write(UInt32(keys.count))
            w.write(count: 2 * keys.count) { $0 & 1 == 0 ? keys[$0 >> 1] : digests[$0 >> 1] }
            w.write(UInt32(withdrawn.count))
            w.write(count: 2 * withdrawn.count) { $0 & 1 == 0 ? withdrawn[$0 >> 1].key : withdrawn[$0 >> 1].digest }
        case .attachBuffer(let buffer), .detachBuffer(let buffer):
            w.write(buffer)
        case .putBuffer(let upload, let buffer, let firstPage, let pageCount, let digests):
            w.write(upload)
            w.write(buffer)
            w.write(firstPage)
            w.write(pageCount)
            w.write(UInt32(digests.count))
            w.write(count: digests.count) { digests[$0] }
        case .mergeRelease(let pages):
            w.write(UInt32(pages.count))
            w.write(count: pages.count) { pages[$0] }
        case .scanReport(let report):
            report.encode(into: &w)
        case .configure(let name, let value):
            w.write(name)
            w.write(value)
        }
        return FrameEncoder.encode(kind: kind.rawValue, requestID: requestID, payload: w.bytes)
    }

    public static func decode(_ frame: Frame) throws(ProtocolError) -> Request {
        guard let kind = MessageKind(rawValue: frame.header.kind), !kind.isReply else {
            throw .unknownKind(frame.header.kind)
        }
        var r = WireReader(frame.payload)
        let request: Request
        switch kind {
        case .hello: request = .hello(version: try r.read(), clientName: try r.readString())
        case .ping: request = .ping
        case .stats: request = .stats
        case .putBegin: request = .putBegin(upload: try r.read(), length: try r.read())
        case .putPages:
            request = .putPages(upload: try r.read(), stagingPage: try r.read(), pageCount: try r.read())
        case .putCommit: request = .putCommit(upload: try r.read())
        case .putAbort: request = .putAbort(upload: try r.read())
        case .map: request = .map(try r.readObjectID())
        case .unmap: request = .unmap(handle: try r.read())
        case .delete: request = .delete(try r.readObjectID())
        case .mergeScan:
            let round: UInt32 = try r.read()
            let flags = MergeFlags(rawValue: try r.read())
            let stagingPage: UInt32 = try r.read()
            let count: UInt32 = try r.read()
            guard Int(count) <= r.remaining / 8 else { throw .truncated }
            var keys: [UInt64] = []
            keys.reserveCapacity(Int(count))
            for _ in 0..<count { keys.append(try r.read()) }
            request = .mergeScan(round: round, flags: flags, stagingPage: stagingPage, keys: keys)
        case .mergeRelease:
            let count: UInt32 = try r.read()
            guard Int(count) <= r.remaining / 4 else { throw .truncated }
            var pages: [PageNumber] = []
            pages.reserveCapacity(Int(count))
            for _ in 0..<count { pages.append(try r.read()) }
            request = .mergeRelease(pages: pages)
        case .scanReport: request = .scanReport(try ScanReport(from: &r))
        case .configure: request = .configure(name: try r.readString(), value: try r.read())
        case .verify: request = .verify
        case .clients: request = .clients
        case .attachBuffer: request = .attachBuffer(buffer: try r.read())
        case .detachBuffer: request = .detachBuffer(buffer: try r.read())
        case .putBuffer:
            let upload: UInt32 = try r.read(), buffer: UInt32 = try r.read()
            let firstPage: UInt32 = try r.read(), pageCount: UInt32 = try r.read()
            let count: UInt32 = try r.read()
            guard count == 0 || count == pageCount else { throw .badValue("\(count) digests for \(pageCount) pages") }
            guard Int(count) <= r.remaining / 8 else { throw .truncated }
            var digests: [UInt64] = []
            digests.reserveCapacity(Int(count))
            for _ in 0..<count { digests.append(try r.read()) }
            request = .putBuffer(upload: upload, buffer: buffer, firstPage: firstPage, pageCount: pageCount, digests: digests)
        case .mergeLookup:
            let round: UInt32 = try r.read()
            let flags = MergeFlags(rawValue: try r.read())
            let count: UInt32 = try r.read()
            guard Int(count) <= r.remaining / 16 else { throw .truncated }
            var keys: [UInt64] = [], digests: [UInt64] = []
            keys.reserveCapacity(Int(count))
            digests.reserveCapacity(Int(count))
            for _ in 0..<count {
                keys.append(try r.read())
                digests.append(try r.read())
            }
            let withdrawnCount: UInt32 = try r.read()
            guard Int(withdrawnCount) <= r.remaining / 16 else { throw .truncated }
            var withdrawn: [MergeWithdrawal] = []
            withdrawn.reserveCapacity(Int(withdrawnCount))
            for _ in 0..<withdrawnCount { withdrawn.append(MergeWithdrawal(key: try r.read(), digest: try r.read())) }
            request = .mergeLookup(round: round, flags: flags, keys: keys, digests: digests, withdrawn: withdrawn)
        default: throw .unknownKind(frame.header.kind)
        }
        try r.expectEnd()
        return request
    }
}

/// Message kinds on the wire. Replies have the high bit set.
public enum MessageKind: UInt16, Sendable {
    case hello = 1
    case ping = 2
    case putBegin = 3
    case putPages = 4
    case putCommit = 5
    case putAbort = 6
    case map = 7
    case unmap = 8
    case delete = 9
    case stats = 10
    case mergeScan = 11
    case mergeRelease = 12
    case scanReport = 13
    case configure = 14
    case verify = 15
    case clients = 16
    case mergeLookup = 17
    case attachBuffer = 18
    case putBuffer = 19
    case detachBuffer = 20

    case welcome = 0x8001
    case pong = 0x8002
    case done = 0x8003
    case committed = 0x8004
    case mapped = 0x8005
    case runs = 0x8006
    case statistics = 0x8007
    case mergeResults = 0x8008
    case segment = 0x8009
    case clientList = 0x800A
    case failure = 0x80FF

    public var isReply: Bool { rawValue & 0x8000 != 0 }
}

/// A client scanner's statistics (KSM's per-process and scanner counters), reported to the server
/// so that `samepage stats` can show the domain-wide figures.
public struct ScanReport: Equatable, Sendable {
    /// Cumulative counters.
    public var pagesScanned: UInt64 = 0
    public var fullScans: UInt64 = 0
    public var pagesSkipped: UInt64 = 0
    /// Current values.
    public var pagesVolatile: UInt64 = 0
    public var zeroPages: UInt64 = 0
    public var mergingPages: UInt64 = 0
    public var rmapItems: UInt64 = 0

    public init() {}

    func encode(into w: inout WireWriter) {
        for value in [pagesScanned, fullScans, pagesSkipped, pagesVolatile, zeroPages, mergingPages, rmapItems] {
            w.write(value)
        }
    }

    init(from r: inout WireReader) throws(ProtocolError) {
        pagesScanned = try r.read()
        fullScans = try r.read()
        pagesSkipped = try r.read()
        pagesVolatile = try r.read()
        zeroPages = try r.read()
        mergingPages = try r.read()
        rmapItems = try r.read()
    }
}

/// (`mergeLookup`.) A page of the client's filed in the unstable tree that changed or went away:
/// its key, and the digest it was filed under.
public struct MergeWithdrawal: Equatable, Sendable {
    public var key: UInt64
    public var digest: UInt64
    public init(key: UInt64, digest: UInt64) {
        self.key = key
        self.digest = digest
    }
}

/// Options of a scan request.
public struct MergeFlags: OptionSet, Sendable, Equatable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// KSM's use_zero_pages: all-zero candidates are answered `.zero` (the client discards them
    /// and reads the kernel's zero page) instead of merging with a stored page of zeros.
    public static let useZeroPages = MergeFlags(rawValue: 1)
    /// (`mergeLookup`.) Look the pages up among stored pages only, as KSM searches its stable
    /// tree for every page it scans before its checksum test: pages read for the first time, or
    /// changed since the last scan, are submitted so. Not found is answered `.unstable` and
    /// nothing is filed; zero pages are not answered `.zero`.
    public static let stableOnly = MergeFlags(rawValue: 2)
}
