import Foundation
import SamepageCore
import Testing

/// A samepage-probe that maps objects and holds them until stopped: a connected client with
/// known figures for `samepage clients` and `top`.
final class HoldingClient {
    let process = Process()
    private let input = Pipe()

    /// With `asUID`, the probe runs as that uid (setpriv execs it: the pid is the probe's).
    init(socket: String, ids: [String], asUID uid: UInt32? = nil) throws {
        let arguments = ["hold", socket] + ids
        if let uid {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", Binaries.probe] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: Binaries.probe)
            process.arguments = arguments
        }
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        let ready = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
        guard ready.hasPrefix("ready ") else { throw TestFailure("probe did not get ready: \(ready)") }
    }

    var pid: Int32 { process.processIdentifier }

    func stop() {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }

    deinit { stop() }
}

/// `samepage stats`, `clients` and `top` against a real samepaged and real client processes.
@Suite(.serialized)
struct OperatorCommandsTests {
    /// Puts `count` distinct objects through the CLI and returns their ids.
    func putObjects(_ count: Int, on server: ServerProcess, seed: UInt64, asNobody: Bool = false) throws -> [String] {
        try (0..<count).map { i in
            let file = try writeFile(randomBytes(64 << 10, seed: seed + UInt64(i)), in: server.directory, name: "obj-\(seed)-\(i)")
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: file)
            let arguments = ["put", file, "--socket", server.socket]
            let result = asNobody
                ? try Command.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", Binaries.samepage] + arguments)
                : try Command.run(Binaries.samepage, arguments)
            guard result.status == 0 else { throw TestFailure("put failed: \(result.stderr)") }
            return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    @Test("clients lists the domain's clients with their pids and objects, and no client of another domain",
          .enabled(if: getuid() == 0, "running a client as another uid needs root"))
    func clientsOfOneDomain() throws {
        let server = try ServerProcess(regionSize: "64M", extraArguments: ["--socket-mode", "666", "--allow-uid", "65534"])
        defer { server.stop() }
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: server.directory)
        let mine = try putObjects(3, on: server, seed: 100)
        let theirs = try putObjects(1, on: server, seed: 200, asNobody: true)
        let first = try HoldingClient(socket: server.socket, ids: Array(mine.prefix(2)))
        let second = try HoldingClient(socket: server.socket, ids: [mine[2]])
        let stranger = try HoldingClient(socket: server.socket, ids: theirs, asUID: 65534)
        defer { first.stop(); second.stop(); stranger.stop() }

        let (total, clients) = try server.clients()
        let others = clients.filter { $0["self"] as? Bool == false }
        #expect(total == 3, "two holders and this command: \(clients)")
        #expect(Set(others.compactMap { $0["pid"] as? Int }) == [Int(first.pid), Int(second.pid)])
        #expect(!clients.contains { $0["pid"] as? Int == Int(stranger.pid) }, "a client of another domain is not listed")
        for client in others {
            let pid = client["pid"] as? Int
            #expect(client["objects_mapped"] as? Int == (pid == Int(first.pid) ? 2 : 1), "\(client)")
            #expect(client["uid"] as? Int == 0 && client["name"] as? String == "samepage-probe")
            #expect(client["uploads_open"] as? Int == 0, "\(client)")
            #expect(client["requests_served"] as? Int == client["objects_mapped"] as? Int, "one map request per object: \(client)")
            let since = client["connected_since"] as? Int ?? 0
            #expect(abs(since - Int(Date().timeIntervalSince1970)) < 60, "connected just now: \(since)")
        }

        // The table shows the same rows.
        let table = try Command.samepage(["clients"], socket: server.socket)
        #expect(table.status == 0)
        let rows = table.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(rows.contains { $0.prefix(5) == [String(first.pid), "0", "samepage-probe", "2", "0"] }, "\(table.stdout)")
        #expect(rows.contains { $0.prefix(5) == [String(second.pid), "0", "samepage-probe", "1", "0"] }, "\(table.stdout)")
        #expect(!table.stdout.contains(String(stranger.pid)))

        // Nobody's view: its own holder and itself, nothing of root's domain.
        let (nobodyTotal, nobodyClients) = try server.clients(asNobody: true)
        #expect(nobodyTotal == 2)
        #expect(nobodyClients.contains { $0["pid"] as? Int == Int(stranger.pid) && $0["objects_mapped"] as? Int == 1 })
        #expect(!nobodyClients.contains { [Int(first.pid), Int(second.pid)].contains($0["pid"] as? Int ?? -1) })
        #expect(nobodyClients.allSatisfy { $0["uid"] as? Int == 65534 })

        // A client that goes away leaves the list.
        second.stop()
        #expect(try server.clients().clients.map { $0["pid"] as? Int }.contains(Int(second.pid)) == false)
    }

    @Test("top -n 2 --interval 0.2 prints two frames with the statistics and the clients")
    func topFrames() throws {
        let server = try ServerProcess(regionSize: "64M")
        defer { server.stop() }
        let ids = try putObjects(2, on: server, seed: 300)
        let holder = try HoldingClient(socket: server.socket, ids: ids)
        defer { holder.stop() }
        let stats = try server.statistics()

        let clock = ContinuousClock()
        var result: CommandResult?
        let elapsed = try clock.measure { result = try Command.samepage(["top", "-n", "2", "--interval", "0.2"], socket: server.socket) }
        let top = try #require(result)
        #expect(top.status == 0, "\(top.stderr)")
        #expect(elapsed >= .milliseconds(200), "one interval between two frames")
        #expect(!top.stdout.contains("\u{1B}"), "no escape codes when stdout is not a terminal")
        let lines = top.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let starts = lines.indices.filter { lines[$0].hasPrefix("samepage top: \(server.socket)") }
        #expect(starts.count == 2, "\(top.stdout)")
        guard starts.count == 2 else { return }
        let frames = [Array(lines[starts[0]..<starts[1]]), Array(lines[starts[1]...])]
        for (index, frame) in frames.enumerated() {
            let rows = frame.map { $0.split(separator: " ").map(String.init) }
            for name in ["pages_shared", "pages_unshared", "objects", "region_bytes_used"] {
                let row = rows.first { $0.first == name }
                #expect(row?[1] == String(stats[name]!), "\(name) in frame \(index): \(row ?? [])")
                #expect(row?[2] == (index == 0 ? "-" : "0/s"), "rate of \(name) in frame \(index): \(row ?? [])")
            }
            #expect(frame.contains("clients of this domain: 2"), "the holder and top itself: \(frame)")
            #expect(rows.contains { $0.prefix(4) == [String(holder.pid), "0", "samepage-probe", "2"] }, "\(frame)")
            #expect(rows.contains { $0.first == "*" && $0[3] == "samepage-cli" }, "top's own connection, marked")
        }
        #expect(stats["objects"] == 2 && stats["pages_unshared"] == 32)
    }

    @Test("the stats table holds the values stats --json reports")
    func statsTableMatchesJSON() throws {
        let server = try ServerProcess(regionSize: "64M")
        defer { server.stop() }
        let ids = try putObjects(2, on: server, seed: 400)
        let file = try writeFile(randomBytes(64 << 10, seed: 400), in: server.directory, name: "again")
        #expect(try Command.samepage(["put", file], socket: server.socket).status == 0, "a duplicate: pages_sharing > 0")
        let json = try server.statistics()
        let table = try Command.samepage(["stats"], socket: server.socket)
        #expect(table.status == 0)
        let rows = table.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(rows.first?.first == "STATISTIC")
        #expect(rows.count == json.count + 1, "one row per statistic: \(table.stdout)")
        for (name, value) in json {
            #expect(rows.contains { $0.count >= 2 && $0[0] == name && $0[1] == String(value) }, "\(name) = \(value)")
        }
        #expect(json["pages_sharing"] == 16 && json["objects"] == Int64(ids.count + 1))
        #expect(table.stdout.contains("of 64.0 MiB ("), "region usage as a share of the region: \(table.stdout)")
    }

    @Test("bad input: a clear error and exit status 1", arguments: [
        (["top", "--interval", "0"], "--interval must be"),
        (["top", "--interval=-1"], "--interval must be"),
        (["top", "--interval", "soon"], "--interval"),
        (["top", "-n", "0"], "-n must be at least 1"),
        (["top", "--once", "-n", "3"], "--once and -n 3 disagree"),
        (["clients", "--bogus"], "Unknown option '--bogus'"),
        (["stats", "--jsn"], "Unknown option '--jsn'"),
        (["frobnicate"], "Unexpected argument 'frobnicate'"),
    ])
    func badInput(arguments: [String], message: String) throws {
        // Refused before connecting: no server is needed.
        let result = try Command.run(Binaries.samepage, arguments)
        #expect(result.status == 1, "\(arguments): \(result.stderr)")
        #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
        #expect(result.stdout.isEmpty)
    }

    @Test("no server: clients and top name the socket they tried, exit status 1")
    func noServer() throws {
        for command in [["clients"], ["top", "--once"], ["stats"]] {
            let result = try Command.run(Binaries.samepage, command + ["--socket", "/nonexistent/samepaged.sock"])
            #expect(result.status == 1)
            #expect(result.stderr.contains("/nonexistent/samepaged.sock"), "\(command): \(result.stderr)")
        }
    }

    @Test("every command's help has examples; completion scripts name the subcommands")
    func helpAndCompletions() throws {
        for command in ["put", "get", "delete", "stats", "clients", "top", "ping", "bench"] {
            let help = try Command.run(Binaries.samepage, [command, "--help"])
            #expect(help.status == 0)
            #expect(help.stdout.contains("Examples:") && help.stdout.contains("samepage \(command)"), "\(command) --help")
        }
        for shell in ["bash", "zsh", "fish"] {
            let script = try Command.run(Binaries.samepage, ["--generate-completion-script", shell])
            #expect(script.status == 0, "\(shell): \(script.stderr)")
            for subcommand in ["put", "get", "delete", "stats", "clients", "top", "ping", "bench"] {
                #expect(script.stdout.contains(subcommand), "\(shell) completion lacks \(subcommand)")
            }
        }
        let bash = try Command.run(Binaries.samepage, ["--generate-completion-script", "bash"]).stdout
        #expect(bash.contains("complete") && bash.contains("--interval") && bash.contains("--iterations"))
    }
}
