import ArgumentParser
import Foundation
import SamepageClient
import SamepageCore
import SamepageSystem

/// How the workers' memory is filled.
enum MergeLayout: String, ExpressibleByArgument, CaseIterable {
    /// `shared` percent of each process's pages are the same real files loaded in the same order
    /// in every process (the toolchain's shared libraries, or a directory's files); the rest
    /// unique.
    case runs
    /// The shared pages are drawn at random from a pool (an eighth of the shared pages), so equal
    /// pages sit at unrelated addresses: every merge is its own run.
    case scattered
    /// Every page is zero (use_zero_pages on, for both).
    case zeros
    /// Pages rewritten all the time by a thread in each process: nothing should merge; this
    /// measures the overhead.
    case churn
}

enum MergeEngineKind: String, ExpressibleByArgument {
    case samepage
    case ksm
}

/// One run of a merge workload with one engine: N worker processes, their memory filled, made
/// mergeable, and merged until nothing more merges.
struct MergeBenchmark {
    var name: String
    var layout: MergeLayout
    var engine: MergeEngineKind
    var processes: Int
    var mib: Int
    var sharedPercent: Int
    var socketPath: String
    var serverPID: Int32?
    /// KSM only: pages_to_scan and sleep_millisecs.
    var ksmPagesToScan = 100_000
    var ksmSleepMilliseconds = 0
    var ksm: KernelKSM?
    var churnSeconds = 3.0
    var timeout = 300.0
    var progress: Progress?
    /// Samepage only: merge parameters, name=value.
    var parameters: [String] = []
    /// runs: the directory of files every process loads (nil: the toolchain's shared libraries).
    var files: String?

    struct Result {
        var name: String
        var convergeSeconds: Double
        var wallSeconds: Double
        var cpuSeconds: Double
        var clientCPUSeconds: Double
        var engineCPUSeconds: Double
        var savedByCounters: Double
        var savedByPss: Double
        /// The engine's bookkeeping that no process's Pss shows: the kernel's rmap items, by its
        /// own count (general_profit); 0 for Samepage, whose index and scan state are in the
        /// server's and the processes' Pss.
        var bookkeepingOutsidePss: Double
        /// Saved by Pss, less that bookkeeping: each engine charged for its own.
        var savedNet: Double { savedByPss - bookkeepingOutsidePss }
        var vmasAdded: [Int]
        var converged: Bool
        var samples: [(Double, Double)]
    }

    func run() throws -> Result {
        var workers: [(Process, FileHandle, FileHandle)] = []
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        for index in 0..<processes {
            let process = Process()
            process.executableURL = me
            process.arguments = ["bench-worker", "--engine", engine.rawValue, "--layout", layout.rawValue, "--socket", socketPath,
                                 "--mib", "\(mib)", "--shared", "\(sharedPercent)", "--index", "\(index)"]
                + (engine == .samepage ? parameters.flatMap { ["--set", $0] } : [])
                + (files.map { ["--files", $0] } ?? [])
            let input = Pipe(), output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            try process.run()
            workers.append((process, input.fileHandleForWriting, output.fileHandleForReading))
        }
        defer {
            for (process, input, _) in workers {
                try? input.close()
                process.waitUntilExit()
            }
        }
        for (_, _, output) in workers {
            let line = readLine(output)
            guard line == "ready" else { throw ValidationError("a bench worker failed to start: \(line)") }
        }
        let pids = workers.map { $0.0.processIdentifier }
        let everyone = pids + (serverPID.map { [$0] } ?? [])
        let vmasBefore = pids.map(mapCount)
        let pssEach = everyone.map(pss)
        let pssBefore = pssEach.reduce(0, +)
        let engineCPU: () -> Double = engine == .ksm ? { KernelKSM.ksmdCPUSeconds() } : { serverPID.map(cpuSeconds) ?? 0 }
        let engineCPUBefore = engineCPU()
        let client = engine == .samepage ? try SamepageClient(socketPath: socketPath, name: "samepage-bench", stagingBytes: 8192) : nil
        // Bytes saved, and full scans done: of ksmd, or of the Samepage domain (one is done when
        // every scanning process has done a full scan since the last).
        func measure() throws -> (saved: Double, fullScans: Int64) {
            if let client {
                let stats = Dictionary(try client.statistics().map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
                return (Double((stats["pages_sharing"] ?? 0) + (stats["ksm_zero_pages"] ?? 0)) * 4096, stats["full_scans"] ?? 0)
            }
            return (Double(KernelKSM.value("pages_sharing") + KernelKSM.value("ksm_zero_pages")) * 4096, Int64(KernelKSM.value("full_scans")))
        }
        if let ksm, engine == .ksm {
            try ksm.set("pages_to_scan", "\(ksmPagesToScan)")
            try ksm.set("sleep_millisecs", "\(ksmSleepMilliseconds)")
            try ksm.set("use_zero_pages", layout == .zeros ? "1" : "0")
        }
        let start = Date()
        for (_, input, _) in workers { input.write(Data("go\n".utf8)) }
        if let ksm, engine == .ksm { try ksm.set("run", "1") }
        let reports = WorkerReports(count: workers.count)
        for (i, worker) in workers.enumerated() {
            let output = worker.2
            Thread { reports.record(i, readLine(output)) }.start()
        }
        var samples: [(Double, Double)] = []
        var lastChange = (value: -1.0, fullScans: Int64(0))
        var askedForReports = false
        var converged = true
        while !reports.allDone {
            let now = Date().timeIntervalSince(start)
            let (value, scans) = try measure()
            samples.append((now, value))
            progress?.update("\(name)", seconds: now, savedMiB: value / 1_048_576)
            var stop = false
            if layout == .churn {
                stop = now >= churnSeconds
            } else if value != lastChange.value {
                lastChange = (value, scans)
            } else if value > 0 && scans >= lastChange.fullScans + 2 {
                // Converged, for both engines alike: the savings have not moved for two full
                // scans (a process that stopped on its own earlier could leave merges that others
                // made with its pages undone, while the server counted them).
                stop = true
            }
            if now > timeout {
                stop = true
                converged = false
            }
            if stop && !askedForReports {
                askedForReports = true
                for (_, input, _) in workers { input.write(Data("report\n".utf8)) }
            }
            usleep(20_000)
        }
        let wall = Date().timeIntervalSince(start)
        let finalSaved = try measure().saved
        samples.append((wall, finalSaved))
        // Time to converge: when 99% of the final savings were reached. For the kernel, the
        // end of the run includes the two idle full scans that showed it had converged.
        let converge = finalSaved > 0 ? (samples.first { $0.1 >= finalSaved * 0.99 }?.0 ?? wall) : 0
        let vmasAfter = pids.map(mapCount)
        let pssEachAfter = everyone.map(pss)
        let pssAfter = pssEachAfter.reduce(0, +)
        let bookkeeping = engine == .ksm ? KernelKSM.bookkeepingBytes() : 0
        let engineSeconds = engineCPU() - engineCPUBefore
        var clientCPU = 0.0
        if ProcessInfo.processInfo.environment["SAMEPAGE_BENCH_DEBUG"] != nil {
            FileHandle.standardError.write(Data("\(name): \(reports.lines) samples \(samples.count)\n".utf8))
            let kib = zip(pssEach, pssEachAfter).map { "\(Int($0 / 1024))->\(Int($1 / 1024))" }
            FileHandle.standardError.write(Data("\(name): Pss KiB before->after, workers then server: \(kib)\n".utf8))
        }
        for report in reports.lines {
            let fields = report.split(separator: " ")
            if fields.count >= 3, fields[0] == "done" { clientCPU += Double(fields[2]) ?? 0 }
        }
        if let ksm, engine == .ksm { try ksm.set("run", "2") }
        progress?.finish()
        return Result(name: name, convergeSeconds: converge, wallSeconds: wall, cpuSeconds: clientCPU + engineSeconds,
                      clientCPUSeconds: clientCPU, engineCPUSeconds: engineSeconds,
                      savedByCounters: finalSaved, savedByPss: pssBefore - pssAfter, bookkeepingOutsidePss: bookkeeping,
                      vmasAdded: zip(vmasAfter, vmasBefore).map { $0 - $1 }, converged: converged, samples: samples)
    }
}

/// The workers' final lines, filled in by reader threads.
final class WorkerReports: @unchecked Sendable {
    private let lock = NSLock()
    private var reports: [String?]
    init(count: Int) { reports = Array(repeating: nil, count: count) }
    func record(_ index: Int, _ line: String) { lock.lock(); reports[index] = line; lock.unlock() }
    var allDone: Bool { lock.lock(); defer { lock.unlock() }; return reports.allSatisfy { $0 != nil } }
    var lines: [String] { lock.lock(); defer { lock.unlock() }; return reports.map { $0 ?? "" } }
}

func readLine(_ handle: FileHandle) -> String {
    var bytes: [UInt8] = []
    while true {
        let byte = handle.readData(ofLength: 1)
        if byte.isEmpty || byte[0] == 10 { break }
        bytes.append(byte[0])
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Proportional set size of a process, bytes (/proc/PID/smaps_rollup): shared pages divided among
/// the processes that map them, so the sum over processes is the memory really used.
func pss(_ pid: Int32) -> Double {
    guard let handle = FileHandle(forReadingAtPath: "/proc/\(pid)/smaps_rollup") else { return 0 }
    defer { try? handle.close() }
    let text = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
    for line in text.split(separator: "\n") where line.hasPrefix("Pss:") {
        return (Double(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0) * 1024
    }
    return 0
}

func mapCount(_ pid: Int32) -> Int {
    guard let handle = FileHandle(forReadingAtPath: "/proc/\(pid)/maps") else { return 0 }
    defer { try? handle.close() }
    return handle.readDataToEndOfFile().reduce(0) { $1 == 10 ? $0 + 1 : $0 }
}

/// CPU seconds (user + system) a process has used, from /proc/PID/stat.
func cpuSeconds(_ pid: Int32) -> Double {
    guard let handle = FileHandle(forReadingAtPath: "/proc/\(pid)/stat") else { return 0 }
    defer { try? handle.close() }
    let text = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
    guard let close = text.lastIndex(of: ")") else { return 0 }
    let fields = text[text.index(after: close)...].split(separator: " ")
    // After the command: state is field 3, utime 14, stime 15 (1-based, proc(5)).
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// A line on stdout, written at once (stdout is a pipe to the bench driver).
func say(_ line: String) {
    var bytes = Array((line + "\n").utf8)
    _ = write(1, &bytes, bytes.count)
}
