import Foundation
import Glibc
import SamepageClient
import Testing

/// `samepaged --hardened` (design.md section 2, docs/security.md): region segments sealed with
/// F_SEAL_FUTURE_WRITE, which a client of the server's own uid cannot write either, and memory
/// given back a whole segment at a time.
@Suite(.serialized)
struct HardenedModeTests {
    /// One attack run of `samepage-probe attack` as this test's own uid.
    private func attack(_ server: ServerProcess, object: String?) throws -> (allowed: [String], refused: [String], output: String) {
        let result = try Command.run(Binaries.probe, ["attack", server.socket] + (object.map { [$0] } ?? []))
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.last == "done", "\(result.stdout)")
        return (lines.filter { $0.hasPrefix("ALLOWED ") }, lines.filter { $0.hasPrefix("refused ") }, result.stdout)
    }

    @Test("hardened: a client of the server's own uid cannot change one byte of the region")
    func sameUIDAttacksFail() throws {
        let server = try ServerProcess(regionSize: "64M", extraArguments: ["--hardened", "--segment-size", "1M"])
        defer { server.stop() }
        let client = try server.client()
        #expect(client.regionFileDescriptor == -1, "a hardened region has no single fd")
        let bytes = randomBytes(3 << 20, seed: 77)
        let id = try client.put(bytes)
        let watching = try client.map(id)
        #expect(watching.bytes.elementsEqual(bytes))

        let (allowed, refused, output) = try attack(server, object: id.description)
        // The owner may make the file writable and reopen it so (that is what the seal is for);
        // nothing written through either fd reaches the region.
        let writes = allowed.filter { !$0.contains("fchmod") && !$0.contains("reopen read-write") }
        #expect(writes.isEmpty, "\(output)")
        #expect(refused.count >= 9, "\(output)")
        #expect(output.contains("private copy written"), "copy-on-write stays allowed, and private")

        #expect(watching.bytes.elementsEqual(bytes), "the victim's mapping is unchanged")
        #expect(try client.get(id) == bytes, "the stored object is unchanged")
        // The server goes on serving: a new object stores and reads back.
        let more = randomBytes(64 << 10, seed: 78)
        #expect(try client.get(try client.put(more)) == more)
        try watching.unmap()
    }

    @Test("without --hardened, a client of the server's own uid can write the region: why --hardened exists")
    func sameUIDCanWriteAnOrdinaryRegion() throws {
        let server = try ServerProcess(regionSize: "64M")
        defer { server.stop() }
        let client = try server.client()
        let bytes = randomBytes(1 << 20, seed: 79)
        let id = try client.put(bytes)
        let (allowed, _, output) = try attack(server, object: nil)
        #expect(allowed.contains { $0.contains("reopened: write") || $0.contains("reopened: mmap shared writable") }, "\(output)")
        #expect(try client.get(id) != bytes, "the attack changed stored bytes: a same-uid client is trusted without --hardened")
    }

    @Test("hardened: a segment's memory goes back to the kernel once its last page is freed")
    func segmentsAreFreedWhole() throws {
        let server = try ServerProcess(regionSize: "64M", extraArguments: ["--hardened", "--segment-size", "1M"])
        defer { server.stop() }
        let heldBefore = regionMemfds()
        let client = try server.client()
        let bytes = randomBytes(8 << 20, seed: 80)
        let id = try client.put(bytes)
        #expect(server.regionBytesAllocated() >= 8 << 20)
        let mapping = try client.map(id)
        #expect(mapping.bytes.elementsEqual(bytes))
        let held = regionMemfds().subtracting(heldBefore)
        #expect(held.count >= 8, "the client was sent the fd of each segment it maps")
        #expect(allocatedBytes(held) >= 8 << 20)

        try mapping.unmap()
        try client.delete(id)
        try client.ping()
        let stats = try server.statistics()
        #expect(stats["region_bytes_used"] == 0)
        #expect(regionMemfds().intersection(held).isEmpty, "retired segments' fds are dropped by the client")
        #expect(server.regionBytesAllocated() == 0, "the server's retired segments are gone, their successors empty")

        // The fresh segments serve new objects as before.
        let again = randomBytes(2 << 20, seed: 81)
        let second = try client.put(again)
        let view = try client.map(second)
        #expect(view.bytes.elementsEqual(again))
        try view.unmap()
    }

    @Test("hardened: merging across segment boundaries keeps every byte while writers race the scanner")
    func mergingWorksOnSegments() throws {
        let server = try ServerProcess(regionSize: "256M", extraArguments: ["--hardened", "--segment-size", "1M"])
        defer { server.stop() }
        let result = try Command.run(Binaries.probe, ["stress", server.socket, "4096", "2", "2000"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.hasPrefix("ok bad_pages=0"), "\(result.stdout)")
        #expect((reportField(result.stdout, "most_merged") ?? 0) > 0, "\(result.stdout)")
        let stats = try server.waitForStatistics { $0["region_bytes_used"] == 0 }
        #expect(stats["region_bytes_used"] == 0)
    }

    @Test("--segment-size must be whole pages")
    func badSegmentSize() throws {
        let result = try Command.run(Binaries.samepaged, ["--hardened", "--segment-size", "1000", "--socket", "/nonexistent/x.sock"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("--segment-size"), "\(result.stderr)")
    }
}

/// The fds of this process that are region segment memfds.
private func regionMemfds() -> Set<Int32> {
    var found: Set<Int32> = []
    for fd in Int32(3)..<Int32(4096) {
        var target = [UInt8](repeating: 0, count: 256)
        let n = readlink("/proc/self/fd/\(fd)", &target, target.count - 1)
        if n > 0, String(decoding: target[0..<max(0, n)], as: UTF8.self).hasPrefix("/memfd:samepage-region-") { found.insert(fd) }
    }
    return found
}

/// Memory the files behind these fds hold (st_blocks).
private func allocatedBytes(_ fds: Set<Int32>) -> Int {
    fds.reduce(0) { total, fd in
        var st = stat()
        return fstat(fd, &st) == 0 ? total + Int(st.st_blocks) * 512 : total
    }
}
