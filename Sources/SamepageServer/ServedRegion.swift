import SamepageCore

/// A domain's region as the event loop serves it: the store's backing, plus the fds clients map.
/// A region is a row of segments, each a memfd of its own (one segment unless `--hardened`);
/// a segment's `generation` changes when the server retires it and starts a fresh memfd in its
/// place, so a client can tell its fd of that segment is out of date.
protocol ServedRegion: RegionBacking {
    var segmentBytes: UInt64 { get }
    /// The read-only fd clients map segment `index` from (owned by the region: dup to send it).
    func descriptor(ofSegment index: UInt32) -> Int32
    func generation(ofSegment index: UInt32) -> UInt32
    /// Counts segment retirements, so that a connection can tell cheaply whether one of the
    /// segments it holds may have gone out of date.
    var retirements: UInt64 { get }
}

extension ServedRegion {
    var regionBytes: UInt64 { UInt64(pageCount) * UInt64(Page.size) }
    var segmentCount: UInt32 { UInt32((regionBytes + segmentBytes - 1) / segmentBytes) }
}
