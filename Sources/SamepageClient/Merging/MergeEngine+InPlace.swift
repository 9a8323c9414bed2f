import CSamepageShim
import Glibc
import SamepageCore
import SamepageSystem

// Merging in place: the runs a scan found are mapped over the process's own pages, under the
// merge guard, within the mapping budget (see the essay at the top of MergeEngine.swift).
extension MergeEngine {
    /// A page of a range to map over with a region page.
    typealias PendingMerge = (range: MergeRange, index: Int, page: PageNumber)

    /// Applies merges, longest runs first, within the VMA budget; returns references to drop
    /// for merges that did not happen.
    func applyMerges(_ merges: [PendingMerge]) -> [PageNumber] {
        guard !merges.isEmpty else { return [] }
        // By range (a slice's merges lie in one; hints can add others), as (index, page) pairs:
        // pages are what a scan merges by the thousand, and sorting and copying tuples that hold
        // the range's reference retained and released it for each (a few % of a scan).
        var ranges: [MergeRange] = []
        var pairs: [[(index: Int, page: PageNumber)]] = []
        for m in merges {
            var r = ranges.count - 1
            if r < 0 || ranges[r] !== m.range {
                r = ranges.firstIndex { $0 === m.range } ?? ranges.count
                if r == ranges.count {
                    ranges.append(m.range)
                    pairs.append([])
                }
            }
            pairs[r].append((m.index, m.page))
        }
        // Runs, in address order within each range: consecutive pages mapping consecutive region
        // pages.
        var runs: [(range: Int, index: Int, page: PageNumber, count: Int)] = []
        for r in ranges.indices {
            if !zip(pairs[r], pairs[r].dropFirst()).allSatisfy({ $0.index <= $1.index }) { pairs[r].sort { $0.index < $1.index } }
            for m in pairs[r] {
                if let last = runs.last, last.range == r, last.index + last.count == m.index,
                   UInt64(last.page) + UInt64(last.count) == UInt64(m.page) {
                    runs[runs.count - 1].count += 1
                } else if let last = runs.last, last.range == r, m.index < last.index + last.count {
                    // The same page twice (a hint for a page merged in this reply): drop the extra.
                    runs.append((r, m.index, m.page, 0))
                } else {
                    runs.append((r, m.index, m.page, 1))
                }
            }
        }
        // Runs first: the longest runs get the mapping budget.
        var releases: [PageNumber] = []
        var chosen = [Bool](repeating: false, count: runs.count)
        // The count of mappings between two reads of the maps is an upper bound (a merge next to
        // a merged page adds one mapping, not two): before turning merges away for want of
        // budget, read the true count, once per full scan at most.
        if mappingBudget - mappingsUsed < 2 * runs.count && mapsReadInScan != fullScans { refreshMaps(force: true) }
        var budgetLeft = mappingBudget - mappingsUsed
        for i in runs.indices.sorted(by: { runs[$0].count > runs[$1].count }) {
            let run = runs[i]
            // A run in the middle of a mapping splits it in three: two more mappings.
            if run.count == 0 || budgetLeft < 2 || Int(run.page) * 4096 + run.count * 4096 > regionBytes {
                releases += run.count == 0 ? [run.page] : (0..<run.count).map { run.page + PageNumber($0) }
                continue
            }
            budgetLeft -= 2
            chosen[i] = true
        }
        // One write-protect for the runs of a neighbourhood, not one per run: with scattered
        // duplicates every page is its own run, and the syscalls are the cost. But not one for
        // a whole range either: hints from other processes' scans merge pages anywhere in it,
        // and a span over them all made mprotect visit (and restore) every mapping in between,
        // thousands once scattered merges have split the range (a fifth of a scattered scan).
        // The runs are in address order within each range already.
        var cluster: [(index: Int, page: PageNumber, count: Int)] = []
        var clusterRange = 0, reach = 0
        func mergeCluster() {
            guard let first = cluster.first else { return }
            let merged = mergeRuns(ranges[clusterRange], span: first.index..<reach, cluster)
            mappingsUsed += merged.mappingsAdded
            releases += merged.failed
            cluster.removeAll(keepingCapacity: true)
        }
        for (i, run) in runs.enumerated() where chosen[i] {
            if !cluster.isEmpty && (run.range != clusterRange || run.index - reach > Self.guardGapPages) { mergeCluster() }
            if cluster.isEmpty {
                clusterRange = run.range
                reach = run.index + run.count
            }
            reach = max(reach, run.index + run.count)
            cluster.append((run.index, run.page, run.count))
        }
        mergeCluster()
        return releases
    }

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

    /// Pages of a range found equal to consecutive region pages: one mapping once merged.
    typealias EqualPiece = (index: Int, page: PageNumber, count: Int)

    /// Write-protects the span of some runs of one range, confirms each page against the region
    /// with memcmp, maps the region over the equal parts (MAP_PRIVATE | MAP_FIXED: later writes
    /// copy on write), and opens the span again. Writers into the span meanwhile wait in the
    /// merge guard. Only readable, writable private memory is ever a candidate, so opening the
    /// span read-write restores what was there.
    private func mergeRuns(_ range: MergeRange, span: Range<Int>, _ runs: [(index: Int, page: PageNumber, count: Int)]) -> (failed: [PageNumber], mappingsAdded: Int) {
        let spanAddress = UnsafeMutableRawPointer(bitPattern: range.address(span.lowerBound))!
        let spanLength = span.count * 4096
        var all: [PageNumber] { runs.flatMap { run in (0..<run.count).map { run.page + PageNumber($0) } } }
        // Taken before the guard: no lock may be waited for while this span is write-protected
        // (a thread holding it could be waiting to write here).
        guard let segments = try? client.regionSegments(generation: generation) else { return (all, 0) }
        sp_guard_begin(spanAddress, spanLength)
        defer { sp_guard_end() }
        guard (try? Syscall.mprotect(spanAddress, spanLength, PROT_READ)) != nil else { return (all, 0) }
        defer { _ = try? Syscall.mprotect(spanAddress, spanLength, PROT_READ | PROT_WRITE) }
        // A page whose bytes this scan sent, and the server answered with a merge, equals its
        // region page if it is still present and was not written since the scan armed it (before
        // it was copied): the server stored the copy or compared it with the stored page, and the
        // write-protect stops writes from here on. Memory the application unmapped or mapped
        // anew meanwhile is not present, or not tracked (reported written): it is compared. One
        // page-table walk for the span instead of a compare a page (the process that sent a
        // pair's bytes compares nothing: the least work's count).
        var unwrittenVouched: [Bool] = []
        if let v = vouched, v.range === range, runs.contains(where: { run in
            (run.index..<(run.index + run.count)).contains { $0 >= v.from && $0 - v.from < v.pages.count && v.pages[$0 - v.from] }
        }), let states = writtenSinceArmed(range, address: range.address(span.lowerBound), pages: span.count) {
            unwrittenVouched = span.map { index in
                index >= v.from && index - v.from < v.pages.count && v.pages[index - v.from]
                    && states[index - span.lowerBound] & (PageState.written | PageState.resident) == PageState.resident
            }
        }
        // Every page is compared before any is mapped: a stretch is unmapped whole (mapStretch).
        var failed: [PageNumber] = []
        var pieces: [EqualPiece] = []
        for (index, page, count) in runs {
            let address = UnsafeMutableRawPointer(bitPattern: range.address(index))!
            // In place, fault-tolerant: the application may unmap its memory meanwhile (a page
            // that cannot be read compares unequal and is not merged).
            func isEqual(_ k: Int) -> Bool {
                if !unwrittenVouched.isEmpty && unwrittenVouched[index + k - span.lowerBound] { return true }
                return sp_pages_equal_in_place(address + k * 4096, regionView + (Int(page) + k) * 4096) == 1
            }
            var k = 0
            while k < count {
                let equal = isEqual(k)
                var end = k + 1
                while end < count && isEqual(end) == equal { end += 1 }
                if equal {
                    pieces.append((index + k, page + PageNumber(k), end - k))
                } else {
                    failed += (k..<end).map { page + PageNumber($0) }
                }
                k = end
            }
        }
        var mappingsAdded = 0
        var p = 0
        while p < pieces.count {
            var q = p + 1
            while q < pieces.count && pieces[q].index == pieces[q - 1].index + pieces[q - 1].count { q += 1 }
            var merged = mapStretch(range, pieces[p..<q], from: segments, mappingsMade: mappingsAdded)
            for (index, page, count) in pieces[p..<q] {
                let mapped = min(count, merged)
                merged -= mapped
                if mapped > 0 {
                    trackingStale = true
                    // The new mapping splits the anonymous mapping around it only where private
                    // memory is left on a side: next to merged pages (their own mappings) it adds
                    // fewer. At the range's edges, assume memory outside (the worst case).
                    let left = index - 1, right = index + mapped
                    mappingsAdded += (left < 0 || range.state[left] != .merged ? 1 : 0)
                        + (right >= range.pageCount || range.state[right] != .merged ? 1 : 0)
                }
                changesThisScan += mapped
                for i in 0..<mapped {
                    range.state[index + i] = .merged
                    unfile(range, index + i)
                    range.region[index + i] = page + PageNumber(i)
                }
                failed += (mapped..<count).map { page + PageNumber($0) }
            }
            p = q
        }
        return (failed, mappingsAdded)
    }

    /// Mappings left free under vm.max_map_count before a stretch is unmapped to be mapped
    /// piece by piece: the pieces must not fail for want of mappings (the application maps too).
    static let holeHeadroom = 256

    /// Maps the pieces of a stretch (consecutive addresses) over it; returns how many pages, from
    /// the first, are merged. Each piece is one mmap over the private pages, which splits the
    /// private mapping around it. With `unmap_stretches`, several pieces are mapped into a hole
    /// instead: the stretch is unmapped first, so that each piece's mapping is inserted rather
    /// than split out, which costs as much again (with scattered duplicates, ~5 against ~7-9 µs
    /// a page, twice that with four processes on two cores). Threads that touch the hole
    /// meanwhile wait in the merge guard like writers; the application's system calls on it fail
    /// (MergeParameters.unmapStretches), which is why it is not the default.
    /// `mappingsMade`: by this span's merges so far, not yet in `mappingsUsed`.
    private func mapStretch(_ range: MergeRange, _ stretch: ArraySlice<EqualPiece>, from segments: SegmentSnapshot, mappingsMade: Int) -> Int {
        let address = UnsafeMutableRawPointer(bitPattern: range.address(stretch.first!.index))!
        let pages = stretch.reduce(0) { $0 + $1.count }
        let holed = parameters.unmapStretches && stretch.count > 1
            && maxMapCount - mappingsUsed - mappingsMade > stretch.count + Self.holeHeadroom
            && (try? Syscall.unmap(address, pages * 4096)) != nil
        var done = 0
        for piece in stretch {
            let mapped = mapRegion(at: address + done * 4096, pages: piece.page, count: piece.count, from: segments)
            done += mapped
            guard mapped == piece.count else {
                if holed { Self.refillHole(at: address + done * 4096, copying: regionPages(of: stretch, from: done), from: regionView) }
                return done
            }
        }
        return done
    }

    /// The region pages of a stretch from its `skip`th page on.
    private func regionPages(of stretch: ArraySlice<EqualPiece>, from skip: Int) -> [PageNumber] {
        Array(stretch.lazy.flatMap { piece in (0..<piece.count).map { piece.page + PageNumber($0) } }.dropFirst(skip))
    }

    /// Where the region could not be mapped into a hole, puts back what the process had: private
    /// copies of the region pages the hole's pages compared equal to. They are made in scratch
    /// memory, write-protected like the span, and moved into the hole whole, so no thread sees a
    /// page that is neither. Scratch memory is made inaccessible first: one that lands in the
    /// hole itself (free address space) stays there as a placeholder (a thread that touches it
    /// waits in the merge guard) until the copies replace it.
    static func refillHole(at address: UnsafeMutableRawPointer, copying pages: [PageNumber], from regionView: UnsafeRawPointer) {
        let length = pages.count * 4096
        let hole = UInt(bitPattern: address)..<(UInt(bitPattern: address) + UInt(length))
        var placeholders: [UnsafeMutableRawPointer] = []
        defer {
            // What of a placeholder lies outside the hole (a hole can be larger than the pages).
            for p in placeholders {
                let start = UInt(bitPattern: p), end = start + UInt(length)
                if start < hole.lowerBound { Syscall.munmap(p, Int(min(end, hole.lowerBound) - start)) }
                if end > hole.upperBound {
                    let from = max(start, hole.upperBound)
                    Syscall.munmap(UnsafeMutableRawPointer(bitPattern: from)!, Int(end - from))
                }
            }
        }
        var scratch = try? Syscall.mmap(nil, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        while let s = scratch, hole.overlaps(UInt(bitPattern: s)..<(UInt(bitPattern: s) + UInt(length))) {
            placeholders.append(s)
            scratch = try? Syscall.mmap(nil, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        }
        if let scratch, (try? Syscall.mprotect(scratch, length, PROT_READ | PROT_WRITE)) != nil {
            copy(pages, from: regionView, to: scratch)
            if (try? Syscall.mprotect(scratch, length, PROT_READ)) != nil,
               (try? Syscall.mremapFixed(scratch, length, to: address)) != nil { return }
        }
        if let scratch { Syscall.munmap(scratch, length) }
        refillInPlace(at: address, copying: pages, from: regionView)
    }

    /// refillHole's last resort, when no scratch memory could be made or moved: private memory
    /// mapped into the hole write-protected and written through /proc/self/mem, which writes
    /// past the protection, so that a thread that touches it meanwhile waits in the merge guard
    /// rather than see it before it holds the bytes. Without /proc, opened for the copy.
    static func refillInPlace(at address: UnsafeMutableRawPointer, copying pages: [PageNumber], from regionView: UnsafeRawPointer) {
        let length = pages.count * 4096
        guard (try? Syscall.mmap(address, length, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)) != nil else { return }
        if let memory = try? Syscall.open("/proc/self/mem", O_RDWR) {
            defer { Syscall.close(memory) }
            let written = pages.enumerated().allSatisfy { i, page in
                (try? Syscall.pwrite(memory, UnsafeRawBufferPointer(start: regionView + Int(page) * 4096, count: 4096),
                                     offset: UInt64(UInt(bitPattern: address) + UInt(i * 4096)))) == 4096
            }
            if written { return }
        }
        guard (try? Syscall.mprotect(address, length, PROT_READ | PROT_WRITE)) != nil else { return }
        copy(pages, from: regionView, to: address)
        _ = try? Syscall.mprotect(address, length, PROT_READ)
    }

    private static func copy(_ pages: [PageNumber], from regionView: UnsafeRawPointer, to destination: UnsafeMutableRawPointer) {
        for (i, page) in pages.enumerated() { memcpy(destination + i * 4096, regionView + Int(page) * 4096, 4096) }
    }

    /// use_zero_pages: discards all-zero pages (MADV_DONTNEED), so they read the kernel's zero
    /// page and take no memory. Consecutive pages go together: write-protected while checked,
    /// like a merge, then discarded with one call.
    func applyZeroes(_ range: MergeRange, _ indices: [Int]) {
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
                        changesThisScan += end - k
                    }
                    k = end
                }
                _ = try? Syscall.mprotect(address, count * 4096, PROT_READ | PROT_WRITE)
            }
            sp_guard_end()
            i = j
        }
    }
}
