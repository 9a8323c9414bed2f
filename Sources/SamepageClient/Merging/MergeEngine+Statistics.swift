import CSamepageShim
import Glibc
import SamepageCore
import SamepageSystem

// The process's figures (KSM's /proc/PID/ksm_stat) and the reports that carry them to the server.
extension MergeEngine {

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
                    range.digest[index] = MergeRange.seen
                case .zero where Self.wasWritten(discardedZeroPage: pagemap[index]):
                    range.state[index] = .normal
                    range.digest[index] = MergeRange.seen
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
            s.processProfit = (s.mergingPages + s.zeroPages) * 4096 - s.rmapItems * MergeRange.bytesPerPage
            s.mergeAny = mergeAny
            s.fullScans = fullScans
            s.pagesScanned = pagesScanned
            s.pagesVolatile = volatileLastScan
            s.pagesSkipped = pagesSkipped
            s.mappings = mappingsUsed
            s.mappingBudget = mappingBudget
            s.racingWritesAbsorbed = Int(sp_guard_absorbed())
            s.writeTracking = ranges.contains { $0.tracksWrites }
            s.quietScans = quietScans
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
}
