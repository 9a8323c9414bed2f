import ArgumentParser
import Foundation
import SamepageClient
import SamepageCore
import SamepageSystem

/// `samepage bench-worker`: one process of a merge workload, spawned by `samepage bench`. It
/// fills its memory, says "ready", waits for "go", then merges (Samepage: its scanner thread at
/// full speed, as ksmd runs beside it; KSM: ksmd does the work) and prints "done MERGED
/// CPU-SECONDS SCANS" when told "report". It exits at the end of its input.
struct BenchWorker: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-worker", shouldDisplay: false)

    @Option var engine: MergeEngineKind
    @Option var layout: MergeLayout
    @Option var socket: String
    @Option var mib: Int
    @Option var shared: Int
    @Option var index: Int
    /// runs: the directory of files to load (default: the toolchain's shared libraries).
    @Option var files: String?
    @Option(name: .customLong("set")) var parameters: [String] = []

    func run() throws {
        let pages = mib << 8
        let client = engine == .samepage ? try SamepageClient(socketPath: socket, name: "bench-worker") : nil
        let memory: UnsafeMutableRawPointer
        if let client {
            try client.setMergeParameter("run", 0)
            // Full speed, as the kernel's KSM is run beside it; --set goes over it.
            try client.setMergeParameter("pages_to_scan", 100_000)
            try client.setMergeParameter("sleep_millisecs", 0)
            if layout == .zeros { try client.setMergeParameter("use_zero_pages", 1) }
            for assignment in parameters { try client.setMergeParameter(assignment) }
            memory = try client.allocate(pages * 4096)
        } else {
            memory = try Syscall.mmap(nil, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        }
        let fill = try WorkloadFill(layout: layout, sharedPercent: shared, filesIn: files)
        try fill.fill(memory, pages: pages, index: index)
        if let client {
            try client.advise(memory, length: pages * 4096, .mergeable)
        } else {
            try Syscall.madvise(memory, pages * 4096, 12)  // MADV_MERGEABLE
        }
        say("ready")
        guard Swift.readLine() == "go" else { return }
        let told = ReportRequest(), closed = ReportRequest()
        Thread {
            while let line = Swift.readLine() {
                if line == "report" { told.set() }
            }
            told.set()
            closed.set()
        }.start()
        let churn = layout == .churn ? Churner(memory: memory, pages: pages, process: index) : nil
        churn?.start()
        let cpuBefore = ownCPUSeconds()
        var merged = 0, scans = 0
        let cpuSeconds: Double
        if let client {
            // The scanner thread runs until the driver, which watches the whole domain, says it
            // has converged.
            try client.setMergeParameter("run", 1)
            let debug = ProcessInfo.processInfo.environment["SAMEPAGE_BENCH_DEBUG"] != nil
            var reported = 0
            while !told.isSet {
                usleep(debug ? 2_000 : 10_000)
                guard debug else { continue }
                let stats = client.processStatistics()
                if stats.fullScans > reported {
                    reported = stats.fullScans
                    FileHandle.standardError.write(Data("worker \(index) scans \(stats.fullScans) (quiet \(stats.quietScans)): merged \(stats.mergingPages), CPU \(Int((ownCPUSeconds() - cpuBefore) * 1e6)) µs\n".utf8))
                }
            }
            try client.setMergeParameter("run", 0)
            cpuSeconds = ownCPUSeconds() - cpuBefore
            let stats = client.processStatistics()
            merged = stats.mergingPages + stats.zeroPages
            scans = stats.fullScans
        } else {
            while !told.isSet { usleep(10_000) }
            cpuSeconds = ownCPUSeconds() - cpuBefore
            merged = Int((try? String(contentsOfFile: "/proc/self/ksm_merging_pages", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
        }
        churn?.stop()
        say("done \(merged) \(cpuSeconds) \(scans)")
        // Stay (with the memory merged) until the driver has measured and closes our input.
        while !closed.isSet { usleep(10_000) }
    }

    private func ownCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
}

final class ReportRequest: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}

/// Rewrites every page, continuously (the churn workload).
final class Churner: @unchecked Sendable {
    let memory: UnsafeMutableRawPointer
    let pages: Int
    /// The worker's index, in every value written: processes that wrote the same values in step
    /// kept their pages equal between writes, and merges came and went (the workload is the
    /// case where nothing should merge).
    let process: Int
    private let flag = ReportRequest()
    private var thread: Thread?

    init(memory: UnsafeMutableRawPointer, pages: Int, process: Int) {
        self.memory = memory
        self.pages = pages
        self.process = process
    }

    func start() {
        let thread = Thread { [self] in
            var counter: UInt64 = 0
            // Every page changes once every ~50 ms: faster than any scan, so every page stays
            // volatile, at a write rate an application could have.
            while !flag.isSet {
                for page in 0..<pages {
                    counter &+= 1
                    (memory + page * 4096 + Int(counter % 512) * 8).storeBytes(of: counter | UInt64(process + 1) << 56, as: UInt64.self)
                }
                usleep(50_000)
            }
        }
        self.thread = thread
        thread.start()
    }

    func stop() {
        flag.set()
        usleep(1000)
    }
}
