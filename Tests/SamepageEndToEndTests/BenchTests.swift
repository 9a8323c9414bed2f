import Foundation
import Testing

/// `samepage bench` runs and its numbers are sane (its timings are not asserted: a benchmark
/// measures, tests check behaviour).
@Suite(.serialized)
struct BenchTests {
    static func ksmTunables() -> [String: String] {
        var values: [String: String] = [:]
        for name in ["run", "pages_to_scan", "sleep_millisecs", "max_page_sharing", "use_zero_pages", "smart_scan"] {
            values[name] = try? String(contentsOfFile: "/sys/kernel/mm/ksm/" + name, encoding: .utf8)
        }
        return values
    }

    @Test("a short runs benchmark of the toolchain's libraries: Samepage and (as root) the kernel's KSM save what the workload offers")
    func shortRuns() throws {
        let before = Self.ksmTunables()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("samepage-bench-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let plot = directory + "/runs.svg"
        let result = try Command.run(Binaries.samepage, ["bench", "--workload", "runs", "--procs", "2", "--mib", "32",
                                                         "--shared", "50", "--no-ksm-defaults", "--json", "--plot", plot,
                                                         "--timeout", "60"])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let results = try #require(json["results"] as? [[String: Any]])
        // 2 processes x 8192 pages, half of them the same files loaded in both: at least 4096
        // pages saved, more where the libraries repeat pages (zero pages, padding). Pss also
        // counts what the processes and the server allocate while merging (a few hundred KiB each,
        // and more in a cold arena), so it is checked against half, on a workload large enough
        // that those fixed costs cannot eat half of it (with 8 MiB they once did, in CI).
        let expected = 4096.0 * 4096
        let samepage = try #require(results.first { $0["name"] as? String == "samepage" })
        let saved = samepage["saved_bytes"] as? Double ?? 0
        #expect(saved >= expected && saved < 8192 * 4096, "\(saved)")
        #expect((samepage["converged"] as? Bool) == true)
        #expect((samepage["saved_bytes_pss"] as? Double ?? 0) > expected * 0.5, "the kernel's Pss agrees (within overheads)")
        #expect((samepage["cpu_seconds"] as? Double ?? 0) > 0)
        // Samepage's bookkeeping is in the server's and the processes' Pss: net is Pss.
        #expect(samepage["bookkeeping_outside_pss_bytes"] as? Double == 0)
        #expect(samepage["saved_bytes_net"] as? Double == samepage["saved_bytes_pss"] as? Double)
        if let ksm = results.first(where: { $0["name"] as? String == "ksm full speed" }) {
            #expect(ksm["saved_bytes"] as? Double == saved, "the kernel's KSM saves the same")
            // The kernel's rmap items, one per page it scanned (2 x 8192), tens of bytes each,
            // by its general_profit (Linux 6.1), are charged to it in the net figure.
            if FileManager.default.fileExists(atPath: "/sys/kernel/mm/ksm/general_profit") {
                let bookkeeping = ksm["bookkeeping_outside_pss_bytes"] as? Double ?? -1
                #expect(bookkeeping >= 16384 * 32 && bookkeeping <= 16384 * 128, "\(bookkeeping)")
                let net = (ksm["saved_bytes_pss"] as? Double ?? 0) - bookkeeping
                #expect(abs((ksm["saved_bytes_net"] as? Double ?? 0) - net) < 1, "net is Pss less the bookkeeping")
            }
        } else {
            #expect((json["note"] as? String)?.contains("KSM") == true, "without KSM, the output says why")
        }
        let baselines = try #require(json["baselines"] as? [String: Double])
        #expect((baselines["memcpy_gb_per_s"] ?? 0) > 0.1 && (baselines["memcmp_gb_per_s"] ?? 0) > 0.1)
        #expect((baselines["af_unix_round_trip_us"] ?? 0) > 0)
        // The least work on the same data, its parts adding up, spread over the cores.
        let leastWork = baselines["least_work_cpu_seconds"] ?? 0
        let parts = ["hash", "first_copy", "compare", "map_and_free"].map { baselines["least_work_\($0)_cpu_seconds"] ?? -1 }
        #expect(leastWork > 0 && parts.allSatisfy { $0 >= 0 } && abs(parts.reduce(0, +) - leastWork) < 1e-3, "\(baselines)")
        #expect(abs((baselines["least_work_seconds"] ?? 0) * (baselines["cores"] ?? 0) - leastWork) < 1e-3, "4 decimals in the JSON")
        let svg = try String(contentsOfFile: plot, encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.contains("<polyline"))
        #expect(Self.ksmTunables() == before, "every KSM tunable is back as it was")
    }

    @Test("bench --set takes Samepage's scan knobs, and refuses an unknown or malformed one before anything runs")
    func scanKnobs() throws {
        let unknown = try Command.run(Binaries.samepage, ["bench", "--set", "no_such_knob=1"])
        #expect(unknown.status != 0 && unknown.stderr.contains("--set no_such_knob=1"), "\(unknown.stderr)")
        let malformed = try Command.run(Binaries.samepage, ["bench", "--set", "track_writes"])
        #expect(malformed.status != 0 && malformed.stderr.contains("--set track_writes"), "\(malformed.stderr)")
        // Checksums instead of write tracking, smart_scan off, the files of a directory, loaded in
        // order from page boundaries: a short file (one page, padded with zeros), 1 MiB, the same
        // 1 MiB again, 511 other pages: 1024 pages, 768 contents. Two processes: 2048 pages,
        // 1280 saved (pseudo-random pages instead of the files would save 1024).
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("samepage-files-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let random = try #require(FileHandle(forReadingAtPath: "/dev/urandom")).readData(ofLength: 4 << 20)
        try random.prefix(100).write(to: URL(fileURLWithPath: directory + "/a-short"))
        try random.subdata(in: 4096..<(4096 + (1 << 20))).write(to: URL(fileURLWithPath: directory + "/b-one"))
        try random.subdata(in: 4096..<(4096 + (1 << 20))).write(to: URL(fileURLWithPath: directory + "/c-same"))
        try random.subdata(in: (2 << 20)..<((2 << 20) + 511 * 4096)).write(to: URL(fileURLWithPath: directory + "/d-other"))
        let result = try Command.run(Binaries.samepage, ["bench", "--workload", "runs", "--procs", "2", "--mib", "8",
                                                         "--shared", "50", "--no-ksm", "--json", "--timeout", "60",
                                                         "--files", directory,
                                                         "--set", "track_writes=0", "--set", "smart_scan=0"])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let samepage = try #require((json["results"] as? [[String: Any]])?.first)
        #expect(samepage["saved_bytes"] as? Double == 1280.0 * 4096)
        let missing = try Command.run(Binaries.samepage, ["bench", "--workload", "runs", "--files", directory + "/none"])
        #expect(missing.status != 0 && missing.stderr.contains("--files \(directory)/none"), "\(missing.stderr)")
    }

    @Test("a short put benchmark reports both puts against their baselines")
    func shortPut() throws {
        let result = try Command.run(Binaries.samepage, ["bench", "--workload", "put", "--size", "16M", "--rounds", "1", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Double])
        for key in ["memcpy into fresh memory", "memcpy into a fresh memfd", "memcmp", "put distinct", "put duplicate",
                    "put distinct from a shared buffer", "put duplicate from a shared buffer"] {
            #expect((json[key] ?? 0) > 0.01, "\(key): \(json[key] ?? -1)")
        }
    }
}
