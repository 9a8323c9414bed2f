import Foundation
import SamepageClient
import SamepageCore
import SamepageSystem
import Testing

/// The Prometheus endpoint of a real samepaged, on TCP and on a Unix socket.
@Suite(.serialized)
struct MetricsEndpointTests {
    /// Every statistic of `samepage stats --json` equals its samepage_* gauge in a scrape.
    func expectScrapeMatchesStatistics(_ server: ServerProcess, _ address: ListenAddress) throws {
        let statistics = try server.statistics()
        let scrape = PrometheusScrape(try HTTPProbe.get("/metrics", at: address).body)
        for (name, value) in statistics where name != "clients" {
            // `clients` counts the stats client itself, gone by the time of the scrape.
            #expect(try scrape.only("samepage_" + name) == Double(value), "\(name)")
        }
        #expect(statistics["pages_sharing"]! > 0)
    }

    func putTwice(_ server: ServerProcess) throws {
        let client = try server.client()
        let bytes = randomBytes(1 << 20, seed: 77)
        _ = try client.put(bytes)
        _ = try client.put(bytes)
    }

    @Test("TCP: statistics, requests and health are exported; garbage gets 400 and the server serves on")
    func tcp() throws {
        let port = try HTTPProbe.freePort()
        let address = ListenAddress.tcp(address: [127, 0, 0, 1], port: port)
        let server = try ServerProcess(regionSize: "64M", extraArguments: ["--metrics-listen", "\(address)"])
        defer { server.stop() }
        try putTwice(server)
        try expectScrapeMatchesStatistics(server, address)

        let scrape = PrometheusScrape(try HTTPProbe.get("/metrics", at: address).body)
        #expect(scrape.samples["samepage_requests_total{kind=\"put_commit\"}"] == 2)
        #expect(scrape.samples["samepage_request_duration_seconds_count{kind=\"put_commit\"}"] == 2)
        #expect(scrape.samples["samepage_region_bytes_capacity{domain=\"uid:\(getuid())\"}"] == Double(64 << 20))
        #expect(try scrape.only("samepage_connected_clients") == 0)

        let health = try HTTPProbe.get("/healthz", at: address)
        #expect(health.status == 200)
        #expect(health.body == "ok\n")
        #expect(try HTTPProbe.get("/nothing", at: address).status == 404)

        let garbage = try HTTPProbe.exchange(Array("\u{16}\u{3}\u{1} hello?\r\n\r\n".utf8), at: address)
        #expect(garbage.hasPrefix("HTTP/1.1 400 "), "\(garbage)")
        let oversized = try HTTPProbe.exchange(Array(("GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 20000)).utf8), at: address)
        #expect(oversized.hasPrefix("HTTP/1.1 431 "), "\(oversized.prefix(40))")
        // A peer that connects and says nothing holds the endpoint up to its 2 s timeout, and
        // never the event loop.
        let silent = try HTTPProbe.connect(address)
        let client = try server.client()
        try client.ping()
        #expect(try HTTPProbe.get("/healthz", at: address).status == 200)
        #expect(server.process.isRunning)
        Syscall.shutdown(silent.rawValue)
    }

    @Test("Unix socket: the scrape equals samepage stats after the same data is put twice")
    func unixSocket() throws {
        let directory = try ServerProcess.makeDirectory()
        let address = ListenAddress.unix(path: directory + "/metrics.sock")
        let server = try ServerProcess(regionSize: "64M", extraArguments: ["--metrics-listen", "\(address)"], directory: directory)
        defer { server.stop() }
        try putTwice(server)
        try expectScrapeMatchesStatistics(server, address)
        #expect(try HTTPProbe.get("/healthz", at: address).body == "ok\n")
    }
}
