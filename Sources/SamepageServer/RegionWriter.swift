import CSamepageShim
import Glibc
import SamepageCore
import SamepageSystem

/// New region pages, written with pwrite in runs instead of copied through the mapping.
///
/// Why: copying a new page through the server's mapping first faults it in, and the kernel
/// clears every new shmem page it faults in, only for the copy to overwrite it. A write() of
/// whole pages skips the clearing. Measured on this VM (1 GiB in 2 MiB runs): MADV_POPULATE_WRITE
/// plus memcpy 1.2 GB/s; pwrite 2.3 GB/s; pwrite then MADV_POPULATE_READ 1.8 GB/s.
///
/// Whether the written pages are then mapped into the server's view (MADV_POPULATE_READ, one
/// call per run) depends on whether the server will read them again. An object's pages are
/// compared with every later put of the same data: mapped now, a duplicate put reaches 0.72-0.77
/// of memcmp; faulted in at that first compare, 0.45-0.49 (a block populate at first read was
/// worse still, 0.29-0.39: populate marks every page accessed). A merged page is found by its
/// digest and seldom read here again (a compare with a new candidate of the same hash, or its
/// release): it is not mapped (server CPU in `samepage bench --workload runs`, median of 6 runs:
/// 0.175 s without, 0.20 s with). So the server's RssShmem does not show the whole region; the
/// memfd's allocated blocks (st_blocks) do.
///
/// New pages of one submission are consecutive (the store places them in one extent), so they
/// gather here and go in one call; a read of a gathered page (the store comparing with it), a
/// release of one, or the end of the request writes them first.
final class RegionWriter {
    /// 256 KiB: a syscall per 64 pages costs nothing next to the pages, and the buffer stays small
    /// (it is the server's memory, not the region's).
    static let capacityPages = 64

    private let fd: Int32
    private let base: UnsafeMutableRawPointer
    private let buffer: UnsafeMutableRawPointer
    private var start: PageNumber = 0
    private var count = 0
    /// Whether the gathered run is mapped into the server's view once written.
    private var mapRun = false

    init(fd: Int32, base: UnsafeMutableRawPointer) {
        self.fd = fd
        self.base = base
        buffer = .allocate(byteCount: Self.capacityPages * Page.size, alignment: Page.size)
    }

    deinit { buffer.deallocate() }

    func write(_ content: UnsafeRawPointer, toPage page: PageNumber, mapAfterward: Bool) {
        if count > 0 && (page != start + PageNumber(count) || count == Self.capacityPages || mapAfterward != mapRun) { flush() }
        if count == 0 {
            start = page
            mapRun = mapAfterward
        }
        memcpy(buffer + count * Page.size, content, Page.size)
        count += 1
    }

    /// Whether `page` waits here (not yet in the region).
    func holds(_ page: PageNumber) -> Bool {
        count > 0 && page >= start && page < start + PageNumber(count)
    }

    func holds(_ extent: ExtentAllocator.Extent) -> Bool {
        count > 0 && UInt64(extent.start) < UInt64(start) + UInt64(count) && extent.end > UInt64(start)
    }

    func flush() {
        guard count > 0 else { return }
        let bytes = count * Page.size
        var done = 0
        let offset = UInt64(start) << UInt64(Page.shift)
        while done < bytes {
            let written = (try? Syscall.pwrite(fd, UnsafeRawBufferPointer(start: buffer + done, count: bytes - done),
                                               offset: offset + UInt64(done))) ?? -1
            guard written > 0 else {
                // Out of memory for the file (ENOSPC): copy through the mapping instead, which
                // raises the same condition (SIGBUS) exactly as a copy always did.
                memcpy(base + Int(offset) + done, buffer + done, bytes - done)
                break
            }
            done += written
        }
        if mapRun { try? Syscall.madvise(base + Int(offset), bytes, SP_MADV_POPULATE_READ) }
        count = 0
    }
}
