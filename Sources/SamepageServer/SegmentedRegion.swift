import CSamepageShim
import Glibc
import SamepageCore
import SamepageSystem
import SystemPackage

/// The region of one dedup domain in hardened mode (`samepaged --hardened`): a row of segment
/// memfds, each sealed with F_SEAL_FUTURE_WRITE as soon as the server has mapped it writable.
///
/// Why: a client of the server's own uid can reopen a plain read-only memfd read-write through
/// /proc/self/fd and write to it (design.md section 2). After FUTURE_WRITE, nobody can `write()`
/// it or map it shared-writable (EPERM), whatever fd they hold; the server's earlier mapping
/// still writes. The price: nobody can punch holes in it either, the server included, so single
/// pages cannot be given back. Instead, when a segment has no allocated page left (the store
/// tells us), the server retires it: a fresh memfd takes its place (next generation) and the
/// old one's memory goes back to the kernel once every client has dropped its fd and mappings
/// of it (clients drop them when the server tells them, with their next reply).
///
/// The server sees one contiguous range: each segment is mapped MAP_FIXED into a reservation,
/// so page numbers and the store's addressing are the same as for a one-memfd region.
final class SegmentedRegion: ServedRegion {
    let base: UnsafeMutableRawPointer
    let pageCount: UInt32
    let segmentBytes: UInt64
    private(set) var retirements: UInt64 = 0
    private let name: String
    private let reservation: MemoryMapping
    private var segments: [Segment] = []

    /// One generation of one segment: its memfd (mapped writable by the server at its place in
    /// the reservation) and the read-only fd clients get.
    private final class Segment {
        let memfd: OwnedDescriptor
        let readOnly: OwnedDescriptor
        let generation: UInt32
        init(memfd: consuming OwnedDescriptor, readOnly: consuming OwnedDescriptor, generation: UInt32) {
            self.memfd = memfd
            self.readOnly = readOnly
            self.generation = generation
        }
    }

    init(name: String, bytes: UInt64, segmentBytes: UInt64) throws(Errno) {
        let size = bytes / UInt64(Page.size) * UInt64(Page.size)
        self.segmentBytes = max(UInt64(Page.size), min(segmentBytes / UInt64(Page.size) * UInt64(Page.size), size))
        self.name = name
        pageCount = UInt32(size / UInt64(Page.size))
        let address = try Syscall.mmap(nil, Int(size), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        reservation = MemoryMapping(adopting: address, length: Int(size))
        base = address
        for index in 0..<segmentCount {
            segments.append(try makeSegment(index, generation: 0))
        }
    }

    private func segmentLength(_ index: UInt32) -> UInt64 {
        min(segmentBytes, regionBytes - UInt64(index) * segmentBytes)
    }

    private func makeSegment(_ index: UInt32, generation: UInt32) throws(Errno) -> Segment {
        let length = segmentLength(index)
        let memfd = try Memfd.create(name: "samepage-region-\(name)-\(index)", size: length, seals: [], mode: 0o440)
        let readOnly = try memfd.reopenReadOnly()
        // Map first: after the FUTURE_WRITE seal no new writable mapping can be made, ours
        // included. Once this MAP_FIXED succeeded the server writes to the new memfd, so nothing
        // after it may fail.
        _ = try Syscall.mmap(base + Int(UInt64(index) * segmentBytes), Int(length), PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_FIXED | MAP_NORESERVE, memfd.rawValue, 0)
        do {
            try Syscall.addSeals(memfd.rawValue, MemfdSeals([.shrink, .grow, .futureWrite, .seal]).rawValue)
        } catch {
            // A fresh sealable memfd takes these seals (FUTURE_WRITE, unlike WRITE, does not care
            // about writable mappings): failing here means the kernel lacks FUTURE_WRITE, which
            // `--hardened` checks at start-up, so this is not reachable.
            fatalError("cannot seal a fresh region segment: \(error)")
        }
        return Segment(memfd: memfd, readOnly: readOnly, generation: generation)
    }

    var segmentPages: UInt32 { UInt32(segmentBytes / UInt64(Page.size)) }
    func descriptor(ofSegment index: UInt32) -> Int32 { segments[Int(index)].readOnly.rawValue }
    func generation(ofSegment index: UInt32) -> UInt32 { segments[Int(index)].generation }

    func prepare(_ extent: ExtentAllocator.Extent) {
        try? Syscall.madvise(base + Int(extent.start) * Page.size, Int(extent.count) * Page.size, SP_MADV_POPULATE_WRITE)
    }

    /// Sealed memory cannot be punched: freed pages stay allocated, and are reused, until their
    /// whole segment is retired.
    func release(_ extent: ExtentAllocator.Extent) {}

    func segmentEmptied(_ segment: UInt32) {
        // The fresh memfd is mapped over the old one (MAP_FIXED replaces it atomically); the old
        // memfd closes when its Segment goes. If making it fails (out of fds), the old segment
        // simply stays in use: its memory is not freed, nothing is lost.
        guard let fresh = try? makeSegment(segment, generation: segments[Int(segment)].generation &+ 1) else { return }
        segments[Int(segment)] = fresh
        retirements += 1
    }
}
