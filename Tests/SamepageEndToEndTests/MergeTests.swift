import Foundation
import SamepageCore
import Testing

/// Mergeable memory across real processes: merges, references, races.
@Suite(.serialized)
struct MergeTests {
    /// Starts `samepage-probe merge` (which fills, marks mergeable and scans), returning the
    /// process, its stdin and its first report line.
    func startMerger(_ server: ServerProcess, pages: Int, distinct: Int, seed: Int, scans: Int,
                     parameters: [String] = []) throws -> (Process, FileHandle, FileHandle, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Binaries.probe)
        process.arguments = ["merge", server.socket, "\(pages)", "\(distinct)", "\(seed)", "\(scans)"] + parameters
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        let line = readLine(output.fileHandleForReading)
        return (process, input.fileHandleForWriting, output.fileHandleForReading, line)
    }

    func readLine(_ handle: FileHandle) -> String {
        var bytes: [UInt8] = []
        while true {
            let byte = handle.readData(ofLength: 1)
            if byte.isEmpty || byte[0] == 10 { break }
            bytes.append(byte[0])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    func send(_ command: String, to input: FileHandle, reading output: FileHandle) -> String {
        input.write(Data((command + "\n").utf8))
        return readLine(output)
    }

    func field(_ line: String, _ name: String) -> Int? { reportField(line, name) }

    /// Ends mergers: their input closed, they exit.
    func finish(_ mergers: (Process, FileHandle)...) {
        for (_, input) in mergers { input.closeFile() }
        for (process, _) in mergers { process.waitUntilExit() }
    }

    @Test("two processes with the same pages: the second process's pages merge with the first's")
    func mergesAcrossProcesses() throws {
        let server = try ServerProcess(regionSize: "256M")
        defer { server.stop() }
        let pages = 1024
        // Each process: 1024 pages of 1024 different contents, the same in both.
        let (a, aIn, aOut, aLine) = try startMerger(server, pages: pages, distinct: pages, seed: 5, scans: 2)
        // Alone, nothing merges: every page is unique within the process.
        #expect(field(aLine, "merging_pages") == 0, "\(aLine)")
        let (b, bIn, bOut, bLine) = try startMerger(server, pages: pages, distinct: pages, seed: 5, scans: 2)
        // B's second scan finds A's pages in the unstable tree: B merges, A is asked to.
        #expect(field(bLine, "merging_pages") == pages, "\(bLine)")
        // A merges on its next scan (its pages' pairs are now stable pages).
        let aAfter = send("scan 1", to: aIn, reading: aOut)
        #expect(field(aAfter, "merging_pages") == pages, "\(aAfter)")
        // The figures a scan returns (without a second page-table walk) are the fresh ones.
        #expect(field(aAfter, "scan_merging_pages") == pages, "\(aAfter)")
        #expect(field(aAfter, "scan_full_scans") == field(aAfter, "full_scans"), "\(aAfter)")
        let stats = try server.statistics()
        #expect(stats["pages_shared"] == Int64(pages))
        #expect(stats["pages_sharing"] == Int64(pages))
        #expect(stats["region_bytes_used"] == Int64(pages * 4096))
        #expect(send("check", to: aIn, reading: aOut) == "ok")
        #expect(send("check", to: bIn, reading: bOut) == "ok")

        // A write in B breaks one page's sharing; B's next scan gives its reference back.
        #expect(send("write 7", to: bIn, reading: bOut) == "ok")
        let bAfterWrite = send("scan 1", to: bIn, reading: bOut)
        // The scan saw the broken copy-on-write: its own figures say so too.
        #expect(field(bAfterWrite, "scan_merging_pages") == pages - 1, "\(bAfterWrite)")
        #expect(field(bAfterWrite, "merging_pages") == pages - 1, "\(bAfterWrite)")
        let afterWrite = try server.statistics()
        #expect(afterWrite["pages_sharing"] == Int64(pages - 1))
        #expect(send("check", to: aIn, reading: aOut) == "ok", "B's write is B's alone")
        #expect(send("check", to: bIn, reading: bOut) == "ok")

        // B killed: its references go; A keeps its pages, now unshared.
        kill(b.processIdentifier, SIGKILL)
        b.waitUntilExit()
        let afterKill = try server.waitForStatistics { $0["pages_sharing"] == 0 }
        #expect(afterKill["pages_sharing"] == 0)
        #expect(afterKill["pages_unshared"] == Int64(pages))
        #expect(send("check", to: aIn, reading: aOut) == "ok")
        let unmerged = send("unmerge", to: aIn, reading: aOut)
        #expect(field(unmerged, "merging_pages") == 0)
        #expect(send("check", to: aIn, reading: aOut) == "ok")
        aIn.closeFile()
        a.waitUntilExit()
        let end = try server.waitForStatistics { $0["region_bytes_used"] == 0 }
        #expect(end["region_bytes_used"] == 0)
        #expect(end["pages_unshared"] == 0)
    }

    /// Two mergers, merged: A holds contents 0..<aPages, B contents 0...63, so A's pages from 64
    /// on are A's alone (and A scans with smart_scan off, so that they are looked at in every
    /// scan however long they found no partner). Returns A's process and pipes, then B's.
    func startMergedPair(_ server: ServerProcess, seed: Int, mode: String, aPages: Int = 65) throws
        -> (a: (Process, FileHandle, FileHandle), b: (Process, FileHandle, FileHandle)) {
        let tracking = mode == "track_writes=1" && WriteTrackerProbe.available
        let (a, aIn, aOut, aLine) = try startMerger(server, pages: aPages, distinct: aPages, seed: seed, scans: 2,
                                                    parameters: [mode, "smart_scan=0"])
        #expect(field(aLine, "write_tracking") == (tracking ? 1 : 0), "\(aLine)")
        let (b, bIn, bOut, bLine) = try startMerger(server, pages: 64, distinct: 64, seed: seed, scans: 2, parameters: [mode])
        #expect(field(bLine, "merging_pages") == 64, "\(bLine)")
        let aMerged = send("scan 1", to: aIn, reading: aOut)
        #expect(field(aMerged, "merging_pages") == 64, "contents from 64 on have no partner: \(aMerged)")
        return ((a, aIn, aOut), (b, bIn, bOut))
    }

    /// KSM looks only at pages that hold memory: a page never touched, or reading the kernel's
    /// zero page, is not read (which would make it present and its page tables real) and never
    /// "merged" with a stored page of zeros, which would spend a mapping to save nothing.
    @Test("mergeable memory never touched is not read, not made resident and not merged",
          arguments: ["track_writes=1", "track_writes=0"])
    func untouchedMemoryIsLeftAlone(_ mode: String) throws {
        let server = try ServerProcess(regionSize: "256M")
        defer { server.stop() }
        // 64 written zero pages merge into one stored page of zeros.
        let (z, zIn, zOut, zLine) = try startMerger(server, pages: 64, distinct: 0, seed: 0, scans: 2, parameters: [mode])
        #expect(field(zLine, "merging_pages") == 64, "\(zLine)")
        #expect(send("sparse 256", to: zIn, reading: zOut) == "sparse present=0")
        let after = readLine(zOut)
        #expect(field(after, "merging_pages") == 64, "\(after)")
        #expect(send("check", to: zIn, reading: zOut) == "ok")
        finish((z, zIn))
    }

    /// KSM's `run`: a scanner thread works through the mergeable memory on its own, a hundred
    /// pages every 20 ms by default, and merges without any call to `scan`.
    @Test("the scanner thread merges on its own", arguments: ["track_writes=1", "track_writes=0"])
    func scannerThreadMerges(_ mode: String) throws {
        let server = try ServerProcess(regionSize: "256M")
        defer { server.stop() }
        let (a, aIn, aOut, _) = try startMerger(server, pages: 256, distinct: 256, seed: 23, scans: 0, parameters: [mode, "run=1"])
        let (b, bIn, bOut, _) = try startMerger(server, pages: 256, distinct: 256, seed: 23, scans: 0, parameters: [mode, "run=1"])
        let deadline = Date().addingTimeInterval(10)
        var lines = ("", "")
        while Date() < deadline {
            lines = (send("scan 0", to: aIn, reading: aOut), send("scan 0", to: bIn, reading: bOut))
            if field(lines.0, "merging_pages") == 256 && field(lines.1, "merging_pages") == 256 { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        #expect(field(lines.0, "merging_pages") == 256, "\(lines.0)")
        #expect(field(lines.1, "merging_pages") == 256, "\(lines.1)")
        #expect((field(lines.0, "full_scans") ?? 0) >= 2, "\(lines.0)")
        #expect(send("check", to: aIn, reading: aOut) == "ok")
        #expect(send("check", to: bIn, reading: bOut) == "ok")
        finish((a, aIn), (b, bIn))
    }

    /// With write tracking a page keeps the digest it was read with until it is written; with
    /// checksums it is read every scan. Either way, a page given new content is judged by it.
    @Test("a page rewritten with another page's content merges with that content",
          arguments: ["track_writes=1", "track_writes=0"])
    func rewrittenPageMergesByItsNewContent(_ mode: String) throws {
        let server = try ServerProcess(regionSize: "256M")
        defer { server.stop() }
        let tracking = mode == "track_writes=1" && WriteTrackerProbe.available
        let ((a, aIn, aOut), (b, bIn, bOut)) = try startMergedPair(server, seed: 11, mode: mode)
        // A's unmerged page 64 (read, its digest known) and merged page 3 get content 9.
        #expect(send("fill 64 9", to: aIn, reading: aOut) == "ok")
        #expect(send("fill 3 9", to: aIn, reading: aOut) == "ok")
        // The scan after a write sees page 64 volatile. With checksums it has read the page, and
        // looks it up among stored pages as KSM does: it merges with content 9 at once. Write
        // tracking does not read a written page: it merges in the next scan, which reads it
        // (a stale digest would find content 64). Page 3's write ended its merge; the next scan
        // reads it afresh and finds content 9 too.
        let volatileScan = send("scan 1", to: aIn, reading: aOut)
        #expect(field(volatileScan, "merging_pages") == (tracking ? 63 : 64), "\(volatileScan)")
        #expect(field(volatileScan, "volatile") == 1, "page 64; page 3 was merged, its write ends the merge: \(volatileScan)")
        let merged = send("scan 2", to: aIn, reading: aOut)
        #expect(field(merged, "merging_pages") == 65, "\(merged)")
        #expect(send("check", to: aIn, reading: aOut) == "ok")
        #expect(send("check", to: bIn, reading: bOut) == "ok")
        // Content 3 is B's alone now (not shared); content 9 is one stored page for four mappings.
        let stats = try server.statistics()
        #expect(stats["pages_shared"] == 63)
        #expect(stats["pages_sharing"] == 65, "62 contents twice, content 9 four times")
        finish((a, aIn), (b, bIn))
    }

    /// The kernel reports writes per mapping: memory the application maps anew in a mergeable
    /// range is registered again within a second (with the maps), and its pages are read afresh.
    @Test("a page remapped by the application with another page's content merges with that content",
          arguments: ["track_writes=1", "track_writes=0"])
    func remappedPageMergesByItsNewContent(_ mode: String) throws {
        let server = try ServerProcess(regionSize: "256M")
        defer { server.stop() }
        let ((a, aIn, aOut), (b, bIn, _)) = try startMergedPair(server, seed: 13, mode: mode)
        // Page 64 (content 64, read and known) becomes new memory holding content 9.
        #expect(send("remap 64 9", to: aIn, reading: aOut) == "ok")
        Thread.sleep(forTimeInterval: 1.2)
        let after = send("scan 3", to: aIn, reading: aOut)
        #expect(field(after, "merging_pages") == 65, "\(after)")
        #expect(send("check", to: aIn, reading: aOut) == "ok")
        finish((a, aIn), (b, bIn))
    }

    /// A forked child's merged pages get private copies; when it merges again, its scanner must
    /// read its own page tables (and track its own writes), not its parent's: /proc/self/pagemap
    /// opened before fork still shows the parent's.
    @Test("a forked child merges again and sees its own writes break the sharing",
          arguments: ["track_writes=1", "track_writes=0"])
    func forkedChildMergesAndSeesItsWrites(_ mode: String) throws {
        let server = try ServerProcess(regionSize: "256M")
        defer { server.stop() }
        let ((a, aIn, aOut), (b, bIn, _)) = try startMergedPair(server, seed: 17, mode: mode, aPages: 64)
        #expect(send("check", to: aIn, reading: aOut) == "ok")
        let child = send("fork-write 5", to: aIn, reading: aOut)
        #expect(field(child, "merging_pages") == 64, "the child merges with the stored pages: \(child)")
        #expect(field(child, "after_write") == 63, "the child's write ended one merge: \(child)")
        #expect(field(child, "refreshed") == 63, "\(child)")
        #expect(readLine(aOut) == "ok")
        // The parent's pages are as they were.
        #expect(send("check", to: aIn, reading: aOut) == "ok")
        #expect(field(send("scan 1", to: aIn, reading: aOut), "merging_pages") == 64)
        finish((a, aIn), (b, bIn))
    }

    /// KSM searches its stable tree for every page it scans before it asks whether the page
    /// changed: a process that starts after others merged the same content merges at its first
    /// scan; only pages without a stored twin need the second.
    @Test("a process joining late merges pages already stored at its first scan",
          arguments: ["track_writes=1", "track_writes=0"])
    func lateJoinerMergesAtFirstScan(_ mode: String) throws {
        let server = try ServerProcess(regionSize: "256M")
        defer { server.stop() }
        let ((a, aIn, _), (b, bIn, _)) = try startMergedPair(server, seed: 21, mode: mode, aPages: 64)
        // C: the same 64 contents and 16 of its own.
        let (c, cIn, cOut, cLine) = try startMerger(server, pages: 80, distinct: 80, seed: 21, scans: 1, parameters: [mode])
        #expect(field(cLine, "full_scans") == 1, "\(cLine)")
        #expect(field(cLine, "merging_pages") == 64, "\(cLine)")
        #expect(send("check", to: cIn, reading: cOut) == "ok")
        // Its own 16 pages stay as they are, and nothing else changed hands.
        let later = send("scan 2", to: cIn, reading: cOut)
        #expect(field(later, "merging_pages") == 64, "\(later)")
        let stats = try server.statistics()
        #expect(stats["pages_shared"] == 64)
        #expect(stats["pages_sharing"] == 128)
        finish((a, aIn), (b, bIn), (c, cIn))
    }

    /// A and B with the same `pages` distinct contents, two scans each: A's pages wait in the
    /// unstable tree, B's second scan pairs them all (B sends their bytes, A gets hints).
    func startPairedMergers(_ server: ServerProcess, pages: Int, seed: Int) throws
        -> (a: (Process, FileHandle, FileHandle), b: (Process, FileHandle, FileHandle)) {
        let (a, aIn, aOut, _) = try startMerger(server, pages: pages, distinct: pages, seed: seed, scans: 2)
        let (b, bIn, bOut, bLine) = try startMerger(server, pages: pages, distinct: pages, seed: seed, scans: 2)
        #expect(field(bLine, "merging_pages") == pages, "\(bLine)")
        return ((a, aIn, aOut), (b, bIn, bOut))
    }

    /// A merge another process's scan made with this process's page waits at the server as a
    /// hint until this process's next scan request. A full scan that has nothing to look up
    /// (here: every page written since the last scan, so volatile and not read) still fetches
    /// its hints: a hint waits one full scan at most, and the server's pages_sharing does not
    /// count pages the process never merges.
    @Test("a full scan with nothing to look up still takes the merges others made with its pages",
          .enabled(if: WriteTrackerProbe.available, "needs write tracking: with checksums a rewritten page is looked up anyway"))
    func hintsArriveWithinOneFullScan() throws {
        let server = try ServerProcess(regionSize: "256M")
        defer { server.stop() }
        // A files its 64 pages in the unstable tree (second scan); B's second scan pairs them all.
        let ((a, aIn, aOut), (b, bIn, _)) = try startPairedMergers(server, pages: 64, seed: 31)
        // A writes every page again, with the same bytes: its next scan reads none of them.
        for i in 0..<64 { #expect(send("fill \(i) \(i)", to: aIn, reading: aOut) == "ok") }
        let scanned = send("scan 1", to: aIn, reading: aOut)
        #expect(field(scanned, "merging_pages") == 64, "the hints of B's pairs came with A's one scan: \(scanned)")
        #expect(send("check", to: aIn, reading: aOut) == "ok")
        let stats = try server.statistics()
        #expect(stats["pages_shared"] == 64 && stats["pages_sharing"] == 64)
        finish((a, aIn), (b, bIn))
    }

    /// KSM rebuilds its unstable tree every full scan and files every unchanged page again;
    /// Samepage's entries stay filed while their pages stay unchanged, so a process at rest sends
    /// none of its unique pages again (one request a full scan, for the hints, however many
    /// slices). A page written is withdrawn by the next scan and filed again once it holds
    /// still; a partner that comes later pairs with the pages still waiting.
    @Test("unique pages wait in the unstable tree without being sent again; a write withdraws one",
          arguments: ["track_writes=1", "track_writes=0"])
    func filedPagesWaitUntilWritten(mode: String) throws {
        let server = try ServerProcess(regionSize: "256M")
        defer { server.stop() }
        let pages = 4 * 512  // four slices
        let (a, aIn, aOut, _) = try startMerger(server, pages: pages, distinct: pages, seed: 41, scans: 3,
                                                parameters: [mode, "smart_scan=0"])
        #expect(try server.statistics()["pages_unshared"] == Int64(pages))
        func requests(_ process: Process) throws -> Int {
            let entry = try server.clients().clients.first { $0["pid"] as? Int == Int(process.processIdentifier) }
            return try #require(entry?["requests_served"] as? Int)
        }
        let before = try requests(a)
        _ = send("scan 8", to: aIn, reading: aOut)
        let sent = try requests(a) - before
        #expect(sent <= 8 + 2, "\(sent) requests for 8 full scans of 4 slices at rest")
        #expect(try server.statistics()["pages_unshared"] == Int64(pages))

        #expect(send("write 7", to: aIn, reading: aOut) == "ok")
        _ = send("scan 1", to: aIn, reading: aOut)
        #expect(try server.statistics()["pages_unshared"] == Int64(pages - 1), "the written page was withdrawn")
        _ = send("scan 1", to: aIn, reading: aOut)
        #expect(try server.statistics()["pages_unshared"] == Int64(pages), "and filed again once it held still")

        // B holds A's original contents; A is at rest. Page 7 alone differs now.
        let (b, bIn, bOut, bLine) = try startMerger(server, pages: pages, distinct: pages, seed: 41, scans: 2)
        #expect(field(bLine, "merging_pages") == pages - 1, "\(bLine)")
        let aAfter = send("scan 1", to: aIn, reading: aOut)
        #expect(field(aAfter, "merging_pages") == pages - 1, "\(aAfter)")
        #expect(send("check", to: aIn, reading: aOut) == "ok")
        #expect(send("check", to: bIn, reading: bOut) == "ok")
        finish((a, aIn), (b, bIn))
    }

    /// Resident kilobytes of a process's mappings whose smaps header line `matches` (from smaps).
    func residentKiB(_ pid: Int32, of matches: (Substring) -> Bool) throws -> Int {
        // /proc files have no size: read to the end rather than by length.
        let handle = try #require(FileHandle(forReadingAtPath: "/proc/\(pid)/smaps"))
        defer { try? handle.close() }
        let smaps = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
        var inMatch = false, kib = 0
        for line in smaps.split(separator: "\n") {
            if let first = line.first, first.isHexDigit, line.contains("-") {
                inMatch = matches(line)
            } else if inMatch, line.hasPrefix("Rss:") {
                kib += Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0
            }
        }
        return kib
    }

    /// Resident kilobytes of a process's staging memory (its memfd mapping).
    func stagingResidentKiB(_ pid: Int32) throws -> Int {
        try residentKiB(pid) { $0.contains("samepage-staging") }
    }

    /// The process whose scan sent a pair's bytes merges its pages without comparing them with
    /// the region pages made of those bytes (its view of the region is never read): the server
    /// stored its copy, and the write tracker says the pages were not written since. The
    /// partner, whose bytes the server never saw, compares each page.
    @Test("the process that sent a pair's bytes merges without reading them back",
          .enabled(if: WriteTrackerProbe.available, "needs write tracking: without it every merge compares"))
    func theSenderOfAPairsBytesDoesNotCompareThem() throws {
        let server = try ServerProcess(regionSize: "256M")
        defer { server.stop() }
        let pages = 512
        let ((a, aIn, aOut), (b, bIn, bOut)) = try startPairedMergers(server, pages: pages, seed: 43)
        func viewKiB(_ process: Process) throws -> Int {
            try residentKiB(process.processIdentifier) { $0.contains("samepage-region") && $0.contains(" r--s ") }
        }
        #expect(try viewKiB(b) < 64, "B sent the bytes of all \(pages) pairs")
        let aMerged = send("scan 1", to: aIn, reading: aOut)
        #expect(field(aMerged, "merging_pages") == pages, "\(aMerged)")
        #expect(try viewKiB(a) >= pages * 4, "A compared its pages with the region's")
        #expect(send("check", to: aIn, reading: aOut) == "ok")
        #expect(send("check", to: bIn, reading: bOut) == "ok")
        finish((a, aIn), (b, bIn))
    }

    /// The staging pages a scan copies pairs' bytes through stay while the process is merging
    /// (faulting them in afresh every scan cost a shmem page each) and go back to the kernel
    /// after the first full scan that did not use them.
    @Test("a process that sent pairs' bytes gives its staging memory back once a scan needs none")
    func stagingMemoryIsGivenBack() throws {
        let server = try ServerProcess(regionSize: "256M")
        defer { server.stop() }
        let ((a, aIn, _), (b, bIn, bOut)) = try startPairedMergers(server, pages: 256, seed: 37)
        // B copied 256 pages through staging in its second scan, and holds them.
        #expect(try stagingResidentKiB(b.processIdentifier) >= 256 * 4)
        // Its next full scan copies nothing: the staging pages go back.
        let later = send("scan 1", to: bIn, reading: bOut)
        #expect(field(later, "merging_pages") == 256, "\(later)")
        #expect(try stagingResidentKiB(b.processIdentifier) == 0)
        finish((a, aIn), (b, bIn))
    }

    @Test("mergeable memory unmapped, remapped, protected and truncated under a full-speed scanner: no crash, merging goes on")
    func vanishingMemory() throws {
        let server = try ServerProcess(regionSize: "256M")
        defer { server.stop() }
        let result = try Command.run(Binaries.probe, ["vanish", server.socket, "1500"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        let line = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(line.hasPrefix("ok "), "\(result.stdout)")
        #expect((field(line, "scans") ?? 0) >= 3, "\(line)")
        #expect((field(line, "merged") ?? 0) > 0, "the pages that stayed still merge: \(line)")
    }

    /// With `unmap_stretches`, stretches of duplicates are unmapped and mapped again piece by
    /// piece: the reader must wait in the merge guard, not crash.
    @Test("writers hammer merged and merging pages, a reader reads them, while the scanner runs: every byte is what was written",
          arguments: [[], ["unmap_stretches=1"]])
    func stress(parameters: [String]) throws {
        let server = try ServerProcess(regionSize: "256M")
        defer { server.stop() }
        let result = try Command.run(Binaries.probe, ["stress", server.socket, "4096", "4", "3000"] + parameters)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.hasPrefix("ok bad_pages=0"), "\(result.stdout)")
        // The scanner did merge while the writers wrote, and writes raced merges.
        #expect((field(result.stdout, "most_merged") ?? 0) > 0, "\(result.stdout)")
        // A reader read every page all along, through the first merges (stretches mapped piece
        // by piece into a hole).
        #expect((field(result.stdout, "read_sweeps") ?? 0) > 0, "\(result.stdout)")
        let stats = try server.waitForStatistics { $0["region_bytes_used"] == 0 }
        #expect(stats["region_bytes_used"] == 0)
    }

    @Test("a client cannot drop references it does not hold, nor scan outside its staging memory")
    func mergeRequestsAreValidated() throws {
        let server = try ServerProcess(regionSize: "64M")
        defer { server.stop() }
        let (a, aIn, aOut, aLine) = try startMerger(server, pages: 64, distinct: 1, seed: 3, scans: 2)
        #expect(field(aLine, "merging_pages") == 64)
        let before = try server.statistics()
        let raw = try RawClient(socketPath: server.socket)
        #expect(try raw.hello(pages: 16).kind == .welcome)
        // Region page 0 is A's merged page: not this connection's to release.
        #expect(try raw.call(.mergeRelease(pages: [0])).failureCode == .badRequest)
        #expect(try raw.call(.mergeScan(round: 1, flags: [], stagingPage: 10, keys: Array(0..<10))).failureCode == .badRequest)
        #expect(try raw.call(.mergeScan(round: 1, flags: [], stagingPage: 0,
                                        keys: Array(repeating: 0, count: 4097))).failureCode == .limitExceeded)
        #expect(try raw.call(.configure(name: "max_page_sharing", value: 8)).failureCode == .notPermitted,
                "max_page_sharing cannot change while pages are stored")
        #expect(try raw.call(.ping) == .pong)
        #expect(try server.statistics()["pages_sharing"] == before["pages_sharing"])
        #expect(send("check", to: aIn, reading: aOut) == "ok")
        aIn.closeFile()
        a.waitUntilExit()
    }
}
