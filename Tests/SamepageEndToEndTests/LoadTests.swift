import Foundation
import Testing

/// Many client processes at once, each a stream of mixed requests: every one completes, the
/// server's bookkeeping holds, and its own memory stays bounded. CI runs 64 processes x 150
/// requests; `SAMEPAGE_LOAD_OPS=10000 scripts/test --filter LoadTests` runs the full load.
@Suite(.serialized)
struct LoadTests {
    static var operations: Int { Int(ProcessInfo.processInfo.environment["SAMEPAGE_LOAD_OPS"] ?? "") ?? 150 }

    @Test("64 client processes of mixed requests")
    func sixtyFourClients() throws {
        let server = try ServerProcess(regionSize: "1G", extraArguments: ["--self-check"])
        defer { server.stop() }
        var clients: [(Process, Pipe)] = []
        for index in 0..<64 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Binaries.probe)
            process.arguments = ["chaos", server.socket, "\(index + 1)", "\(Self.operations)"]
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            try process.run()
            clients.append((process, output))
        }
        var peakServerRSS = 0
        for (process, output) in clients {
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 0 && text.hasSuffix("done\n"), "\(text)")
            peakServerRSS = max(peakServerRSS, (try? server.statusKilobytes("VmRSS")) ?? 0)
        }
        let stats = try server.waitForStatistics { $0["clients"] == 1 }
        #expect(stats["clients"] == 1)
        let check = try Command.samepage(["verify"], socket: server.socket)
        #expect(check.status == 0, "\(check.stderr)")
        // The server's memory: the region's content plus bookkeeping, not a copy per client.
        let anonymous = try server.statusKilobytes("RssAnon")
        #expect(anonymous < 128 * 1024, "server heap \(anonymous) kB after 64 clients")
        #expect(server.regionBytesAllocated() <= stats["region_bytes_used"]! + (64 << 20))
    }
}
