import Glibc
import SamepageClient
import SamepageSystem

/// Samepage: the scanner thread, set to full speed, rests after full scans that changed nothing
/// (`idle_rest_millisecs`): a process at rest costs a few scans a second instead of a core, and a
/// write during the rest is still seen and merged. Without the rest it scans flat out.
func testIdleRest() throws -> Outcome {
    let client = try connect()
    let pages = 256, equal = 192
    let map = try Syscall.mmap(nil, pages * pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    func fill(_ page: Int, _ value: UInt64) {
        for word in 0..<512 { (map + page * pageSize + word * 8).storeBytes(of: value, as: UInt64.self) }
    }
    // Pages 0..<192 equal, the rest unique.
    for page in 0..<pages { fill(page, page < equal ? 0x61 : UInt64(page) << 8) }
    try client.advise(map, length: pages * pageSize, .mergeable)
    try client.setMergeParameter("pages_to_scan", 100_000)
    try client.setMergeParameter("sleep_millisecs", 0)
    try client.setMergeParameter("idle_rest_millisecs", 100)
    try client.setMergeParameter("run", 1)
    defer { try? client.setMergeParameter("run", 0) }

    func waitForMerging(_ expected: Int) throws {
        let deadline = ContinuousClock.now + .seconds(5)
        while client.processStatistics().mergingPages != expected && ContinuousClock.now < deadline { usleep(5_000) }
        let merging = client.processStatistics().mergingPages
        try expect(merging == expected, "merging pages \(merging), expected \(expected) within 5 s")
    }
    /// Full scans the thread makes in `seconds`.
    func scans(in seconds: Double) -> Int {
        let before = client.processStatistics().fullScans
        usleep(UInt32(seconds * 1e6))
        return client.processStatistics().fullScans - before
    }

    try waitForMerging(equal)
    // At rest: the rests grow to 100 ms within 7 idle scans, so about 10 scans a second.
    _ = scans(in: 0.3)
    let resting = scans(in: 1)
    try expect(resting >= 3 && resting <= 40, "\(resting) full scans in a second at rest, expected about 10")
    // A write while it rests: a unique page made equal to the others merges.
    fill(equal, 0x61)
    try waitForMerging(equal + 1)
    // Without the rest, the same process at rest is scanned flat out.
    try client.setMergeParameter("idle_rest_millisecs", 0)
    let busy = Int(Double(scans(in: 0.5)) * 2)
    try expect(busy >= 5 * max(resting, 1), "\(busy) full scans a second without the rest, \(resting) with it")
    try client.setMergeParameter("run", 0)
    for page in 0..<pages {
        let expected: UInt64 = page <= equal ? 0x61 : UInt64(page) << 8
        try expect((map + page * pageSize + 4088).load(as: UInt64.self) == expected, "page \(page) changed")
    }
    try client.advise(map, length: pages * pageSize, .unmergeable)
    return .pass("\(resting) full scans a second at rest, \(busy) without the rest; a write during the rest merged")
}
