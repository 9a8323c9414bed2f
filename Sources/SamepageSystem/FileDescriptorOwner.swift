import Glibc
import SystemPackage

/// Owns one file descriptor and closes it when it goes away. Not copyable: exactly one owner
/// closes each fd, once.
public struct OwnedDescriptor: ~Copyable, Sendable {
    public let rawValue: Int32

    public init(taking rawValue: Int32) {
        precondition(rawValue >= 0)
        self.rawValue = rawValue
    }

    deinit { Syscall.close(rawValue) }

    /// Gives the fd to the caller, who now must close it.
    public consuming func release() -> Int32 {
        let fd = rawValue
        discard self
        return fd
    }

    /// A new descriptor of the same file opened read-only through /proc: a fresh open file
    /// description whose mode cannot be changed back to read-write by fcntl.
    public func reopenReadOnly() throws(Errno) -> OwnedDescriptor {
        OwnedDescriptor(taking: try Syscall.open("/proc/self/fd/\(rawValue)", O_RDONLY))
    }
}
