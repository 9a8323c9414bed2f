import CSamepageShim
import Glibc
import SystemPackage

/// AF_INET stream sockets, for the metrics endpoint (clients of the store use Unix sockets).
public enum TCPSocket {
    /// Listens on `address` (4 bytes, IPv4) and `port` (0: the kernel picks one; `boundPort`
    /// tells which). SO_REUSEADDR, so a restart does not wait out TIME_WAIT.
    public static func listen(address: [UInt8], port: UInt16, backlog: Int32 = 64) throws(Errno) -> OwnedDescriptor {
        precondition(address.count == 4)
        let fd = OwnedDescriptor(taking: try Syscall.socket(AF_INET, Int32(SOCK_STREAM.rawValue)))
        try Syscall.setSocketOption(fd.rawValue, SOL_SOCKET, SO_REUSEADDR, Int32(1))
        try withAddress(address, port) { sa, length throws(Errno) in try Syscall.bind(fd.rawValue, sa, length) }
        try Syscall.listen(fd.rawValue, backlog: backlog)
        return fd
    }

    /// Connects to `address` (4 bytes, IPv4) and `port` (tests scrape the endpoint with it).
    public static func connect(address: [UInt8], port: UInt16) throws(Errno) -> OwnedDescriptor {
        precondition(address.count == 4)
        let fd = OwnedDescriptor(taking: try Syscall.socket(AF_INET, Int32(SOCK_STREAM.rawValue)))
        try withAddress(address, port) { sa, length throws(Errno) in try Syscall.connect(fd.rawValue, sa, length) }
        return fd
    }

    /// Calls `body` with a sockaddr_in for `address` (4 bytes) and `port`, as bind and connect take it.
    private static func withAddress(_ address: [UInt8], _ port: UInt16,
                                    _ body: (UnsafePointer<sockaddr>, socklen_t) throws(Errno) -> Void) throws(Errno) {
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = port.bigEndian
        withUnsafeMutableBytes(of: &socketAddress.sin_addr) { $0.copyBytes(from: address) }
        try withUnsafePointer(to: &socketAddress) { p throws(Errno) in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(Errno) in
                try body(sa, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }

    /// Bounds how long a blocking receive or send on `fd` may wait (EAGAIN after that), so one
    /// slow peer cannot hold a single-threaded responder.
    public static func setTimeouts(_ fd: Int32, milliseconds: Int) throws(Errno) {
        let timeout = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        try Syscall.setSocketOption(fd, SOL_SOCKET, SO_RCVTIMEO, timeout)
        try Syscall.setSocketOption(fd, SOL_SOCKET, SO_SNDTIMEO, timeout)
    }
}
