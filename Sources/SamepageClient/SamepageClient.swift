import Glibc
import SamepageCore
import SamepageSystem
import SystemPackage

/// A connection to samepaged. Safe to share between threads: calls are serialised.
///
///     let client = try SamepageClient()
///     let id = try client.put(bytes)
///     let mapping = try client.map(id)           // read-only, zero-copy
///     use(mapping.bytes)
///     try mapping.unmap()
///     try client.delete(id)
public final class SamepageClient: @unchecked Sendable {
    /// How a mapping may be used. Either way the region itself never changes: a copy-on-write
    /// mapping's writes land in private copies of the pages.
    public enum MappingMode: Sendable {
        case readOnly
        case copyOnWrite
    }

    public let socketPath: String
    public let name: String
    /// Bytes of the region the server gave this client (its dedup domain's region).
    public private(set) var regionBytes: UInt64

    let lock = Lock()
    /// Held while the staging memory is in use (a put, or a scanner slice): both write it.
    let stagingLock = Lock()
    private var session: ClientSession
    private let stagingBytes: Int
    /// Set in a child process after fork: the parent's connection is not the child's to use,
    /// so the next call opens a new one.
    var needsReconnect = false
    private var nextUpload: UInt32 = 1
    private var nextBuffer: UInt32 = 1
    /// Live mappings by base address: the server handle and the mapped length.
    private var mappings: [UInt: (handle: UInt32, length: Int, generation: Int)] = [:]
    /// Mergeable memory: created on first use (see SamepageClient+Merging.swift).
    var engine: MergeEngine?
    let engineCreation = Lock()
    /// The segments (and view) of the connection the merge engine compares against; kept when
    /// a new connection replaces that one, until the engine asks for the new view.
    private var regionViewTable: SegmentTable?

    /// Staging memory: pages travel through it to the server. Two halves let the client fill
    /// one while the server stores the other.
    public static let defaultStagingBytes = 64 << 20

    /// Connects to `socketPath` (default: `DefaultSocketPath.resolve()`).
    public init(socketPath: String? = nil, name: String = "swift-client", stagingBytes: Int = defaultStagingBytes) throws(SamepageError) {
        let path = socketPath ?? DefaultSocketPath.resolve()
        self.socketPath = path
        self.name = name
        self.stagingBytes = stagingBytes
        session = try ClientSession(socketPath: path, name: name, stagingBytes: stagingBytes)
        regionBytes = session.regionBytes
        ForkHandlers.register(self)
    }

    /// Counts the connections this client has opened: mappings and merges belong to the one
    /// they were made on.
    private(set) var sessionGeneration = 0

    /// The live connection, opened anew when needed: in a child forked after the connection was
    /// made, or after the server went away (the call that saw it go failed with
    /// `connectionLost`; this one reconnects, or fails with `serverNotRunning` until a server is
    /// back). Called with the lock held by every request.
    private func connection() throws(SamepageError) -> ClientSession {
        if needsReconnect || session.connection.isBroken {
            session = try ClientSession(socketPath: socketPath, name: name, stagingBytes: stagingBytes)
            regionBytes = session.regionBytes
            needsReconnect = false
            sessionGeneration += 1
        }
        return session
    }

    // MARK: For extensions (shared buffers): used with the lock held, in withConnectionLock.

    func withConnectionLock<R>(_ body: () throws(SamepageError) -> R) throws(SamepageError) -> R {
        try stagingLock.withLock { () throws(SamepageError) in try lock.withLock(body) }
    }

    func takeUploadName() -> UInt32 {
        defer { nextUpload &+= 1 }
        return nextUpload
    }

    func takeBufferName() -> UInt32 {
        defer { nextBuffer &+= 1 }
        return nextBuffer
    }

    /// The generation of the live connection (opening one if needed).
    func currentGeneration() throws(SamepageError) -> Int {
        _ = try connection()
        return sessionGeneration
    }

    func send(_ request: Request, passing descriptor: Int32 = -1) throws(SamepageError) -> UInt64 {
        try connection().connection.send(request, passing: descriptor)
    }

    func receive(_ requestID: UInt64, quietly: Bool = false) throws(SamepageError) -> Reply {
        try connection().connection.reply(to: requestID, quietly: quietly)
    }

    /// A buffer going away: the server unmaps it (best effort: a connection that is gone took
    /// the server's mapping with it).
    func detach(_ buffer: SharedBuffer) {
        lock.withLock {
            guard buffer.attachedGeneration == sessionGeneration, !needsReconnect, !session.connection.isBroken else { return }
            _ = try? session.connection.call(.detachBuffer(buffer: buffer.handle))
        }
    }

    /// In the child after fork: forget the parent's connection and mappings (their handles are
    /// the parent's) without touching the parent's resources.
    func forgetConnectionAfterFork() {
        needsReconnect = true
        mappings.removeAll()
    }

    deinit {
        engine?.stopScanner()
        for (address, mapping) in mappings {
            Syscall.munmap(UnsafeMutableRawPointer(bitPattern: address)!, mapping.length)
        }
    }

    // MARK: For the merge engine

    /// The staging memory, for the scanner, which holds `stagingLock` while it uses it.
    var stagingBase: UnsafeMutableRawPointer { lock.withLock { session.staging.base } }
    var stagingPages: Int { lock.withLock { session.staging.length / Page.size } }
    /// The region segments of connection `generation`, for the merge engine to map pages from.
    func regionSegments(generation: Int) throws(SamepageError) -> SegmentSnapshot {
        try lock.withLock { () throws(SamepageError) in
            guard generation == regionViewGeneration, let table = regionViewTable else {
                throw .connectionLost("the connection of these merges was replaced")
            }
            return table.snapshot()
        }
    }

    /// The read-only fd of this client's dedup-domain region, as the server sent it (owned by the
    /// client; do not close it). Whatever a process does with it, it cannot change the region.
    /// -1 when the server runs `--hardened`: the region is then several segment memfds.
    public var regionFileDescriptor: Int32 {
        lock.withLock {
            session.segments.segmentCount == 1 ? session.segments.descriptor(ofSegment: 0) ?? -1 : -1
        }
    }

    /// Sends candidates already copied to the start of staging; the caller holds the engine lock.
    func mergeScan(round: UInt32, flags: MergeFlags, keys: [UInt64]) throws(SamepageError) -> ([MergeOutcome], [MergeHint]) {
        try lock.withLock { () throws(SamepageError) in
            let reply = try connection().connection.call(.mergeScan(round: round, flags: flags, stagingPage: 0, keys: keys), quietly: true)
            guard case .mergeResults(let outcomes, let hints) = reply else { throw ClientConnection.unexpected(reply, "mergeResults") }
            return (outcomes, hints)
        }
    }

    /// Sends candidates by digest; the caller holds the engine lock.
    func mergeLookup(round: UInt32, flags: MergeFlags, keys: [UInt64], digests: [UInt64],
                     withdrawn: [MergeWithdrawal]) throws(SamepageError) -> ([MergeOutcome], [MergeHint]) {
        try lock.withLock { () throws(SamepageError) in
            let request = Request.mergeLookup(round: round, flags: flags, keys: keys, digests: digests, withdrawn: withdrawn)
            let reply = try connection().connection.call(request, quietly: true)
            guard case .mergeResults(let outcomes, let hints) = reply else { throw ClientConnection.unexpected(reply, "mergeResults") }
            return (outcomes, hints)
        }
    }

    func releaseMerged(_ pages: [PageNumber]) throws(SamepageError) {
        guard !pages.isEmpty else { return }
        try lock.withLock { () throws(SamepageError) in
            var index = 0
            while index < pages.count {
                let end = min(pages.count, index + 8192)
                _ = try connection().connection.call(.mergeRelease(pages: Array(pages[index..<end])), quietly: true)
                index = end
            }
        }
    }

    /// Gives the first `pages` pages of the staging memory back to the kernel (MADV_REMOVE punches
    /// them out of the memfd). The caller holds `stagingLock`, so no put is using them.
    func releaseStagingMemory(pages: Int) {
        lock.withLock {
            let length = min(pages, session.staging.length / Page.size) * Page.size
            _ = try? Syscall.madvise(session.staging.base, length, MADV_REMOVE)
        }
    }

    /// Sends `configure`; the caller holds the lock.
    func configure(_ name: String, _ value: UInt64) throws(SamepageError) -> Reply {
        try connection().connection.call(.configure(name: name, value: value))
    }

    func send(_ report: ScanReport) throws(SamepageError) {
        try lock.withLock { () throws(SamepageError) in _ = try connection().connection.call(.scanReport(report), quietly: true) }
    }

    /// The generation of the connection whose region `regionViewTable` shows.
    private var regionViewGeneration = -1

    /// A read-only view of the current connection's whole region, for comparing pages before
    /// merging them, with the connection generation it belongs to.
    func makeRegionView() throws(SamepageError) -> (view: UnsafeRawPointer, bytes: Int, generation: Int) {
        try lock.withLock { () throws(SamepageError) in
            let table = try connection().segments
            let view = try systemCall("cannot map the region") { () throws(Errno) in try table.makeView() }
            regionViewTable = table
            regionViewGeneration = sessionGeneration
            return (view, Int(regionBytes), sessionGeneration)
        }
    }

    // MARK: Requests

    public func ping() throws(SamepageError) {
        try lock.withLock { () throws(SamepageError) in
            let reply = try connection().connection.call(.ping)
            guard case .pong = reply else { throw ClientConnection.unexpected(reply, "pong") }
        }
    }

    /// The server's statistics for this client's dedup domain, in the server's order.
    public func statistics() throws(SamepageError) -> [Statistic] {
        try lock.withLock { () throws(SamepageError) in
            let reply = try connection().connection.call(.stats)
            guard case .statistics(let stats) = reply else { throw ClientConnection.unexpected(reply, "statistics") }
            return stats
        }
    }

    /// The clients connected in this client's dedup domain (this one included, `isCaller`), oldest
    /// first; a server never reports the clients of other domains.
    public func clients() throws(SamepageError) -> ClientList {
        try lock.withLock { () throws(SamepageError) in
            let reply = try connection().connection.call(.clients)
            guard case .clientList(let list) = reply else { throw ClientConnection.unexpected(reply, "clientList") }
            return list
        }
    }

    /// Asks a server started with --self-check to verify its bookkeeping for this domain.
    public func verify() throws(SamepageError) {
        try lock.withLock { () throws(SamepageError) in
            _ = try connection().connection.call(.verify)
        }
    }

    public func delete(_ id: ObjectID) throws(SamepageError) {
        try lock.withLock { () throws(SamepageError) in
            _ = try connection().connection.call(.delete(id))
        }
    }

    // MARK: Put

    /// Stores `bytes` as a new object and returns its id. Equal pages are stored once.
    public func put(_ bytes: UnsafeRawBufferPointer) throws(SamepageError) -> ObjectID {
        try put(length: UInt64(bytes.count)) { offset, destination in
            destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[Int(offset)..<Int(offset) + destination.count]))
        }
    }

    public func put(_ bytes: [UInt8]) throws(SamepageError) -> ObjectID {
        let result = bytes.withUnsafeBytes { raw in Result { () throws(SamepageError) in try put(raw) } }
        return try result.get()
    }

    /// Stores an object of `length` bytes whose content `fill` writes, chunk by chunk, into
    /// staging memory: `fill(offset, destination)` must fill all of `destination` with the bytes
    /// at `offset`. Used to stream files without holding them in memory.
    public func put(length: UInt64, fill: (UInt64, UnsafeMutableRawBufferPointer) throws(SamepageError) -> Void) throws(SamepageError) -> ObjectID {
        try stagingLock.withLock { () throws(SamepageError) in try lock.withLock { () throws(SamepageError) in
            let upload = nextUpload
            nextUpload &+= 1
            let stagingSession = try connection()
            let halfPages = stagingSession.staging.length / Page.size / 2
            let totalPages = Page.count(forBytes: length)
            var outstanding: [UInt64] = [try connection().connection.send(.putBegin(upload: upload, length: length))]
            var firstFailure: SamepageError?
            // A put of more than one chunk is bulk traffic: wait quietly (see `reply(to:quietly:)`).
            let quietly = totalPages > UInt64(halfPages)
            func drain(keeping: Int) throws(SamepageError) {
                while outstanding.count > keeping {
                    let reply = try connection().connection.reply(to: outstanding.removeFirst(), quietly: quietly)
                    if case .failure(let code, let message) = reply, firstFailure == nil {
                        firstFailure = .server(code, message)
                    }
                }
            }
            var page: UInt64 = 0
            var chunk = 0
            while page < totalPages && firstFailure == nil {
                // The half this chunk uses was last used two chunks ago: wait for that reply.
                try drain(keeping: 1)
                if firstFailure != nil { break }
                let count = Int(min(UInt64(halfPages), totalPages - page))
                let half = chunk % 2
                let destination = stagingSession.staging.base + half * halfPages * Page.size
                let offset = page * UInt64(Page.size)
                let bytes = Int(min(UInt64(count * Page.size), length - offset))
                do throws(SamepageError) {
                    try fill(offset, UnsafeMutableRawBufferPointer(start: destination, count: bytes))
                } catch {
                    firstFailure = error
                    break
                }
                outstanding.append(try connection().connection.send(.putPages(upload: upload, stagingPage: UInt32(half * halfPages), pageCount: UInt32(count))))
                page += UInt64(count)
                chunk += 1
            }
            try drain(keeping: 0)
            if let firstFailure {
                // The server may already have dropped the upload (region full); abort is harmless.
                _ = try connection().connection.reply(to: try connection().connection.send(.putAbort(upload: upload)))
                throw firstFailure
            }
            let reply = try connection().connection.call(.putCommit(upload: upload))
            guard case .committed(let id) = reply else { throw ClientConnection.unexpected(reply, "committed") }
            return id
        } }
    }

    // MARK: Map

    /// Maps an object as one contiguous range: each run of region pages with one `mmap` of the
    /// region fd (MAP_PRIVATE | MAP_FIXED), zero runs as anonymous zero-fill memory. The object
    /// stays alive while mapped, even if someone deletes it.
    public func map(_ id: ObjectID, mode: MappingMode = .readOnly) throws(SamepageError) -> ObjectMapping {
        try lock.withLock { () throws(SamepageError) in
            let requestID = try connection().connection.send(.map(id))
            let first = try ClientConnection.check(try connection().connection.reply(to: requestID))
            guard case .mapped(let handle, let length, let runCount) = first else {
                throw ClientConnection.unexpected(first, "mapped")
            }
            var runs: [PageRun] = []
            runs.reserveCapacity(Int(runCount))
            while true {
                let reply = try connection().connection.reply(to: requestID)
                guard case .runs(let part, let more) = reply else { throw ClientConnection.unexpected(reply, "runs") }
                runs.append(contentsOf: part)
                if !more { break }
            }
            do throws(SamepageError) {
                let base = try assemble(runs: runs, length: length, mode: mode)
                let mappedLength = max(Page.size, Int(Page.count(forBytes: length)) * Page.size)
                mappings[UInt(bitPattern: base)] = (handle, mappedLength, sessionGeneration)
                return ObjectMapping(client: self, base: base, length: Int(length), mode: mode)
            } catch {
                _ = try? connection().connection.call(.unmap(handle: handle))
                throw error
            }
        }
    }

    private func assemble(runs: [PageRun], length: UInt64, mode: MappingMode) throws(SamepageError) -> UnsafeMutableRawPointer {
        let pages = Int(Page.count(forBytes: length))
        guard runs.reduce(0, { $0 + Int($1.count) }) == pages else {
            throw .protocolViolation("runs cover a different length than the object")
        }
        let prot = mode == .readOnly ? PROT_READ : PROT_READ | PROT_WRITE
        let total = max(1, pages) * Page.size
        let base: UnsafeMutableRawPointer
        do {
            // The reservation is already the zero runs' memory: only stored runs are remapped.
            base = try Syscall.mmap(nil, total, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        } catch {
            throw .system("cannot reserve \(total) bytes of address space", error)
        }
        // The segment fds once for all the runs (a copy of the table's small dictionary).
        let segments = session.segments.snapshot()
        var offset = 0
        for run in runs {
            let bytes = Int(run.count) * Page.size
            if !run.isZero {
                // A run lies in one segment unless the region has several (hardened): then it
                // takes one mmap per segment it crosses.
                var done = 0
                while done < Int(run.count) {
                    do throws(SamepageError) {
                        let place = try segments.location(ofPage: run.start + UInt32(done))
                        let count = min(Int(run.count) - done, place.pagesInSegment)
                        do {
                            _ = try Syscall.mmap(base + offset + done * Page.size, count * Page.size, prot,
                                                 MAP_PRIVATE | MAP_FIXED, place.fd, place.offset)
                        } catch {
                            throw SamepageError.system("cannot map \(run.count) region pages", error)
                        }
                        done += count
                    } catch {
                        Syscall.munmap(base, total)
                        throw error
                    }
                }
            }
            offset += bytes
        }
        return base
    }

    /// Unmaps a mapping made by `map` (by its address, for callers that detached it, such as the
    /// C interface) and lets the server drop the object's pin.
    public func unmap(address: UnsafeMutableRawPointer) throws(SamepageError) {
        try unmap(base: address)
    }

    /// Unmaps a mapping made by `map` and lets the server drop the object's pin.
    func unmap(base: UnsafeMutableRawPointer) throws(SamepageError) {
        try lock.withLock { () throws(SamepageError) in
            guard let mapping = mappings.removeValue(forKey: UInt(bitPattern: base)) else {
                throw .invalidArgument("no mapping at \(base)")
            }
            // Unmap first: once the server drops the pin, the pages may be reused.
            Syscall.munmap(base, mapping.length)
            // A mapping made on a connection that is gone has no pin left to drop.
            guard mapping.generation == sessionGeneration && !session.connection.isBroken else { return }
            _ = try connection().connection.call(.unmap(handle: mapping.handle))
        }
    }

    /// Copies an object's bytes out (through a temporary read-only mapping).
    public func get(_ id: ObjectID) throws(SamepageError) -> [UInt8] {
        let mapping = try map(id)
        let bytes = [UInt8](UnsafeRawBufferPointer(start: mapping.base, count: mapping.length))
        try mapping.unmap()
        return bytes
    }
}

/// Runs a system call, naming what failed.
func systemCall<R: ~Copyable>(_ what: String, _ body: () throws(Errno) -> R) throws(SamepageError) -> R {
    do {
        return try body()
    } catch {
        throw .system(what, error)
    }
}

/// An object mapped into this process. Unmapped (and the server told) when it goes away or on
/// `unmap()`, which reports errors.
public struct ObjectMapping: ~Copyable, @unchecked Sendable {
    // Unmanaged (retained by hand) so that `unmap()` can `discard self` and skip the deinit.
    private let owner: Unmanaged<SamepageClient>
    public let base: UnsafeMutableRawPointer
    /// The object's length in bytes (the mapping itself is rounded up to whole pages).
    public let length: Int
    public let mode: SamepageClient.MappingMode

    init(client: SamepageClient, base: UnsafeMutableRawPointer, length: Int, mode: SamepageClient.MappingMode) {
        self.owner = .passRetained(client)
        self.base = base
        self.length = length
        self.mode = mode
    }

    public var client: SamepageClient { owner.takeUnretainedValue() }

    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: length) }

    /// Writable only for `.copyOnWrite` mappings: writes go to private copies.
    public var mutableBytes: UnsafeMutableRawBufferPointer {
        precondition(mode == .copyOnWrite, "a read-only mapping cannot be written")
        return UnsafeMutableRawBufferPointer(start: base, count: length)
    }

    /// Hands the mapping to the caller, who unmaps it with `SamepageClient.unmap(address:)`.
    public consuming func detach() -> UnsafeMutableRawPointer {
        let base = self.base
        owner.release()
        discard self
        return base
    }

    public consuming func unmap() throws(SamepageError) {
        let client = owner.takeRetainedValue(), base = self.base
        discard self
        try client.unmap(base: base)
    }

    deinit { try? owner.takeRetainedValue().unmap(base: base) }
}
