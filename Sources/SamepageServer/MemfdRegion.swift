import CSamepageShim
import Glibc
import SamepageCore
import SamepageSystem
import SystemPackage

/// The region of one dedup domain: a sparse memfd, sealed against shrinking and growing (so no
/// one can truncate it under a client's mapping), mode 0440, mapped read-write by the server
/// alone. Clients receive `readOnlyDescriptor`, a separate read-only open of the same file.
final class MemfdRegion: ServedRegion {
    public let base: UnsafeMutableRawPointer
    public let pageCount: UInt32
    private let memfd: OwnedDescriptor
    public let readOnlyDescriptor: OwnedDescriptor
    private let mapping: MemoryMapping
    private let writer: RegionWriter

    public init(name: String, bytes: UInt64) throws(Errno) {
        let size = bytes / UInt64(Page.size) * UInt64(Page.size)
        memfd = try Memfd.create(name: "samepage-region-\(name)", size: size, seals: [.shrink, .grow], mode: 0o440)
        readOnlyDescriptor = try memfd.reopenReadOnly()
        mapping = try MemoryMapping(fd: memfd.rawValue, length: Int(size), writable: true, shared: true, noReserve: true)
        base = mapping.base
        pageCount = UInt32(size / UInt64(Page.size))
        writer = RegionWriter(fd: memfd.rawValue, base: base)
    }

    // New pages are written by RegionWriter (pwrite, no clearing), so nothing is faulted in
    // ahead of them: `prepare` keeps the protocol's no-op.

    public func write(_ content: UnsafeRawPointer, toPage page: PageNumber, readAgain: Bool) {
        writer.write(content, toPage: page, mapAfterward: readAgain)
    }

    public func willRead(_ page: PageNumber) {
        if writer.holds(page) { writer.flush() }
    }

    public func flushWrites() { writer.flush() }

    var segmentBytes: UInt64 { regionBytes }
    func descriptor(ofSegment index: UInt32) -> Int32 { readOnlyDescriptor.rawValue }
    func generation(ofSegment index: UInt32) -> UInt32 { 0 }
    var retirements: UInt64 { 0 }

    public func release(_ extent: ExtentAllocator.Extent) {
        // A page freed before its deferred write must not be written after the punch.
        if writer.holds(extent) { writer.flush() }
        // Give the memory back; the pages read as zeros until written again. Failure here would
        // only keep memory allocated, never corrupt anything, so it is not fatal.
        try? Syscall.punchHole(memfd.rawValue, offset: UInt64(extent.start) << UInt64(Page.shift),
                               length: UInt64(extent.count) << UInt64(Page.shift))
    }
}
