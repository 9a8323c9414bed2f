import SamepageCore
import Testing

/// Inputs the request fuzzer (Sources/samepage-fuzz, scripts/fuzz) found crashing the server,
/// replayed through the service as the server would run them.
@Suite("Fuzz regressions")
struct FuzzRegressionTests {
    @Test("a scan report with counters past Int64.max does not crash the statistics")
    func hugeScanReport() throws {
        let harness = ServiceHarness()
        let client = try harness.client()
        var huge = ScanReport()
        huge.pagesScanned = .max
        huge.pagesSkipped = .max
        huge.rmapItems = .max
        huge.zeroPages = .max
        huge.pagesVolatile = .max
        #expect(harness.send(.scanReport(huge), client) == [.done])
        let replies = harness.send(.stats, client)
        guard case .statistics(let stats) = replies.first else {
            Issue.record("no statistics: \(replies)")
            return
        }
        let scanned = stats.first { $0.name == "pages_scanned" }?.value ?? -1
        #expect(scanned > 0 && scanned <= 1 << 40, "bounded: \(scanned)")
        // A second client with the same report, and one leaving: the sums stay bounded too.
        let other = try harness.client(pid: 2)
        _ = harness.send(.scanReport(huge), other)
        harness.service.close(other.session)
        guard case .statistics(let after) = harness.send(.stats, client).first else { return }
        #expect((after.first { $0.name == "pages_scanned" }?.value ?? -1) > 0)
    }
}
