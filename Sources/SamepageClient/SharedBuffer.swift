import Glibc
import SamepageCore
import SamepageSystem
import SystemPackage

/// Memory to write an object into and put without a copy (Plasma's create-then-seal): a memfd
/// of this process, sealed against shrinking and growing, that the server maps read-only when
/// the buffer is first put. A put of a buffer reads the pages where they are; the object keeps
/// its own copy (new pages) or shares stored ones, so the buffer may be rewritten as soon as
/// `put` returns. Not thread-safe: one writer at a time, and no writes during a put of it.
public final class SharedBuffer: @unchecked Sendable {
    /// The writable bytes, `length` rounded up to whole pages.
    public let bytes: UnsafeMutableRawBufferPointer
    let descriptor: OwnedDescriptor
    /// The client's name for it on the connection it was attached on, and that connection's
    /// generation (a new connection attaches it again).
    var handle: UInt32 = 0
    var attachedGeneration = -1
    weak var client: SamepageClient?

    init(length: Int) throws(SamepageError) {
        let size = max(1, Int(Page.count(forBytes: UInt64(length)))) * Page.size
        let memfd = try systemCall("cannot create a shared buffer") { () throws(Errno) in
            try Memfd.create(name: "samepage-buffer", size: UInt64(size), seals: [.shrink, .grow, .seal])
        }
        let fd = memfd.rawValue
        let base = try systemCall("cannot map a shared buffer") { () throws(Errno) in
            try Syscall.mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        }
        descriptor = memfd
        bytes = UnsafeMutableRawBufferPointer(start: base, count: size)
    }

    deinit {
        client?.detach(self)
        Syscall.munmap(bytes.baseAddress!, bytes.count)
    }
}
