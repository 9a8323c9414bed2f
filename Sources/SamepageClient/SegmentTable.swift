import Glibc
import SamepageCore
import SamepageSystem
import SystemPackage

/// The region as one connection of this client holds it: a read-only fd per segment (a region of
/// one segment unless the server runs `--hardened`), in the generation the server last sent,
/// and a read-only view of the whole region for comparing pages before merging.
///
/// The server sends a segment's fd (a `segment` frame with SCM_RIGHTS) before the first reply
/// that names pages in it, and tells us when a segment we hold was retired (a `segment` frame
/// without fd): then its fd and view go, so the old memfd's memory can go back to the kernel.
/// A segment the server names pages in is never retired while we hold references in it, so
/// the view and the fds are stable for every page a reply gave us. Used under the client lock.
final class SegmentTable {
    private(set) var regionBytes: UInt64 = 0
    private(set) var segmentBytes: UInt64 = 0
    private var entries: [UInt32: (fd: Int32, generation: UInt32)] = [:]
    /// A PROT_NONE reservation of `regionBytes`; each held segment is mapped read-only over its place.
    private var view: UnsafeMutableRawPointer?

    deinit {
        for entry in entries.values { Syscall.close(entry.fd) }
        if let view { Syscall.munmap(view, Int(regionBytes)) }
    }

    /// The region's shape, from welcome. Segments installed before it (the server sends a
    /// one-segment region's fd ahead of welcome) are checked against it.
    func configure(regionBytes: UInt64, segmentBytes: UInt64) throws(SamepageError) {
        guard segmentBytes > 0, segmentBytes % UInt64(Page.size) == 0, regionBytes % UInt64(Page.size) == 0 else {
            throw .protocolViolation("region of \(regionBytes) bytes in segments of \(segmentBytes)")
        }
        self.regionBytes = regionBytes
        self.segmentBytes = segmentBytes
        for index in entries.keys where !isValid(index) {
            throw .protocolViolation("segment \(index) is outside the region")
        }
    }

    var segmentCount: UInt32 {
        segmentBytes == 0 ? 0 : UInt32((regionBytes + segmentBytes - 1) / segmentBytes)
    }

    private func isValid(_ index: UInt32) -> Bool { segmentBytes == 0 || index < segmentCount }

    /// Takes the fd of segment `index` in `generation`, replacing (and closing) an older one.
    func install(_ index: UInt32, generation: UInt32, descriptor: consuming OwnedDescriptor) throws(SamepageError) {
        guard isValid(index) else { throw .protocolViolation("segment \(index) is outside the region") }
        let fd = descriptor.release()
        if let old = entries[index] { Syscall.close(old.fd) }
        entries[index] = (fd, generation)
        if view != nil { mapIntoView(index) }
    }

    /// The server retired segment `index`: our `generation` of it is gone.
    func drop(_ index: UInt32, generation: UInt32) {
        guard let entry = entries[index], entry.generation == generation else { return }
        Syscall.close(entry.fd)
        entries[index] = nil
        if let view, segmentBytes > 0 {
            let (offset, length) = span(index)
            _ = try? Syscall.mmap(view + offset, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0)
        }
    }

    func descriptor(ofSegment index: UInt32) -> Int32? { entries[index]?.fd }

    /// The fds as they are now, for use outside the client lock (the merge engine maps pages it
    /// holds references to, whose segments cannot be retired meanwhile).
    func snapshot() -> SegmentSnapshot {
        SegmentSnapshot(regionBytes: regionBytes, segmentBytes: segmentBytes, descriptors: entries.mapValues(\.fd))
    }

    /// The read-only view of the whole region (made on first use; segments not held read as a
    /// fault, which no reply can make us touch).
    func makeView() throws(Errno) -> UnsafeRawPointer {
        if let view { return UnsafeRawPointer(view) }
        let reservation = try Syscall.mmap(nil, Int(regionBytes), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        view = reservation
        for index in entries.keys { mapIntoView(index) }
        return UnsafeRawPointer(reservation)
    }

    private func span(_ index: UInt32) -> (offset: Int, length: Int) {
        let start = UInt64(index) * segmentBytes
        return (Int(start), Int(min(segmentBytes, regionBytes - start)))
    }

    private func mapIntoView(_ index: UInt32) {
        guard let view, let entry = entries[index] else { return }
        let (offset, length) = span(index)
        // Failure leaves that part of the view PROT_NONE; merges of pages there then fail their
        // comparison and wait for the next scan, nothing worse.
        _ = try? Syscall.mmap(view + offset, length, PROT_READ, MAP_SHARED | MAP_FIXED | MAP_NORESERVE, entry.fd, 0)
    }
}

/// Where a region page is mapped from: the fd of its segment, the page's offset in that file, and
/// how many pages from it on lie in the same segment (one mmap may cover that many).
struct SegmentLocation {
    var fd: Int32
    var offset: UInt64
    var pagesInSegment: Int
}

/// A copy of a `SegmentTable`'s fds (not owned: the table keeps them open).
struct SegmentSnapshot {
    var regionBytes: UInt64
    var segmentBytes: UInt64
    var descriptors: [UInt32: Int32]

    func location(ofPage page: PageNumber) throws(SamepageError) -> SegmentLocation {
        let pageOffset = UInt64(page) * UInt64(Page.size)
        guard segmentBytes > 0, pageOffset < regionBytes else { throw .protocolViolation("region page \(page) is outside the region") }
        let index = UInt32(pageOffset / segmentBytes)
        guard let fd = descriptors[index] else { throw .protocolViolation("no fd for region segment \(index) (page \(page))") }
        let segmentEnd = min(regionBytes, UInt64(index + 1) * segmentBytes)
        return SegmentLocation(fd: fd, offset: pageOffset - UInt64(index) * segmentBytes,
                               pagesInSegment: Int((segmentEnd - pageOffset) / UInt64(Page.size)))
    }
}
