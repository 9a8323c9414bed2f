@testable import SamepageClient
import Testing

/// The scanner's decision for one page under write tracking (TrackedLook), every case: which
/// pages are read, which are candidates, which wait.
struct TrackedLookTests {
    let digest: UInt64 = 0x9E37_79B9_7F4A_7C15

    @Test("a page not seen before is read at once, unless it was written while nothing is stored")
    func firstSight() {
        #expect(TrackedLook(known: MergeRange.unseen, written: false, lookUpNewPages: false) == .firstSight)
        #expect(TrackedLook(known: MergeRange.unseen, written: true, lookUpNewPages: true) == .firstSight)
        #expect(TrackedLook(known: MergeRange.unseen, written: true, lookUpNewPages: false) == .volatile)
    }

    @Test("a written page is volatile and not read, whatever was known of it")
    func writtenPagesAreVolatile() {
        for known in [MergeRange.seen, digest] {
            for lookUp in [false, true] {
                let look = TrackedLook(known: known, written: true, lookUpNewPages: lookUp)
                #expect(look == .volatile)
                #expect(!look.reads)
            }
        }
    }

    @Test("an unwritten page is a candidate: read if its digest is not known, else not read again")
    func unwrittenPagesAreCandidates() {
        #expect(TrackedLook(known: MergeRange.seen, written: false, lookUpNewPages: false) == .readCandidate)
        #expect(TrackedLook(known: MergeRange.seen, written: false, lookUpNewPages: false).reads)
        #expect(TrackedLook(known: digest, written: false, lookUpNewPages: true) == .knownCandidate)
        #expect(!TrackedLook(known: digest, written: false, lookUpNewPages: true).reads)
    }
    /// Whether the domain stores pages costs the scanner a request: a converged process's scans,
    /// whose pages are all known, must never need it.
    @Test("whether anything is stored is asked only for a page written before it was first seen")
    func storedPagesAskedOnlyWhenItDecides() {
        var asked = 0
        func ask() -> Bool { asked += 1; return true }
        for known in [MergeRange.unseen, MergeRange.seen, digest] {
            for written in [false, true] {
                _ = TrackedLook(known: known, written: written, lookUpNewPages: ask())
            }
        }
        #expect(asked == 1)
    }
}
