// Every system call Samepage makes goes through this file: one place that turns -1/errno into a
// typed `Errno` and retries EINTR, as swift-system does in Internals/Syscalls.swift.
import CSamepageShim
import Glibc
import SystemPackage

/// Runs `body` until it does not fail with EINTR; -1 becomes the thrown `Errno`.
@inline(__always)
func valueOrErrno<I: FixedWidthInteger>(retryOnInterrupt: Bool = true, _ body: () -> I) throws(Errno) -> I {
    while true {
        let result = body()
        if result != -1 { return result }
        let error = Errno(rawValue: errno)
        if retryOnInterrupt && error == .interrupted { continue }
        throw error
    }
}

/// For shim calls that return -errno rather than -1 and errno.
@inline(__always)
func valueOrNegatedErrno(_ body: () -> Int32) throws(Errno) -> Int32 {
    let result = body()
    if result >= 0 { return result }
    throw Errno(rawValue: -result)
}

/// The raw calls, each a thin typed wrapper. Higher layers use the owner types instead.
public enum Syscall {
    public static func close(_ fd: Int32) {
        // Linux closes the descriptor even when close() reports EINTR: never retry it.
        _ = Glibc.close(fd)
    }

    public static func memfdCreate(_ name: String, cloexec: Bool = true, sealing: Bool = true) throws(Errno) -> Int32 {
        var flags: UInt32 = 0
        if cloexec { flags |= SP_MFD_CLOEXEC }
        if sealing { flags |= SP_MFD_ALLOW_SEALING }
        return try valueOrErrno { sp_memfd_create(name, flags) }
    }

    /// A second descriptor of the same open file, close-on-exec.
    public static func duplicate(_ fd: Int32) throws(Errno) -> Int32 {
        try valueOrErrno { sp_dup_cloexec(fd) }
    }

    public static func ftruncate(_ fd: Int32, _ size: UInt64) throws(Errno) {
        _ = try valueOrErrno { Glibc.ftruncate(fd, off_t(size)) }
    }

    public static func fchmod(_ fd: Int32, _ mode: mode_t) throws(Errno) {
        _ = try valueOrErrno { Glibc.fchmod(fd, mode) }
    }

    public static func fileSize(_ fd: Int32) throws(Errno) -> UInt64 {
        var st = stat()
        _ = try valueOrErrno { fstat(fd, &st) }
        return UInt64(st.st_size)
    }

    public static func addSeals(_ fd: Int32, _ seals: Int32) throws(Errno) {
        _ = try valueOrErrno { sp_add_seals(fd, seals) }
    }

    public static func seals(_ fd: Int32) throws(Errno) -> Int32 {
        try valueOrErrno { sp_get_seals(fd) }
    }

    public static func punchHole(_ fd: Int32, offset: UInt64, length: UInt64) throws(Errno) {
        _ = try valueOrErrno { sp_punch_hole(fd, off_t(offset), off_t(length)) }
    }

    public static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) throws(Errno) -> Int32 {
        try valueOrErrno { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    public static func mmap(_ address: UnsafeMutableRawPointer?, _ length: Int, _ prot: Int32, _ flags: Int32,
                            _ fd: Int32, _ offset: UInt64) throws(Errno) -> UnsafeMutableRawPointer {
        while true {
            let p = Glibc.mmap(address, length, prot, flags, fd, off_t(offset))
            if p != MAP_FAILED, let p { return p }
            let error = Errno(rawValue: errno)
            if error != .interrupted { throw error }
        }
    }

    /// Releases a mapping: a failure leaves nothing for the caller to do.
    public static func munmap(_ address: UnsafeMutableRawPointer, _ length: Int) {
        _ = try? unmap(address, length)
    }

    /// munmap where the caller must know it happened: it fails with ENOMEM when it would split a
    /// mapping past vm.max_map_count.
    public static func unmap(_ address: UnsafeMutableRawPointer, _ length: Int) throws(Errno) {
        _ = try valueOrErrno { Glibc.munmap(address, length) }
    }

    /// (libc, not a system call.) Allocations of `bytes` and more get mappings of their own,
    /// which go back to the kernel when freed; glibc's default threshold rises with every such
    /// free, after which large blocks come from an arena and stay resident once freed.
    public static func allocateLargeBlocksAsMappings(from bytes: Int) {
        _ = sp_set_mmap_threshold(bytes)
    }

    /// Moves one whole mapping of `length` bytes to `newAddress`, replacing what was there.
    public static func mremapFixed(_ address: UnsafeMutableRawPointer, _ length: Int, to newAddress: UnsafeMutableRawPointer) throws(Errno) {
        while sp_mremap_fixed(address, length, newAddress) == MAP_FAILED {
            let error = Errno(rawValue: errno)
            if error != .interrupted { throw error }
        }
    }

    public static func madvise(_ address: UnsafeMutableRawPointer, _ length: Int, _ advice: Int32) throws(Errno) {
        _ = try valueOrErrno { Glibc.madvise(address, length, advice) }
    }

    public static func mprotect(_ address: UnsafeMutableRawPointer, _ length: Int, _ prot: Int32) throws(Errno) {
        _ = try valueOrErrno { Glibc.mprotect(address, length, prot) }
    }

    public static func pwrite(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, offset: UInt64) throws(Errno) -> Int {
        try valueOrErrno { Glibc.pwrite(fd, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    public static func pread(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, offset: UInt64) throws(Errno) -> Int {
        try valueOrErrno { Glibc.pread(fd, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    /// Copies our own memory, stopping at the first unreadable page (no fault): bytes copied.
    public static func readOwnMemory(into destination: UnsafeMutableRawPointer, from source: UnsafeRawPointer, count: Int) throws(Errno) -> Int {
        try valueOrErrno { sp_read_own_memory(destination, source, count) }
    }

    /// Writes into another process's memory (process_vm_writev; ptrace's permission rules).
    public static func writeMemory(ofProcess pid: Int32, at destination: UnsafeMutableRawPointer, from source: UnsafeRawPointer, count: Int) throws(Errno) -> Int {
        try valueOrErrno { sp_write_process_memory(pid, destination, source, count) }
    }

    public static func socket(_ domain: Int32, _ type: Int32) throws(Errno) -> Int32 {
        try valueOrErrno { Glibc.socket(domain, type | Int32(SOCK_CLOEXEC.rawValue), 0) }
    }

    public static func bind(_ fd: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) throws(Errno) {
        _ = try valueOrErrno { Glibc.bind(fd, address, length) }
    }

    public static func listen(_ fd: Int32, backlog: Int32) throws(Errno) {
        _ = try valueOrErrno { Glibc.listen(fd, backlog) }
    }

    public static func connect(_ fd: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) throws(Errno) {
        _ = try valueOrErrno { Glibc.connect(fd, address, length) }
    }

    public static func send(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) throws(Errno) -> Int {
        try valueOrErrno { Glibc.send(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL)) }
    }

    public static func recv(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        try valueOrErrno { Glibc.recv(fd, buffer.baseAddress, buffer.count, 0) }
    }

    public static func sendmsg(_ fd: Int32, _ message: UnsafePointer<msghdr>) throws(Errno) -> Int {
        try valueOrErrno { Glibc.sendmsg(fd, message, Int32(MSG_NOSIGNAL)) }
    }

    public static func recvmsg(_ fd: Int32, _ message: UnsafeMutablePointer<msghdr>) throws(Errno) -> Int {
        try valueOrErrno { Glibc.recvmsg(fd, message, Int32(MSG_CMSG_CLOEXEC)) }
    }

    public static func shutdown(_ fd: Int32, reading: Bool = true, writing: Bool = true) {
        let how = reading && writing ? SHUT_RDWR : reading ? SHUT_RD : SHUT_WR
        _ = Glibc.shutdown(fd, Int32(how))
    }

    public static func peerCredentials(_ fd: Int32) throws(Errno) -> (pid: Int32, uid: UInt32, gid: UInt32) {
        var pid: pid_t = 0, uid: uid_t = 0, gid: gid_t = 0
        _ = try valueOrErrno { sp_peer_credentials(fd, &pid, &uid, &gid) }
        return (pid, uid, gid)
    }

    public static func unlink(_ path: String) {
        _ = Glibc.unlink(path)
    }

    public static func chmod(_ path: String, _ mode: mode_t) throws(Errno) {
        _ = try valueOrErrno { Glibc.chmod(path, mode) }
    }

    public static func mkdir(_ path: String, _ mode: mode_t) throws(Errno) {
        _ = try valueOrErrno { Glibc.mkdir(path, mode) }
    }

    /// Page faults the whole process has taken (minor and major, every thread, living or gone):
    /// a count that only grows. One getrusage call, no /proc parsing.
    public static func pageFaults() -> UInt64 { pageFaults(of: RUSAGE_SELF.rawValue) }

    /// Page faults the calling thread has taken (minor and major).
    public static func threadPageFaults() -> UInt64 { pageFaults(of: 1 /* RUSAGE_THREAD */) }

    private static func pageFaults(of who: Int32) -> UInt64 {
        var usage = rusage()
        _ = getrusage(who, &usage)
        return UInt64(usage.ru_minflt) &+ UInt64(usage.ru_majflt)
    }

    /// Wall-clock seconds since the Unix epoch (CLOCK_REALTIME): when a client connected, as
    /// operators read it. Never used to measure intervals (ContinuousClock does that).
    public static func wallClockSeconds() -> Int64 {
        var now = timespec()
        _ = clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec)
    }

    /// Whether `fd` is a terminal (`samepage top` clears the screen only on one).
    public static func isTerminal(_ fd: Int32) -> Bool {
        Glibc.isatty(fd) == 1
    }

    /// Sleeps for `seconds`, resuming after signals until the time is up (`samepage top`).
    public static func sleep(seconds: Double) {
        guard seconds > 0 else { return }
        let whole = seconds.rounded(.down)
        var request = timespec(tv_sec: Int(whole), tv_nsec: Int((seconds - whole) * 1e9))
        var remaining = timespec()
        while nanosleep(&request, &remaining) == -1 && errno == EINTR { request = remaining }
    }

    // Used by the shutdown and statistics wake-ups and the metrics endpoint.

    public static func eventfd(initial: UInt32 = 0) throws(Errno) -> Int32 {
        try valueOrErrno { sp_eventfd(initial) }
    }

    public static func read(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        try valueOrErrno { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    public static func write(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) throws(Errno) -> Int {
        try valueOrErrno { Glibc.write(fd, buffer.baseAddress, buffer.count) }
    }

    /// poll(2): the number of ready descriptors, 0 on timeout. An interrupted poll is retried
    /// with the whole timeout again (callers use timeouts as upper bounds only).
    public static func poll(_ fds: inout [pollfd], timeoutMilliseconds: Int32) throws(Errno) -> Int {
        let count = nfds_t(fds.count)
        return Int(try fds.withUnsafeMutableBufferPointer { buffer throws(Errno) in
            try valueOrErrno { Glibc.poll(buffer.baseAddress, count, timeoutMilliseconds) }
        })
    }

    public static func accept(_ fd: Int32) throws(Errno) -> Int32 {
        try valueOrErrno { sp_accept_cloexec(fd) }
    }

    public static func setSocketOption<T: BitwiseCopyable>(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: T) throws(Errno) {
        var value = value
        _ = try valueOrErrno { Glibc.setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<T>.size)) }
    }

    /// The port a bound AF_INET socket has (the kernel's choice when it was bound to port 0).
    public static func boundPort(_ fd: Int32) throws(Errno) -> UInt16 {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = try withUnsafeMutablePointer(to: &address) { p throws(Errno) in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(Errno) in
                try valueOrErrno { Glibc.getsockname(fd, sa, &length) }
            }
        }
        return UInt16(bigEndian: address.sin_port)
    }

    /// access(2) with the real uid: whether this process may do `mode` (R_OK, W_OK, X_OK) to path.
    public static func access(_ path: String, _ mode: Int32) throws(Errno) {
        _ = try valueOrErrno { Glibc.access(path, mode) }
    }

    /// The file type bits of `path` (S_IFDIR, S_IFSOCK, ...), following symbolic links.
    public static func fileType(_ path: String) throws(Errno) -> mode_t {
        var mode: UInt32 = 0
        _ = try valueOrErrno { sp_stat_mode(path, &mode) }
        return mode_t(mode) & S_IFMT
    }

    /// Sets `signal` to be ignored (SIGPIPE: a peer that went away is an error return, not death).
    public static func ignoreSignal(_ signal: Int32) {
        _ = Glibc.signal(signal, SIG_IGN)
    }

    // MARK: Write tracking (userfaultfd, asynchronous write-protect; PAGEMAP_SCAN)

    /// A userfaultfd that tracks writes without messages, checked against `pagemap`.
    public static func writeTrackingCreate(pagemap: Int32) throws(Errno) -> Int32 {
        try valueOrNegatedErrno { sp_write_tracking_create(pagemap) }
    }

    public static func writeTrackingRegister(_ uffd: Int32, start: UInt, length: Int) throws(Errno) {
        _ = try valueOrNegatedErrno { sp_write_tracking_register(uffd, start, length) }
    }

    public static func writeTrackingUnregister(_ uffd: Int32, start: UInt, length: Int) throws(Errno) {
        _ = try valueOrNegatedErrno { sp_write_tracking_unregister(uffd, start, length) }
    }

    /// The SP_PAGE_* state of each page (see sp_page_states); `arm` write-protects the present
    /// pages of registered mappings again. ENOTTY before Linux 6.7.
    public static func pageStates(pagemap: Int32, start: UInt, pages: Int, mode: sp_page_states_mode,
                                  into states: UnsafeMutablePointer<UInt8>) throws(Errno) {
        _ = try valueOrNegatedErrno { sp_page_states(pagemap, start, pages, Int32(mode.rawValue), states) }
    }
}
