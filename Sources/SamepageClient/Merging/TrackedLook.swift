/// What a scan does with an ordinary page of a range whose writes the kernel reports, from what
/// the scanner knows of it (`MergeRange.digest`) and whether it was written since the last scan.
/// Only `firstSight` and `readCandidate` read the page.
enum TrackedLook: Equatable {
    /// Not seen before: read now, once, for the stable tree and to keep its digest.
    case firstSight
    /// Written since the last scan (or new while nothing is stored, so that a look-up could not
    /// find it): volatile, not read; read at the next scan if it stays unwritten.
    case volatile
    /// Unwritten since the last scan, which did not read it: read now, a candidate.
    case readCandidate
    /// Unwritten since it was read: a candidate with the digest it had then, not read again.
    case knownCandidate

    /// `lookUpNewPages` (whether the domain stores pages, which costs the scanner a request to
    /// learn) is asked only for a page written before it was first seen.
    init(known: UInt64, written: Bool, lookUpNewPages: @autoclosure () -> Bool) {
        if known == MergeRange.unseen {
            self = !written || lookUpNewPages() ? .firstSight : .volatile
        } else if written {
            self = .volatile
        } else {
            self = known == MergeRange.seen ? .readCandidate : .knownCandidate
        }
    }

    var reads: Bool { self == .firstSight || self == .readCandidate }
}
