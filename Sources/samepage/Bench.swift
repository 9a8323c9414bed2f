import ArgumentParser
import Foundation
import SamepageClient
import SamepageCore
import SamepageSystem

/// `samepage bench`: throughput measured as ratios to baselines taken in the same run.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure Samepage against baselines measured in the same run.",
        discussion: """
            Workloads:
              put   put SIZE of distinct bytes, then the same bytes again (all duplicates), from
                    this process's memory; compared with memcpy into fresh and into warm memory
                    and with memcmp, measured in the same run.
              runs  --procs processes each fill --mib MiB of private memory, --shared percent of
                    it the same pages in the same order in every process, mark it mergeable and
                    scan until nothing more merges: time to converge, CPU, memory saved (from the
                    counters and from the kernel's Pss), mappings added per process.

            Without --socket, a samepaged from the same directory as this binary is started on a
            temporary socket (region sized to fit) and stopped afterwards.

            Example:
              samepage bench --workload put --size 1G
            """)

    enum Workload: String, ExpressibleByArgument, CaseIterable {
        case put
        case runs
    }

    @Option(help: "The workload: \(Workload.allCases.map(\.rawValue).joined(separator: ", ")).")
    var workload: Workload = .put

    @Option(help: "Bytes to put (e.g. 256M, 1G).")
    var size: String = "1G"

    @Option(help: "Rounds; the best round is reported (this VM's first-touch cost varies).")
    var rounds: Int = 3

    @Option(help: "runs: processes.") var procs: Int = 4
    @Option(help: "runs: MiB of memory per process.") var mib: Int = 128
    @Option(help: "runs: percent of each process's pages shared with the others.") var shared: Int = 90

    @Option(help: "Use a running samepaged at this socket instead of starting one.")
    var socket: String?

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func validate() throws {
        guard let bytes = ByteSize.parse(size), bytes >= UInt64(Page.size) else { throw ValidationError("--size '\(size)' is not a size") }
        guard bytes <= 64 << 30 else { throw ValidationError("--size is at most 64G") }
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
    }

    func run() throws {
        let bytes = Int(ByteSize.parse(size)!)
        let regionBytes = workload == .put ? UInt64(bytes) * 2 + (64 << 20) : UInt64(procs * mib) << 20
        let spawned = try socket == nil ? SpawnedServer(regionBytes: regionBytes) : nil
        defer { spawned?.stop() }
        let path = socket ?? spawned!.socket
        switch workload {
        case .put:
            let results = try PutBenchmark(bytes: bytes, rounds: rounds, socketPath: path).run()
            if json {
                print("{" + results.map { "\"\($0.name)\": \(String(format: "%.3f", $0.gigabytesPerSecond))" }.joined(separator: ", ") + "}")
            } else {
                print(BenchTable.render(results, title: "put of \(ByteSize.format(UInt64(bytes))), best of \(rounds) rounds"))
            }
        case .runs:
            let r = try RunsBenchmark(processes: procs, mib: mib, sharedPercent: shared, socketPath: path,
                                      serverPID: spawned?.process.processIdentifier).run()
            let figures: [(String, String)] = [
                ("time to converge (99% of savings), s", String(format: "%.2f", r.convergeSeconds)),
                ("wall time until all processes converged, s", String(format: "%.2f", r.wallSeconds)),
                ("CPU, clients, s", String(format: "%.2f", r.clientCPUSeconds)),
                ("CPU, server, s", String(format: "%.2f", r.serverCPUSeconds)),
                ("saved, by the counters, MiB", String(format: "%.1f", r.savedByCounters / 1048576)),
                ("saved, by the kernel (sum of Pss), MiB", String(format: "%.1f", r.savedByPss / 1048576)),
                ("mappings added per process", r.vmasAdded.map(String.init).joined(separator: " ")),
                ("full scans per process", r.scans.map(String.init).joined(separator: " ")),
            ]
            if json {
                print("{" + figures.map { "\"\($0.0)\": \"\($0.1)\"" }.joined(separator: ", ") + "}")
            } else {
                print("runs: \(procs) processes x \(mib) MiB, \(shared)% shared\n")
                for (name, value) in figures { print(name.padding(to: 46) + value) }
            }
        }
    }
}

/// One measured figure.
struct BenchResult {
    var name: String
    var seconds: Double
    var bytes: Int
    /// The figure this one is compared with, by name.
    var baseline: String?

    var gigabytesPerSecond: Double { Double(bytes) / seconds / 1e9 }
}

enum BenchTable {
    static func render(_ results: [BenchResult], title: String) -> String {
        var lines = [title, "", "what".padding(to: 34) + "GB/s".padding(to: 9) + "ratio"]
        for r in results {
            var line = r.name.padding(to: 34) + String(format: "%-9.2f", r.gigabytesPerSecond)
            if let base = r.baseline, let b = results.first(where: { $0.name == base }) {
                line += String(format: "%.2f of %@", r.gigabytesPerSecond / b.gigabytesPerSecond, base)
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}

/// The put workload: the client's bytes are already in memory (touched), as an application's are.
struct PutBenchmark {
    var bytes: Int
    var rounds: Int
    var socketPath: String

    func run() throws -> [BenchResult] {
        let client = try SamepageClient(socketPath: socketPath, name: "samepage-bench")
        let source = try MemoryMapping(anonymousLength: bytes, writable: true)
        fillRandom(source.bytes)
        var best: [String: Double] = [:]
        func record(_ name: String, _ seconds: Double) { best[name] = min(best[name] ?? .infinity, seconds) }
        for _ in 0..<rounds {
            // Baselines: memcpy into never-touched memory (what a store that copies pays), into
            // warm memory, and memcmp (what recognising a duplicate must at least cost).
            let fresh = try MemoryMapping(anonymousLength: bytes, writable: true)
            record("memcpy into fresh memory", time { memcpy(fresh.base, source.base, bytes) })
            record("memcpy into warm memory", time { memcpy(fresh.base, source.base, bytes) })
            var equal = true
            record("memcmp", time { equal = memcmp(fresh.base, source.base, bytes) == 0 })
            precondition(equal)

            var id = ObjectID(high: 0, low: 0)
            record("put distinct", try time { id = try client.put(UnsafeRawBufferPointer(source.bytes)) })
            var duplicate = ObjectID(high: 0, low: 0)
            record("put duplicate", try time { duplicate = try client.put(UnsafeRawBufferPointer(source.bytes)) })
            try client.delete(duplicate)
            try client.delete(id)
        }
        return [
            BenchResult(name: "memcpy into fresh memory", seconds: best["memcpy into fresh memory"]!, bytes: bytes),
            BenchResult(name: "memcpy into warm memory", seconds: best["memcpy into warm memory"]!, bytes: bytes),
            BenchResult(name: "memcmp", seconds: best["memcmp"]!, bytes: bytes),
            BenchResult(name: "put distinct", seconds: best["put distinct"]!, bytes: bytes, baseline: "memcpy into fresh memory"),
            BenchResult(name: "put duplicate", seconds: best["put duplicate"]!, bytes: bytes, baseline: "memcmp"),
        ]
    }

    private func fillRandom(_ buffer: UnsafeMutableRawBufferPointer) {
        PseudoRandomPages.fill(buffer, seed: 0x1234_5678)
    }
}

func time(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

/// A samepaged started for a benchmark, from the directory this binary is in.
final class SpawnedServer {
    let socket: String
    let process = Process()

    init(regionBytes: UInt64) throws {
        let directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        let server = directory.appendingPathComponent("samepaged")
        guard FileManager.default.isExecutableFile(atPath: server.path) else {
            throw ValidationError("no samepaged next to samepage (\(server.path)); pass --socket of a running server")
        }
        socket = NSTemporaryDirectory() + "samepage-bench-\(getpid()).sock"
        process.executableURL = server
        process.arguments = ["--socket", socket, "--region-size", "\(regionBytes / 4096 * 4096)", "--log-level", "warning"]
        try process.run()
        for _ in 0..<500 {
            if (try? SamepageClient(socketPath: socket, stagingBytes: 8192)) != nil { return }
            usleep(10_000)
        }
        stop()
        throw ValidationError("samepaged did not start")
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }
}
