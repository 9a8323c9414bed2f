import CSamepageShim
import Glibc
import SystemPackage

/// AF_UNIX stream sockets: listening, connecting, and passing one fd with a message.
public enum UnixSocket {
    /// Calls `body` with a sockaddr_un for `path`; paths longer than sun_path are ENAMETOOLONG.
    static func withAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) throws(Errno) -> R) throws(Errno) -> R {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else { throw Errno.fileNameTooLong }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
        return try withUnsafePointer(to: &address) { p throws(Errno) in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(Errno) in try body(sa, length) }
        }
    }

    /// Listens at `path` with file mode `mode`. A socket file left by a dead server is replaced;
    /// one that still accepts connections means another server runs there: EADDRINUSE.
    public static func listen(path: String, mode: mode_t, backlog: Int32 = 512) throws(Errno) -> OwnedDescriptor {
        if (try? connect(path: path)) != nil { throw Errno.addressInUse }
        Syscall.unlink(path)
        let fd = OwnedDescriptor(taking: try Syscall.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue)))
        // Create the file with no permissions for anyone, then open it up: no window in which
        // another user could connect before the mode is set.
        let oldMask = umask(0o777)
        defer { umask(oldMask) }
        try withAddress(path) { sa, len throws(Errno) in try Syscall.bind(fd.rawValue, sa, len) }
        try Syscall.chmod(path, mode)
        try Syscall.listen(fd.rawValue, backlog: backlog)
        return fd
    }

    public static func connect(path: String) throws(Errno) -> OwnedDescriptor {
        let fd = OwnedDescriptor(taking: try Syscall.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue)))
        try withAddress(path) { sa, len throws(Errno) in try Syscall.connect(fd.rawValue, sa, len) }
        return fd
    }

    /// Makes blocking receives on `fd` give up after `seconds` (EAGAIN); 0 waits forever.
    public static func setReceiveTimeout(_ fd: Int32, seconds: Int) {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends every byte (blocking).
    public static func sendAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(Errno) {
        var offset = 0
        while offset < bytes.count {
            offset += try Syscall.send(fd, UnsafeRawBufferPointer(rebasing: bytes[offset...]))
        }
    }

    /// Sends `bytes` with `passing` attached as SCM_RIGHTS (the whole message in one call: the
    /// messages that carry fds are small).
    public static func send(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, passing descriptor: Int32) throws(Errno) {
        let control = UnsafeMutableRawPointer.allocate(byteCount: sp_cmsg_space_one_fd(), alignment: 8)
        defer { control.deallocate() }
        var iov = iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count)
        let sent = try withUnsafeMutablePointer(to: &iov) { iovp throws(Errno) -> Int in
            var message = msghdr()
            message.msg_iov = iovp
            message.msg_iovlen = 1
            message.msg_control = control
            sp_cmsg_put_fd(&message, descriptor)
            return try Syscall.sendmsg(fd, &message)
        }
        if sent < bytes.count {
            try sendAll(fd, UnsafeRawBufferPointer(rebasing: bytes[sent...]))
        }
    }

    /// Receives up to `buffer.count` bytes and at most one fd (extra fds are closed). Returns the
    /// byte count (0 at end of stream).
    public static func receive(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer,
                               descriptor: inout OwnedDescriptor?) throws(Errno) -> Int {
        let controlSize = sp_cmsg_space_one_fd() * 4
        let control = UnsafeMutableRawPointer.allocate(byteCount: controlSize, alignment: 8)
        defer { control.deallocate() }
        var iov = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
        return try withUnsafeMutablePointer(to: &iov) { iovp throws(Errno) -> Int in
            var message = msghdr()
            message.msg_iov = iovp
            message.msg_iovlen = 1
            message.msg_control = control
            message.msg_controllen = controlSize
            let n = try Syscall.recvmsg(fd, &message)
            let received = sp_cmsg_take_fd(&message)
            if received >= 0 { descriptor = OwnedDescriptor(taking: received) }
            return n
        }
    }
}
