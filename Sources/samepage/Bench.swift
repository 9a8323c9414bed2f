import ArgumentParser
import Foundation
import SamepageClient
import SamepageCore
import SamepageSystem

/// `samepage bench`: throughput measured as ratios to baselines taken in the same run.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure Samepage against baselines and the kernel's KSM, in the same run.",
        discussion: """
            Workloads:
              runs       --procs processes of --mib MiB each; --shared percent of
                         each is the same real files, loaded in the same order in
                         every process (the toolchain's shared libraries, or
                         --files DIR); the rest unique
              scattered  the shared pages are drawn at random from a pool: every
                         merge its own mapping
              zeros      every page zero (use_zero_pages on, for both)
              churn      every page rewritten all the time: nothing should merge;
                         measures the overhead
              put        the object store: put --size of distinct bytes, then the
                         same bytes again, from ordinary memory (through staging)
                         and from a shared buffer (in place)

            The merge workloads run Samepage (each process's scanner thread at full
            speed: pages_to_scan=100000, sleep_millisecs=0), then the kernel's KSM
            on the same workload (full speed likewise; and,
            unless --no-ksm-defaults, its defaults 100/20) when /sys/kernel/mm/ksm
            is writable (root); every KSM tunable is put back afterwards, also on
            Ctrl-C. Figures: time to converge (to 99% of the final savings), CPU
            seconds (clients and server, or ksmd), memory saved by the counters and
            by the kernel's Pss of every process and the server, and that Pss net
            of bookkeeping no Pss shows (the kernel's rmap items, by its own
            general_profit; Samepage's is in the server's Pss), mappings added per
            process.

            Baselines measured in the same run: memcpy and memcmp bandwidth, a raw
            AF_UNIX round trip, and the least work for the workload's data on this
            machine (hash every page once, write each repeated content once into
            fresh shared memory, compare every other copy with it, map it over
            them): no deduplicator that maps shared pages can do less.

            Without --socket, a samepaged from the same directory as this binary is
            started on a temporary socket and stopped afterwards.

            Examples:
              samepage bench --workload runs --procs 4 --mib 128 --shared 90
              samepage bench --workload scattered --json --plot scattered.svg
              samepage bench --workload put --size 1G
            """)

    enum Workload: String, ExpressibleByArgument, CaseIterable {
        case put, runs, scattered, zeros, churn
    }

    @Option(help: "The workload: \(Workload.allCases.map(\.rawValue).joined(separator: ", ")).")
    var workload: Workload = .runs

    @Option(help: "Merge workloads: processes.") var procs: Int = 4
    @Option(help: "Merge workloads: MiB of memory per process.") var mib: Int = 128
    @Option(help: "Merge workloads: percent of each process's pages shared with the others.") var shared: Int = 90
    @Option(help: ArgumentHelp("runs: load every file of this directory (default: the toolchain's shared libraries).", valueName: "directory"))
    var files: String?
    @Option(help: "churn: seconds to run.") var seconds: Double = 3
    @Option(help: "Give up on an engine that has not converged after this many seconds.") var timeout: Double = 300
    @Option(name: .customLong("set"), help: ArgumentHelp("Samepage's scan knobs, by KSM's names (smart_scan=0, use_zero_pages=1; Samepage's own track_writes=0, unmap_stretches=1, idle_rest_millisecs=0); repeatable.", valueName: "name=value"))
    var parameters: [String] = []
    @Flag(help: "Skip the kernel's KSM at its default settings (slow: about a minute for 4 x 128 MiB).")
    var noKsmDefaults = false
    @Flag(help: "Skip the kernel's KSM altogether.") var noKsm = false
    @Option(help: "Write an SVG plot of MiB saved over time to this file.") var plot: String?

    @Option(help: "put: bytes to put (e.g. 256M, 1G).") var size: String = "1G"
    @Option(help: "put: rounds; the best round is reported (this VM's first-touch cost varies).") var rounds: Int = 3

    @Option(help: "Use a running samepaged at this socket instead of starting one.")
    var socket: String?

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func validate() throws {
        guard let bytes = ByteSize.parse(size), bytes >= UInt64(Page.size) else { throw ValidationError("--size '\(size)' is not a size") }
        guard bytes <= 64 << 30 else { throw ValidationError("--size is at most 64G") }
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
        guard procs >= 1 && procs <= 256 else { throw ValidationError("--procs must be 1 to 256") }
        guard mib >= 1 && mib <= 64 << 10 else { throw ValidationError("--mib must be 1 to 65536") }
        guard shared >= 0 && shared <= 100 else { throw ValidationError("--shared is a percentage") }
        if workload == .runs {
            do { _ = try SharedFiles.forRuns(files) } catch { throw ValidationError("\(error)") }
        }
        for assignment in parameters {
            var check = MergeParameters()
            guard let (name, value) = try? MergeParameters.parse(assignment), check.set(name, value) else {
                throw ValidationError("--set \(assignment): not name=value with a known name and a good value")
            }
        }
    }

    func run() throws {
        let bytes = Int(ByteSize.parse(size)!)
        let regionBytes = workload == .put ? UInt64(bytes) * 2 + (64 << 20) : UInt64(procs * mib + 64) << 20
        let spawned = try socket == nil ? SpawnedServer(regionBytes: regionBytes) : nil
        defer { spawned?.stop() }
        let path = socket ?? spawned!.socket
        if workload == .put {
            let results = try PutBenchmark(bytes: bytes, rounds: rounds, socketPath: path).run()
            if json {
                print("{" + results.map { "\"\($0.name)\": \(String(format: "%.3f", $0.gigabytesPerSecond))" }.joined(separator: ", ") + "}")
            } else {
                print(BenchTable.render(results, title: "put of \(ByteSize.format(UInt64(bytes))), best of \(rounds) rounds"))
            }
            return
        }
        let layout = MergeLayout(rawValue: workload.rawValue)!
        let progress = Progress()
        var baselines = try Baselines.measure(socketPath: path)
        // The least work for the workload, on the same data: what bounds any engine's figures.
        var floor: MergeFloor?
        if layout != .churn && procs * mib << 20 <= MergeFloor.maxBytes {
            let fill = try WorkloadFill(layout: layout, sharedPercent: shared, filesIn: files)
            floor = try MergeFloor.measure(fill, processes: procs, mib: mib, zeroPages: layout == .zeros)
            baselines.figures.merge(floor!.figures) { $1 }
        }
        var base = MergeBenchmark(name: "samepage", layout: layout, engine: .samepage, processes: procs, mib: mib,
                                  sharedPercent: shared, socketPath: path, serverPID: spawned?.process.processIdentifier,
                                  churnSeconds: seconds, timeout: timeout, progress: progress, parameters: parameters, files: files)
        var results = [try base.run()]
        var note: String?
        if noKsm {
            note = "the kernel's KSM was not run (--no-ksm)"
        } else if let reason = KernelKSM.unavailableReason() {
            note = "the kernel's KSM was not run: \(reason)"
        } else {
            let ksm = try KernelKSM()
            let restorer = SignalRestorer(ksm)
            defer {
                ksm.restore()
                restorer.cancel()
            }
            try ksm.set("run", "2")  // unmerge whatever is merged, so max_page_sharing can be set
            try ksm.set("max_page_sharing", "256")
            try ksm.set("smart_scan", "1")
            base.engine = .ksm
            base.serverPID = nil
            base.ksm = ksm
            base.name = "ksm full speed"
            results.append(try base.run())
            if !noKsmDefaults {
                base.name = "ksm defaults"
                base.ksmPagesToScan = 100
                base.ksmSleepMilliseconds = 20
                results.append(try base.run())
            }
        }
        let title = "\(workload.rawValue): \(procs) processes x \(mib) MiB, \(shared)% shared"
        if let plot {
            try SavingsPlot.svg(results, title: title).write(toFile: plot, atomically: true, encoding: .utf8)
        }
        if json {
            print(MergeTable.json(results, baselines: baselines.figures, note: note))
        } else {
            print(MergeTable.render(results, title: title, note: note, floor: floor))
            print("")
            print(baselines.summary)
        }
    }
}

/// Puts the kernel's KSM tunables back when the benchmark is interrupted (Ctrl-C, SIGTERM).
final class SignalRestorer: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []

    init(_ ksm: KernelKSM) {
        for signo in [SIGINT, SIGTERM] {
            signal(signo, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signo, queue: .global())
            source.setEventHandler {
                ksm.restore()
                FileHandle.standardError.write(Data("\nsamepage bench: interrupted; KSM tunables restored\n".utf8))
                exit(130)
            }
            source.resume()
            sources.append(source)
        }
    }

    func cancel() {
        for source in sources { source.cancel() }
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
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
        let width = (results.map(\.name.count).max() ?? 30) + 2
        var lines = [title, "", "what".padding(to: width) + "GB/s".padding(to: 9) + "ratio"]
        for r in results {
            var line = r.name.padding(to: width) + String(format: "%-9.2f", r.gigabytesPerSecond)
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
        // The same bytes, already in a shared buffer (as a producer that writes its object in
        // place has them): a put of it reads the pages where they are, no copy into staging.
        let buffer = try client.makeBuffer(length: bytes)
        memcpy(buffer.bytes.baseAddress!, source.base, bytes)
        for _ in 0..<rounds {
            // Baselines: memcpy into never-touched memory (what a store that copies pays), into
            // warm memory, and memcmp (what recognising a duplicate must at least cost).
            let fresh = try MemoryMapping(anonymousLength: bytes, writable: true)
            record("memcpy into fresh memory", time { memcpy(fresh.base, source.base, bytes) })
            // The kind of memory a region is: a memfd's pages (shmem), whose first touch costs
            // more than anonymous memory's (page cache, accounting, clearing).
            do {
                let memfd = try Memfd.create(name: "bench-fresh", size: UInt64(bytes), seals: [])
                let shared = try MemoryMapping(fd: memfd.rawValue, length: bytes, writable: true, shared: true)
                record("memcpy into a fresh memfd", time { memcpy(shared.base, source.base, bytes) })
            }
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

            record("put distinct from a shared buffer", try time { id = try client.put(buffer) })
            record("put duplicate from a shared buffer", try time { duplicate = try client.put(buffer) })
            try client.delete(duplicate)
            try client.delete(id)
        }
        return [
            BenchResult(name: "memcpy into fresh memory", seconds: best["memcpy into fresh memory"]!, bytes: bytes),
            BenchResult(name: "memcpy into warm memory", seconds: best["memcpy into warm memory"]!, bytes: bytes),
            BenchResult(name: "memcmp", seconds: best["memcmp"]!, bytes: bytes),
            BenchResult(name: "memcpy into a fresh memfd", seconds: best["memcpy into a fresh memfd"]!, bytes: bytes),
            BenchResult(name: "put distinct", seconds: best["put distinct"]!, bytes: bytes, baseline: "memcpy into fresh memory"),
            BenchResult(name: "put distinct, against a memfd", seconds: best["put distinct"]!, bytes: bytes,
                        baseline: "memcpy into a fresh memfd"),
            BenchResult(name: "put duplicate", seconds: best["put duplicate"]!, bytes: bytes, baseline: "memcmp"),
            BenchResult(name: "put distinct from a shared buffer", seconds: best["put distinct from a shared buffer"]!, bytes: bytes,
                        baseline: "memcpy into fresh memory"),
            BenchResult(name: "put duplicate from a shared buffer", seconds: best["put duplicate from a shared buffer"]!, bytes: bytes,
                        baseline: "memcmp"),
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
