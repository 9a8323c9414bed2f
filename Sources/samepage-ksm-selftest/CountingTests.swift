import Glibc
import SamepageClient
import SamepageSystem

// ksm_tests.c: the counting, unmerge, zero-page, max_page_sharing, merge-time and COW-time modes.

/// Kernel (-M): N equal pages merge into one: pages_shared 1, pages_sharing N - 1.
func testMergeCount() throws -> Outcome {
    let client = try connect()
    let pages = 64
    _ = try mmapAndMergeRange(client, value: 0x2a, size: pages * pageSize, mode: .madvise)
    let stats = try serverStatistics(client)
    try expect(stats["pages_shared"] == 1 && stats["pages_sharing"] == Int64(pages - 1),
               "pages_shared \(stats["pages_shared"]!) pages_sharing \(stats["pages_sharing"]!), kernel expects 1 and \(pages - 1)")
    return .pass("pages_shared 1, pages_sharing \(pages - 1)")
}

/// Kernel (-U): two merged pages, one byte changed in each, one more scan: nothing merged.
func testUnmergeCount() throws -> Outcome {
    let client = try connect()
    let map = try mmapAndMergeRange(client, value: 0x2a, size: 2 * pageSize, mode: .madvise)
    map.storeBytes(of: UInt8(ascii: "-"), as: UInt8.self)
    (map + pageSize).storeBytes(of: UInt8(ascii: "+"), as: UInt8.self)
    try client.scan(fullScans: 1)
    let stats = try serverStatistics(client)
    try expect(stats["pages_shared"] == 0 && stats["pages_sharing"] == 0,
               "pages_shared \(stats["pages_shared"]!) pages_sharing \(stats["pages_sharing"]!), kernel expects 0 and 0")
    try expect(map.load(as: UInt8.self) == UInt8(ascii: "-") && (map + pageSize).load(as: UInt8.self) == UInt8(ascii: "+"),
               "writes lost")
    return .pass("writes unmerged the pages")
}

/// Kernel (-Z): N zero pages; use_zero_pages 1: pages_shared 0, pages_sharing 0 (they are
/// zero pages); use_zero_pages 0: they merge like any page (1 and N - 1).
func testZeroPageMerge() throws -> Outcome {
    let pages = 64
    for useZeroPages in [UInt64(1), 0] {
        let client = try connect()
        try client.setMergeParameter("use_zero_pages", useZeroPages)
        let map = try mmapAndMergeRange(client, value: 0, size: pages * pageSize, mode: .madvise)
        let stats = try serverStatistics(client)
        let expected: (Int64, Int64) = useZeroPages == 1 ? (0, 0) : (1, Int64(pages - 1))
        try expect(stats["pages_shared"] == expected.0 && stats["pages_sharing"] == expected.1,
                   "use_zero_pages \(useZeroPages): pages_shared \(stats["pages_shared"]!) pages_sharing \(stats["pages_sharing"]!)")
        if useZeroPages == 1 {
            try expect(client.processStatistics().zeroPages == pages, "ksm_zero_pages \(client.processStatistics().zeroPages)")
        }
        try client.advise(map, length: pages * pageSize, .unmergeable)
    }
    return .pass("zero pages counted as the kernel counts them, both ways")
}

/// Kernel (-N): N equal pages under max_page_sharing M follow the count rule (a leftover single
/// page cannot merge).
func testMaxPageSharing() throws -> Outcome {
    let m = 4
    for n in [4, 5, 6, 9, 11] {
        let client = try connect()
        try client.setMergeParameter("max_page_sharing", UInt64(m))
        let map = try mmapAndMergeRange(client, value: 0x33, size: n * pageSize, mode: .madvise)
        let stats = try serverStatistics(client)
        let expected = expectedCounts(duplicates: n, maxPageSharing: m)
        try expect(stats["pages_shared"] == Int64(expected.shared) && stats["pages_sharing"] == Int64(expected.sharing),
                   "N=\(n) M=\(m): pages_shared \(stats["pages_shared"]!) pages_sharing \(stats["pages_sharing"]!), kernel expects \(expected)")
        try client.advise(map, length: n * pageSize, .unmergeable)
    }
    return .pass("the count rule holds for N = 4, 5, 6, 9, 11 and M = 4")
}

/// KSM: a page whose checksum changed between two scans is volatile and is not merged; it
/// merges once it stops changing (two more scans).
func testVolatile() throws -> Outcome {
    let client = try connect()
    let pages = 16
    let map = try Syscall.mmap(nil, pages * pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    memset(map, 0x44, pages * pageSize)
    try client.advise(map, length: pages * pageSize, .mergeable)
    try client.scan(fullScans: 1)
    try expect(client.processStatistics().mergingPages == 0, "merged after one scan: KSM needs two")
    // Page 0 changes between every scan: it never merges.
    for round in 1...3 {
        map.storeBytes(of: UInt8(round), as: UInt8.self)
        try client.scan(fullScans: 1)
    }
    let stats = client.processStatistics()
    try expect(stats.mergingPages == pages - 1, "merging pages \(stats.mergingPages), expected \(pages - 1)")
    try expect(stats.pagesVolatile >= 1, "pages_volatile \(stats.pagesVolatile)")
    try client.scan(fullScans: 2)
    try expect(client.processStatistics().mergingPages == pages - 1, "a changed page merged with different content")
    return .pass("a page changed between scans stays unmerged")
}

/// Kernel (-P): the time to merge `size` of duplicates (ksm_tests prints MiB/s); here the two
/// scans and the unmerge, as figures, with the content checked.
func testMergeTime() throws -> Outcome {
    let client = try connect()
    let size = 64 * MiB
    let map = try Syscall.mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    for offset in stride(from: 0, to: size, by: pageSize) {
        (map + offset).storeBytes(of: UInt64(offset / pageSize % 64), as: UInt64.self)
    }
    try client.advise(map, length: size, .mergeable)
    let merge = try seconds { try client.scan(fullScans: 2) }
    let merged = client.processStatistics().mergingPages
    let unmerge = try seconds { try client.advise(map, length: size, .unmergeable) }
    for offset in stride(from: 0, to: size, by: pageSize) {
        try expect((map + offset).load(as: UInt64.self) == UInt64(offset / pageSize % 64), "content changed")
    }
    try expect(merged == size / pageSize, "merged \(merged) of \(size / pageSize)")
    return .pass("merge: \(fixed(64 / merge, 0)) MiB/s (\(fixed(merge, 3)) s for 64 MiB, 2 scans); unmerge: \(fixed(64 / unmerge, 0)) MiB/s")
}

/// Kernel (-C): the cost of a copy-on-write write to merged pages against writes to ordinary
/// pages (ksm_tests prints both).
func testCowTime() throws -> Outcome {
    let client = try connect()
    let size = 16 * MiB
    let plain = try Syscall.mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    memset(plain, 0x5a, size)
    let merged = try mmapAndMergeRange(client, value: 0x5a, size: size, mode: .madvise)
    try expect(client.processStatistics().mergingPages == size / pageSize, "not merged")
    func touchEveryPage(_ base: UnsafeMutableRawPointer) {
        for offset in stride(from: 0, to: size, by: pageSize) { (base + offset).storeBytes(of: UInt8(1), as: UInt8.self) }
    }
    let plainTime = seconds { touchEveryPage(plain) }
    let cowTime = seconds { touchEveryPage(merged) }
    try expect(client.processStatistics().mergingPages == 0, "writes did not break the sharing")
    let pages = Double(size / pageSize)
    let plainMicros = plainTime / pages * 1e6, cowMicros = cowTime / pages * 1e6
    return .pass("write to an ordinary page \(fixed(plainMicros)) µs, to a merged page (COW) \(fixed(cowMicros)) µs")
}

/// Samepage: scattered duplicates (every other page) need one mapping per merged page; past the
/// VMA budget merges are declined, never failed: the scan succeeds, the process stays within its
/// budget, every byte is intact.
func testVMABudget() throws -> Outcome {
    let client = try connect()
    try client.setMergeParameter("vma_budget_percent", 1)
    let pages = 4096
    let map = try Syscall.mmap(nil, pages * pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    for page in 0..<pages {
        let value: UInt64 = page % 2 == 0 ? 0x77 : UInt64(page)
        for word in 0..<512 { (map + page * pageSize + word * 8).storeBytes(of: value, as: UInt64.self) }
    }
    try client.advise(map, length: pages * pageSize, .mergeable)
    try client.scan(fullScans: 3)
    let stats = client.processStatistics()
    try expect(stats.mappingBudget > 0 && stats.mappings <= stats.mappingBudget,
               "mappings \(stats.mappings) over the budget \(stats.mappingBudget)")
    try expect(stats.mergingPages > 0 && stats.mergingPages < pages / 2,
               "merging pages \(stats.mergingPages): expected some, limited by the budget")
    for page in 0..<pages {
        let expected: UInt64 = page % 2 == 0 ? 0x77 : UInt64(page)
        try expect((map + page * pageSize + 4088).load(as: UInt64.self) == expected, "page \(page) changed")
    }
    try client.advise(map, length: pages * pageSize, .unmergeable)
    return .pass("\(stats.mergingPages) scattered pages merged within a budget of \(stats.mappingBudget) mappings (\(stats.mappings) used)")
}

/// Samepage: scans of a process that took no page fault since the scan before skip the write
/// tracker's page-table walk (quiet scans); a write in between is still seen by the next scan,
/// and a write the fault count cannot see (another process's, through process_vm_writev) by a
/// walk within a second.
func testQuietScans() throws -> Outcome {
    let client = try connect()
    let pages = 64
    let map = try Syscall.mmap(nil, pages * pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    // Pages 0..<48 equal, the rest unique.
    for page in 0..<pages {
        let value: UInt64 = page < 48 ? 0x51 : UInt64(page) << 8
        for word in 0..<512 { (map + page * pageSize + word * 8).storeBytes(of: value, as: UInt64.self) }
    }
    try client.advise(map, length: pages * pageSize, .mergeable)
    var stats = try client.scan(fullScans: 4)
    try expect(stats.mergingPages == 48, "merging pages \(stats.mergingPages), expected 48")
    // The pages merged in the second scan; its faults were the scanner's own (the compares
    // fault the stored pages into its view of the region): the third and fourth are quiet.
    let quietAfterMerging = stats.quietScans
    stats = try client.scan(fullScans: 3)
    guard stats.writeTracking else {
        try expect(stats.quietScans == 0, "\(stats.quietScans) quiet scans without write tracking")
        try client.advise(map, length: pages * pageSize, .unmergeable)
        return .pass("checksums: no quiet scans")
    }
    try expect(quietAfterMerging >= 2, "\(quietAfterMerging) quiet scans of 2 after the scan that merged")
    try expect(stats.quietScans > 0, "no quiet scan in 3 scans of a process at rest")
    let sharing = try serverStatistics(client)["pages_sharing"]!
    // Our own write: the next scan is not quiet, and sees it.
    var quiet = stats.quietScans
    (map + 5 * pageSize).storeBytes(of: UInt8(1), as: UInt8.self)
    stats = try client.scan(fullScans: 1)
    try expect(stats.quietScans == quiet, "the scan after a write was quiet")
    try expect(stats.mergingPages == 47, "merging pages \(stats.mergingPages) after a write to one, expected 47")
    try expect(try serverStatistics(client)["pages_sharing"]! == sharing - 1, "the written page's reference was kept")
    // Another process's write (process_vm_writev, the `poke` case), which our fault count does
    // not see. Spawned (no fork: a fork makes our memory copy-on-write, and our next writes
    // fault), with its arguments made first: no page fault of ours from the last scan before
    // the write to the scans after it, or a scan would walk and see the write at once. The
    // second walk is due within a second of the last: a try that hits it sees no quiet scan, and
    // is made again on the next page.
    var blindScans = 0, poked = 5
    while blindScans < 2 && poked < 8 {
        poked += 1
        let target = map + poked * pageSize
        var argv: [UnsafeMutablePointer<CChar>?] = [
            strdup(CommandLine.arguments[0]), strdup(socketPath), strdup("poke"), strdup("\(getpid())"),
            strdup("\(UInt(bitPattern: target))"), nil,
        ]
        defer { for argument in argv { free(argument) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        var child: pid_t = 0, status: Int32 = 0
        stats = try client.scan(fullScans: 2)
        quiet = stats.quietScans
        guard posix_spawn(&child, argv[0]!, &actions, nil, &argv, environ) == 0 else { throw Failure("cannot spawn the writer") }
        waitpid(child, &status, 0)
        guard status == 0 else {
            try client.advise(map, length: pages * pageSize, .unmergeable)
            return .pass("quiet scans \(quiet); a write of ours seen at once; process_vm_writev not allowed here (status \(status)): the other writer not tried")
        }
        let deadline = ContinuousClock.now + .seconds(3)
        repeat {
            stats = try client.scan(fullScans: 1)
        } while stats.mergingPages != 47 - (poked - 5) && ContinuousClock.now < deadline
        try expect(target.load(as: UInt8.self) == 2, "process_vm_writev did not write")
        try expect(stats.mergingPages == 47 - (poked - 5), "another process's write not seen in 3 s: merging pages \(stats.mergingPages)")
        try expect(try serverStatistics(client)["pages_sharing"]! == sharing - Int64(poked - 4), "the page written by another process kept its reference")
        blindScans = stats.quietScans - quiet
    }
    // Quiet scans did not see it (the count is blind to it): the walk that did came later.
    try expect(blindScans >= 2, "\(blindScans) quiet scans before the walk that saw another process's write: not blind?")
    for page in 0..<pages where page < 5 || page > poked {
        let expected: UInt64 = page < 48 ? 0x51 : UInt64(page) << 8
        try expect((map + page * pageSize + 4088).load(as: UInt64.self) == expected, "page \(page) changed")
    }
    try client.advise(map, length: pages * pageSize, .unmergeable)
    return .pass("\(stats.quietScans) quiet scans; a write of ours seen by the next scan, another process's by a walk \(blindScans) quiet scans later")
}

/// For quiet-scans: writes the byte 2 at ADDRESS in process PID (process_vm_writev).
func poke() throws -> Outcome {
    guard parameterArguments.count == 2, let pid = Int32(parameterArguments[0]), let address = UInt(parameterArguments[1]),
          let target = UnsafeMutableRawPointer(bitPattern: address) else { throw Failure("usage: poke PID ADDRESS") }
    var byte: UInt8 = 2
    let written = try Syscall.writeMemory(ofProcess: pid, at: target, from: &byte, count: 1)
    try expect(written == 1, "wrote \(written) bytes")
    return .pass("wrote")
}
