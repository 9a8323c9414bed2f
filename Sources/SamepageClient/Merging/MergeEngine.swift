import CSamepageShim
import Glibc
import SamepageCore
import SamepageSystem

// Mergeable memory, client side: KSM's scanner, run by the process on its own memory.
//
// Each full scan visits every page of every mergeable range once, in address order, in slices
// of 2 MiB:
//   - one PAGEMAP_SCAN tells which of the slice's pages are resident (present, not the kernel's
//     zero page): as in KSM, no other page is looked at;
//   - the slice's pages are hashed where they are (XXH3-64, seed 0: the digest; a page the
//     application unmapped or protected meanwhile faults into the shim's probe and is skipped),
//     and /proc/self/pagemap is read for it when it has merged or discarded pages;
//   - a merged page whose pagemap entry is no longer the file page had its copy-on-write broken
//     by a write: its region reference is released (lazily, on this scan);
//   - a page whose digest changed since the last scan (KSM's checksum) is volatile: it is looked
//     up among stored pages only (`mergeLookup` with `.stableOnly`: KSM searches its stable tree
//     before its checksum test), so content stored already merges at first sight; one whose
//     digest held is a candidate, sent to the server by digest with the others of the slice
//     (`mergeLookup`); the pages the server asks the bytes of (`needContent`) are copied to
//     staging and sent (`mergeScan`);
//   - the server answers merge (with a region page), zero or unstable, plus hints: merges of
//     pages of earlier slices that found their pair now (see ServiceMerging.swift);
//   - a page answered unstable stays filed in the server's unstable tree (`MergeRange.filed`)
//     and is not sent again while it stays unchanged; the scan that sees it written, changed or
//     gone withdraws it (`unfile`) with its next request. KSM rebuilds its tree every scan
//     instead, filing every unchanged page again: a process at rest sent all its unique pages
//     in every scan;
//   - merges are applied in place, longest runs first, within the VMA budget.
// So a page merges with a stored page at its first scan, and makes a new pair at its second at
// the earliest, as in KSM.
//
// Write tracking (Linux 6.7 and later, `track_writes`, on by default) answers "changed since the
// last scan?" without reading: the kernel reports which pages of the slice were written since
// the slice was last scanned (WriteTracker). A written page is volatile and is not read at all
// (nor looked up: it waits a scan); a page seen for the first time is read once, for the stable
// tree and for its digest; an unwritten one keeps the digest it had when last read. So a page is
// read once after each write instead of once per scan, and a process at rest is scanned without
// reading its pages. The cost moves to the application: its first write to a page after each
// scan of it takes a minor fault (about 1 µs here). Where the kernel cannot, or a range cannot be registered (another
// userfaultfd owns it), checksums decide as above. Digests sent are only hints either way: the
// server hashes what it stores itself, and a merge compares bytes before it maps: memcmp on the
// client, or, for a page whose bytes the scan sent, memcmp or the copy on the server with the
// tracker's word that the page was not written since it was armed, before the copy (`vouched`).
//
// Quiet scans: every write to a tracked page after it was armed is a page fault, and the kernel
// counts page faults per process and per thread. A full scan that begins with the process's
// count where the last one began, but for the scanner's own faults, knows without the walk that
// nothing was written: it skips the tracker's page-table walks (a converged process's idle scan
// costs a third). Ranges added or removed and the application's mappings re-read make the next
// scan walk; writes the count misses (another process's, through process_vm_writev or
// /proc/PID/mem) leave their pages unarmed, and the next walk reports them: one comes at least
// every second.
//
// Hot slices: a whole slice that walks keep finding written (a buffer rewritten all the time)
// rests unarmed and unread, 50 ms doubling to a second (see `restIfHot`), so that its writes stop
// faulting; it is walked again after each rest, and merges once it holds still.
//
// Idle rest: a full scan that changed nothing predicts the next one, so the scanner thread rests
// after it, 1 ms doubling up to idle_rest_millisecs (see `restAfterFullScan`); a converged
// process scanned at full speed costs a few scans a second instead of a core.
final class MergeEngine: @unchecked Sendable {
    /// The client owns the engine; the engine only borrows it. Calls from the application hold
    /// the client; the scanner thread holds it strongly for the length of each step, and stops
    /// when it is gone.
    private weak var owner: SamepageClient?
    var client: SamepageClient { owner! }
    let lock = Lock()
    var parameters = MergeParameters() {
        didSet {
            if parameters.trackWrites != oldValue.trackWrites {
                trackingStale = true
                mustWalk = true
            }
        }
    }
    var ranges: [MergeRange] = []
    var mergeAny = false
    /// Whether the scanner thread runs when there is mergeable memory (KSM's `run`).
    var runScanner = true
    /// Allocations made by `allocate`, by address: length.
    var allocations: [UInt: Int] = [:]
    /// Where the next scan step starts.
    private var cursorRange = 0
    private var cursorPage = 0
    /// Full scans done; the current scan's round number is fullScans + 1.
    private(set) var fullScans = 0
    var pagesScanned = 0
    /// Scan requests sent in the current full scan (each one brings the hints waiting).
    var scanRequestsThisScan = 0
    /// Whether this full scan copied pages into staging, and whether staging pages the scans
    /// used are still held (not yet given back to the kernel).
    private var stagingUsedThisScan = false
    private var stagingHeld = false
    /// Whether the current full scan has begun (see `beginFullScan`).
    private var scanBegun = false
    /// Whether the domain stored pages when this full scan first needed to know (nil: not asked
    /// yet in this full scan): if not, no page can be found among them, and pages new or changed
    /// are not looked up so (nor read for it).
    private var domainStoresPages: Bool?
    var pagesSkipped = 0
    private var volatileThisScan = 0
    /// Pages of hot slices resting this full scan (see `restIfHot`): volatile in the figures,
    /// but no reason not to rest (they change nothing a scan could merge).
    private var restingThisScan = 0
    /// Idle rest (see `restAfterFullScan`): pages whose state this full scan changed so far
    /// (merged, merge ended, discarded as zero or written since) or uploaded, counted where the
    /// state changes; and how many full scans in a row changed nothing, no page volatile either.
    var changesThisScan = 0
    private var idleFullScans = 0
    /// Quiet scans (see `beginFullScan`): whether this full scan takes "nothing written" from
    /// the process's fault count instead of the write tracker's walk; the process's count and
    /// the scanner's own when the last full scan began; whether the next full scan must walk
    /// (ranges or the application's mappings changed: the maps, re-read at least every
    /// `mapsMaxAge`, so a walk comes at least that often).
    private var quietScan = false
    var quietScans = 0
    private var faultsAtScanStart: UInt64?
    private var ownFaultsAtScanStart: UInt64 = 0
    private var mustWalk = true
    /// Page faults the scanning thread took in steps (its own: compares fault the region view
    /// in, staging is written), and the thread's count when the current step began.
    private var ownFaults: UInt64 = 0
    private var stepFaultsStart: UInt64?
    var volatileLastScan = 0
    private var maps = ProcessMaps()
    let maxMapCount = ProcessMaps.maxMapCount()
    var mappingBudget: Int { Int(Double(maxMapCount) * parameters.vmaBudgetFraction) }
    var mappingsUsed = 0
    private(set) var regionView: UnsafeRawPointer
    private(set) var regionBytes: Int
    /// The client connection the merged pages' references belong to.
    var generation: Int
    var pagemapFD: Int32 = -1
    /// Reports the pages written between two scans (see WriteTracker); nil where the kernel
    /// cannot or `parameters.trackWrites` is off: checksums tell then.
    private var writeTracker: WriteTracker?
    private var writeTrackerUnavailable = false
    /// The ranges have mappings the tracker has not been told of (merges map region pages over
    /// them), or tracking was switched: register again at the end of the full scan.
    var trackingStale = false
    private var scanner: ScannerThread?
    /// References of pages found unshared outside a scan (by `statistics`), dropped with the next
    /// scan's requests.
    var pendingReleases: [PageNumber] = []
    /// The pages of the slice being scanned whose bytes the scan sent and the server answered
    /// with a merge (it stored them, or compared them with a stored page): their region page
    /// holds what the page held when copied (see `mergeRuns`).
    var vouched: (range: MergeRange, from: Int, pages: [Bool])?
    /// Keys of pages filed in the unstable tree that changed or went away: withdrawn with the
    /// next scan request (see `unfile`).
    var pendingWithdrawals: [MergeWithdrawal] = []
    /// Pages read and checked per scan request: 2 MiB. Only the pages whose bytes the server asks
    /// for go through staging, and the staging pages are given back after each full scan: a
    /// scanning process keeps at most this much of staging resident, and only while it scans.
    static let slicePages = 512
    /// Runs of merges at most this many pages apart share one write-protected span.
    static let guardGapPages = 64

    init(client: SamepageClient, regionView: UnsafeRawPointer, regionBytes: Int, generation: Int) {
        self.owner = client
        self.regionView = regionView
        self.regionBytes = regionBytes
        self.generation = generation
        pagemapFD = Self.openPagemap()
        _ = sp_guard_install()
        refreshMaps()
    }

    /// This process's /proc/self/pagemap, or -1 where /proc is not there. A descriptor opened
    /// before fork() reads the parent's page tables, so a child opens its own.
    private static func openPagemap() -> Int32 {
        (try? Syscall.open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) ?? -1
    }

    deinit {
        if pagemapFD >= 0 { Syscall.close(pagemapFD) }
    }

    // MARK: Ranges

    /// Marks [start, start + length) mergeable. Pages already tracked keep their state.
    func add(start: UInt, length: Int) {
        lock.withLock {
            var pieces: [(UInt, UInt)] = [(start, start + UInt(length))]
            for range in ranges {
                pieces = pieces.flatMap { piece -> [(UInt, UInt)] in
                    if piece.1 <= range.start || piece.0 >= range.end { return [piece] }
                    var rest: [(UInt, UInt)] = []
                    if piece.0 < range.start { rest.append((piece.0, range.start)) }
                    if piece.1 > range.end { rest.append((range.end, piece.1)) }
                    return rest
                }
            }
            let added = pieces.filter { $0.1 > $0.0 }.map { MergeRange(start: $0.0, pageCount: Int(($0.1 - $0.0) / 4096)) }
            ranges += added
            ranges.sort { $0.start < $1.start }
            cursorRange = min(cursorRange, max(0, ranges.count - 1))
            cursorPage = 0
            mapsReadAt = nil
            publishRanges()
            // Only the new ranges: a process that allocates often must not re-register them all.
            track(added)
        }
    }

    /// Tells the merge guard where mergeable memory is (see sp_guard_set_mergeable).
    private func publishRanges() {
        mustWalk = true
        var pairs: [UInt] = []
        for range in ranges { pairs += [range.start, range.end] }
        pairs.withUnsafeBufferPointer { sp_guard_set_mergeable($0.baseAddress, ranges.count) }
    }

    /// Unmerges [start, start + length) and stops tracking it: every merged page gets a private
    /// copy again, every discarded zero page becomes ordinary memory, and the references go.
    func remove(start: UInt, length: Int) throws(SamepageError) {
        let end = start + UInt(length)
        try lock.withLock { () throws(SamepageError) in
            // References are dropped only on the connection that holds them; after the server
            // went away there is none to drop, and the pages still get their private copies.
            let sameServer = (try? client.makeRegionView().generation) == generation
            var releases: [PageNumber] = []
            var kept: [MergeRange] = []
            for range in ranges {
                guard range.start < end && start < range.end else {
                    kept.append(range)
                    continue
                }
                let from = start > range.start ? Int((start - range.start) / 4096) : 0
                let to = end < range.end ? Int((end - range.start) / 4096) : range.pageCount
                releases += unmerge(range, from, to)
                for i in from..<to { unfile(range, i) }
                if range.tracksWrites { writeTracker?.untrack(start: range.address(from), length: (to - from) * 4096) }
                if from > 0 { kept.append(range.slice(0, from)) }
                if to < range.pageCount { kept.append(range.slice(to, range.pageCount)) }
            }
            ranges = kept
            cursorRange = 0
            cursorPage = 0
            publishRanges()
            if sameServer { try client.releaseMerged(releases + pendingReleases) }
            pendingReleases.removeAll()
        }
    }

    /// Gives private copies back to pages [from, to) of a range; returns references to drop.
    private func unmerge(_ range: MergeRange, _ from: Int, _ to: Int) -> [PageNumber] {
        mustWalk = true
        var releases: [PageNumber] = []
        var index = from
        while index < to {
            guard range.state[index] != .normal else {
                index += 1
                continue
            }
            var runEnd = index + 1
            while runEnd < to && range.state[runEnd] != .normal { runEnd += 1 }
            breakSharing(UnsafeMutableRawPointer(bitPattern: range.address(index))!, pages: runEnd - index)
            for i in index..<runEnd {
                if range.state[i] == .merged { releases.append(range.region[i]) }
                range.state[i] = .normal
                range.digest[i] = MergeRange.unseen
            }
            index = runEnd
        }
        return releases
    }

    /// Writes to every page of a run (MADV_POPULATE_WRITE): the kernel copies each page that is
    /// still the region's (or the zero page) into private memory. The application's protection
    /// is honoured: a run it made unwritable is opened for the call and closed again.
    private func breakSharing(_ address: UnsafeMutableRawPointer, pages: Int) {
        let length = pages * 4096
        if (try? Syscall.madvise(address, length, SP_MADV_POPULATE_WRITE)) != nil { return }
        let prot = maps.mapping(containing: UInt(bitPattern: address))?.prot ?? (PROT_READ | PROT_WRITE)
        _ = try? Syscall.mprotect(address, length, PROT_READ | PROT_WRITE)
        if (try? Syscall.madvise(address, length, SP_MADV_POPULATE_WRITE)) == nil {
            // Kernels before 5.14: touch each page.
            for page in 0..<pages {
                let p = (address + page * 4096).assumingMemoryBound(to: UInt8.self)
                p.withMemoryRebound(to: UInt8.self, capacity: 1) { _ = sp_touch_write($0) }
            }
        }
        _ = try? Syscall.mprotect(address, length, prot)
    }

    // MARK: Scanning

    /// Runs `count` full scans now, on the calling thread; returns the figures it reported.
    func scan(fullScans count: Int) throws(SamepageError) -> ProcessMergeStatistics {
        let target = lock.withLock { fullScans } + count
        while lock.withLock({ fullScans }) < target {
            let done = try lock.withLock { () throws(SamepageError) in try step(maxPages: .max) }
            if !done && lock.withLock({ ranges.isEmpty }) {
                // Nothing to scan: a full scan of nothing is complete at once.
                lock.withLock { completeFullScan() }
            }
        }
        return try report(afterFullScan: true)
    }

    /// Scans up to `maxPages` pages from the cursor; true when a full scan completed.
    func step(maxPages: Int) throws(SamepageError) -> Bool {
        let faultsBefore = Syscall.threadPageFaults()
        stepFaultsStart = faultsBefore
        defer {
            ownFaults &+= Syscall.threadPageFaults() &- faultsBefore
            stepFaultsStart = nil
        }
        try followReconnect()
        var budget = maxPages
        while budget > 0 {
            guard !ranges.isEmpty else { return false }
            if cursorRange >= ranges.count {
                if scanRequestsThisScan == 0 || !pendingWithdrawals.isEmpty { try collectHints() }
                completeFullScan()
                return true
            }
            if !scanBegun { beginFullScan() }
            let range = ranges[cursorRange]
            let slicePages = min(range.pageCount - cursorPage, budget, client.stagingPages, Self.slicePages)
            if slicePages > 0 {
                try scanSlice(range, cursorPage, cursorPage + slicePages)
                budget -= slicePages
                cursorPage += slicePages
            }
            if cursorPage >= range.pageCount {
                cursorRange += 1
                cursorPage = 0
            }
        }
        return false
    }

    private func beginFullScan() {
        scanBegun = true
        domainStoresPages = nil
        // A write to a page the tracker armed is a page fault (the kernel lifts the page's
        // write-protect bit in it), counted like any other. So if the process has taken no page
        // fault since the last full scan began but the scanner's own (its compares fault stored
        // pages into the region view, it writes staging; it never writes mergeable memory but
        // to unmerge, which walks next), no tracked page was written since: the walk would report
        // nothing, and this scan is quiet without it (a converged process's idle scans were half
        // page-table walk, and so were the scans that only applied other processes' merges).
        // Mappings merges add need no walk: any touch of them faults. Ranges added or removed,
        // or mappings the application changed (the maps), do. A writer the count misses
        // (another process writing through /proc/PID/mem) leaves the page unarmed, so the next
        // walk reports it: at least one a second, after the maps are re-read (refreshMaps).
        let faults = Syscall.pageFaults()
        let own = ownFaults &+ (stepFaultsStart.map { Syscall.threadPageFaults() &- $0 } ?? 0)
        quietScan = writeTracker != nil && !mustWalk
            && faultsAtScanStart.map { faults &- $0 == own &- ownFaultsAtScanStart } == true
        faultsAtScanStart = faults
        ownFaultsAtScanStart = own
        mustWalk = false
        if quietScan { quietScans += 1 }
    }

    /// Whether the domain stores any page: one statistics request in a full scan that has new or
    /// changed pages to look up, none in a scan that has not (a converged process's).
    private func storesPages() -> Bool {
        if let known = domainStoresPages { return known }
        let stats = (try? client.statistics()) ?? []
        let stores = stats.first { $0.name == "region_bytes_used" }.map { $0.value > 0 } ?? true
        domainStoresPages = stores
        return stores
    }

    /// Merges that other processes' scans made with this process's pages wait at the server as
    /// hints, delivered with this process's next scan request. A full scan that sent none (every
    /// page merged, filed and unchanged, skipped, or volatile: a process at rest) asks once with
    /// an empty look-up, so that a hint waits one full scan at most, and the server's figures
    /// (which count a hinted page as shared) do not run ahead of the process's memory; so does
    /// one that has withdrawals left to send.
    private func collectHints() throws(SamepageError) {
        try client.stagingLock.withLock { () throws(SamepageError) in
            let round = UInt32(truncatingIfNeeded: fullScans + 1)
            let (_, hints) = try client.mergeLookup(round: round, flags: [], keys: [], digests: [], withdrawn: takeWithdrawals())
            let hinted = mergesAndReleases(forHints: hints)
            try release(hinted.releases + applyMerges(hinted.merges))
        }
    }

    /// The hinted pages still unmerged here, and the references of the others to give back.
    private func mergesAndReleases(forHints hints: [MergeHint]) -> (merges: [PendingMerge], releases: [PageNumber]) {
        var merges: [PendingMerge] = []
        var releases: [PageNumber] = []
        for hint in hints {
            let located = locate(UInt(hint.key))
            // The pair took the page's entry out of the unstable tree.
            if let (hinted, index) = located { hinted.filed[index] = false }
            if let (hinted, index) = located, hinted.state[index] == .normal {
                merges.append((hinted, index, hint.page))
            } else {
                releases.append(hint.page)
            }
        }
        return (merges, releases)
    }

    /// A filed page that changed or went away: its entry is withdrawn with the next request, so
    /// that the unstable tree holds only pages as they were when sent. Called before the page's
    /// digest changes: the entry is filed under the digest it was sent with.
    func unfile(_ range: MergeRange, _ index: Int) {
        guard range.filed[index] else { return }
        range.filed[index] = false
        pendingWithdrawals.append(MergeWithdrawal(key: UInt64(range.address(index)), digest: range.digest[index]))
    }

    /// For `mergeRuns`, under its write-protect: the states of `pages` pages from `address` with
    /// PageState.written on each written since the scan armed it (and on every page where the
    /// kernel cannot say); nil without write tracking.
    func writtenSinceArmed(_ range: MergeRange, address: UInt, pages: Int) -> [UInt8]? {
        guard range.tracksWrites, writeTracker != nil else { return nil }
        var states = [UInt8](repeating: PageState.written, count: pages)
        let peeked = states.withUnsafeMutableBufferPointer { buffer in
            (try? writeTracker?.peek(start: address, into: buffer)) != nil
        }
        return peeked ? states : nil
    }

    private func takeWithdrawals() -> [MergeWithdrawal] {
        defer { pendingWithdrawals.removeAll() }
        return pendingWithdrawals
    }

    private func completeFullScan() {
        scanRequestsThisScan = 0
        scanBegun = false
        // Between full scans the staging pages the slices went through hold nothing of value:
        // they go back to the kernel after the first full scan that did not use them, so that a
        // converged process costs little memory, and a process still merging does not fault
        // them in afresh (a shmem page allocated and cleared) in every scan.
        if stagingUsedThisScan {
            stagingHeld = true
        } else if stagingHeld {
            client.stagingLock.withLock { client.releaseStagingMemory(pages: Self.slicePages) }
            stagingHeld = false
        }
        stagingUsedThisScan = false
        fullScans += 1
        idleFullScans = changesThisScan == 0 && volatileThisScan == 0 && pendingReleases.isEmpty ? idleFullScans + 1 : 0
        changesThisScan = 0
        volatileLastScan = volatileThisScan + restingThisScan
        volatileThisScan = 0
        restingThisScan = 0
        cursorRange = 0
        cursorPage = 0
        refreshMaps()
        if trackingStale { retrackRanges() }
    }

    /// Registers every range with the write tracker, again after merges made mappings in them
    /// (the kernel tracks mappings, and a registered one reports all its pages written once,
    /// which is right for pages it did not watch); or stops tracking where it is switched off or
    /// fails. A range that changes mode forgets what its scans saw.
    private func retrackRanges() {
        trackingStale = false
        track(ranges)
    }

    /// Registers `targets` with the write tracker (made on first use), or stops tracking them
    /// where tracking is switched off or registration fails.
    private func track(_ targets: [MergeRange]) {
        if parameters.trackWrites && writeTracker == nil && !writeTrackerUnavailable {
            do { writeTracker = try WriteTracker() } catch { writeTrackerUnavailable = true }
        }
        for range in targets {
            let length = range.pageCount * 4096
            let tracking = parameters.trackWrites && (try? writeTracker?.track(start: range.start, length: length)) != nil
            if !tracking && range.tracksWrites { writeTracker?.untrack(start: range.start, length: length) }
            if tracking != range.tracksWrites {
                mustWalk = true
                range.tracksWrites = tracking
                range.coolSlices()
                for i in 0..<range.pageCount {
                    unfile(range, i)
                    range.digest[i] = MergeRange.unseen
                }
            }
        }
        if !parameters.trackWrites { writeTracker = nil }
    }

    /// Reading /proc/self/maps costs in proportion to the process's mappings: with scattered
    /// merges (one mapping per merged page, ~29k) reading it every full scan took a fifth of the
    /// scanner's time. So a full scan reads it again only after `mapsMaxAge` (or when ranges
    /// were added); in between, the mappings merges add are counted as they are made, and a
    /// protection the application changed is seen within that second.
    static let mapsMaxAge: Duration = .seconds(1)
    private var mapsReadAt: ContinuousClock.Instant?

    /// The full scan in which the maps were last read.
    var mapsReadInScan = -1

    func refreshMaps(force: Bool = false) {
        let now = ContinuousClock.now
        if !force, let last = mapsReadAt, now - last < Self.mapsMaxAge { return }
        mapsReadAt = now
        mapsReadInScan = fullScans
        maps = ProcessMaps.read()
        mappingsUsed = maps.mappings.count
        // What the application mapped over its ranges since takes no fault until touched.
        mustWalk = true
        // Mappings the application made in mergeable memory since are new to the write tracker
        // too, which would never report their pages written: register the ranges again.
        trackingStale = true
    }

    /// Hot slices: every walk re-arms the pages written since the last, and the application's
    /// next write to each is a fault; a slice the application keeps rewriting (a buffer written
    /// every 50 ms) cost it a fault a page each time a scan came between two writes, at full
    /// speed nearly every write (the `churn` benchmark: its writers spent 88% of their time in
    /// those faults), for pages no scan could merge. So a whole slice that walks found written
    /// (an eighth of its pages or more) again and again for `hotSliceTime`, with no walk in
    /// between seeing it unwritten for that long, and with nothing merged or discarded in it (a
    /// broken copy-on-write is only seen by a walk), rests: it is not walked, armed or read for
    /// 50 ms, doubling with each rest in a row up to `hotSliceMaxRest`. The walk after a rest
    /// only re-arms it (it reports every write of the rest); a write seen within `hotSliceTime`
    /// after that rests it again, for longer; none, and it is an ordinary slice again, merged as
    /// soon as it holds still. Only whole slices rest (with `pages_to_scan` under a slice, as at
    /// KSM's default 100, a scanner is too slow for the faults to matter).
    static let hotSliceTime: Duration = .milliseconds(200)
    static let hotSliceMaxRest: Duration = .seconds(1)

    private func restIfHot(_ range: MergeRange, slice: Int, states: [UInt8], waking: Bool) {
        let now = ContinuousClock.now
        if waking {
            // Its writes of the rest were just re-armed; one more soon rests it again.
            range.sliceWakes[slice] = false
            range.sliceWrittenAt[slice] = now
            return
        }
        let from = slice * Self.slicePages, to = min(range.pageCount, from + Self.slicePages)
        let written = states.reduce(0) { $0 + ($1 & PageState.written != 0 ? 1 : 0) }
        guard written * 8 >= to - from, !range.state[from..<to].contains(where: { $0 != .normal }) else {
            if let last = range.sliceWrittenAt[slice], now - last > Self.hotSliceTime {
                range.sliceHotSince[slice] = nil
                range.sliceWrittenAt[slice] = nil
                range.sliceHeat[slice] = 0
            }
            return
        }
        if let last = range.sliceWrittenAt[slice], now - last <= Self.hotSliceTime, let since = range.sliceHotSince[slice] {
            range.sliceWrittenAt[slice] = now
            guard now - since >= Self.hotSliceTime else { return }
            let rest = min(Self.hotSliceMaxRest, .milliseconds(50) * (1 << min(Int(range.sliceHeat[slice]), 10)))
            range.sliceHeat[slice] = min(range.sliceHeat[slice] + 1, 32)
            range.sliceRestsUntil[slice] = now + rest
        } else {
            range.sliceHotSince[slice] = now
            range.sliceWrittenAt[slice] = now
            range.sliceHeat[slice] = 0
        }
    }

    /// Before Linux 6.7 (no PAGEMAP_SCAN), residency is /proc/self/pagemap's present bit, which
    /// does not tell the zero page apart.
    private var pageStatesUnsupported = false

    /// Which pages from `address` are resident (PageState.resident), without write tracking.
    private func readResidency(of address: UInt, into states: inout [UInt8], pagemap: inout [UInt64]) {
        guard pagemapFD >= 0 else { return }
        let count = states.count
        if !pageStatesUnsupported {
            let read = states.withUnsafeMutableBufferPointer { buffer in
                (try? Syscall.pageStates(pagemap: pagemapFD, start: address, pages: count, mode: SP_PAGES_RESIDENCY, into: buffer.baseAddress!)) != nil
            }
            if read { return }
            pageStatesUnsupported = true
        }
        if pagemap.allSatisfy({ $0 == 0 }) {
            _ = pagemap.withUnsafeMutableBytes { raw in try? Syscall.pread(pagemapFD, raw, offset: UInt64(address / 4096) * 8) }
        }
        for i in 0..<count { states[i] = pagemap[i] & (1 << 63) != 0 ? PageState.resident : 0 }
    }

    private func scanSlice(_ range: MergeRange, _ from: Int, _ to: Int) throws(SamepageError) {
        try client.stagingLock.withLock { () throws(SamepageError) in try scanSliceHoldingStaging(range, from, to) }
    }

    private func scanSliceHoldingStaging(_ range: MergeRange, _ from: Int, _ to: Int) throws(SamepageError) {
        let count = to - from
        let staging = client.stagingBase
        let sliceAddress = UnsafeRawPointer(bitPattern: range.address(from))!
        // Each page's state (PageState): whether it is resident (present, and not the kernel's
        // zero page: KSM looks at no other page, and reading one would map the zero page and
        // make page tables for memory never touched), and with write tracking which pages were
        // written since the last scan of this slice (then armed again): volatile without being
        // read. Taken before any page is hashed, so a write after the hash shows next scan.
        // A slice written all over in every scan rests, unarmed and unread (restIfHot); one
        // coming out of a rest is walked even in a quiet scan: its writes took no fault.
        let slice = from / Self.slicePages
        let wholeSlice = range.tracksWrites && from % Self.slicePages == 0 && (count == Self.slicePages || to == range.pageCount)
        if wholeSlice, let until = range.sliceRestsUntil[slice] {
            if ContinuousClock.now < until {
                pagesScanned += count
                restingThisScan += count
                return
            }
            range.sliceRestsUntil[slice] = nil
            range.sliceWakes[slice] = true
        }
        let waking = wholeSlice && range.sliceWakes[slice]
        var states = [UInt8](repeating: PageState.resident, count: count)
        var collected = false
        if range.tracksWrites && quietScan && !waking {
            // No page fault since the last full scan began: nothing written (beginFullScan).
            collected = true
            states.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        } else if range.tracksWrites {
            collected = states.withUnsafeMutableBufferPointer { buffer in
                (try? writeTracker?.collect(start: range.address(from), into: buffer)) != nil
            }
            if !collected {
                // The kernel stopped answering for this range: checksums from now on.
                range.tracksWrites = false
                range.coolSlices()
                for i in 0..<range.pageCount {
                    unfile(range, i)
                    range.digest[i] = MergeRange.unseen
                }
            } else if wholeSlice {
                restIfHot(range, slice: slice, states: states, waking: waking)
            }
        }
        let sliceStates = range.state[from..<to]
        if collected && !states.contains(where: { $0 != 0 })
            && (from..<to).allSatisfy({ range.state[$0] == .merged || range.filed[$0] })
            && maps.allMergeable(from: range.address(from), to: range.address(to)) {
            // Every page merged or filed in the unstable tree, in mappings still open to merging,
            // and none written since the last scan: nothing can have changed, and nothing is to
            // be sent (a converged process's scans are mostly this).
            pagesScanned += count
            try release([])
            return
        }
        // Pagemap entries of the slice: bit 63 present, bit 61 file page (still the region's).
        // Only merged and discarded zero pages are judged by their pagemap entry, so a slice of
        // ordinary pages (every slice of a first scan) skips that page-table walk; with write
        // tracking so does a slice without discarded zero pages: a merged page whose copy-on-write
        // broke is reported written, and no longer the file's (copyOnWriteBroke).
        var pagemap = [UInt64](repeating: 0, count: count)
        if pagemapFD >= 0, collected ? sliceStates.contains(.zero) : sliceStates.contains(where: { $0 != .normal }) {
            _ = pagemap.withUnsafeMutableBytes { raw in
                try? Syscall.pread(pagemapFD, raw, offset: UInt64(range.address(from) / 4096) * 8)
            }
        }
        if !collected { readResidency(of: range.address(from), into: &states, pagemap: &pagemap) }
        func copyOnWriteBroke(_ offset: Int) -> Bool {
            if collected {
                // A merged page in a mapping registered after it was merged is reported once
                // however it stands: what tells is that the page is no longer the file's.
                let state = states[offset]
                return state & PageState.written != 0 && state & PageState.resident != 0 && state & PageState.file == 0
            }
            let entry = pagemap[offset]
            return entry & (1 << 63) != 0 && entry & (1 << 61) == 0
        }
        let tracksWrites = range.tracksWrites
        func resident(_ offset: Int) -> Bool {
            // A tracked page not written since it was armed is not reported: it is resident if
            // a scan saw it so (a page never touched is never reported, nor seen).
            if tracksWrites && states[offset] & PageState.written == 0 { return range.digest[from + offset] != MergeRange.unseen }
            return states[offset] & PageState.resident != 0
        }
        // The digests of the slice's pages that are not merged, hashed where they are (merged
        // pages need only their pagemap entry; pages smart_scan skips this time need nothing,
        // as in KSM, which skips them before it computes their checksum; with write tracking,
        // neither do pages written since the last scan or not seen before). A page the
        // application unmapped or protected meanwhile stops the hash there (the fault is caught):
        // it is marked unreadable.
        let smartScan = parameters.smartScan
        func trackedLook(_ index: Int) -> TrackedLook {
            TrackedLook(known: range.digest[index], written: states[index - from] & PageState.written != 0,
                        lookUpNewPages: self.storesPages())
        }
        func needsHash(_ index: Int) -> Bool {
            guard range.state[index] == .normal, resident(index - from), !(smartScan && range.skip[index] > 0) else { return false }
            return !tracksWrites || trackedLook(index).reads
        }
        var readable = [Bool](repeating: true, count: count)
        var pageDigests = [UInt64](repeating: 0, count: count)
        var runStart = 0
        while runStart < count {
            guard needsHash(from + runStart) else {
                runStart += 1
                continue
            }
            var runEnd = runStart + 1
            while runEnd < count && needsHash(from + runEnd) { runEnd += 1 }
            var next = runStart
            while next < runEnd {
                let hashed = pageDigests.withUnsafeMutableBufferPointer { out in
                    sp_hash_pages_in_place(sliceAddress + next * 4096, runEnd - next, out.baseAddress! + next)
                }
                next += hashed
                if next < runEnd {
                    readable[next] = false
                    next += 1
                }
            }
            runStart = runEnd
        }
        var candidates: [Int] = []
        var digests: [UInt64] = []
        // Pages read that are no candidates (new, or changed since the last scan): KSM searches
        // its stable tree for them all the same, so a page whose content is stored already
        // merges at first sight. With write tracking, only pages seen for the first time are
        // read here; a page written since the last scan is not read, and waits a scan.
        var stableOnly: [Int] = []
        var stableOnlyDigests: [UInt64] = []
        var releases: [PageNumber] = []
        var mergeable = ProcessMaps.MergeableCursor(maps)
        for offset in 0..<count {
            let index = from + offset
            pagesScanned += 1
            guard readable[offset], mergeable.isMergeable(range.address(index)) else {
                pagesSkipped += 1
                unfile(range, index)
                continue
            }
            switch range.state[index] {
            case .merged:
                if copyOnWriteBroke(offset) {
                    // The process wrote the page: the copy-on-write broke, the share is gone.
                    releases.append(range.region[index])
                    range.state[index] = .normal
                    range.digest[index] = MergeRange.seen
                    changesThisScan += 1
                }
            case .zero:
                if Self.wasWritten(discardedZeroPage: pagemap[offset]) {
                    range.state[index] = .normal
                    range.digest[index] = MergeRange.seen
                    changesThisScan += 1
                }
            case .normal:
                // Not resident: nothing to merge, and not read (it keeps what the scans knew).
                guard resident(offset) else {
                    unfile(range, index)
                    continue
                }
                // Filed in the unstable tree and not written since: it waits there as it is.
                if tracksWrites && range.filed[index] && states[offset] & PageState.written == 0 { continue }
                if parameters.smartScan && range.skip[index] > 0 {
                    range.skip[index] -= 1
                    pagesSkipped += 1
                    // A write while skipped is remembered: the page is read afresh when next seen.
                    if tracksWrites && states[offset] & PageState.written != 0 {
                        unfile(range, index)
                        range.digest[index] = MergeRange.seen
                    }
                    continue
                }
                if tracksWrites {
                    let look = trackedLook(index)
                    if look != .knownCandidate { unfile(range, index) }
                    switch look {
                    case .firstSight:
                        let digest = pageDigests[offset]
                        range.digest[index] = max(digest, MergeRange.seen)
                        volatileThisScan += 1
                        if digest > MergeRange.seen && storesPages() {
                            stableOnly.append(index)
                            stableOnlyDigests.append(digest)
                        }
                    case .volatile:
                        range.digest[index] = MergeRange.seen
                        volatileThisScan += 1
                    case .readCandidate:
                        let digest = pageDigests[offset]
                        if digest > MergeRange.seen { range.digest[index] = digest }
                        candidates.append(index)
                        digests.append(digest)
                    case .knownCandidate:
                        candidates.append(index)
                        digests.append(range.digest[index])
                    }
                    continue
                }
                // One hash serves twice: compared with the last scan's it is KSM's checksum
                // (unchanged, or the page is volatile), and it is the digest the server looks up.
                let digest = pageDigests[offset]
                if digest != range.digest[index] || digest <= MergeRange.seen {
                    unfile(range, index)
                    range.digest[index] = digest
                    volatileThisScan += 1
                    if digest > MergeRange.seen && storesPages() {
                        stableOnly.append(index)
                        stableOnlyDigests.append(digest)
                    }
                    continue
                }
                if range.filed[index] { continue }
                candidates.append(index)
                digests.append(digest)
            }
        }
        var merges: [PendingMerge] = []
        var zeros: [Int] = []
        var flags: MergeFlags = []
        if parameters.useZeroPages { flags.insert(.useZeroPages) }
        let round = UInt32(truncatingIfNeeded: fullScans + 1)
        var hints: [MergeHint] = []
        if !stableOnly.isEmpty {
            let keys = stableOnly.map { UInt64(range.address($0)) }
            let (outcomes, moreHints) = try client.mergeLookup(round: round, flags: flags.union(.stableOnly), keys: keys, digests: stableOnlyDigests,
                                                               withdrawn: takeWithdrawals())
            scanRequestsThisScan += 1
            guard outcomes.count == stableOnly.count else { throw .protocolViolation("scan reply of the wrong length") }
            for (index, outcome) in zip(stableOnly, outcomes) {
                if let page = outcome.page { merges.append((range, index, page)) }
            }
            hints += moreHints
        }
        if !candidates.isEmpty {
            let keys = candidates.map { UInt64(range.address($0)) }
            // By digest first: pages already stored cost the server no byte of reading.
            var (outcomes, moreHints) = try client.mergeLookup(round: round, flags: flags, keys: keys, digests: digests, withdrawn: takeWithdrawals())
            scanRequestsThisScan += 1
            hints += moreHints
            guard outcomes.count == candidates.count else { throw .protocolViolation("scan reply of the wrong length") }
            // The candidates the server filed in the unstable tree (a page whose bytes it asked
            // for is filed, or not, by the `mergeScan` that sends them).
            var filed = outcomes.map { $0 == .unstable }
            // Pages whose digest pairs with an unstable entry: the server needs their bytes to
            // store the pair's page. They are copied to the front of staging and sent.
            var wanted: [Int] = []
            var i = 0
            while i < outcomes.count {
                guard outcomes[i] == .needContent else {
                    i += 1
                    continue
                }
                // A run of neighbouring pages, copied with one fault-tolerant call: a page that
                // went away since it was hashed is not sent.
                var end = i + 1
                while end < outcomes.count && outcomes[end] == .needContent && candidates[end] == candidates[end - 1] + 1 { end += 1 }
                let source = sliceAddress + (candidates[i] - from) * 4096
                let copied = sp_copy_pages_in_place(staging + wanted.count * 4096, source, end - i)
                stagingUsedThisScan = true
                wanted += Array(i..<(i + copied))
                for lost in (i + copied)..<end { outcomes[lost] = .unstable }
                i = end
            }
            if !wanted.isEmpty {
                changesThisScan += wanted.count
                let (sent, moreHints) = try client.mergeScan(round: round, flags: flags, keys: wanted.map { keys[$0] })
                guard sent.count == wanted.count else { throw .protocolViolation("scan reply of the wrong length") }
                var vouchedPages = [Bool](repeating: false, count: count)
                for (slot, i) in wanted.enumerated() {
                    outcomes[i] = sent[slot] == .needContent ? .unstable : sent[slot]
                    filed[i] = sent[slot] == .unstable
                    if sent[slot].page != nil { vouchedPages[candidates[i] - from] = true }
                }
                vouched = (range, from, vouchedPages)
                hints += moreHints
            }
            for (k, (index, outcome)) in zip(candidates, outcomes).enumerated() {
                range.filed[index] = filed[k]
                if let page = outcome.page {
                    merges.append((range, index, page))
                    range.misses[index] = 0
                } else if outcome == .zero {
                    zeros.append(index)
                } else if parameters.smartScan {
                    // smart_scan: a page that keeps finding no partner is looked at less often.
                    range.misses[index] = min(range.misses[index] + 1, 4)
                    if range.misses[index] >= 2 { range.skip[index] = UInt8(1) << (range.misses[index] - 2) }
                }
            }
        }
        let hinted = mergesAndReleases(forHints: hints)
        merges += hinted.merges
        releases += hinted.releases
        defer { vouched = nil }
        releases += applyMerges(merges)
        applyZeroes(range, zeros)
        try release(releases)
    }

    /// Gives the server back `references`, and those that waited for the next scan request.
    private func release(_ references: [PageNumber]) throws(SamepageError) {
        let all = references + pendingReleases
        pendingReleases.removeAll()
        if !all.isEmpty { try client.releaseMerged(all) }
    }

    /// A page discarded with MADV_DONTNEED reads the kernel's shared zero page: not present until
    /// read, then present but not exclusively mapped (pagemap bit 56). A write gives it a page of
    /// its own, present and exclusive: the zero page is no longer used, as the kernel's
    /// ksm_zero_pages counts it. No need to read the page to know.
    static func wasWritten(discardedZeroPage entry: UInt64) -> Bool {
        entry & (1 << 63) != 0 && entry & (1 << 56) != 0
    }

    func locate(_ address: UInt) -> (MergeRange, Int)? {
        for range in ranges {
            if let index = range.index(of: address) { return (range, index) }
        }
        return nil
    }

    // MARK: Reconnecting

    /// After the client reconnected (the server went away and came back), the references of
    /// merged pages died with the old server: the pages get private copies (the old region stays
    /// alive while mapped, but nobody answers for it any more), the scan starts over, and merging
    /// goes on with the new server's region. Called with the engine lock held.
    private func followReconnect() throws(SamepageError) {
        let region = try client.makeRegionView()
        guard region.generation != generation else { return }
        for range in ranges {
            _ = unmerge(range, 0, range.pageCount)
            range.filed = Array(repeating: false, count: range.pageCount)
        }
        pendingReleases.removeAll()
        pendingWithdrawals.removeAll()
        regionView = region.view
        regionBytes = region.bytes
        generation = region.generation
        cursorRange = 0
        cursorPage = 0
    }

    // MARK: Fork

    /// In the child after fork (one thread, locks free): give merged pages private copies, forget
    /// the parent's references and scanner thread, keep the ranges and the switch.
    func resetAfterFork() {
        scanner = nil
        // /proc/self/pagemap opened before fork reads the parent's page tables: open the child's.
        if pagemapFD >= 0 { Syscall.close(pagemapFD) }
        pagemapFD = Self.openPagemap()
        // The inherited userfaultfd acts on the parent's memory, and the child's mappings are
        // not registered: a tracker of the child's own comes with the next full scan.
        writeTracker = nil
        writeTrackerUnavailable = false
        trackingStale = true
        faultsAtScanStart = nil
        mustWalk = true
        for range in ranges where range.tracksWrites {
            range.tracksWrites = false
            range.coolSlices()
            for i in 0..<range.pageCount { range.digest[i] = MergeRange.unseen }
        }
        for range in ranges {
            _ = unmerge(range, 0, range.pageCount)
            range.filed = Array(repeating: false, count: range.pageCount)
        }
        pendingWithdrawals.removeAll()
        cursorRange = 0
        cursorPage = 0
        fullScans = 0
        quietScans = 0
        pagesScanned = 0
        pagesSkipped = 0
        volatileThisScan = 0
        volatileLastScan = 0
        changesThisScan = 0
        idleFullScans = 0
    }

    // MARK: The scanner thread

    func startScanner() {
        lock.withLock {
            if scanner == nil { scanner = ScannerThread(engine: self) }
        }
    }

    func stopScanner() {
        let thread = lock.withLock { () -> ScannerThread? in
            defer { scanner = nil }
            return scanner
        }
        thread?.stop()
    }

    /// One wake-up of the scanner thread: `pages_to_scan` pages, then the advisor. Returns how
    /// many milliseconds to sleep before the next (`sleep_millisecs`, or the idle rest after a
    /// full scan), or nil when the client is gone (the thread then ends).
    func backgroundStep() -> Int? {
        guard let client = owner else { return nil }
        defer { withExtendedLifetime(client) {} }
        let started = ContinuousClock.now
        let completed = (try? lock.withLock { () throws(SamepageError) in try step(maxPages: parameters.pagesToScan) }) ?? false
        if completed {
            _ = try? report(afterFullScan: true)
            lock.withLock { adviseScanRate(elapsed: ContinuousClock.now - started) }
        }
        return lock.withLock { max(parameters.sleepMilliseconds, completed ? restAfterFullScan : 0) }
    }

    /// Idle rest: a full scan that changed nothing (no page volatile, merged, unmerged,
    /// discarded or uploaded, no hint) says the process is at rest, and scanning it again at once
    /// would find the same. At full speed (`sleep_millisecs=0`) that was a core kept busy by a
    /// process that had converged: the scanner thread rests instead, 1 ms after the first idle
    /// full scan, doubling with each idle one after, up to `idle_rest_millisecs`; any change
    /// starts over. What it delays: a write, or a hint from another process's merge, is seen
    /// that much later at most. Explicit scans (`scan(fullScans:)`) never rest.
    var restAfterFullScan: Int {
        guard idleFullScans > 0 else { return 0 }
        return min(parameters.idleRestMilliseconds, 1 << min(idleFullScans - 1, 16))
    }

    /// The scan-time advisor: size pages_to_scan so that a full scan takes the target time,
    /// given the pages there are and the sleep between wake-ups.
    private func adviseScanRate(elapsed: Duration) {
        guard let target = parameters.advisorTargetScanSeconds, target > 0 else { return }
        let pages = ranges.reduce(0) { $0 + $1.pageCount }
        let wakeups = max(1.0, target * 1000 / Double(max(1, parameters.sleepMilliseconds)))
        let wanted = Int((Double(pages) / wakeups).rounded(.up))
        parameters.pagesToScan = min(max(wanted, parameters.advisorMinPagesToScan), parameters.advisorMaxPagesToScan)
    }
}
