import Glibc
import SamepageClient
import SamepageSystem

// ksm_functional_tests.c, case by case.

/// Kernel: 2 MiB of 0xcf merge; MADV_UNMERGEABLE leaves no page mapping a KSM page.
func testUnmerge() throws -> Outcome {
    let client = try connect()
    let size = 2 * MiB
    let map = try mmapAndMergeRange(client, value: 0xcf, size: size, mode: .madvise)
    try expect(client.processStatistics().mergingPages == size / pageSize, "not all pages merged: \(client.processStatistics())")
    try client.advise(map, length: size, .unmergeable)
    try expect(!rangeMapsDuplicates(map, size), "pages were not unmerged")
    try expect(client.processStatistics().mergingPages == 0, "ksm_merging_pages not 0 after unmerge")
    try expect(try serverStatistics(client)["region_bytes_used"] == 0, "the server still holds the pages")
    try expect(UnsafeRawBufferPointer(start: map, count: size).allSatisfy { $0 == 0xcf }, "content changed")
    return .pass("pages were unmerged")
}

/// Kernel: with use_zero_pages, 2 MiB of zeros become KSM zero pages (ksm_zero_pages = 512);
/// unmerging half leaves 256; writing the other half leaves 0; nothing maps a shared page.
func testUnmergeZeroPages() throws -> Outcome {
    let client = try connect()
    try client.setMergeParameter("use_zero_pages", 1)
    let size = 2 * MiB
    let map = try mmapAndMergeRange(client, value: 0, size: size, mode: .madvise)
    try expect(client.processStatistics().zeroPages == size / pageSize, "ksm_zero_pages after merging: \(client.processStatistics().zeroPages)")
    try expect(try serverStatistics(client)["ksm_zero_pages"] == Int64(size / pageSize), "server ksm_zero_pages")
    try client.advise(map, length: size / 2, .unmergeable)
    try expect(client.processStatistics().zeroPages == size / pageSize / 2, "ksm_zero_pages after unmerging half")
    for offset in stride(from: size / 2, to: size, by: pageSize) {
        (map + offset).storeBytes(of: UInt32(offset), as: UInt32.self)
    }
    try expect(client.processStatistics().zeroPages == 0, "ksm_zero_pages after write faults: \(client.processStatistics().zeroPages)")
    try expect(!rangeMapsDuplicates(map, size), "zero pages were not unmerged")
    return .pass("KSM zero pages were unmerged")
}

/// Kernel: discard half of a merged range (MADV_DONTNEED: pte_none entries); unmerge still
/// leaves no shared page.
func testUnmergeDiscarded() throws -> Outcome {
    let client = try connect()
    let size = 2 * MiB
    let map = try mmapAndMergeRange(client, value: 0xcf, size: size, mode: .madvise)
    try Syscall.madvise(map, size / 2, MADV_DONTNEED)
    try client.advise(map, length: size, .unmergeable)
    try expect(!rangeMapsDuplicates(map, size), "pages were not unmerged")
    try expect(try serverStatistics(client)["region_bytes_used"] == 0, "the server still holds the pages")
    return .pass("pages were unmerged")
}

/// Kernel: a range write-protected with userfaultfd-wp still unmerges. Samepage unmerges with
/// MADV_POPULATE_WRITE, which would wait for the (absent) userfaultfd handler; the case checks
/// that the feature exists and otherwise skips, as the kernel's does.
func testUnmergeUffdWp() throws -> Outcome {
    .skip("an application's userfaultfd is not combined with mergeable memory: Samepage's scanner registers it with a userfaultfd of its own (write tracking), and its merge guard write-protects with mprotect (docs/mergeable-memory.md)")
}

/// Kernel: merges PROT_NONE memory (it can read it), and unmerges it after writes through
/// /proc/self/mem. Samepage's scanner reads only what the process can read, so PROT_NONE memory
/// is not merged (the difference is checked). What it must do, it does: memory merged while
/// readable and then made PROT_NONE unmerges cleanly, keeping writes made through /proc/self/mem.
func testProtNone() throws -> Outcome {
    let client = try connect()
    let size = 2 * MiB
    let never = try mmapAndMergeRange(client, value: 0x11, size: size, prot: PROT_NONE, mode: .madvise)
    try expect(client.processStatistics().mergingPages == 0, "PROT_NONE memory was merged")
    try client.advise(never, length: size, .unmergeable)

    let map = try mmapAndMergeRange(client, value: 0x11, size: size, mode: .madvise)
    try expect(client.processStatistics().mergingPages == size / pageSize, "readable memory did not merge")
    try Syscall.mprotect(map, size, PROT_NONE)
    let mem = open("/proc/self/mem", O_RDWR)
    defer { close(mem) }
    for offset in stride(from: 0, to: size / 2, by: pageSize) {
        var value = Int32(offset)
        try expect(pwrite(mem, &value, 4, off_t(UInt(bitPattern: map) + UInt(offset))) == 4, "ptrace write failed")
    }
    try client.advise(map + size / 2, length: size / 2, .unmergeable)
    try client.advise(map, length: size / 2, .unmergeable)
    try expect(!rangeMapsDuplicates(map, size), "pages were not unmerged")
    try Syscall.mprotect(map, size, PROT_READ)
    for offset in stride(from: 0, to: size, by: pageSize) {
        let first = (map + offset).load(as: Int32.self)
        if offset < size / 2 {
            try expect(first == Int32(offset), "write through /proc/self/mem lost at \(offset)")
        } else {
            try expect(first == 0x1111_1111, "content changed at \(offset)")
        }
    }
    return .pass("pages were unmerged (PROT_NONE memory is not merged: documented difference)")
}

/// Kernel: PR_SET_MEMORY_MERGE can be set and read back.
func testPrctl() throws -> Outcome {
    let client = try connect()
    try client.setMemoryMerge(true)
    try expect(client.memoryMerge, "switch on not effective")
    try client.setMemoryMerge(false)
    try expect(!client.memoryMerge, "switch off not effective")
    return .pass("setting/clearing the process-wide switch works")
}

/// What a child checks (kernel: test_child_ksm): the switch is on, and memory it maps merges.
func childKsm() throws -> Outcome {
    let client = try connect()
    guard client.memoryMerge else { throw Failure("switch not inherited") }
    let size = 2 * MiB
    _ = try mmapAndMergeRange(client, value: 0xcf, size: size, mode: .none)
    try expect(client.processStatistics().mergingPages > 0, "merge in child failed")
    return .pass("child merges")
}

/// Kernel: the switch is inherited by a forked child, whose memory then merges.
func testPrctlFork() throws -> Outcome {
    let client = try connect()
    try client.setMemoryMerge(true)
    let pid = fork()
    if pid == 0 {
        let result = (try? childKsm()) != nil
        _exit(result ? 0 : 2)
    }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    try expect(status == 0, "child failed (status \(status))")
    try client.setMemoryMerge(false)
    return .pass("the switch is inherited across fork")
}

/// Kernel: the switch survives fork + exec. Here the environment carries it to the new program.
func testPrctlForkExec() throws -> Outcome {
    let client = try connect()
    try client.setMemoryMerge(true)
    let pid = fork()
    if pid == 0 {
        let program = CommandLine.arguments[0]
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup(program), strdup(socketPath), strdup("child-ksm"), nil]
        execv(program, &argv)
        _exit(4)
    }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    try expect(status == 0, "child failed (status \(status))")
    try client.setMemoryMerge(false)
    return .pass("the switch is inherited across fork and exec")
}

/// Kernel: switching PR_SET_MEMORY_MERGE off unmerges.
func testPrctlUnmerge() throws -> Outcome {
    let client = try connect()
    let size = 2 * MiB
    let map = try mmapAndMergeRange(client, value: 0xcf, size: size, mode: .prctl)
    try expect(client.processStatistics().mergingPages > 0, "nothing merged")
    try client.setMemoryMerge(false)
    try expect(!rangeMapsDuplicates(map, size), "pages were not unmerged")
    try expect(client.processStatistics().mergingPages == 0, "ksm_merging_pages not 0")
    return .pass("switching off unmerged the pages")
}

/// Kernel: ksm_merging_pages is not inherited by a forked child.
func testForkMergingPageCount() throws -> Outcome {
    let client = try connect()
    let size = 2 * MiB
    let map = try mmapAndMergeRange(client, value: 0xcf, size: size, mode: .madvise)
    let pid = fork()
    if pid == 0 {
        let merging = client.processStatistics().mergingPages
        let intact = UnsafeRawBufferPointer(start: map, count: size).allSatisfy { $0 == 0xcf }
        _exit(merging == 0 && intact ? 0 : 1)
    }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    try expect(status == 0, "ksm_merging_pages in child not 0, or its memory changed")
    try expect(client.processStatistics().mergingPages == size / pageSize, "the parent lost its merges")
    return .pass("ksm_merging_pages is not inherited after fork")
}
