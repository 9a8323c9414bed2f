import CSamepageShim
import Glibc
import SamepageCore
import SamepageSystem

// Mergeable memory, client side: KSM's scanner, run by the process on its own memory.
//
// Each full scan visits every page of every mergeable range once, in address order, in slices
// of 2 MiB:
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
// reading its pages. The
// cost moves to the application: its first write to a page after each scan of it takes a minor
// fault (about 1 µs here). Where the kernel cannot, or a range cannot be registered (another
// userfaultfd owns it), checksums decide as above. Digests sent are only hints either way: the
// server hashes what it stores itself, and a merge compares bytes before it maps.
final class MergeEngine: @unchecked Sendable {
    /// The client owns the engine; the engine only borrows it. Calls from the application hold
    /// the client; the scanner thread holds it strongly for the length of each step, and stops
    /// when it is gone.
    private weak var owner: SamepageClient?
    var client: SamepageClient { owner! }
    let lock = Lock()
    var parameters = MergeParameters() {
        didSet { if parameters.trackWrites != oldValue.trackWrites { trackingStale = true } }
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
    private var pagesScanned = 0
    /// Whether the current full scan has begun (see `beginFullScan`).
    private var scanBegun = false
    /// Whether the domain stored pages when this full scan began: if not, no page can be found
    /// among them, and pages new or changed are not looked up so (nor read for it).
    private var domainStoresPages = true
    private var pagesSkipped = 0
    private var volatileThisScan = 0
    private var volatileLastScan = 0
    private var maps = ProcessMaps()
    private let maxMapCount = ProcessMaps.maxMapCount()
    private var mappingBudget: Int { Int(Double(maxMapCount) * parameters.vmaBudgetFraction) }
    private var mappingsUsed = 0
    private(set) var regionView: UnsafeRawPointer
    private(set) var regionBytes: Int
    /// The client connection the merged pages' references belong to.
    private var generation: Int
    private var pagemapFD: Int32 = -1
    /// Reports the pages written between two scans (see WriteTracker); nil where the kernel
    /// cannot or `parameters.trackWrites` is off: checksums tell then.
    private var writeTracker: WriteTracker?
    private var writeTrackerUnavailable = false
    /// The ranges have mappings the tracker has not been told of (merges map region pages over
    /// them), or tracking was switched: register again at the end of the full scan.
    private var trackingStale = false
    private var scanner: ScannerThread?
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
        pagemapFD = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        _ = sp_guard_install()
        refreshMaps()
    }

    deinit {
        if pagemapFD >= 0 { close(pagemapFD) }
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
            for piece in pieces where piece.1 > piece.0 {
                ranges.append(MergeRange(start: piece.0, pageCount: Int((piece.1 - piece.0) / 4096)))
            }
            ranges.sort { $0.start < $1.start }
            cursorRange = min(cursorRange, max(0, ranges.count - 1))
            cursorPage = 0
            mapsReadAt = nil
            publishRanges()
            retrackRanges()
        }
    }

    /// Tells the merge guard where mergeable memory is (see sp_guard_set_mergeable).
    private func publishRanges() {
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
        try followReconnect()
        var budget = maxPages
        while budget > 0 {
            guard !ranges.isEmpty else { return false }
            if cursorRange >= ranges.count {
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

    /// Asks whether the domain stores any page (one statistics request a full scan).
    private func beginFullScan() {
        scanBegun = true
        let stats = (try? client.statistics()) ?? []
        domainStoresPages = stats.first { $0.name == "region_bytes_used" }.map { $0.value > 0 } ?? true
    }

    private func completeFullScan() {
        scanBegun = false
        // Between full scans the staging pages the slices went through hold nothing of value:
        // give them back, so a scanning process costs little memory.
        client.stagingLock.withLock { client.releaseStagingMemory(pages: Self.slicePages) }
        fullScans += 1
        volatileLastScan = volatileThisScan
        volatileThisScan = 0
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
        if parameters.trackWrites && writeTracker == nil && !writeTrackerUnavailable {
            do { writeTracker = try WriteTracker() } catch { writeTrackerUnavailable = true }
        }
        for range in ranges {
            let length = range.pageCount * 4096
            let tracking = parameters.trackWrites && (try? writeTracker?.track(start: range.start, length: length)) != nil
            if !tracking && range.tracksWrites { writeTracker?.untrack(start: range.start, length: length) }
            if tracking != range.tracksWrites {
                range.tracksWrites = tracking
                for i in 0..<range.pageCount { range.digest[i] = MergeRange.unseen }
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
    private var mapsReadInScan = -1

    private func refreshMaps(force: Bool = false) {
        let now = ContinuousClock.now
        if !force, let last = mapsReadAt, now - last < Self.mapsMaxAge { return }
        mapsReadAt = now
        mapsReadInScan = fullScans
        maps = ProcessMaps.read()
        mappingsUsed = maps.mappings.count
        // Mappings the application made in mergeable memory since are new to the write tracker
        // too, which would never report their pages written: register the ranges again.
        trackingStale = true
    }

    private func scanSlice(_ range: MergeRange, _ from: Int, _ to: Int) throws(SamepageError) {
        try client.stagingLock.withLock { () throws(SamepageError) in try scanSliceHoldingStaging(range, from, to) }
    }

    private func scanSliceHoldingStaging(_ range: MergeRange, _ from: Int, _ to: Int) throws(SamepageError) {
        let count = to - from
        let staging = client.stagingBase
        let sliceAddress = UnsafeRawPointer(bitPattern: range.address(from))!
        // Pagemap entries of the slice: bit 63 present, bit 61 file page (still the region's).
        var pagemap = [UInt64](repeating: 0, count: count)
        // Only merged and discarded zero pages are judged by their pagemap entry: a slice of
        // ordinary pages (every slice of a first scan) skips the page-table walk.
        if pagemapFD >= 0, range.state[from..<to].contains(where: { $0 != .normal }) {
            _ = pagemap.withUnsafeMutableBytes { raw in
                try? Syscall.pread(pagemapFD, raw, offset: UInt64(range.address(from) / 4096) * 8)
            }
        }
        // With write tracking, the pages written since the last scan of this slice (and armed
        // again): they are volatile without being read. Collected before any page is hashed, so
        // a write after the hash shows in the next scan.
        var written = [UInt8](repeating: 0, count: count)
        if range.tracksWrites {
            let collected = written.withUnsafeMutableBufferPointer { buffer in
                (try? writeTracker?.collectWritten(start: range.address(from), into: buffer)) != nil
            }
            if !collected {
                // The kernel stopped answering for this range: checksums from now on.
                range.tracksWrites = false
                for i in 0..<range.pageCount { range.digest[i] = MergeRange.unseen }
            }
        }
        let tracksWrites = range.tracksWrites
        // The digests of the slice's pages that are not merged, hashed where they are (merged
        // pages need only their pagemap entry; pages smart_scan skips this time need nothing,
        // as in KSM, which skips them before it computes their checksum; with write tracking,
        // neither do pages written since the last scan or not seen before). A page the
        // application unmapped or protected meanwhile stops the hash there (the fault is caught):
        // it is marked unreadable.
        let smartScan = parameters.smartScan
        let lookUpNewPages = domainStoresPages
        func needsHash(_ index: Int) -> Bool {
            guard range.state[index] == .normal, !(smartScan && range.skip[index] > 0) else { return false }
            guard tracksWrites else { return true }
            let known = range.digest[index]
            let written = written[index - from] != 0
            return (known == MergeRange.unseen && (lookUpNewPages || !written)) || (known == MergeRange.seen && !written)
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
        for offset in 0..<count {
            let index = from + offset
            pagesScanned += 1
            guard readable[offset], isMergeable(range.address(index)) else {
                pagesSkipped += 1
                continue
            }
            switch range.state[index] {
            case .merged:
                let entry = pagemap[offset]
                if entry & (1 << 63) != 0 && entry & (1 << 61) == 0 {
                    // The process wrote the page: the copy-on-write broke, the share is gone.
                    releases.append(range.region[index])
                    range.state[index] = .normal
                    range.digest[index] = MergeRange.unseen
                }
            case .zero:
                if Self.wasWritten(discardedZeroPage: pagemap[offset]) {
                    range.state[index] = .normal
                    range.digest[index] = MergeRange.unseen
                }
            case .normal:
                if parameters.smartScan && range.skip[index] > 0 {
                    range.skip[index] -= 1
                    pagesSkipped += 1
                    // A write while skipped is remembered: the page is volatile when next seen.
                    if tracksWrites && written[offset] != 0 { range.digest[index] = MergeRange.unseen }
                    continue
                }
                if tracksWrites {
                    // Not seen before: read now, for the stable tree and to keep its digest
                    // (unless no page is stored and it was written: then it waits a scan, and is
                    // read once, for the next scan's look-up, as KSM would read it twice).
                    if range.digest[index] == MergeRange.unseen && (lookUpNewPages || written[offset] == 0) {
                        let digest = pageDigests[offset]
                        range.digest[index] = max(digest, MergeRange.seen)
                        volatileThisScan += 1
                        if digest > MergeRange.seen && lookUpNewPages {
                            stableOnly.append(index)
                            stableOnlyDigests.append(digest)
                        }
                        continue
                    }
                    // Written since the last scan (or new): volatile, and not read.
                    if written[offset] != 0 || range.digest[index] == MergeRange.unseen {
                        range.digest[index] = MergeRange.seen
                        volatileThisScan += 1
                        continue
                    }
                    // Not written since the last scan saw it: unchanged, KSM's test without
                    // reading the page. Its digest is the one it had when last read, or read now
                    // (the first scan after its last write): a page is read once per write.
                    var digest = range.digest[index]
                    if digest == MergeRange.seen {
                        digest = pageDigests[offset]
                        if digest > MergeRange.seen { range.digest[index] = digest }
                    }
                    candidates.append(index)
                    digests.append(digest)
                    continue
                }
                // One hash serves twice: compared with the last scan's it is KSM's checksum
                // (unchanged, or the page is volatile), and it is the digest the server looks up.
                let digest = pageDigests[offset]
                if digest != range.digest[index] || digest <= MergeRange.seen {
                    range.digest[index] = digest
                    volatileThisScan += 1
                    if digest > MergeRange.seen && lookUpNewPages {
                        stableOnly.append(index)
                        stableOnlyDigests.append(digest)
                    }
                    continue
                }
                candidates.append(index)
                digests.append(digest)
            }
        }
        var merges: [(range: MergeRange, index: Int, page: PageNumber)] = []
        var zeros: [Int] = []
        var flags: MergeFlags = []
        if parameters.useZeroPages { flags.insert(.useZeroPages) }
        let round = UInt32(truncatingIfNeeded: fullScans + 1)
        var hints: [MergeHint] = []
        if !stableOnly.isEmpty {
            let keys = stableOnly.map { UInt64(range.address($0)) }
            let (outcomes, moreHints) = try client.mergeLookup(round: round, flags: flags.union(.stableOnly), keys: keys, digests: stableOnlyDigests)
            guard outcomes.count == stableOnly.count else { throw .protocolViolation("scan reply of the wrong length") }
            for (index, outcome) in zip(stableOnly, outcomes) {
                if let page = outcome.page { merges.append((range, index, page)) }
            }
            hints += moreHints
        }
        if !candidates.isEmpty {
            let keys = candidates.map { UInt64(range.address($0)) }
            // By digest first: pages already stored cost the server no byte of reading.
            var (outcomes, moreHints) = try client.mergeLookup(round: round, flags: flags, keys: keys, digests: digests)
            hints += moreHints
            guard outcomes.count == candidates.count else { throw .protocolViolation("scan reply of the wrong length") }
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
                wanted += Array(i..<(i + copied))
                for lost in (i + copied)..<end { outcomes[lost] = .unstable }
                i = end
            }
            if !wanted.isEmpty {
                let (sent, moreHints) = try client.mergeScan(round: round, flags: flags, keys: wanted.map { keys[$0] })
                guard sent.count == wanted.count else { throw .protocolViolation("scan reply of the wrong length") }
                for (slot, i) in wanted.enumerated() { outcomes[i] = sent[slot] == .needContent ? .unstable : sent[slot] }
                hints += moreHints
            }
            for (index, outcome) in zip(candidates, outcomes) {
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
        for hint in hints {
            if let (hinted, index) = locate(UInt(hint.key)), hinted.state[index] == .normal {
                merges.append((hinted, index, hint.page))
            } else {
                releases.append(hint.page)
            }
        }
        releases += applyMerges(merges)
        applyZeroes(range, zeros)
        releases += pendingReleases
        pendingReleases.removeAll()
        if !releases.isEmpty { try client.releaseMerged(releases) }
    }

    /// A page discarded with MADV_DONTNEED reads the kernel's shared zero page: not present until
    /// read, then present but not exclusively mapped (pagemap bit 56). A write gives it a page of
    /// its own, present and exclusive: the zero page is no longer used, as the kernel's
    /// ksm_zero_pages counts it. No need to read the page to know.
    static func wasWritten(discardedZeroPage entry: UInt64) -> Bool {
        entry & (1 << 63) != 0 && entry & (1 << 56) != 0
    }

    /// Only readable, writable private memory is merged: anything else the application set up
    /// on purpose and is left alone.
    private func isMergeable(_ address: UInt) -> Bool {
        guard let mapping = maps.mapping(containing: address) else { return true }
        return mapping.readable && mapping.writable && mapping.isPrivate
    }

    func locate(_ address: UInt) -> (MergeRange, Int)? {
        for range in ranges {
            if let index = range.index(of: address) { return (range, index) }
        }
        return nil
    }

    // MARK: Merging in place

    /// Applies merges, longest runs first, within the VMA budget; returns references to drop
    /// for merges that did not happen.
    private func applyMerges(_ merges: [(range: MergeRange, index: Int, page: PageNumber)]) -> [PageNumber] {
        guard !merges.isEmpty else { return [] }
        let sorted = merges.sorted { $0.range.address($0.index) < $1.range.address($1.index) }
        // Runs: consecutive addresses in one range mapping consecutive region pages.
        var runs: [(range: MergeRange, index: Int, page: PageNumber, count: Int)] = []
        for m in sorted {
            if var last = runs.last, last.range === m.range, last.index + last.count == m.index,
               UInt64(last.page) + UInt64(last.count) == UInt64(m.page) {
                last.count += 1
                runs[runs.count - 1] = last
            } else if let last = runs.last, last.range === m.range, m.index < last.index + last.count {
                // The same page twice (a hint for a page merged in this reply): drop the extra.
                runs.append((m.range, m.index, m.page, 0))
            } else {
                runs.append((m.range, m.index, m.page, 1))
            }
        }
        // Runs first: the longest runs get the mapping budget.
        var releases: [PageNumber] = []
        var chosen: [(range: MergeRange, index: Int, page: PageNumber, count: Int)] = []
        // The count of mappings between two reads of the maps is an upper bound (a merge next to
        // a merged page adds one mapping, not two): before turning merges away for want of
        // budget, read the true count, once per full scan at most.
        if mappingBudget - mappingsUsed < 2 * runs.count && mapsReadInScan != fullScans { refreshMaps(force: true) }
        var budgetLeft = mappingBudget - mappingsUsed
        for run in runs.sorted(by: { $0.count > $1.count }) {
            // A run in the middle of a mapping splits it in three: two more mappings.
            if run.count == 0 || budgetLeft < 2 || Int(run.page) * 4096 + run.count * 4096 > regionBytes {
                releases += run.count == 0 ? [run.page] : (0..<run.count).map { run.page + PageNumber($0) }
                continue
            }
            budgetLeft -= 2
            chosen.append(run)
        }
        // One write-protect for the runs of a neighbourhood, not one per run: with scattered
        // duplicates every page is its own run, and the syscalls are the cost. But not one for
        // a whole range either: hints from other processes' scans merge pages anywhere in it,
        // and a span over them all made mprotect visit (and restore) every mapping in between,
        // thousands once scattered merges have split the range (a fifth of a scattered scan).
        for (_, group) in Dictionary(grouping: chosen, by: { ObjectIdentifier($0.range) }) {
            let ordered = group.sorted { $0.index < $1.index }
            let range = ordered[0].range
            var clusterStart = 0
            while clusterStart < ordered.count {
                var clusterEnd = clusterStart + 1
                var reach = ordered[clusterStart].index + ordered[clusterStart].count
                while clusterEnd < ordered.count && ordered[clusterEnd].index - reach <= Self.guardGapPages {
                    reach = max(reach, ordered[clusterEnd].index + ordered[clusterEnd].count)
                    clusterEnd += 1
                }
                let cluster = ordered[clusterStart..<clusterEnd]
                let merged = mergeRuns(range, span: cluster.first!.index..<reach, cluster.map { ($0.index, $0.page, $0.count) })
                mappingsUsed += merged.mappingsAdded
                releases += merged.failed
                clusterStart = clusterEnd
            }
        }
        return releases
    }

    /// Write-protects the span of some runs of one range, confirms each page against the region
    /// with memcmp, maps the region over the equal parts (MAP_PRIVATE | MAP_FIXED: later writes
    /// copy on write), and opens the span again. Writers into the span meanwhile wait in the
    /// merge guard. Only readable, writable private memory is ever a candidate, so opening the
    /// span read-write restores what was there.
    /// Maps `count` region pages from `first` over `address`, copy-on-write: one mmap per segment
    /// they lie in (one, unless the server runs --hardened). Returns how many pages, from the
    /// first, are now mapped: those are merged whatever happens to the rest.
    private func mapRegion(at address: UnsafeMutableRawPointer, pages first: PageNumber, count: Int, from segments: SegmentSnapshot) -> Int {
        var done = 0
        while done < count {
            guard let place = try? segments.location(ofPage: first + PageNumber(done)) else { return done }
            let n = min(count - done, place.pagesInSegment)
            guard (try? Syscall.mmap(address + done * 4096, n * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED,
                                     place.fd, place.offset)) != nil else { return done }
            done += n
        }
        return done
    }

    private func mergeRuns(_ range: MergeRange, span: Range<Int>, _ runs: [(index: Int, page: PageNumber, count: Int)]) -> (failed: [PageNumber], mappingsAdded: Int) {
        let spanAddress = UnsafeMutableRawPointer(bitPattern: range.address(span.lowerBound))!
        let spanLength = span.count * 4096
        let all = runs.flatMap { run in (0..<run.count).map { run.page + PageNumber($0) } }
        // Taken before the guard: no lock may be waited for while this span is write-protected
        // (a thread holding it could be waiting to write here).
        guard let segments = try? client.regionSegments(generation: generation) else { return (all, 0) }
        sp_guard_begin(spanAddress, spanLength)
        defer { sp_guard_end() }
        guard (try? Syscall.mprotect(spanAddress, spanLength, PROT_READ)) != nil else { return (all, 0) }
        defer { _ = try? Syscall.mprotect(spanAddress, spanLength, PROT_READ | PROT_WRITE) }
        var failed: [PageNumber] = []
        var mappingsAdded = 0
        for (index, page, count) in runs {
            let address = UnsafeMutableRawPointer(bitPattern: range.address(index))!
            var k = 0
            while k < count {
                // In place, fault-tolerant: the application may unmap its memory meanwhile (a
                // page that cannot be read compares unequal and is not merged).
                let equal = sp_pages_equal_in_place(address + k * 4096, regionView + (Int(page) + k) * 4096) == 1
                var end = k + 1
                while end < count && (sp_pages_equal_in_place(address + end * 4096, regionView + (Int(page) + end) * 4096) == 1) == equal {
                    end += 1
                }
                let mapped = equal ? mapRegion(at: address + k * 4096, pages: page + PageNumber(k), count: end - k, from: segments) : 0
                if mapped > 0 {
                    trackingStale = true
                    // The new mapping splits the anonymous mapping around it only where private
                    // memory is left on a side: next to merged pages (their own mappings) it adds
                    // fewer. At the range's edges, assume memory outside (the worst case).
                    let left = index + k - 1, right = index + k + mapped
                    mappingsAdded += (left < 0 || range.state[left] != .merged ? 1 : 0)
                        + (right >= range.pageCount || range.state[right] != .merged ? 1 : 0)
                }
                for i in k..<(k + mapped) {
                    range.state[index + i] = .merged
                    range.region[index + i] = page + PageNumber(i)
                }
                failed += ((k + mapped)..<end).map { page + PageNumber($0) }
                k = end
            }
        }
        return (failed, mappingsAdded)
    }

    /// use_zero_pages: discards all-zero pages (MADV_DONTNEED), so they read the kernel's zero
    /// page and take no memory. Consecutive pages go together: write-protected while checked,
    /// like a merge, then discarded with one call.
    private func applyZeroes(_ range: MergeRange, _ indices: [Int]) {
        var i = 0
        while i < indices.count {
            var j = i + 1
            while j < indices.count && indices[j] == indices[j - 1] + 1 { j += 1 }
            let first = indices[i], count = j - i
            let address = UnsafeMutableRawPointer(bitPattern: range.address(first))!
            sp_guard_begin(address, count * 4096)
            if (try? Syscall.mprotect(address, count * 4096, PROT_READ)) != nil {
                var k = 0
                while k < count {
                    let zero = sp_pages_equal_in_place(address + k * 4096, ZeroPage.pointer) == 1
                    var end = k + 1
                    while end < count && (sp_pages_equal_in_place(address + end * 4096, ZeroPage.pointer) == 1) == zero { end += 1 }
                    if zero, (try? Syscall.madvise(address + k * 4096, (end - k) * 4096, MADV_DONTNEED)) != nil {
                        for page in k..<end { range.state[first + page] = .zero }
                    }
                    k = end
                }
                _ = try? Syscall.mprotect(address, count * 4096, PROT_READ | PROT_WRITE)
            }
            sp_guard_end()
            i = j
        }
    }

    // MARK: Reconnecting

    /// After the client reconnected (the server went away and came back), the references of
    /// merged pages died with the old server: the pages get private copies (the old region stays
    /// alive while mapped, but nobody answers for it any more), the scan starts over, and merging
    /// goes on with the new server's region. Called with the engine lock held.
    private func followReconnect() throws(SamepageError) {
        let region = try client.makeRegionView()
        guard region.generation != generation else { return }
        for range in ranges { _ = unmerge(range, 0, range.pageCount) }
        pendingReleases.removeAll()
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
        // The inherited userfaultfd acts on the parent's memory, and the child's mappings are
        // not registered: a tracker of the child's own comes with the next full scan.
        writeTracker = nil
        writeTrackerUnavailable = false
        trackingStale = true
        for range in ranges where range.tracksWrites {
            range.tracksWrites = false
            for i in 0..<range.pageCount { range.digest[i] = MergeRange.unseen }
        }
        for range in ranges {
            _ = unmerge(range, 0, range.pageCount)
        }
        cursorRange = 0
        cursorPage = 0
        fullScans = 0
        pagesScanned = 0
        pagesSkipped = 0
        volatileThisScan = 0
        volatileLastScan = 0
    }

    // MARK: Statistics

    /// References of pages found unshared outside a scan (by `statistics`), dropped with the next
    /// scan's requests.
    private var pendingReleases: [PageNumber] = []

    /// Brings page states up to date without scanning: merged pages whose copy-on-write broke
    /// (pagemap) and discarded zero pages that were written are ordinary pages again. So the
    /// process's figures are true at once, as the kernel's are; the server's references go with
    /// the next scan.
    private func refreshStates() {
        for range in ranges where range.state.contains(where: { $0 != .normal }) {
            var pagemap = [UInt64](repeating: 0, count: range.pageCount)
            if pagemapFD >= 0 {
                _ = pagemap.withUnsafeMutableBytes { raw in
                    try? Syscall.pread(pagemapFD, raw, offset: UInt64(range.start / 4096) * 8)
                }
            }
            for index in 0..<range.pageCount {
                switch range.state[index] {
                case .merged where pagemap[index] & (1 << 63) != 0 && pagemap[index] & (1 << 61) == 0:
                    pendingReleases.append(range.region[index])
                    range.state[index] = .normal
                    range.digest[index] = MergeRange.unseen
                case .zero where Self.wasWritten(discardedZeroPage: pagemap[index]):
                    range.state[index] = .normal
                    range.digest[index] = MergeRange.unseen
                default:
                    break
                }
            }
        }
    }

    /// This process's figures. `refresh` first brings page states up to date from the page
    /// tables (a read of /proc/self/pagemap over every range with merged pages: with one mapping
    /// per merged page, that walk was a third of a scattered workload's scanning time); right
    /// after a full scan the states are as fresh as the scan left them.
    func statistics(refresh: Bool = true) -> ProcessMergeStatistics {
        lock.withLock {
            if refresh { refreshStates() }
            var s = ProcessMergeStatistics()
            for range in ranges {
                s.rmapItems += range.pageCount
                for state in range.state {
                    if state == .merged { s.mergingPages += 1 } else if state == .zero { s.zeroPages += 1 }
                }
            }
            s.processProfit = (s.mergingPages + s.zeroPages) * 4096 - s.rmapItems * 16
            s.mergeAny = mergeAny
            s.fullScans = fullScans
            s.pagesScanned = pagesScanned
            s.pagesVolatile = volatileLastScan
            s.pagesSkipped = pagesSkipped
            s.mappings = mappingsUsed
            s.mappingBudget = mappingBudget
            s.racingWritesAbsorbed = Int(sp_guard_absorbed())
            s.writeTracking = ranges.contains { $0.tracksWrites }
            return s
        }
    }

    /// Sends this process's scanner figures to the server (after each full scan, when the scan
    /// just brought every page's state up to date) and returns them.
    @discardableResult
    func report(afterFullScan: Bool = false) throws(SamepageError) -> ProcessMergeStatistics {
        let s = statistics(refresh: !afterFullScan)
        var report = ScanReport()
        report.pagesScanned = UInt64(s.pagesScanned)
        report.fullScans = UInt64(s.fullScans)
        report.pagesSkipped = UInt64(s.pagesSkipped)
        report.pagesVolatile = UInt64(s.pagesVolatile)
        report.zeroPages = UInt64(s.zeroPages)
        report.mergingPages = UInt64(s.mergingPages)
        report.rmapItems = UInt64(s.rmapItems)
        try client.send(report)
        return s
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

    /// One wake-up of the scanner thread: `pages_to_scan` pages, then the advisor.
    /// Returns false when the client is gone (the thread then ends).
    func backgroundStep() -> Bool {
        guard let client = owner else { return false }
        defer { withExtendedLifetime(client) {} }
        let started = ContinuousClock.now
        let completed = (try? lock.withLock { () throws(SamepageError) in try step(maxPages: parameters.pagesToScan) }) ?? false
        if completed {
            _ = try? report(afterFullScan: true)
            lock.withLock { adviseScanRate(elapsed: ContinuousClock.now - started) }
        }
        return true
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
