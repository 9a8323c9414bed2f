import CSamepageShim
import Glibc
import SamepageSystem
import SystemPackage
import Testing

/// Whether this kernel tracks writes (userfaultfd asynchronous write-protect and PAGEMAP_SCAN,
/// Linux 6.7): the tests of the tracker itself skip where it does not, as liburing's tests do.
enum WriteTrackerProbe {
    static let available = (try? WriteTracker()) != nil
}

/// WriteTracker against the real kernel, one behaviour per test.
@Suite(.enabled(if: WriteTrackerProbe.available, "the kernel cannot track writes (Linux 6.7 userfaultfd WP_ASYNC)"))
struct WriteTrackerTests {
    static let pages = 8

    /// Anonymous memory with pages 0..<populated written once.
    func memory(populated: Int) throws -> UnsafeMutableRawPointer {
        let p = try Syscall.mmap(nil, Self.pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        for i in 0..<populated { (p + i * 4096).storeBytes(of: 1, as: UInt8.self) }
        return p
    }

    /// The states of the pages, collected (and the resident ones armed again).
    func states(_ tracker: borrowing WriteTracker, _ p: UnsafeMutableRawPointer) throws -> [UInt8] {
        var states = [UInt8](repeating: 0xFF, count: Self.pages)
        try states.withUnsafeMutableBufferPointer { buffer throws(Errno) in
            try tracker.collect(start: UInt(bitPattern: p), into: buffer)
        }
        return states
    }

    /// The states of the pages, peeked at (nothing armed).
    func peeked(_ tracker: borrowing WriteTracker, _ p: UnsafeMutableRawPointer) throws -> [UInt8] {
        var states = [UInt8](repeating: 0xFF, count: Self.pages)
        try states.withUnsafeMutableBufferPointer { buffer throws(Errno) in
            try tracker.peek(start: UInt(bitPattern: p), into: buffer)
        }
        return states
    }

    /// The pages reported written, collected (and armed again).
    func written(_ tracker: borrowing WriteTracker, _ p: UnsafeMutableRawPointer) throws -> [Int] {
        let marks = try states(tracker, p)
        return marks.indices.filter { marks[$0] & PageState.written != 0 }
    }

    @Test("the first collection reports every resident page written (none was armed), the next none")
    func firstCollectionReportsPopulatedPages() throws {
        let p = try memory(populated: 5)
        defer { Syscall.munmap(p, Self.pages * 4096) }
        let tracker = try WriteTracker()
        try tracker.track(start: UInt(bitPattern: p), length: Self.pages * 4096)
        #expect(try written(tracker, p) == [0, 1, 2, 3, 4], "pages never populated are not resident: not reported")
        #expect(try written(tracker, p) == [])
    }

    /// What the merge step asks after write-protecting pages it is about to map over: were any
    /// written since the scan armed them? A peek answers without arming them again, so a later
    /// collection still reports the write.
    @Test("a peek reports the pages written since they were armed, and leaves them to the next collection")
    func peekDoesNotArm() throws {
        let p = try memory(populated: 4)
        defer { Syscall.munmap(p, Self.pages * 4096) }
        let tracker = try WriteTracker()
        try tracker.track(start: UInt(bitPattern: p), length: Self.pages * 4096)
        _ = try written(tracker, p)  // armed
        (p + 2 * 4096).storeBytes(of: 7, as: UInt8.self)
        let resident = PageState.resident, written = PageState.written
        #expect(try peeked(tracker, p) == [resident, resident, resident | written, resident, 0, 0, 0, 0])
        #expect(try peeked(tracker, p) == [resident, resident, resident | written, resident, 0, 0, 0, 0], "peeking armed nothing")
        #expect(try self.written(tracker, p) == [2])
        #expect(try peeked(tracker, p) == [resident, resident, resident, resident, 0, 0, 0, 0])
        // Memory no tracker watches reads as written: nothing vouches for it.
        let other = try memory(populated: 1)
        defer { Syscall.munmap(other, Self.pages * 4096) }
        #expect(try peeked(tracker, other)[0] == resident | written)
    }

    @Test("pages never touched, and pages that only read the kernel's zero page, are not resident")
    func residency() throws {
        let p = try memory(populated: 3)
        defer { Syscall.munmap(p, Self.pages * 4096) }
        _ = (p + 5 * 4096).load(as: UInt8.self)  // maps the shared zero page
        let tracker = try WriteTracker()
        try tracker.track(start: UInt(bitPattern: p), length: Self.pages * 4096)
        let first = try states(tracker, p)
        #expect(first.map { $0 & PageState.resident != 0 } == [true, true, true, false, false, false, false, false])
        // Untracked memory reports residency too (the scanner's checksum mode).
        let other = try memory(populated: 2)
        defer { Syscall.munmap(other, Self.pages * 4096) }
        var plain = [UInt8](repeating: 0xFF, count: Self.pages)
        let pagemap = try Syscall.open("/proc/self/pagemap", O_RDONLY)
        defer { Syscall.close(pagemap) }
        try plain.withUnsafeMutableBufferPointer { buffer throws(Errno) in
            try Syscall.pageStates(pagemap: pagemap, start: UInt(bitPattern: other), pages: Self.pages, mode: SP_PAGES_RESIDENCY, into: buffer.baseAddress!)
        }
        #expect(plain.map { $0 & PageState.resident != 0 } == [true, true, false, false, false, false, false, false])
    }

    /// Memory with every page written, tracked by a new tracker that has collected once: all
    /// its pages armed.
    func withArmedMemory(_ body: (UnsafeMutableRawPointer, borrowing WriteTracker) throws -> Void) throws {
        let p = try memory(populated: Self.pages)
        defer { Syscall.munmap(p, Self.pages * 4096) }
        let tracker = try WriteTracker()
        try tracker.track(start: UInt(bitPattern: p), length: Self.pages * 4096)
        _ = try written(tracker, p)
        try body(p, tracker)
    }

    @Test("a write is reported once, where it happened; a read is not")
    func writesAreReportedOnce() throws {
        try withArmedMemory { p, tracker throws in
            (p + 2 * 4096).storeBytes(of: 7, as: UInt8.self)
            (p + 6 * 4096).storeBytes(of: 7, as: UInt8.self)
            _ = (p + 4 * 4096).load(as: UInt8.self)
            #expect(try written(tracker, p) == [2, 6])
            #expect(try written(tracker, p) == [])
        }
    }

    @Test("a mapping made after tracking started is not reported until tracked, then once in full")
    func newMappingsNeedTrackingAgain() throws {
        try withArmedMemory { p, tracker throws in
            _ = try Syscall.mmap(p + 3 * 4096, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
            (p + 3 * 4096).storeBytes(of: 9, as: UInt8.self)
            (p + 4 * 4096).storeBytes(of: 9, as: UInt8.self)
            #expect(try written(tracker, p) == [], "the new mapping is not registered")
            try tracker.track(start: UInt(bitPattern: p), length: Self.pages * 4096)
            #expect(try written(tracker, p) == [3, 4])
            #expect(try written(tracker, p) == [])
        }
    }

    /// The scanner tells a merged page whose copy-on-write broke by the tracker alone: the page,
    /// mapped privately from a file, is reported written and no longer the file's.
    @Test("a file page mapped copy-on-write is reported as the file's until a write gives it a private copy")
    func copyOnWriteOfAFilePage() throws {
        try withArmedMemory { p, tracker throws in
            let fd = try Syscall.memfdCreate("samepage-test-file-page")
            defer { Syscall.close(fd) }
            try Syscall.ftruncate(fd, 4096)
            _ = try Syscall.mmap(p + 3 * 4096, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0)
            _ = (p + 3 * 4096).load(as: UInt8.self)  // the file's page, mapped
            try tracker.track(start: UInt(bitPattern: p), length: Self.pages * 4096)
            let registered = try states(tracker, p)
            #expect(registered[3] & PageState.file != 0 && registered[3] & PageState.written != 0,
                    "a mapping registered anew reports its present pages once, the file's marked so")
            #expect(registered.indices.filter { registered[$0] & PageState.file != 0 } == [3])
            (p + 3 * 4096).storeBytes(of: 5, as: UInt8.self)  // copy on write
            let written = try states(tracker, p)
            #expect(written[3] & PageState.written != 0 && written[3] & PageState.resident != 0)
            #expect(written[3] & PageState.file == 0, "the private copy is no longer the file's")
        }
    }

    @Test("untracked memory is not reported")
    func untrackStops() throws {
        try withArmedMemory { p, tracker throws in
            tracker.untrack(start: UInt(bitPattern: p), length: Self.pages * 4096)
            p.storeBytes(of: 3, as: UInt8.self)
            #expect(try written(tracker, p) == [])
        }
    }

    @Test("memory another userfaultfd owns cannot be tracked: EBUSY, and the owner keeps it")
    func anotherOwnerIsBusy() throws {
        try withArmedMemory { p, owner throws in
            let other = try WriteTracker()
            #expect(throws: Errno.resourceBusy) { try other.track(start: UInt(bitPattern: p), length: Self.pages * 4096) }
            (p + 5 * 4096).storeBytes(of: 3, as: UInt8.self)
            #expect(try written(owner, p) == [5])
        }
    }
}
