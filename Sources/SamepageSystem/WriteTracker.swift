import CSamepageShim
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

    /// The pages of the `states.count` pages from `start` written since the last call covering
    /// them: `PageState.written`, with `PageState.resident` unless the page reads the kernel's
    /// zero page; they are armed again. Every other page is 0, resident or not. Pages of
    /// mappings not tracked (made after the last `track`) are never reported.
    public func collect(start: UInt, into states: UnsafeMutableBufferPointer<UInt8>) throws(Errno) {
        guard let base = states.baseAddress, !states.isEmpty else { return }
        try Syscall.pageStates(pagemap: pagemap.rawValue, start: start, pages: states.count, mode: SP_PAGES_COLLECT, into: base)
    }

    /// Which of the `states.count` pages from `start` were written since they were last armed,
    /// without arming them: `PageState.written` (with `PageState.resident`) for those, and for
    /// every present page of a mapping not tracked; `PageState.resident` alone for the others
    /// present; 0 for pages not present.
    public func peek(start: UInt, into states: UnsafeMutableBufferPointer<UInt8>) throws(Errno) {
        guard let base = states.baseAddress, !states.isEmpty else { return }
        try Syscall.pageStates(pagemap: pagemap.rawValue, start: start, pages: states.count, mode: SP_PAGES_PEEK, into: base)
    }
}

/// The bits of a page's state byte (sp_page_states).
public enum PageState {
    /// Present and not the kernel's shared zero page: the page holds memory of its own.
    public static let resident = UInt8(SP_PAGE_RESIDENT)
    /// Written since it was last armed (in a tracked mapping).
    public static let written = UInt8(SP_PAGE_WRITTEN)
    /// Backed by a file (in the scanner's memory: a merged page, the region's, still shared).
    public static let file = UInt8(SP_PAGE_FILE)
}
