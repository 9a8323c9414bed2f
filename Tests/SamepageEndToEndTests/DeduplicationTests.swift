import Foundation
import SamepageClient
import SamepageCore
import Testing

/// The store's central promise, shown with real processes: equal pages are stored once.
@Suite(.serialized)
struct DeduplicationTests {
    @Test("two processes put the same 64 MiB: stored once, read back exactly")
    func twoProcessesShareRandomBytes() throws {
        let server = try ServerProcess(regionSize: "1G")
        defer { server.stop() }
        let bytes = randomBytes(64 << 20, seed: 42)
        let file = try writeFile(bytes, in: server.directory, name: "random.bin")

        // Two separate client processes (the CLI), each putting the same file.
        let first = try Command.samepage(["put", file], socket: server.socket)
        let second = try Command.samepage(["put", file], socket: server.socket)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(second.status == 0, "\(second.stderr)")
        let ids = [first.stdout, second.stdout].map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(ids.allSatisfy { ObjectID($0) != nil }, "put prints exactly one id: \(ids)")
        #expect(ids[0] != ids[1], "ids are random, never derived from content")

        let stats = try server.statistics()
        #expect(stats["pages_shared"] == 16384)
        #expect(stats["pages_sharing"] == 16384)
        #expect(stats["pages_unshared"] == 0)
        #expect(stats["region_bytes_used"] == 64 << 20)
        #expect(stats["objects"] == 2)
        #expect(stats["ksm_zero_pages"] == 0)
        #expect(stats["general_profit"]! > (64 << 20) - (4 << 20), "saved 64 MiB minus metadata")

        // The kernel's own count of the region's memory (the memfd's allocated blocks): one
        // copy, not two.
        let regionBytes = server.regionBytesAllocated()
        #expect(regionBytes >= (64 << 20) - (64 << 10) && regionBytes < 72 << 20, "region memfd holds \(regionBytes) bytes")

        // get returns the bytes exactly, for both ids.
        for (index, id) in ids.enumerated() {
            let out = server.directory + "/out\(index).bin"
            let got = try Command.samepage(["get", id, "-o", out], socket: server.socket)
            #expect(got.status == 0, "\(got.stderr)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == Data(bytes))
        }
    }

    @Test("zero pages are never stored; a partial last page reads back exactly")
    func zeroPagesAndOddLengths() throws {
        let server = try ServerProcess(regionSize: "64M")
        defer { server.stop() }
        let client = try server.client()
        var bytes = [UInt8](repeating: 0, count: 10 * 4096 + 123)
        bytes[5 * 4096 + 7] = 1      // one non-zero page among zeros
        bytes[10 * 4096 + 100] = 9   // the partial last page
        let id = try client.put(bytes)
        #expect(try client.get(id) == bytes)
        let stats = try server.statistics()
        #expect(stats["ksm_zero_pages"] == 9)
        #expect(stats["region_bytes_used"] == Int64(2 * 4096))
        #expect(stats["pages_unshared"] == 2)
    }

    @Test("max_page_sharing: past the cap an equal page starts a chain")
    func maxPageSharingChains() throws {
        let server = try ServerProcess(regionSize: "64M", extraArguments: ["--max-page-sharing", "4"])
        defer { server.stop() }
        let client = try server.client()
        let page = randomBytes(4096, seed: 7)
        let bytes = Array([[UInt8]](repeating: page, count: 10).joined())
        let id = try client.put(bytes)
        let stats = try server.statistics()
        // 10 equal pages, at most 4 owners each: copies of 4, 4 and 2 owners.
        #expect(stats["pages_shared"] == 3)
        #expect(stats["pages_sharing"] == 7)
        #expect(stats["stable_node_chains"] == 1)
        #expect(stats["stable_node_dups"] == 3)
        #expect(try client.get(id) == bytes)
        try client.delete(id)
        let after = try server.statistics()
        #expect(after["stable_node_chains"] == 0 && after["stable_node_dups"] == 0 && after["region_bytes_used"] == 0)
    }
}
