import CSamepageShim
import Glibc
import SystemPackage

/// One io_uring instance (liburing, through the C shim). Not copyable; the ring is torn down
/// with its owner.
///
/// The kernel reads the msghdr, iovec and buffers of a submitted operation until its completion
/// arrives, so callers keep them in heap memory they own, never in locals.
public struct IoUring: ~Copyable {
    private let ring: OpaquePointer

    /// A completion, copied out of the completion queue.
    public struct Completion: Sendable {
        public var userData: UInt64
        public var result: Int32
        public var flags: UInt32
        /// A multishot operation stays armed while this is set.
        public var hasMore: Bool { flags & SP_CQE_F_MORE != 0 }
    }

    public init(entries: UInt32) throws(Errno) {
        var error: Int32 = 0
        guard let ring = sp_ring_create(entries, &error) else { throw Errno(rawValue: error) }
        self.ring = ring
    }

    deinit { sp_ring_destroy(ring) }

    private func check(_ result: Int32) throws(Errno) {
        if result < 0 { throw Errno(rawValue: -result) }
    }

    public func acceptMultishot(_ fd: Int32, userData: UInt64) throws(Errno) {
        try check(sp_ring_accept_multishot(ring, fd, userData))
    }

    public func receiveMessage(_ fd: Int32, _ message: UnsafeMutablePointer<msghdr>, userData: UInt64) throws(Errno) {
        try check(sp_ring_recvmsg(ring, fd, message, userData))
    }

    public func sendMessage(_ fd: Int32, _ message: UnsafePointer<msghdr>, userData: UInt64) throws(Errno) {
        try check(sp_ring_sendmsg(ring, fd, message, userData))
    }

    public func read(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, userData: UInt64) throws(Errno) {
        try check(sp_ring_read(ring, fd, buffer.baseAddress, UInt32(buffer.count), userData))
    }

    /// A completion after `milliseconds` (one pending at a time).
    public func timeout(milliseconds: UInt32, userData: UInt64) throws(Errno) {
        try check(sp_ring_timeout(ring, milliseconds, userData))
    }

    /// Submits what is queued and waits for at least `count` completions. Interrupted waits
    /// return normally: the caller drains what is there and waits again.
    public func submitAndWait(_ count: UInt32 = 1) throws(Errno) {
        let r = sp_ring_submit_and_wait(ring, count)
        if r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY && r != -ETIME { throw Errno(rawValue: -r) }
    }

    /// The next completion already in the queue, if any.
    public func popCompletion() -> Completion? {
        var c = Completion(userData: 0, result: 0, flags: 0)
        guard sp_ring_pop(ring, &c.userData, &c.result, &c.flags) == 1 else { return nil }
        return c
    }
}
