import Foundation
import SamepageClient
import SamepageCore
import Testing

/// The server killed with SIGKILL: what clients hold stays readable and byte-exact (the kernel
/// keeps the region memfd alive), their next call fails clearly, and they reconnect when a
/// server is back.
@Suite(.serialized)
struct ServerRestartTests {
    @Test("object mappings survive the server's death; the client reconnects to a new server")
    func objectsAcrossRestart() throws {
        let server = try ServerProcess(regionSize: "64M")
        let client = try server.client()
        let bytes = randomBytes(4 << 20, seed: 31)
        let id = try client.put(bytes)
        let mapping = try client.map(id)
        server.kill()

        #expect(mapping.bytes.elementsEqual(bytes), "a mapping stays readable and exact after the server died")
        #expect(throws: SamepageError.self) { try client.ping() }
        do {
            try client.ping()
            Issue.record("ping with no server succeeded")
        } catch {
            #expect(error.description.contains("not running"), "\(error)")
        }

        let restarted = try ServerProcess(regionSize: "64M", replacing: server)
        defer { restarted.stop() }
        try client.ping()
        #expect(mapping.bytes.elementsEqual(bytes))
        try mapping.unmap()  // made on the old connection: unmapped here, nothing to tell the new server
        #expect(throws: SamepageError.self) { _ = try client.get(id) }  // the new server never had it
        let again = try client.put(bytes)
        #expect(try client.get(again) == bytes)
    }

    @Test("merged memory survives the server's death and merges again with the new server")
    func mergedMemoryAcrossRestart() throws {
        let server = try ServerProcess(regionSize: "64M")
        let client = try server.client()
        try client.setMergeParameter("run", 0)
        let pages = 256
        let memory = try client.allocate(pages * 4096)
        for page in 0..<pages { PseudoRandomPages.fill(memory + page * 4096, content: UInt64(page % 4), seed: 8) }
        let expected = [UInt8](UnsafeRawBufferPointer(start: memory, count: pages * 4096))
        try client.advise(memory, length: pages * 4096, .mergeable)
        try client.scan(fullScans: 2)
        #expect(client.processStatistics().mergingPages == pages)
        server.kill()

        #expect(UnsafeRawBufferPointer(start: memory, count: pages * 4096).elementsEqual(expected))
        #expect(throws: SamepageError.self) { try client.scan(fullScans: 1) }

        let restarted = try ServerProcess(regionSize: "64M", replacing: server)
        defer { restarted.stop() }
        try client.scan(fullScans: 2)
        #expect(client.processStatistics().mergingPages == pages, "merged again, with the new server's region")
        #expect(UnsafeRawBufferPointer(start: memory, count: pages * 4096).elementsEqual(expected))
        let stats = try restarted.statistics()
        #expect(stats["pages_shared"] == 4 && stats["pages_sharing"] == Int64(pages - 4))
        try client.advise(memory, length: pages * 4096, .unmergeable)
        #expect(UnsafeRawBufferPointer(start: memory, count: pages * 4096).elementsEqual(expected))
        #expect(try restarted.statistics()["region_bytes_used"] == 0)
    }
}
