import Foundation
import SamepageCore
import Testing

/// samepaged's options from the environment and from a config file, their precedence, and
/// `--check-config`, against the real binary.
@Suite(.serialized)
struct ConfigurationSourcesTests {
    @Test("SAMEPAGE_SOCKET, SAMEPAGE_REGION_SIZE and SAMEPAGE_METRICS_LISTEN take effect")
    func environment() throws {
        let directory = try ServerProcess.makeDirectory()
        let metrics = ListenAddress.unix(path: directory + "/metrics.sock")
        let server = try ServerProcess(directory: directory, environment: [
            "SAMEPAGE_SOCKET": directory + "/samepaged.sock", "SAMEPAGE_REGION_SIZE": "48M",
            "SAMEPAGE_METRICS_LISTEN": "\(metrics)", "SAMEPAGE_LOG_LEVEL": "warning",
        ], standardArguments: false)
        defer { server.stop() }
        let client = try server.client()
        _ = try client.put(randomBytes(64 << 10, seed: 3))
        #expect(try server.statistics()["objects"] == 1, "served on the socket SAMEPAGE_SOCKET names")
        let scrape = PrometheusScrape(try HTTPProbe.get("/metrics", at: metrics).body)
        #expect(try scrape.only("samepage_region_budget_bytes_limit") == Double(48 << 20))
        #expect(try scrape.only("samepage_region_bytes_capacity") == Double(48 << 20))
    }

    @Test("config file values take effect; the environment beats the file, the command line beats both")
    func configFileAndPrecedence() throws {
        let directory = try ServerProcess.makeDirectory()
        let metrics = ListenAddress.unix(path: directory + "/metrics.sock")
        let config = directory + "/samepaged.conf"
        try """
            # test configuration
            socket = \(directory)/samepaged.sock
            region-size = 40M
            max-objects = 1
            log-level = warning
            metrics-listen = \(metrics)
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let server = try ServerProcess(extraArguments: ["--max-objects", "2"], directory: directory,
                                       environment: ["SAMEPAGE_CONFIG": config, "SAMEPAGE_MAX_OBJECTS": "3"],
                                       standardArguments: false)
        defer { server.stop() }
        let client = try server.client()
        _ = try client.put(randomBytes(8192, seed: 1))
        _ = try client.put(randomBytes(8192, seed: 2))
        #expect(throws: (any Error).self, "--max-objects 2 from the command line, not 3 (environment) or 1 (file)") {
            _ = try client.put(randomBytes(8192, seed: 3))
        }
        let scrape = PrometheusScrape(try HTTPProbe.get("/metrics", at: metrics).body)
        #expect(try scrape.only("samepage_region_budget_bytes_limit") == Double(40 << 20), "region-size from the file")
        #expect(scrape.samples["samepage_limit_hits_total{limit=\"objects\"}"] == 1)
        #expect(try scrape.only("samepage_objects") == 2)
    }

    @Test("--check-config accepts a good configuration and shows where each value came from")
    func checkConfigGood() throws {
        let directory = try ServerProcess.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = directory + "/good.conf"
        try "region-size = 2G\nallow-uid = 1000\nallow-uid = 1001\n".write(toFile: config, atomically: true, encoding: .utf8)
        let result = try Command.run(Binaries.samepaged, ["--check-config", "--config", config, "--socket", directory + "/s.sock"],
                                     environment: ["SAMEPAGE_MAX_UPLOADS": "9"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("region-size ") && $0.contains("= 2G") && $0.contains("[config file \(config) line 1]") })
        #expect(lines.contains { $0.hasPrefix("allow-uid ") && $0.contains("= 1000, 1001") })
        #expect(lines.contains { $0.hasPrefix("max-uploads ") && $0.contains("= 9") && $0.contains("[environment SAMEPAGE_MAX_UPLOADS]") })
        #expect(lines.contains { $0.hasPrefix("socket ") && $0.contains("[command line]") })
        #expect(lines.last == "configuration OK")
        #expect(!FileManager.default.fileExists(atPath: directory + "/s.sock"), "checking creates nothing")
    }

    @Test("--check-config rejects a bad value, an unknown key and an unusable socket directory, naming each; exit 1")
    func checkConfigBad() throws {
        let directory = try ServerProcess.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let badValue = directory + "/bad-value.conf"
        try "region-size = 1G\nmax-page-sharing = 1\n".write(toFile: badValue, atomically: true, encoding: .utf8)
        let unknownKey = directory + "/unknown-key.conf"
        try "region_size = 1G\n".write(toFile: unknownKey, atomically: true, encoding: .utf8)
        let notADirectory = directory + "/file"
        try "".write(toFile: notADirectory, atomically: true, encoding: .utf8)
        let cases: [(arguments: [String], environment: [String: String], mentions: [String])] = [
            (["--config", badValue], [:], ["max-page-sharing", "line 2"]),
            (["--config", unknownKey], [:], ["region_size"]),
            ([], ["SAMEPAGE_CONFIG": directory + "/missing.conf"], ["missing.conf"]),
            ([], ["SAMEPAGE_REGION_SIZE": "lots"], ["region-size", "SAMEPAGE_REGION_SIZE"]),
            (["--socket", notADirectory + "/s.sock"], [:], ["socket", "not a directory"]),
            (["--metrics-listen", "localhost:80"], [:], ["metrics-listen"]),
        ]
        for (arguments, environment, mentions) in cases {
            let result = try Command.run(Binaries.samepaged, ["--check-config", "--socket", directory + "/s.sock"] + arguments,
                                         environment: environment)
            #expect(result.status == 1, "\(arguments) \(environment)")
            for word in mentions {
                #expect(result.stderr.contains(word), "\(arguments) \(environment): \(result.stderr)")
            }
        }
        // The same refusal stops a real start.
        let start = try Command.run(Binaries.samepaged, ["--config", badValue, "--socket", directory + "/s.sock"])
        #expect(start.status == 1)
        #expect(start.stderr.contains("max-page-sharing"))
    }
}
