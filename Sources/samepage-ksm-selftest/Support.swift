import CSamepageShim
import Glibc
import SamepageClient
import SamepageCore
import SamepageSystem

enum Outcome {
    case pass(String)
    case skip(String)
}

struct Failure: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

func expect(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw Failure(message()) }
}

let pageSize = 4096
let MiB = 1 << 20

/// A client with the background scanner off: cases scan synchronously, as the kernel's tests
/// wait for full_scans.
func connect() throws -> SamepageClient {
    let client = try SamepageClient(socketPath: socketPath, name: "ksm-selftest")
    try client.setMergeParameter("run", 0)
    for assignment in parameterArguments { try client.setMergeParameter(assignment) }
    return client
}

enum MergeMode {
    /// madvise(MADV_MERGEABLE)
    case madvise
    /// prctl(PR_SET_MEMORY_MERGE): the process-wide switch, memory from the library allocator
    case prctl
    /// the switch is already on
    case none
}

/// The kernel's mmap_and_merge_range(): map `size` bytes of `value`, set `prot`, make them
/// mergeable, scan twice, and check that something merged (zero pages aside).
func mmapAndMergeRange(_ client: SamepageClient, value: UInt8, size: Int, prot: Int32 = PROT_READ | PROT_WRITE,
                       mode: MergeMode) throws -> UnsafeMutableRawPointer {
    let map: UnsafeMutableRawPointer
    switch mode {
    case .madvise:
        map = try Syscall.mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    case .prctl, .none:
        map = try client.allocate(size)
    }
    memset(map, Int32(value), size)
    try Syscall.mprotect(map, size, prot)
    switch mode {
    case .madvise: try client.advise(map, length: size, .mergeable)
    case .prctl: try client.setMemoryMerge(true)
    case .none: break
    }
    try client.scan(fullScans: 2)
    return map
}

/// The kernel's range_maps_duplicates(), for Samepage: a merged page maps the region memfd
/// (pagemap bit 61, file page); an unmerged one is private anonymous memory. As root, PFNs are
/// visible too, and no two pages of the range may share one.
func rangeMapsDuplicates(_ address: UnsafeMutableRawPointer, _ size: Int) -> Bool {
    let fd = open("/proc/self/pagemap", O_RDONLY)
    defer { close(fd) }
    var entries = [UInt64](repeating: 0, count: size / pageSize)
    _ = entries.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(UInt(bitPattern: address) / 4096 * 8)) }
    var pfns: Set<UInt64> = []
    for entry in entries where entry & (1 << 63) != 0 {
        if entry & (1 << 61) != 0 { return true }
        let pfn = entry & ((1 << 55) - 1)
        if pfn != 0 && !pfns.insert(pfn).inserted { return true }
    }
    return false
}

/// The server's statistics for this domain.
func serverStatistics(_ client: SamepageClient) throws -> [String: Int64] {
    Dictionary(uniqueKeysWithValues: try client.statistics().map { ($0.name, $0.value) })
}

/// KSM's count rule for N equal pages under max_page_sharing M (ksm_tests.c,
/// assert_ksm_pages_count): a leftover single page cannot merge.
func expectedCounts(duplicates n: Int, maxPageSharing m: Int) -> (shared: Int, sharing: Int) {
    if n % m == 1 || n % m == 0 {
        let shared = n / m
        return (shared, shared * (m - 1))
    }
    let shared = n / m + 1
    return (shared, n - shared)
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    var start = timespec(), end = timespec()
    clock_gettime(CLOCK_MONOTONIC, &start)
    try body()
    clock_gettime(CLOCK_MONOTONIC, &end)
    return Double(end.tv_sec - start.tv_sec) + Double(end.tv_nsec - start.tv_nsec) / 1e9
}

/// `value` with `digits` decimals (no Foundation here).
func fixed(_ value: Double, _ digits: Int = 2) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    var text = String(rounded)
    if let dot = text.firstIndex(of: ".") {
        let decimals = text.distance(from: dot, to: text.endIndex) - 1
        if decimals < digits { text += String(repeating: "0", count: digits - decimals) }
        if digits == 0 { text = String(text[..<dot]) }
    }
    return text
}
