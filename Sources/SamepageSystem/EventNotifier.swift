import Glibc
import SystemPackage

/// An eventfd: one thread signals, another wakes. The event loop arms a read on it in its ring,
/// so a wake-up from another thread is one more completion; other threads wait on it with poll.
/// The fd is blocking: io_uring waits for a blocking read by itself, and poll says when a
/// read will not block.
public final class EventNotifier: Sendable {
    private let descriptor: OwnedDescriptor

    public init() throws(Errno) {
        descriptor = OwnedDescriptor(taking: try Syscall.eventfd())
    }

    public var rawValue: Int32 { descriptor.rawValue }

    /// Adds one to the counter, waking a reader. Never blocks in practice (the counter would
    /// have to reach 2^64 - 1).
    public func signal() {
        var one: UInt64 = 1
        _ = try? withUnsafeBytes(of: &one) { try Syscall.write(descriptor.rawValue, $0) }
    }

    /// Waits up to `milliseconds` for a signal and consumes it: true when one came.
    public func wait(milliseconds: Int32) -> Bool {
        var fds = [pollfd(fd: descriptor.rawValue, events: Int16(POLLIN), revents: 0)]
        guard let ready = try? Syscall.poll(&fds, timeoutMilliseconds: milliseconds), ready > 0 else { return false }
        var counter: UInt64 = 0
        _ = try? withUnsafeMutableBytes(of: &counter) { try Syscall.read(descriptor.rawValue, $0) }
        return true
    }
}
