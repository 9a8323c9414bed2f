import Foundation
import Testing

/// A client of another uid, in the same dedup domain as its victim, tries everything it can with
/// the region fd it was given; every attempt must fail and the victim's bytes stay exact. Needs
/// root to run the attacker as nobody (CI runs as root).
@Suite(.serialized, .enabled(if: getuid() == 0, "switching to another uid needs root"))
struct HostileClientTests {
    @Test("another uid cannot change one byte of the region")
    func regionAttacks() throws {
        let server = try ServerProcess(regionSize: "64M", extraArguments: [
            "--socket-mode", "666", "--allow-uid", "65534", "--domain", "team=0,65534",
        ])
        defer { server.stop() }
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: server.directory)
        let client = try server.client()
        let bytes = randomBytes(1 << 20, seed: 41)
        let id = try client.put(bytes)
        let watching = try client.map(id)

        let attack = try Command.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups",
                                                          Binaries.probe, "attack", server.socket])
        #expect(attack.status == 0, "\(attack.stderr)")
        let lines = attack.stdout.split(separator: "\n").map(String.init)
        #expect(lines.last == "done", "\(attack.stdout)")
        let refused = lines.filter { $0.hasPrefix("refused ") }
        #expect(refused.count == 11, "every attack refused: \(attack.stdout)")
        #expect(!attack.stdout.contains("ALLOWED"), "\(attack.stdout)")
        #expect(lines.contains("private copy written"), "copy-on-write stays allowed, and private")

        #expect(watching.bytes.elementsEqual(bytes), "a victim's mapping is unchanged")
        #expect(try client.get(id) == bytes, "the stored object is unchanged")
        try watching.unmap()
    }
}
