import Glibc
import SystemPackage

/// Tells which pages of some address ranges the process wrote since it last asked, without
/// reading them: a userfaultfd in asynchronous write-protect mode (Linux 6.7) keeps a
/// write-protect bit in each page's table entry, the first write to a page clears it (the kernel
/// resolves that fault itself), and one PAGEMAP_SCAN walk reports the pages without it and sets
/// it again. Needs no privilege (user-mode faults only).
///
/// Owned by one process: a child after fork() must make its own (the descriptor it inherits
/// acts on its parent's memory).
public struct WriteTracker: ~Copyable {
    private let faults: OwnedDescriptor
    private let pagemap: OwnedDescriptor

    /// Fails with the kernel's error where a part is missing (ENOSYS, EINVAL, ENOTTY, EPERM).
    public init() throws(Errno) {
        let pagemap = OwnedDescriptor(taking: try Syscall.open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC))
        faults = OwnedDescriptor(taking: try Syscall.writeTrackingCreate(pagemap: pagemap.rawValue))
        self.pagemap = pagemap
    }

    /// Starts tracking [start, start + length). Mappings already tracked stay as they are;
    /// mappings new to it report every page written once. EBUSY: another userfaultfd of the
    /// process owns part of the range.
    public func track(start: UInt, length: Int) throws(Errno) {
        try Syscall.writeTrackingRegister(faults.rawValue, start: start, length: length)
    }

    /// Stops tracking [start, start + length): writes there cost nothing extra any more.
    public func untrack(start: UInt, length: Int) {
        _ = try? Syscall.writeTrackingUnregister(faults.rawValue, start: start, length: length)
    }

    /// Sets written[i] to 1 for each page of the `written.count` pages from `start` written since
    /// the last call covering it, and arms them again. Pages of mappings not tracked (made after
    /// the last `track`) are not reported.
    public func collectWritten(start: UInt, into written: UnsafeMutableBufferPointer<UInt8>) throws(Errno) {
        guard let base = written.baseAddress, !written.isEmpty else { return }
        try Syscall.collectWrittenPages(pagemap: pagemap.rawValue, start: start, pages: written.count, into: base)
    }
}
