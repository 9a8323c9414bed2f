/// KSM's tunables, per process (the kernel's are global; each Samepage process scans itself).
public struct MergeParameters: Sendable, Equatable {
    /// Pages scanned per wake-up of the scanner thread (KSM: pages_to_scan, default 100).
    public var pagesToScan = 100
    /// Sleep between wake-ups (KSM: sleep_millisecs, default 20).
    public var sleepMilliseconds = 20
    /// All-zero pages are discarded (MADV_DONTNEED) to read the kernel's zero page instead of
    /// merging with a stored page of zeros (KSM: use_zero_pages, default off).
    public var useZeroPages = false
    /// Skip pages that keep failing to merge for a growing number of scans (KSM: smart_scan,
    /// default on).
    public var smartScan = true
    /// When set, the scan-time advisor sizes `pagesToScan` after every full scan so that a full
    /// scan takes about this many seconds (KSM: advisor_mode=scan-time, advisor_target_scan_time).
    public var advisorTargetScanSeconds: Double?
    public var advisorMinPagesToScan = 500
    public var advisorMaxPagesToScan = 30_000
    /// The share of `/proc/sys/vm/max_map_count` this process's mappings may reach; merges stop
    /// there instead of failing with ENOMEM.
    public var vmaBudgetFraction = 0.5
    /// Learn which pages were written since the last scan from the kernel (a userfaultfd in
    /// asynchronous write-protect mode, Linux 6.7) instead of from a checksum of every page in
    /// every scan. Samepage's own switch, not KSM's; without kernel support, checksums are used.
    public var trackWrites = true
    /// Map scattered merges into a hole: a stretch of pages that maps several pieces of the
    /// region is unmapped and the pieces mapped into it, instead of splitting the private mapping
    /// at every piece (scattered duplicates merge in about two thirds of the time). Off by
    /// default: for the microseconds a stretch is unmapped, the application's own mprotect,
    /// madvise or mlock over it fails with ENOMEM, and a system call reading it with EFAULT
    /// (its threads' own reads and writes wait). Samepage's own switch, not KSM's.
    public var unmapStretches = false
    /// After a full scan that changed nothing (no page written, new, merged, unmerged or
    /// discarded, nothing uploaded, no merge hinted by the server), the scanner thread rests
    /// before the next one: 1 ms after the first such scan, twice as long after each one that
    /// follows, up to this many milliseconds (0: never rests). A process at rest then costs a few
    /// scans a second however fast the scanner is set; what changes meanwhile waits this long at
    /// most. ksmd has no such rest (it cannot know nothing changed without reading). Samepage's
    /// own switch, not KSM's.
    public var idleRestMilliseconds = 100

    public init() {}

    /// Sets a parameter by its KSM name (`pages_to_scan`, `sleep_millisecs`, `use_zero_pages`,
    /// `smart_scan`, `advisor_target_scan_time`, `advisor_min_pages_to_scan`,
    /// `advisor_max_pages_to_scan`, `vma_budget_percent`, and Samepage's `track_writes`,
    /// `unmap_stretches` and `idle_rest_millisecs`); false for an unknown name or a bad value.
    public mutating func set(_ name: String, _ value: UInt64) -> Bool {
        switch name {
        case "pages_to_scan" where value > 0 && value <= 1 << 24: pagesToScan = Int(value)
        case "sleep_millisecs" where value <= 60_000: sleepMilliseconds = Int(value)
        case "use_zero_pages" where value <= 1: useZeroPages = value == 1
        case "smart_scan" where value <= 1: smartScan = value == 1
        case "advisor_target_scan_time": advisorTargetScanSeconds = value == 0 ? nil : Double(value)
        case "advisor_min_pages_to_scan" where value > 0: advisorMinPagesToScan = Int(value)
        case "advisor_max_pages_to_scan" where value > 0: advisorMaxPagesToScan = Int(value)
        case "vma_budget_percent" where value >= 1 && value <= 100: vmaBudgetFraction = Double(value) / 100
        case "track_writes" where value <= 1: trackWrites = value == 1
        case "unmap_stretches" where value <= 1: unmapStretches = value == 1
        case "idle_rest_millisecs" where value <= 60_000: idleRestMilliseconds = Int(value)
        default: return false
        }
        return true
    }

    /// "name=value" as the tools take parameters on their command lines (value a whole number).
    public static func parse(_ assignment: String) throws(SamepageError) -> (name: String, value: UInt64) {
        let parts = assignment.split(separator: "=", maxSplits: 1)
        guard parts.count == 2, let value = UInt64(parts[1]) else {
            throw .invalidArgument("a parameter is name=value, not '\(assignment)'")
        }
        return (String(parts[0]), value)
    }
}

/// Per-process figures, with the kernel's names (/proc/PID/ksm_stat and ksm_merging_pages).
public struct ProcessMergeStatistics: Sendable, Equatable {
    /// Pages of mergeable memory the scanner tracks (KSM: ksm_rmap_items).
    public var rmapItems = 0
    /// Pages discarded to the kernel's zero page (KSM: ksm_zero_pages).
    public var zeroPages = 0
    /// Pages mapped from the region (KSM: ksm_merging_pages).
    public var mergingPages = 0
    /// Bytes saved minus the scanner's metadata (KSM: ksm_process_profit).
    public var processProfit = 0
    /// The process-wide switch (KSM: ksm_merge_any).
    public var mergeAny = false
    public var fullScans = 0
    public var pagesScanned = 0
    /// Pages whose checksum changed in the last full scan (with write tracking: pages written
    /// since the scan before, or seen for the first time).
    public var pagesVolatile = 0
    public var pagesSkipped = 0
    /// Mappings of this process (/proc/self/maps lines) at the last count, and the budget.
    public var mappings = 0
    public var mappingBudget = 0
    /// Writes that raced a merge and were retried after it (absorbed by the merge guard).
    public var racingWritesAbsorbed = 0
    /// Whether the kernel reports this process's writes to its mergeable memory (see
    /// `MergeParameters.trackWrites`), so pages are read once per scan at most, and not at all
    /// in the scan after they were written.
    public var writeTracking = false
    /// Full scans that found the process had taken no page fault since the full scan before
    /// (which changed nothing), and so skipped the write tracker's page-table walk: nothing can
    /// have been written.
    public var quietScans = 0
}
