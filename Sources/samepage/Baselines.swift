import Foundation
import SamepageClient
import SamepageSystem

/// Figures measured in the same run as a benchmark, to read its results against: memory
/// bandwidth (memcpy, memcmp) and a raw AF_UNIX round trip between two threads, next to a
/// Samepage ping.
struct Baselines {
    var figures: [String: Double]

    static func measure(socketPath: String) throws -> Baselines {
        let bytes = 256 << 20
        let a = try MemoryMapping(anonymousLength: bytes, writable: true)
        let b = try MemoryMapping(anonymousLength: bytes, writable: true)
        memset(a.base, 1, bytes)
        memset(b.base, 1, bytes)
        var copy = Double.infinity, compare = Double.infinity
        var differences = 0
        for _ in 0..<3 {
            copy = min(copy, time { memcpy(b.base, a.base, bytes) })
            // The result is used, or the compiler drops the call (memcmp has no side effects).
            compare = min(compare, time { differences += Int(memcmp(b.base, a.base, bytes)) })
        }
        precondition(differences == 0)
        var pair: [Int32] = [0, 0]
        socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair)
        defer { close(pair[0]); close(pair[1]) }
        let echo = pair[1]
        let thread = Thread {
            var buffer = [UInt8](repeating: 0, count: 64)
            while recv(echo, &buffer, 64, Int32(MSG_WAITALL)) == 64 { _ = send(echo, buffer, 64, 0) }
        }
        thread.start()
        var buffer = [UInt8](repeating: 0, count: 64)
        var raw: [Double] = []
        for _ in 0..<2000 {
            raw.append(time {
                _ = send(pair[0], buffer, 64, 0)
                _ = recv(pair[0], &buffer, 64, Int32(MSG_WAITALL))
            })
        }
        shutdown(pair[0], Int32(SHUT_RDWR))
        let client = try SamepageClient(socketPath: socketPath, name: "samepage-bench", stagingBytes: 8192)
        var ping: [Double] = []
        for _ in 0..<2000 { ping.append(try time { try client.ping() }) }
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        return Baselines(figures: [
            "memcpy_gb_per_s": Double(bytes) / copy / 1e9,
            "memcmp_gb_per_s": Double(bytes) / compare / 1e9,
            "af_unix_round_trip_us": median(raw) * 1e6,
            "samepage_ping_us": median(ping) * 1e6,
        ])
    }

    var summary: String {
        String(format: "baselines in this run: memcpy %.1f GB/s, memcmp %.1f GB/s; AF_UNIX round trip %.1f µs, samepage ping %.1f µs (%.2fx)",
               figures["memcpy_gb_per_s"]!, figures["memcmp_gb_per_s"]!, figures["af_unix_round_trip_us"]!,
               figures["samepage_ping_us"]!, figures["samepage_ping_us"]! / figures["af_unix_round_trip_us"]!)
    }
}
