import Foundation
import Testing

/// Clients killed with SIGKILL at random points of mixed requests: afterwards every page's
/// references are exactly what objects and live clients hold (the server's own check, `verify`),
/// and no page leaked. CI runs a reduced count; `SAMEPAGE_CRASH_KILLS=1000 scripts/test --filter
/// CrashTests` runs the full one.
@Suite(.serialized)
struct CrashTests {
    static var kills: Int { Int(ProcessInfo.processInfo.environment["SAMEPAGE_CRASH_KILLS"] ?? "") ?? 40 }

    func startChaos(_ server: ServerProcess, seed: Int) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Binaries.probe)
        process.arguments = ["chaos", server.socket, "\(seed)"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        _ = output.fileHandleForReading.readData(ofLength: 8)  // "running"
        return process
    }

    @Test("clients killed at random points of mixed requests leave nothing behind", arguments: [false, true])
    func killStorm(hardened: Bool) throws {
        // Hardened: 1 MiB segments, so that segments empty and are retired all through the storm.
        let server = try ServerProcess(regionSize: "512M", extraArguments: ["--self-check"]
                                       + (hardened ? ["--hardened", "--segment-size", "1M"] : []))
        defer { server.stop() }
        var generator = SystemRandomNumberGenerator()
        var clients = try (0..<4).map { try startChaos(server, seed: $0 + 1) }
        for kill in 0..<Self.kills {
            let victim = kill % clients.count
            usleep(UInt32.random(in: 2_000...60_000, using: &generator))
            Glibc.kill(clients[victim].processIdentifier, SIGKILL)
            clients[victim].waitUntilExit()
            clients[victim] = try startChaos(server, seed: 100 + kill)
            if kill % 10 == 9 {
                // Live clients hold what they hold: the bookkeeping must agree at any moment.
                let check = try Command.samepage(["verify"], socket: server.socket)
                #expect(check.status == 0, "after \(kill + 1) kills: \(check.stderr)")
            }
        }
        for client in clients {
            Glibc.kill(client.processIdentifier, SIGKILL)
            client.waitUntilExit()
        }
        let stats = try server.waitForStatistics { $0["clients"] == 1 }
        #expect(stats["clients"] == 1, "every killed client's connection is gone")
        let check = try Command.samepage(["verify"], socket: server.socket)
        #expect(check.status == 0, "after \(Self.kills) kills: \(check.stderr)")
        #expect(check.stdout == "ok\n")
        // Objects the killed clients committed live on (until deleted); nothing else does.
        #expect(stats["pages_volatile"] == 0)
        if !hardened {
            // (A hardened region gives memory back a segment at a time, when it empties.)
            #expect(server.regionBytesAllocated() < (stats["region_bytes_used"]! + (16 << 20)),
                    "the region holds what objects need, not what killed clients left")
        }
    }

    @Test("verify is refused by a server without --self-check")
    func verifyNeedsSelfCheck() throws {
        let server = try ServerProcess(regionSize: "16M")
        defer { server.stop() }
        let check = try Command.samepage(["verify"], socket: server.socket)
        #expect(check.status == 1 && check.stderr.contains("--self-check"), "\(check.stderr)")
    }
}
