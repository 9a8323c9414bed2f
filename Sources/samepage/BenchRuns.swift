import ArgumentParser
import Foundation
import SamepageClient
import SamepageCore
import SamepageSystem

/// The merge workload: N processes each fill `mib` of private memory, `shared` percent of it the
/// same pages in the same order in every process (like shared libraries or model weights) and the
/// rest unique, mark it mergeable and scan until nothing more merges.
struct RunsBenchmark {
    var processes: Int
    var mib: Int
    var sharedPercent: Int
    var socketPath: String
    var serverPID: Int32?

    struct Result {
        var convergeSeconds: Double
        var wallSeconds: Double
        var clientCPUSeconds: Double
        var serverCPUSeconds: Double
        var savedByCounters: Double
        var savedByPss: Double
        var vmasAdded: [Int]
        var scans: [Int]
    }

    func run() throws -> Result {
        var workers: [(Process, FileHandle, FileHandle)] = []
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        for index in 0..<processes {
            let process = Process()
            process.executableURL = me
            process.arguments = ["bench-worker", "--socket", socketPath, "--mib", "\(mib)", "--shared", "\(sharedPercent)", "--index", "\(index)"]
            let input = Pipe(), output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            try process.run()
            workers.append((process, input.fileHandleForWriting, output.fileHandleForReading))
        }
        for (_, _, output) in workers {
            guard readLine(output) == "ready" else { throw ValidationError("a bench worker failed to start") }
        }
        let pids = workers.map { $0.0.processIdentifier }
        let vmasBefore = pids.map(mapCount)
        let pssBefore = (pids + (serverPID.map { [$0] } ?? [])).map(pss).reduce(0, +)
        let serverCPUBefore = serverPID.map(cpuSeconds) ?? 0
        let client = try SamepageClient(socketPath: socketPath, name: "samepage-bench", stagingBytes: 8192)
        func saved() throws -> Double {
            let stats = Dictionary(try client.statistics().map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
            return Double((stats["pages_sharing"] ?? 0) + (stats["ksm_zero_pages"] ?? 0)) * 4096
        }
        let start = Date()
        for (_, input, _) in workers { input.write(Data("go\n".utf8)) }
        // Sample the savings until every worker reports convergence.
        var samples: [(Double, Double)] = []
        let done = WorkerReports(count: workers.count)
        for (i, worker) in workers.enumerated() {
            let output = worker.2
            Thread { done.record(i, readLine(output)) }.start()
        }
        while !done.allDone {
            samples.append((Date().timeIntervalSince(start), try saved()))
            usleep(10_000)
        }
        let reports = done.lines
        let wall = Date().timeIntervalSince(start)
        let finalSaved = try saved()
        samples.append((wall, finalSaved))
        let converge = samples.first { $0.1 >= finalSaved * 0.99 }?.0 ?? wall
        let vmasAfter = pids.map(mapCount)
        let pssAfter = (pids + (serverPID.map { [$0] } ?? [])).map(pss).reduce(0, +)
        let serverCPU = (serverPID.map(cpuSeconds) ?? 0) - serverCPUBefore
        var clientCPU = 0.0
        var scans: [Int] = []
        for report in reports {
            let fields = report.split(separator: " ")
            if fields.count >= 4, fields[0] == "done" {
                clientCPU += Double(fields[2]) ?? 0
                scans.append(Int(fields[3]) ?? 0)
            }
        }
        for (process, input, _) in workers {
            input.closeFile()
            process.waitUntilExit()
        }
        return Result(convergeSeconds: converge, wallSeconds: wall, clientCPUSeconds: clientCPU, serverCPUSeconds: serverCPU,
                      savedByCounters: finalSaved, savedByPss: pssBefore - pssAfter,
                      vmasAdded: zip(vmasAfter, vmasBefore).map { $0 - $1 }, scans: scans)
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
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8) else { return 0 }
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
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = text.lastIndex(of: ")") else { return 0 }
    let fields = text[text.index(after: close)...].split(separator: " ")
    // After the command: state is field 3, utime 14, stime 15 (1-based in proc(5)).
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// `samepage bench-worker`: one process of the runs workload (spawned by `samepage bench`).
struct BenchWorker: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-worker", shouldDisplay: false)

    @Option var socket: String
    @Option var mib: Int
    @Option var shared: Int
    @Option var index: Int

    func run() throws {
        let client = try SamepageClient(socketPath: socket, name: "bench-worker")
        try client.setMergeParameter("run", 0)
        let pages = mib << 8
        let sharedPages = pages * shared / 100
        let memory = try client.allocate(pages * 4096)
        for page in 0..<pages {
            // Shared pages: the same content number in every process; the rest: this process's own.
            let content = page < sharedPages ? UInt64(page) : UInt64(index + 1) << 40 | UInt64(page)
            PseudoRandomPages.fill(memory + page * 4096, content: content, seed: 1)
        }
        try client.advise(memory, length: pages * 4096, .mergeable)
        say("ready")
        guard Swift.readLine() == "go" else { return }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let cpuBefore = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        var last = -1, stable = 0, scans = 0
        while stable < 2 || scans < 3 {
            try client.scan(fullScans: 1)
            scans += 1
            let merged = client.processStatistics().mergingPages
            stable = merged == last ? stable + 1 : 0
            last = merged
        }
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let cpu = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6 - cpuBefore
        say("done \(last) \(cpu) \(scans)")
        while Swift.readLine() != nil {}
    }
}

/// A line on stdout, written at once (stdout is a pipe to the bench driver).
func say(_ line: String) {
    var bytes = Array((line + "\n").utf8)
    _ = write(1, &bytes, bytes.count)
}
