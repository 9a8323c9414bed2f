// A client process for the end-to-end tests: it does one thing a real application would do and
// reports on stdout, so tests can check outcomes across process boundaries.
//
//   samepage-probe hold SOCKET ID...     map each ID read-only, print "ready" with their total length
//                                        and a checksum, wait for stdin to close
//   samepage-probe cow SOCKET ID         map ID copy-on-write, overwrite it, check that the store
//                                        and a second mapping still hold the original bytes
//   samepage-probe merge SOCKET PAGES DISTINCT SEED SCANS [PARAM=VALUE...]
//                                        fill PAGES pages with DISTINCT different page contents
//                                        (page i holds content i % DISTINCT, from SEED), mark them
//                                        mergeable, run SCANS full scans, print the process's
//                                        figures, wait for a line on stdin ("scan N", "check",
//                                        "unmerge", "write I", "fill I N": page I gets content N,
//                                        "remap I N": new memory there, with content N,
//                                        "fork-write I": a child merges, writes page I, reports,
//                                        "sparse N": N more mergeable pages never touched),
//                                        report, and exit at end of input
//   samepage-probe stress SOCKET PAGES THREADS MILLISECONDS
//                                        writers hammer merged and merging pages while the scanner
//                                        runs; prints "ok ..." when every byte is what was written
//   samepage-probe chaos SOCKET SEED     mixed requests at random, forever (the crash tests kill it)
//   samepage-probe attack SOCKET         every attack on the region fd it can think of
import Glibc
import SamepageClient
import SamepageCore

func die(_ message: String) -> Never {
    var bytes = Array("samepage-probe: \(message)\n".utf8)
    _ = write(2, &bytes, bytes.count)
    exit(1)
}

func say(_ line: String) {
    var bytes = Array((line + "\n").utf8)
    _ = write(1, &bytes, bytes.count)
}

let arguments = CommandLine.arguments
if arguments.count >= 2 && arguments[1] == "merge" {
    runMergeProbe(Array(arguments.dropFirst(2)))
    exit(0)
}
if arguments.count >= 2 && arguments[1] == "stress" {
    runStressProbe(Array(arguments.dropFirst(2)))
}
if arguments.count >= 2 && arguments[1] == "attack" {
    runAttackProbe(Array(arguments.dropFirst(2)))
}
if arguments.count >= 2 && arguments[1] == "vanish" {
    runVanishProbe(Array(arguments.dropFirst(2)))
}
if arguments.count >= 2 && arguments[1] == "chaos" {
    runChaosProbe(Array(arguments.dropFirst(2)))
}
let ids = arguments.dropFirst(3).compactMap(ObjectID.init)
guard arguments.count >= 4, ids.count == arguments.count - 3, arguments[1] == "hold" || ids.count == 1 else {
    die("usage: samepage-probe hold SOCKET ID... | cow SOCKET ID | merge SOCKET PAGES DISTINCT SEED SCANS [PARAM=VALUE...]")
}
let id = ids[0]
do {
    let client = try SamepageClient(socketPath: arguments[2], name: "samepage-probe")
    switch arguments[1] {
    case "hold":
        try hold(client, ids[...], length: 0, sum: 0)
    case "cow":
        let original = try client.get(id)
        let writable = try client.map(id, mode: .copyOnWrite)
        let bytes = writable.mutableBytes
        for i in 0..<bytes.count { bytes[i] = 0xAB }
        guard bytes.allSatisfy({ $0 == 0xAB }) else { die("copy-on-write mapping did not keep its writes") }
        let second = try client.map(id)
        guard second.bytes.elementsEqual(original) else { die("a write to a copy-on-write mapping changed another mapping") }
        guard try client.get(id) == original else { die("a write to a copy-on-write mapping changed the store") }
        try second.unmap()
        try writable.unmap()
        say("ok \(original.count)")
    default:
        die("unknown probe \(arguments[1])")
    }
} catch {
    die("\(error)")
}

/// Maps the first id, then holds the rest while it stays mapped (mappings are non-copyable: each
/// lives in its own frame), until the last one says ready and stdin closes.
func hold(_ client: SamepageClient, _ ids: ArraySlice<ObjectID>, length: Int, sum: UInt64) throws {
    guard let id = ids.first else {
        say("ready \(length) \(sum)")
        var byte: UInt8 = 0
        while read(0, &byte, 1) > 0 {}
        return
    }
    let mapping = try client.map(id)
    var sum = sum
    for byte in mapping.bytes { sum = sum &* 31 &+ UInt64(byte) }
    try hold(client, ids.dropFirst(), length: length + mapping.length, sum: sum)
    try mapping.unmap()
}

/// Page content number `n` of a seed.
func fillPage(_ page: UnsafeMutableRawPointer, content n: UInt64, seed: UInt64) {
    PseudoRandomPages.fill(page, content: n, seed: seed)
}

func runMergeProbe(_ args: [String]) {
    guard args.count >= 5, let pages = Int(args[1]), let distinct = UInt64(args[2]), let seed = UInt64(args[3]),
          let scans = Int(args[4]) else { die("usage: samepage-probe merge SOCKET PAGES DISTINCT SEED SCANS [PARAM=VALUE...]") }
    do {
        let client = try SamepageClient(socketPath: args[0], name: "samepage-probe-merge")
        try client.setMergeParameter("run", 0)
        for assignment in args.dropFirst(5) { try client.setMergeParameter(assignment) }
        let memory = try client.allocate(pages * 4096)
        var refilled: [Int: UInt64] = [:]
        func expected(_ i: Int) -> UInt64 { refilled[i] ?? (distinct == 0 ? UInt64(i) : UInt64(i) % distinct) }
        for i in 0..<pages {
            if distinct == 0 && seed == 0 {
                // All zero pages, written (as the kernel's test does): memory never touched is
                // not resident, and no scanner looks at it.
                memset(memory + i * 4096, 0, 4096)
                continue
            }
            fillPage(memory + i * 4096, content: expected(i), seed: seed)
        }
        var written: [Int: UInt8] = [:]
        func check() -> Bool {
            let scratch = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
            defer { scratch.deallocate() }
            for i in 0..<pages {
                if distinct == 0 && seed == 0 { memset(scratch, 0, 4096) } else { fillPage(scratch, content: expected(i), seed: seed) }
                if let byte = written[i] { scratch.storeBytes(of: byte, toByteOffset: 100, as: UInt8.self) }
                if memcmp(scratch, memory + i * 4096, 4096) != 0 { return false }
            }
            return true
        }
        try client.advise(memory, length: pages * 4096, .mergeable)
        // What the last scan reported, beside what processStatistics() reads afresh.
        var scanned = try client.scan(fullScans: scans)
        func report() {
            let s = client.processStatistics()
            say("stats rmap_items=\(s.rmapItems) merging_pages=\(s.mergingPages) zero_pages=\(s.zeroPages) full_scans=\(s.fullScans) volatile=\(s.pagesVolatile) mappings=\(s.mappings) budget=\(s.mappingBudget) profit=\(s.processProfit) merge_any=\(s.mergeAny ? 1 : 0) scan_merging_pages=\(scanned.mergingPages) scan_full_scans=\(scanned.fullScans) write_tracking=\(s.writeTracking ? 1 : 0)")
        }
        report()
        while let line = readLine() {
            let words = line.split(separator: " ")
            switch words.first {
            case "scan":
                scanned = try client.scan(fullScans: Int(words[1]) ?? 1)
                report()
            case "check":
                say(check() ? "ok" : "corrupt")
            case "write":
                let i = Int(words[1])!
                (memory + i * 4096 + 100).storeBytes(of: 0x5A, as: UInt8.self)
                written[i] = 0x5A
                say("ok")
            case "fill":
                guard words.count == 3, let i = Int(words[1]), let n = UInt64(words[2]), i >= 0 && i < pages else { die("fill I N") }
                fillPage(memory + i * 4096, content: n, seed: seed)
                refilled[i] = n
                written[i] = nil
                say("ok")
            case "remap":
                // New memory in place of page I (munmap and mmap in one), holding content N.
                guard words.count == 3, let i = Int(words[1]), let n = UInt64(words[2]), i >= 0 && i < pages,
                      mmap(memory + i * 4096, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED
                else { die("remap I N") }
                fillPage(memory + i * 4096, content: n, seed: seed)
                refilled[i] = n
                written[i] = nil
                say("ok")
            case "fork-write":
                // A child that merges again in three scans (its merged pages got private copies at fork), writes
                // page I, scans, and reports before and after; the parent waits for it.
                guard words.count == 2, let i = Int(words[1]), i >= 0 && i < pages else { die("fork-write I") }
                let child = fork()
                if child == 0 {
                    let merged = try client.scan(fullScans: 3)
                    (memory + i * 4096 + 100).storeBytes(of: 0x5A, as: UInt8.self)
                    let after = try client.scan(fullScans: 1)
                    let fresh = client.processStatistics()
                    say("child merging_pages=\(merged.mergingPages) after_write=\(after.mergingPages) refreshed=\(fresh.mergingPages)")
                    exit(0)
                }
                var status: Int32 = 0
                waitpid(child, &status, 0)
                say("ok")
            case "sparse":
                // N more pages, mergeable and never touched; scan; report, with how many of them
                // are resident (the scanner must not make them so).
                guard words.count == 2, let n = Int(words[1]), n > 0 else { die("sparse N") }
                let sparse = try client.allocate(n * 4096)
                try client.advise(sparse, length: n * 4096, .mergeable)
                scanned = try client.scan(fullScans: 3)
                let pagemap = open("/proc/self/pagemap", O_RDONLY)
                var entries = [UInt64](repeating: 0, count: n)
                _ = entries.withUnsafeMutableBytes { pread(pagemap, $0.baseAddress, $0.count, off_t(UInt(bitPattern: sparse) / 4096 * 8)) }
                close(pagemap)
                say("sparse present=\(entries.filter { $0 & (1 << 63) != 0 }.count)")
                report()
            case "unmerge":
                try client.advise(memory, length: pages * 4096, .unmergeable)
                report()
            default:
                say("unknown command")
            }
        }
    } catch {
        die("\(error)")
    }
}
