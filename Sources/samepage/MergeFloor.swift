import Foundation
import Glibc
import SamepageCore
import SamepageSystem

/// The least work any deduplicator that maps shared pages into processes must do for a merge
/// workload, done here on the same data in one thread and timed by CPU clock: read every page
/// once (a hash), write each content that repeats once into shared memory (the first copy, into
/// fresh shmem), compare every other page of it with that copy (faulting the copy in), and map
/// the copy over every page of it (which frees the private pages); with zero pages discarded
/// instead (use_zero_pages). Finding the equal pages (an index) and any protocol are not counted,
/// so this is a lower bound: on N cores, no such deduplicator converges faster than its CPU over
/// N. It is how far the `runs` target (a tenth of KSM's time) is from what the machine allows.
struct MergeFloor {
    var parts: [(name: String, cpuSeconds: Double)]
    var cores: Int

    var cpuSeconds: Double { parts.reduce(0) { $0 + $1.cpuSeconds } }
    /// The least time to converge: the work spread over every core without a loss.
    var wallSeconds: Double { cpuSeconds / Double(cores) }

    /// For --json, with the baselines.
    var figures: [String: Double] {
        var figures = ["least_work_cpu_seconds": cpuSeconds, "least_work_seconds": wallSeconds, "cores": Double(cores)]
        for part in parts { figures["least_work_" + part.name.replacingOccurrences(of: " ", with: "_") + "_cpu_seconds"] = part.cpuSeconds }
        return figures
    }

    var summary: String {
        String(format: "least work (any deduplicator that maps shared pages, this data, this machine): %.2f CPU s (", cpuSeconds)
            + parts.map { String(format: "%@ %.2f", $0.name, $0.cpuSeconds) }.joined(separator: ", ")
            + String(format: "), %.2f s on %d cores", wallSeconds, cores)
    }

    /// The largest workload measured (its memory is allocated once more, in this process).
    static let maxBytes = 8 << 30

    static func measure(_ fill: WorkloadFill, processes: Int, mib: Int, zeroPages: Bool) throws -> MergeFloor {
        let pages = mib << 8
        let memory = try (0..<processes).map { index in
            let mapping = try Syscall.mmap(nil, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            try fill.fill(mapping, pages: pages, index: index)
            return mapping
        }
        defer { for base in memory { Syscall.munmap(base, pages * 4096) } }
        let plan = Plan(memory: memory, pages: pages, zeroPages: zeroPages)
        let fileBytes = max(1, plan.stored.count) * 4096
        var parts: [(String, Double)] = []
        // Best of three where that can be repeated: on this VM the first touch of memory costs
        // anything from one to five times its least (the host faults it in too).
        var digests = [UInt64](repeating: 0, count: pages)
        parts.append(("hash", (0..<3).map { _ in
            cpuTime { for base in memory { for page in 0..<pages { digests[page] = PageStore.digest(base + page * 4096) } } }
        }.min()!))
        var fd: Int32 = -1
        var copy = Double.infinity
        for _ in 0..<3 {
            if fd >= 0 { close(fd) }
            fd = try Syscall.memfdCreate("samepage-bench-floor")
            try Syscall.ftruncate(fd, UInt64(fileBytes))
            copy = min(copy, try cpuTime {
                for (slot, source) in plan.stored.enumerated() {
                    _ = try Syscall.pwrite(fd, UnsafeRawBufferPointer(start: memory[source.process] + source.page * 4096, count: 4096),
                                           offset: UInt64(slot) * 4096)
                }
            })
        }
        defer { close(fd) }
        parts.append(("first copy", copy))
        let view = try MemoryMapping(fd: fd, length: fileBytes, writable: false, shared: true)
        var equal = 0
        // The first compare faults the copy in, as a deduplicator's first look at it would.
        parts.append(("compare", cpuTime {
            for (process, slots) in plan.slots.enumerated() {
                for (page, slot) in slots.enumerated() where slot >= 0 && plan.stored[slot] != Plan.Source(process: process, page: page) {
                    equal += memcmp(memory[process] + page * 4096, view.base + slot * 4096, 4096) == 0 ? 1 : 0
                }
                for page in plan.zero[process] {
                    equal += memcmp(memory[process] + page * 4096, ZeroPage.pointer, 4096) == 0 ? 1 : 0
                }
            }
        }))
        parts.append(("map and free", cpuTime {
            for (process, slots) in plan.slots.enumerated() {
                Self.map(slots, over: memory[process], fd: fd)
                var zeroRuns = RunBuilder()
                for page in plan.zero[process] { zeroRuns.append(PageNumber(page)) }
                for run in zeroRuns.runs {
                    try? Syscall.madvise(memory[process] + Int(run.start) * 4096, Int(run.count) * 4096, MADV_DONTNEED)
                }
            }
        }))
        // Used, or the compiler may drop the compares (memcmp has no side effects).
        precondition(equal >= 0)
        return MergeFloor(parts: parts, cores: max(1, min(ProcessInfo.processInfo.activeProcessorCount, processes + 1)))
    }

    /// Which pages repeat, where their one copy goes, which pages are zero pages to discard.
    struct Plan {
        struct Source: Equatable { var process: Int; var page: Int }
        /// The page each stored copy is written from, by slot in the shared file.
        var stored: [Source] = []
        /// For each process, the slot each page maps (-1: not merged).
        var slots: [[Int]] = []
        /// For each process, its zero pages (use_zero_pages), in order.
        var zero: [[Int]] = []

        init(memory: [UnsafeMutableRawPointer], pages: Int, zeroPages: Bool) {
            var count: [UInt64: Int] = [:]
            let digests = memory.map { base in (0..<pages).map { PageStore.digest(base + $0 * 4096) } }
            for list in digests { for d in list { count[d, default: 0] += 1 } }
            var slotOf: [UInt64: Int] = [:]
            for (process, list) in digests.enumerated() {
                var slots = [Int](repeating: -1, count: pages)
                var zero: [Int] = []
                for (page, d) in list.enumerated() {
                    if zeroPages && d == PageStore.zeroDigest {
                        zero.append(page)
                    } else if count[d]! > 1 {
                        if let slot = slotOf[d] {
                            slots[page] = slot
                        } else {
                            slotOf[d] = stored.count
                            slots[page] = stored.count
                            stored.append(Source(process: process, page: page))
                        }
                    }
                }
                self.slots.append(slots)
                self.zero.append(zero)
            }
        }
    }

    /// Maps the shared file over the merged pages of one process the cheapest way known: a run
    /// of pages mapping consecutive slots is one mmap; a stretch of several runs is unmapped and
    /// the runs mapped into the hole (as MergeEngine does with unmap_stretches).
    private static func map(_ slots: [Int], over base: UnsafeMutableRawPointer, fd: Int32) {
        var runs: [(page: Int, slot: Int, count: Int)] = []
        for (page, slot) in slots.enumerated() where slot >= 0 {
            if let last = runs.last, last.page + last.count == page, last.slot + last.count == slot {
                runs[runs.count - 1].count += 1
            } else {
                runs.append((page, slot, 1))
            }
        }
        var i = 0
        while i < runs.count {
            var j = i + 1
            while j < runs.count && runs[j].page == runs[j - 1].page + runs[j - 1].count { j += 1 }
            if j - i > 1 {
                let end = runs[j - 1].page + runs[j - 1].count
                Syscall.munmap(base + runs[i].page * 4096, (end - runs[i].page) * 4096)
            }
            for run in runs[i..<j] {
                _ = try? Syscall.mmap(base + run.page * 4096, run.count * 4096, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_FIXED, fd, UInt64(run.slot) * 4096)
            }
            i = j
        }
    }

    private static func cpuTime(_ body: () throws -> Void) rethrows -> Double {
        var start = timespec(), end = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start)
        try body()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &end)
        return Double(end.tv_sec - start.tv_sec) + Double(end.tv_nsec - start.tv_nsec) / 1e9
    }
}
