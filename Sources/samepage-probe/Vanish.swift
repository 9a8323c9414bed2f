import Glibc
import SamepageClient
import SamepageSystem

/// `samepage-probe vanish SOCKET MILLISECONDS`: mergeable memory that the application unmaps,
/// maps again, protects PROT_NONE and opens again, and a private file mapping whose file shrinks
/// under it, all while the scanner thread reads every page in place at full speed. The scanner
/// must survive every vanished page (the read faults and is caught) and go on merging what can
/// be read. Prints "ok scans=N merged=M" or dies.
func runVanishProbe(_ args: [String]) -> Never {
    guard args.count == 2, let millis = Int(args[1]) else { die("usage: samepage-probe vanish SOCKET MILLISECONDS") }
    do {
        let client = try SamepageClient(socketPath: args[0], name: "samepage-probe-vanish")
        try client.setMergeParameter("run", 0)
        try client.setMergeParameter("pages_to_scan", 4096)
        try client.setMergeParameter("sleep_millisecs", 0)
        try client.setMergeParameter("smart_scan", 0)
        let pages = 1024
        let memory = try Syscall.mmap(nil, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        for page in 0..<pages { memset(memory + page * 4096, Int32(page % 4 + 1), 4096) }
        // A file mapped privately, then truncated: reading its tail raises SIGBUS.
        let file = try Memfd.create(name: "vanish-file", size: 64 * 4096, seals: [])
        let mapped = try Syscall.mmap(nil, 64 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, file.rawValue, 0)
        for page in 0..<64 { memset(mapped + page * 4096, 7, 4096) }
        try client.advise(memory, length: pages * 4096, .mergeable)
        try client.advise(mapped, length: 64 * 4096, .mergeable)
        try Syscall.ftruncate(file.rawValue, 16 * 4096)
        try client.setMergeParameter("run", 1)
        let hole = memory + 256 * 4096
        var round = 0
        var elapsed = 0
        while elapsed < millis {
            switch round % 4 {
            case 0: Syscall.munmap(hole, 64 * 4096)
            case 1:
                _ = try Syscall.mmap(hole, 64 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
                for page in 0..<64 { memset(hole + page * 4096, 3, 4096) }
            case 2: try Syscall.mprotect(memory + 512 * 4096, 64 * 4096, PROT_NONE)
            default: try Syscall.mprotect(memory + 512 * 4096, 64 * 4096, PROT_READ | PROT_WRITE)
            }
            round += 1
            usleep(2_000)
            elapsed += 2
        }
        try client.setMergeParameter("run", 0)
        let stats = client.processStatistics()
        say("ok scans=\(stats.fullScans) merged=\(stats.mergingPages)")
        exit(0)
    } catch {
        die("\(error)")
    }
}
