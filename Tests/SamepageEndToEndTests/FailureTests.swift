import Foundation
import SamepageClient
import SamepageCore
import Testing

/// Failures the CLI and library must report clearly, losing nothing.
@Suite(.serialized)
struct FailureTests {
    @Test("a put that does not fit fails with 'region full', and nothing else is lost")
    func regionFull() throws {
        let server = try ServerProcess(regionSize: "4M")
        defer { server.stop() }
        let small = randomBytes(1 << 20, seed: 1)
        let smallFile = try writeFile(small, in: server.directory, name: "small.bin")
        let kept = try Command.samepage(["put", smallFile], socket: server.socket)
        #expect(kept.status == 0)

        let big = try writeFile(randomBytes(6 << 20, seed: 2), in: server.directory, name: "big.bin")
        let refused = try Command.samepage(["put", big], socket: server.socket)
        #expect(refused.status != 0)
        #expect(refused.stdout.isEmpty, "no id printed for a failed put")
        #expect(refused.stderr.contains("region full"), "stderr: \(refused.stderr)")

        let stats = try server.statistics()
        #expect(stats["region_bytes_used"] == 1 << 20, "the failed put's pages were released")
        #expect(stats["objects"] == 1)
        let out = server.directory + "/small.out"
        let id = kept.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try Command.samepage(["get", id, "-o", out], socket: server.socket).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == Data(small))

        // Space freed by a delete can be used again.
        #expect(try Command.samepage(["delete", id], socket: server.socket).status == 0)
        let fits = try writeFile(randomBytes(3 << 20, seed: 3), in: server.directory, name: "fits.bin")
        #expect(try Command.samepage(["put", fits], socket: server.socket).status == 0)
    }

    @Test("no server: the CLI says which socket it tried")
    func serverNotRunning() throws {
        let path = "/tmp/samepage-no-such-\(getpid()).sock"
        let result = try Command.samepage(["ping"], socket: path)
        #expect(result.status == 1)
        #expect(result.stderr.contains("not running at \(path)"), "stderr: \(result.stderr)")
    }

    @Test("an unknown id is a clear error, for get and delete")
    func unknownID() throws {
        let server = try ServerProcess(regionSize: "16M")
        defer { server.stop() }
        let id = ObjectID.random().description
        for command in [["get", id], ["delete", id]] {
            let result = try Command.samepage(command, socket: server.socket)
            #expect(result.status == 1)
            #expect(result.stderr.contains("unknown object"), "stderr: \(result.stderr)")
        }
        let malformed = try Command.samepage(["get", "not-an-id"], socket: server.socket)
        #expect(malformed.status != 0)
        #expect(malformed.stderr.contains("not an object id"))
    }

    @Test("SIGTERM stops the server cleanly and removes its socket")
    func stopsOnSigterm() throws {
        let server = try ServerProcess(regionSize: "16M")
        server.process.terminate()
        server.process.waitUntilExit()
        #expect(server.process.terminationStatus == 0)
        #expect(!FileManager.default.fileExists(atPath: server.socket))
        server.stop()
    }

    @Test("a second server on the same socket refuses to start")
    func secondServerRefused() throws {
        let server = try ServerProcess(regionSize: "16M")
        defer { server.stop() }
        let second = try Command.run(Binaries.samepaged, ["--socket", server.socket, "--region-size", "16M"])
        #expect(second.status != 0)
        #expect(try Command.samepage(["ping"], socket: server.socket).status == 0, "the first server still serves")
    }
}

/// The server out of file descriptors: the clients it has go on, new ones wait, and it accepts
/// again as soon as fds come back (no busy loop meanwhile).
@Suite(.serialized)
struct FileDescriptorExhaustionTests {
    @Test("out of fds: existing clients served, new ones accepted once fds are free")
    func exhaustion() throws {
        let server = try ServerProcess(regionSize: "16M", openFiles: 32)
        defer { server.stop() }
        let bystander = try server.client(stagingBytes: 8192)
        let id = try bystander.put(randomBytes(8192, seed: 3))
        // Flood: connections that never say hello, more than the server has fds for.
        var flood: [RawClient] = []
        for _ in 0..<48 { flood.append(try RawClient(socketPath: server.socket)) }
        usleep(300_000)
        try bystander.ping()
        #expect(try bystander.get(id) == randomBytes(8192, seed: 3), "a connected client goes on")
        let cpuBefore = try processCPUSeconds(server.pid)
        usleep(500_000)
        #expect(try processCPUSeconds(server.pid) - cpuBefore < 0.25, "no busy loop while out of fds")
        flood.removeAll()  // closes them: the server gets its fds back
        let deadline = Date().addingTimeInterval(10)
        var late: SamepageClient?
        while late == nil && Date() < deadline {
            late = try? server.client(stagingBytes: 8192)
            if late == nil { usleep(50_000) }
        }
        let newcomer = try #require(late, "a new client is accepted once fds are back")
        try newcomer.ping()
        #expect(server.log().contains("out of file descriptors"))
    }

    func processCPUSeconds(_ pid: Int32) throws -> Double {
        let text = try readProcFile("/proc/\(pid)/stat")
        let fields = text[text.index(after: text.lastIndex(of: ")")!)...].split(separator: " ")
        return (Double(fields[11])! + Double(fields[12])!) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
