import Foundation
import Glibc
import SamepageCore
import Testing

/// SIGTERM drains: samepaged (under ServiceGroup) stops taking clients, answers every request
/// it had received, closes the connections, removes its socket and exits 0.
@Suite(.serialized)
struct GracefulShutdownTests {
    @Test("SIGTERM with requests in flight: every reply arrives, then a clean close; exit 0; socket gone")
    func drainOnSigterm() throws {
        let directory = try ServerProcess.makeDirectory()
        let metrics = ListenAddress.unix(path: directory + "/metrics.sock")
        let server = try ServerProcess(regionSize: "64M", extraArguments: ["--metrics-listen", "\(metrics)"], directory: directory)
        defer { server.stop() }
        let busy = try RawClient(socketPath: server.socket)
        #expect(try busy.hello().kind == .welcome)
        let idle = try RawClient(socketPath: server.socket)
        #expect(try idle.hello().kind == .welcome)
        #expect(try HTTPProbe.get("/healthz", at: metrics).status == 200)

        // Far more replies than a socket buffer holds, unread: when SIGTERM comes, the server
        // still has requests to read and replies to send.
        let requests = 3000
        var bytes: [UInt8] = []
        for id in 1...requests { bytes += Request.stats.encode(requestID: UInt64(id)) }
        try busy.sendRaw(bytes)
        kill(server.pid, SIGTERM)

        // Draining: the socket file is gone at once, /healthz says so, the process waits for us.
        let deadline = Date().addingTimeInterval(5)
        while FileManager.default.fileExists(atPath: server.socket) && Date() < deadline { usleep(5_000) }
        #expect(!FileManager.default.fileExists(atPath: server.socket), "no new client can find a draining server")
        let health = try HTTPProbe.get("/healthz", at: metrics)
        #expect(health.status == 503)
        #expect(health.body == "draining\n")
        #expect(server.process.isRunning, "replies are still unread")

        var answered = 0
        while true {
            do {
                let reply = try busy.receive()
                #expect(reply.kind == .statistics)
                answered += 1
            } catch is RawClient.EndOfStream {
                break
            }
        }
        #expect(answered == requests, "every request sent before SIGTERM is answered")
        #expect(idle.isClosedByServer(), "an idle client is closed cleanly")

        let status = server.terminateAndWait()
        #expect(status == 0, "exit status \(String(describing: status)): \(server.log())")
        #expect(!FileManager.default.fileExists(atPath: metrics.description.replacingOccurrences(of: "unix:", with: "")))
    }

    @Test("SIGINT on an idle server: exit 0 at once")
    func sigintIdle() throws {
        let server = try ServerProcess(regionSize: "16M")
        defer { server.stop() }
        let client = try server.client()
        try client.ping()
        kill(server.pid, SIGINT)
        let deadline = Date().addingTimeInterval(10)
        while server.process.isRunning && Date() < deadline { usleep(10_000) }
        #expect(!server.process.isRunning)
        #expect(server.process.terminationReason == .exit && server.process.terminationStatus == 0)
        #expect(!FileManager.default.fileExists(atPath: server.socket))
        #expect(throws: (any Error).self) { try client.ping() }
    }
}
