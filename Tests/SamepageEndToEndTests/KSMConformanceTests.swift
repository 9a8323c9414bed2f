import Foundation
import Testing

/// The kernel's own KSM self-tests, ported (Sources/samepage-ksm-selftest): each case runs in a
/// fresh process against a real samepaged, and states the kernel's expectation next to its code.
@Suite(.serialized)
struct KSMConformanceTests {
    static let functional = [
        "unmerge", "unmerge-zero-pages", "unmerge-discarded", "prot-none", "prctl", "prctl-fork",
        "prctl-fork-exec", "prctl-unmerge", "fork-merging-page-count",
    ]
    static let counting = [
        "merge-count", "unmerge-count", "zero-page-merge", "max-page-sharing", "volatile", "merge-time", "cow-time", "quiet-scans",
        "vma-budget", "idle-rest", "hot-slices",
    ]

    @Test("ksm_functional_tests.c", arguments: functional)
    func functionalCase(_ name: String) throws {
        try run(name)
    }

    @Test("ksm_tests.c modes", arguments: counting)
    func countingCase(_ name: String) throws {
        try run(name)
    }

    /// The same cases with volatility decided by checksums, as the kernel does, where Samepage
    /// would otherwise ask the kernel which pages were written (track_writes).
    @Test("ksm_tests.c modes, with checksums instead of write tracking", arguments: counting)
    func countingCaseWithChecksums(_ name: String) throws {
        try run(name, "track_writes=0")
    }

    @Test("ksm_functional_tests.c: test_unmerge_uffd_wp is skipped, with its reason")
    func uffdWriteProtect() throws {
        let server = try ServerProcess(regionSize: "256M")
        defer { server.stop() }
        let result = try Command.run(Binaries.selftest, [server.socket, "unmerge-uffd-wp"])
        #expect(result.status == 4 && result.stdout.hasPrefix("skip: "), "\(result.stdout)")
    }

    private func run(_ name: String, _ parameters: String...) throws {
        let server = try ServerProcess(regionSize: "256M")
        defer { server.stop() }
        let result = try Command.run(Binaries.selftest, [server.socket, name] + parameters)
        #expect(result.status == 0, "\(name): \(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("ok: "), "\(name): \(result.stdout)")
        // Whatever the case did, once it is gone the server holds nothing for it.
        let stats = try server.waitForStatistics { $0["region_bytes_used"] == 0 }
        #expect(stats["region_bytes_used"] == 0, "\(name) left pages in the region")
        #expect(stats["pages_unshared"] == 0, "\(name) left unstable entries")
    }
}
