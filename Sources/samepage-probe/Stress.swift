import CSamepageShim
import Glibc
import SamepageClient
import SamepageSystem

/// `samepage-probe stress SOCKET PAGES THREADS MILLISECONDS [name=value ...]`: writer threads hammer merged and
/// merging pages while the scanner thread runs flat out; at the end every page must hold exactly
/// what was last written to it. Pages start as a few duplicate contents, and writers often put a
/// page back to its original content, so pages keep merging while they are written. A reader
/// thread reads every page all along, the first merges included (stretches of duplicates are
/// unmapped and mapped again piece by piece: it must wait, not crash).
func runStressProbe(_ args: [String]) {
    guard args.count >= 4, let pages = Int(args[1]), let threads = Int(args[2]), let millis = Int(args[3]),
          pages >= threads, threads > 0 else { die("usage: samepage-probe stress SOCKET PAGES THREADS MILLISECONDS [name=value ...]") }
    func body() throws -> String {
        let client = try SamepageClient(socketPath: args[0], name: "samepage-probe-stress")
        try client.setMergeParameter("run", 0)
        try client.setMergeParameter("pages_to_scan", 4096)
        try client.setMergeParameter("sleep_millisecs", 0)
        try client.setMergeParameter("smart_scan", 0)
        for assignment in args.dropFirst(4) { try client.setMergeParameter(assignment) }
        let memory = try client.allocate(pages * 4096)
        let shadow = UnsafeMutableRawPointer.allocate(byteCount: pages * 4096, alignment: 4096)
        defer { shadow.deallocate() }
        for i in 0..<pages { fillPage(memory + i * 4096, content: UInt64(i % 8), seed: 99) }
        memcpy(shadow, memory, pages * 4096)
        let readerStop = StopFlag()
        let reader = ReadJob(memory: memory, pages: pages, stop: readerStop)
        var readerThread = pthread_t()
        pthread_create(&readerThread, nil, { context in
            Unmanaged<ReadJob>.fromOpaque(context!).takeUnretainedValue().run()
            return nil
        }, Unmanaged.passUnretained(reader).toOpaque())
        try client.advise(memory, length: pages * 4096, .mergeable)
        try client.scan(fullScans: 2)
        let mergedAtStart = client.processStatistics().mergingPages
        try client.setMergeParameter("run", 1)

        let stop = StopFlag()
        var workers: [pthread_t] = []
        let perThread = pages / threads
        for t in 0..<threads {
            let job = StressJob(memory: memory, shadow: shadow, first: t * perThread,
                                count: t == threads - 1 ? pages - t * perThread : perThread, seed: UInt64(t + 1), stop: stop)
            var thread = pthread_t()
            pthread_create(&thread, nil, { context in
                let job = Unmanaged<StressJob>.fromOpaque(context!).takeRetainedValue()
                job.run()
                return nil
            }, Unmanaged.passRetained(job).toOpaque())
            workers.append(thread)
        }
        var mostMerged = 0
        var waited = 0
        while waited < millis {
            usleep(20_000)
            waited += 20
            mostMerged = max(mostMerged, client.processStatistics().mergingPages)
        }
        stop.set()
        for thread in workers { pthread_join(thread, nil) }
        try client.setMergeParameter("run", 0)
        // Let the scanner merge once more after the writes stopped, then check every byte.
        try client.scan(fullScans: 2)
        let finalMerged = client.processStatistics().mergingPages
        readerStop.set()
        pthread_join(readerThread, nil)
        var bad = 0
        for i in 0..<pages where memcmp(memory + i * 4096, shadow + i * 4096, 4096) != 0 { bad += 1 }
        try client.advise(memory, length: pages * 4096, .unmergeable)
        for i in 0..<pages where memcmp(memory + i * 4096, shadow + i * 4096, 4096) != 0 { bad += 1 }
        let stats = client.processStatistics()
        // The last reference to a client goes while its scanner thread runs: the thread must end
        // cleanly, not touch a dead client.
        try client.advise(memory, length: pages * 4096, .mergeable)
        try client.setMergeParameter("run", 1)
        return "\(bad == 0 ? "ok" : "corrupt") bad_pages=\(bad) merged_at_start=\(mergedAtStart) most_merged=\(mostMerged) merged_after=\(finalMerged) racing_writes=\(stats.racingWritesAbsorbed) full_scans=\(stats.fullScans) read_sweeps=\(reader.sweeps)"
    }
    do {
        let line = try body()
        usleep(200_000)
        say(line)
        exit(line.hasPrefix("ok") ? 0 : 1)
    } catch {
        die("\(error)")
    }
}

final class StopFlag: @unchecked Sendable {
    private let lock = Lock()
    private var stopped = false
    func set() { lock.withLock { stopped = true } }
    var isSet: Bool { lock.withLock { stopped } }
}

/// One writer: its own pages, and the shadow copy of what they must hold.
final class StressJob: @unchecked Sendable {
    let memory: UnsafeMutableRawPointer
    let shadow: UnsafeMutableRawPointer
    let first: Int
    let count: Int
    var state: UInt64
    let stop: StopFlag

    init(memory: UnsafeMutableRawPointer, shadow: UnsafeMutableRawPointer, first: Int, count: Int, seed: UInt64, stop: StopFlag) {
        self.memory = memory
        self.shadow = shadow
        self.first = first
        self.count = count
        self.state = seed
        self.stop = stop
    }

    func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        return z ^ (z >> 27)
    }

    func run() {
        var iteration = 0
        while iteration % 256 != 0 || !stop.isSet {
            iteration += 1
            let page = first + Int(next() % UInt64(count))
            let choice = next() % 4
            if choice == 0 {
                // Back to a duplicate content: it will merge again.
                fillPage(memory + page * 4096, content: UInt64(page % 8), seed: 99)
                memcpy(shadow + page * 4096, memory + page * 4096, 4096)
            } else {
                let offset = Int(next() % 512) * 8
                let value = next()
                (memory + page * 4096 + offset).storeBytes(of: value, as: UInt64.self)
                (shadow + page * 4096 + offset).storeBytes(of: value, as: UInt64.self)
            }
            if iteration % 64 == 0 { usleep(50) }
        }
    }
}

/// Reads one word of every page, over and over, until stopped.
final class ReadJob: @unchecked Sendable {
    let memory: UnsafeMutableRawPointer
    let pages: Int
    let stop: StopFlag
    private(set) var sweeps = 0

    init(memory: UnsafeMutableRawPointer, pages: Int, stop: StopFlag) {
        self.memory = memory
        self.pages = pages
        self.stop = stop
    }

    func run() {
        while !stop.isSet {
            for i in 0..<pages { _ = sp_touch_read(memory + i * 4096) }
            sweeps += 1
        }
    }
}
