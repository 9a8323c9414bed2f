import Foundation
import SamepageClient
import SamepageCore
import Testing

/// Mappings: zero-copy, read-only or copy-on-write, and always released.
@Suite(.serialized)
struct MappingTests {
    @Test("a write into a copy-on-write mapping changes neither the store nor another client's mapping")
    func copyOnWriteIsPrivate() throws {
        let server = try ServerProcess(regionSize: "256M")
        defer { server.stop() }
        let client = try server.client()
        let bytes = randomBytes(4 << 20, seed: 3)
        let id = try client.put(bytes)
        // Another client holds a read-only mapping across the write.
        let other = try server.client()
        let watching = try other.map(id)
        #expect(watching.bytes.elementsEqual(bytes))

        // A separate process maps copy-on-write and overwrites every byte.
        let probe = try Command.run(Binaries.probe, ["cow", server.socket, id.description])
        #expect(probe.status == 0, "\(probe.stderr)")
        #expect(probe.stdout.hasPrefix("ok \(bytes.count)"))

        #expect(watching.bytes.elementsEqual(bytes), "the other client's mapping is unchanged")
        #expect(try client.get(id) == bytes, "the store is unchanged")
        try watching.unmap()
    }

    @Test("a mapping in this process is read-only and zero-copy: it maps the region's pages")
    func mappingIsZeroCopy() throws {
        let server = try ServerProcess(regionSize: "64M")
        defer { server.stop() }
        let client = try server.client()
        let bytes = randomBytes(1 << 20, seed: 11)
        let id = try client.put(bytes)
        let a = try client.map(id)
        let b = try client.map(id)
        #expect(a.base != b.base)
        #expect(a.bytes.elementsEqual(b.bytes))
        // One run of contiguous region pages: the whole object is one mapping (one VMA).
        let maps = try readProcFile("/proc/self/maps")
        let address = UInt(bitPattern: a.base)
        let line = maps.split(separator: "\n").first { line in
            let range = line.split(separator: " ")[0].split(separator: "-").map { UInt($0, radix: 16)! }
            return range[0] <= address && address < range[1]
        }
        #expect(line != nil)
        #expect(line?.contains("r--p") == true, "read-only private mapping: \(line ?? "")")
        #expect(line?.contains("memfd:samepage-region") == true, "backed by the region memfd: \(line ?? "")")
        try a.unmap()
        try b.unmap()
    }

    @Test("a client killed with SIGKILL while holding mappings has its references released")
    func killedClientReleasesReferences() throws {
        let server = try ServerProcess(regionSize: "256M")
        defer { server.stop() }
        // Put and delete through the CLI, so that no client of this process stays connected.
        let bytes = randomBytes(8 << 20, seed: 5)
        let put = try Command.samepage(["put", try writeFile(bytes, in: server.directory, name: "held.bin")], socket: server.socket)
        let id = try #require(ObjectID(put.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))

        // A separate process maps the object and waits.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: Binaries.probe)
        holder.arguments = ["hold", server.socket, id.description]
        let input = Pipe(), output = Pipe()
        holder.standardInput = input
        holder.standardOutput = output
        try holder.run()
        let ready = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
        #expect(ready.hasPrefix("ready \(bytes.count)"), "probe said: \(ready)")

        // Deleting the object leaves its pages pinned by the holder's mapping.
        #expect(try Command.samepage(["delete", id.description], socket: server.socket).status == 0)
        #expect(server.regionBytesAllocated() >= 8 << 20, "pinned pages still in memory")
        let pinned = try server.statistics()
        #expect(pinned["objects"] == 0)
        #expect(pinned["region_bytes_used"] == 8 << 20)

        kill(holder.processIdentifier, SIGKILL)
        holder.waitUntilExit()
        let released = try server.waitForStatistics { $0["region_bytes_used"] == 0 }
        #expect(released["region_bytes_used"] == 0, "the killed client's references were released")
        #expect(released["pages_unshared"] == 0 && released["pages_shared"] == 0)
        // The memory went back to the kernel too.
        #expect(server.regionBytesAllocated() < 2 << 20)
    }

    @Test("delete while mapped: the mapping stays readable, the pages go at unmap")
    func deleteWhileMapped() throws {
        let server = try ServerProcess(regionSize: "64M")
        defer { server.stop() }
        let client = try server.client()
        let bytes = randomBytes(256 << 10, seed: 9)
        let id = try client.put(bytes)
        let mapping = try client.map(id)
        try client.delete(id)
        #expect(mapping.bytes.elementsEqual(bytes))
        #expect(throws: SamepageError.self) { _ = try client.map(id) }
        #expect(try server.statistics()["region_bytes_used"] == Int64(bytes.count))
        try mapping.unmap()
        #expect(try server.statistics()["region_bytes_used"] == 0)
    }
}
