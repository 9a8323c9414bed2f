import Foundation
import SamepageCore
import Testing

/// Who may connect, and who shares pages with whom, checked with a client that really runs as
/// another uid (nobody, 65534). Needs root to switch uid (CI runs as root); skipped otherwise.
@Suite(.serialized, .enabled(if: getuid() == 0, "switching to another uid needs root"))
struct AccessTests {
    static let nobody: UInt32 = 65534

    /// Runs the CLI as nobody.
    func asNobody(_ arguments: [String], socket: String) throws -> CommandResult {
        try Command.run("/usr/bin/setpriv", ["--reuid=\(Self.nobody)", "--regid=\(Self.nobody)", "--clear-groups",
                                            Binaries.samepage] + arguments + ["--socket", socket])
    }

    @Test("another uid: refused by the socket's mode, then by the allow-list, then let in")
    func allowList() throws {
        let closed = try ServerProcess(regionSize: "16M")
        defer { closed.stop() }
        let denied = try asNobody(["ping"], socket: closed.socket)
        #expect(denied.status == 1)
        #expect(denied.stderr.contains("permission denied"), "\(denied.stderr)")

        let open = try ServerProcess(regionSize: "16M", extraArguments: ["--socket-mode", "666"])
        defer { open.stop() }
        let refused = try asNobody(["ping"], socket: open.socket)
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("may not connect") && refused.stderr.contains("--allow-uid 65534"), "\(refused.stderr)")
        #expect(try Command.samepage(["ping"], socket: open.socket).status == 0, "the server's own uid still gets in")

        let allowed = try ServerProcess(regionSize: "16M", extraArguments: ["--socket-mode", "666", "--allow-uid", "65534"])
        defer { allowed.stop() }
        let welcome = try asNobody(["ping"], socket: allowed.socket)
        #expect(welcome.status == 0, "\(welcome.stderr)")

        let byGroup = try ServerProcess(regionSize: "16M", extraArguments: ["--socket-mode", "666", "--allow-gid", "65534"])
        defer { byGroup.stop() }
        #expect(try asNobody(["ping"], socket: byGroup.socket).status == 0)
    }

    @Test("pages are shared only inside a dedup domain; a domain's objects are invisible to others")
    func domains() throws {
        let bytes = randomBytes(1 << 20, seed: 21)
        for grouped in [false, true] {
            var arguments = ["--socket-mode", "666", "--allow-uid", "65534"]
            if grouped { arguments += ["--domain", "team=0,65534"] }
            let server = try ServerProcess(regionSize: "64M", extraArguments: arguments)
            defer { server.stop() }
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: server.directory)
            let file = try writeFile(bytes, in: server.directory, name: "shared.bin")
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: file)
            let mine = try Command.samepage(["put", file], socket: server.socket)
            let theirs = try asNobody(["put", file], socket: server.socket)
            #expect(mine.status == 0 && theirs.status == 0, "\(mine.stderr)\(theirs.stderr)")
            let stats = try server.statistics()
            let nobodyStats = try asNobody(["stats", "--json"], socket: server.socket)
            let theirStats = try JSONSerialization.jsonObject(with: Data(nobodyStats.stdout.utf8)) as? [String: Int]
            if grouped {
                #expect(stats["pages_shared"] == 256 && stats["pages_sharing"] == 256, "one domain: \(stats)")
                #expect(theirStats?["pages_sharing"] == 256, "the same domain's figures for both")
            } else {
                #expect(stats["pages_shared"] == 0 && stats["pages_unshared"] == 256, "separate domains: \(stats)")
                #expect(theirStats?["pages_unshared"] == 256 && theirStats?["objects"] == 1,
                        "the other uid sees its own domain only: \(nobodyStats.stdout)")
                // An id from another domain is unknown there: ids name objects of one domain.
                let id = mine.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                let foreign = try asNobody(["get", id], socket: server.socket)
                #expect(foreign.status == 1 && foreign.stderr.contains("unknown object"), "\(foreign.stderr)")
            }
        }
    }

    @Test("samepaged rejects malformed --domain options")
    func badDomainOption() throws {
        for option in ["team", "team=", "=1,2", "team=1,x", "a b=1"] {
            let result = try Command.run(Binaries.samepaged, ["--socket", "/tmp/unused-\(getpid()).sock", "--domain", option])
            #expect(result.status != 0, "--domain \(option) accepted")
            #expect(result.stderr.contains("--domain"), "\(result.stderr)")
        }
        let twice = try Command.run(Binaries.samepaged, ["--socket", "/tmp/unused-\(getpid()).sock",
                                                        "--domain", "a=1,2", "--domain", "b=2"])
        #expect(twice.status != 0 && twice.stderr.contains("two --domain groups"))
    }
}
