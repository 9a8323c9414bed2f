import Glibc
import SamepageClient
import SamepageSystem

/// Samepage: a buffer the application rewrites all the time (every 20 ms here) is left unarmed
/// in rests of up to a second (MergeEngine.restIfHot), so that its writes stop taking a fault
/// each (at full speed, nearly every write did); once the writes stop it merges within a few
/// seconds. With checksums (track_writes=0, or a kernel that cannot track writes) no write
/// faults at all, and the same merges.
func testHotSlices() throws -> Outcome {
    let client = try connect()
    let pages = 2048, half = pages / 2
    let map = try Syscall.mmap(nil, pages * pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    func fill(_ page: Int, _ value: UInt64) {
        for word in 0..<512 { (map + page * pageSize + word * 8).storeBytes(of: value &+ UInt64(word), as: UInt64.self) }
    }
    for page in 0..<pages { fill(page, UInt64(page + 1) << 20) }
    try client.advise(map, length: pages * pageSize, .mergeable)
    try client.setMergeParameter("pages_to_scan", 100_000)
    try client.setMergeParameter("sleep_millisecs", 0)
    try client.setMergeParameter("run", 1)
    defer { try? client.setMergeParameter("run", 0) }
    _ = try client.scan(fullScans: 1)
    let tracking = client.processStatistics().writeTracking

    // The writer: word 0 of every page, every 20 ms, until told to stop.
    final class Writer: @unchecked Sendable {
        let lock = Lock()
        var stopping = false, stopped = false
        var stop: Bool { lock.withLock { stopping } }
    }
    let writer = Writer()
    let address = UInt(bitPattern: map)
    try NamedThread.start(name: "hot-writer") {
        let base = UnsafeMutableRawPointer(bitPattern: address)!
        var round: UInt64 = 0
        while !writer.stop {
            round += 1
            for page in 0..<pages { (base + page * pageSize).storeBytes(of: round << 32 | UInt64(page), as: UInt64.self) }
            usleep(20_000)
        }
        writer.lock.withLock { writer.stopped = true }
    }
    /// Page faults the process takes in `seconds`, and the rounds of writes meanwhile.
    func faults(in seconds: Double) -> Int {
        let before = Syscall.pageFaults()
        usleep(UInt32(seconds * 1e6))
        return Int(Syscall.pageFaults() - before)
    }
    // Before the slices rest (the first 200 ms of writes) nearly every write faults; after
    // 2.5 s the rests are a second long.
    let early = faults(in: 0.2)
    usleep(2_300_000)
    let late = faults(in: 1)
    writer.lock.withLock { writer.stopping = true }
    while !writer.lock.withLock({ writer.stopped }) { usleep(1_000) }
    let writesPerSecond = pages * 50
    try expect(late * 8 < writesPerSecond, "\(late) page faults in a second of \(writesPerSecond) writes (\(early) in the first 0.2 s)")

    // The writes stop; pages 0..<half and half..<pages are made equal in pairs: they merge once
    // the slices wake and are seen still.
    for page in 0..<half { fill(page + half, UInt64(page + 1) << 20) }
    for page in 0..<half { (map + page * pageSize).storeBytes(of: UInt64(page + 1) << 20, as: UInt64.self) }
    for page in 0..<half { (map + (page + half) * pageSize).storeBytes(of: UInt64(page + 1) << 20, as: UInt64.self) }
    let deadline = ContinuousClock.now + .seconds(8)
    while client.processStatistics().mergingPages < pages && ContinuousClock.now < deadline { usleep(10_000) }
    let merging = client.processStatistics().mergingPages
    try expect(merging == pages, "merging pages \(merging) of \(pages) within 8 s after the writes stopped")
    try client.setMergeParameter("run", 0)
    for page in 0..<pages {
        let value = UInt64(page % half + 1) << 20
        try expect((map + page * pageSize).load(as: UInt64.self) == value && (map + page * pageSize + 8).load(as: UInt64.self) == value + 1,
                   "page \(page) changed")
    }
    try client.advise(map, length: pages * pageSize, .unmergeable)
    return .pass((tracking ? "write tracking: " : "checksums: ") + "\(early) page faults in the first 0.2 s of writes, \(late) in a second after 2.5 s (\(writesPerSecond) writes a second); merged \(merging) pages after the writes stopped")
}
