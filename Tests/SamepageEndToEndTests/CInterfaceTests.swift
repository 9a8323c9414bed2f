import Foundation
import Testing

/// libsamepage from C: installed by scripts/install-c-library, found through pkg-config, used by
/// Examples/c/samepage-demo.c against a real samepaged.
@Suite(.serialized)
struct CInterfaceTests {
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    @Test("a C program builds with pkg-config samepage and runs against samepaged")
    func cProgram() throws {
        let server = try ServerProcess(regionSize: "256M")
        defer { server.stop() }
        let prefix = server.directory + "/prefix"
        var environment = ProcessInfo.processInfo.environment
        environment["SAMEPAGE_BIN_DIR"] = Binaries.directory
        let install = try Command.run(Self.repository + "/scripts/install-c-library", ["--prefix", prefix], environment: environment)
        #expect(install.status == 0, "\(install.stderr)")
        #expect(FileManager.default.fileExists(atPath: prefix + "/lib/libsamepage.so"))
        #expect(FileManager.default.fileExists(atPath: prefix + "/include/samepage.h"))

        environment["PKG_CONFIG_PATH"] = prefix + "/lib/pkgconfig"
        let flags = try Command.run("/usr/bin/env", ["pkg-config", "--cflags", "--libs", "samepage"], environment: environment)
        #expect(flags.status == 0, "\(flags.stderr)")
        let program = server.directory + "/samepage-demo"
        let compile = try Command.run("/usr/bin/env", ["cc", "-Wall", "-Wextra", "-Werror", "-o", program,
                                                       Self.repository + "/Examples/c/samepage-demo.c"]
                                      + flags.stdout.split(separator: " ").map { String($0).trimmingCharacters(in: .whitespacesAndNewlines) }
                                      .filter { !$0.isEmpty },
                                      environment: environment)
        #expect(compile.status == 0, "\(compile.stderr)")
        let run = try Command.run(program, [server.socket])
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        #expect(run.stdout.hasSuffix("ok\n"), "\(run.stdout)")
        #expect(run.stdout.contains("ksm_merging_pages 256"))
        #expect(run.stdout.contains("shared buffer put twice: stored once"), "\(run.stdout)")
        let stats = try server.waitForStatistics { $0["region_bytes_used"] == 0 }
        #expect(stats["region_bytes_used"] == 0, "the C program's pages were released")
    }

    @Test("the C interface reports a missing server as a negative errno")
    func noServer() throws {
        let prefix = FileManager.default.temporaryDirectory.appendingPathComponent("samepage-c-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: prefix) }
        var environment = ProcessInfo.processInfo.environment
        environment["SAMEPAGE_BIN_DIR"] = Binaries.directory
        #expect(try Command.run(Self.repository + "/scripts/install-c-library", ["--prefix", prefix], environment: environment).status == 0)
        let source = prefix + "/noserver.c"
        try """
            #include <samepage.h>
            #include <stdio.h>
            int main(void) {
                samepage_t *sp;
                int rc = samepage_connect("/nonexistent/samepage.sock", &sp);
                printf("%d %s\\n", rc, samepage_strerror(rc));
                return rc < 0 ? 0 : 1;
            }
            """.write(toFile: source, atomically: true, encoding: .utf8)
        let program = prefix + "/noserver"
        let compile = try Command.run("/usr/bin/env", ["cc", "-o", program, source, "-I", prefix + "/include",
                                                       "-L", prefix + "/lib", "-lsamepage", "-Wl,-rpath," + prefix + "/lib"])
        #expect(compile.status == 0, "\(compile.stderr)")
        let run = try Command.run(program, [])
        #expect(run.status == 0, "\(run.stdout)")
        #expect(run.stdout.hasPrefix("-111 samepaged is not running"), "ECONNREFUSED: \(run.stdout)")
    }
}
