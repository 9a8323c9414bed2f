import Glibc
import SamepageCore
import SamepageSystem
import SystemPackage

/// One live connection's resources: the socket, the region segments the server sent (in
/// `connection.segments`), and the staging memory. A client replaces its session when it must reconnect (in a child after fork).
final class ClientSession {
    static let helloTimeoutSeconds = 30

    var connection: ClientConnection
    /// The region's segments, as this connection holds them.
    var segments: SegmentTable { connection.segments }
    let staging: MemoryMapping
    let regionBytes: UInt64

    init(socketPath: String, name: String, stagingBytes: Int) throws(SamepageError) {
        let stagingSize = max(2, stagingBytes / Page.size) * Page.size
        let stagingFD = try systemCall("cannot create staging memory") { () throws(Errno) in
            try Memfd.create(name: "samepage-staging", size: UInt64(stagingSize), seals: [.shrink, .grow, .seal])
        }
        let stagingMapping = try systemCall("cannot map staging memory") { () throws(Errno) in
            try MemoryMapping(fd: stagingFD.rawValue, length: stagingSize, writable: true, shared: true)
        }
        var connection = try ClientConnection(socketPath: socketPath)
        // A server that accepts no connection (out of fds, stopped) leaves the hello unanswered:
        // give up after a while rather than hang. Requests after it may take as long as they take.
        UnixSocket.setReceiveTimeout(connection.socket.rawValue, seconds: Self.helloTimeoutSeconds)
        let helloID = try connection.send(.hello(version: Request.version, clientName: name), passing: stagingFD.rawValue)
        let reply = try ClientConnection.check(try connection.reply(to: helloID))
        UnixSocket.setReceiveTimeout(connection.socket.rawValue, seconds: 0)
        guard case .welcome(_, let regionBytes, let pageSize, let segmentBytes) = reply else {
            throw ClientConnection.unexpected(reply, "welcome")
        }
        guard pageSize == UInt32(Page.size) else { throw .protocolViolation("server page size \(pageSize)") }
        try connection.segments.configure(regionBytes: regionBytes, segmentBytes: segmentBytes)
        if connection.segments.segmentCount == 1, connection.segments.descriptor(ofSegment: 0) == nil {
            throw .protocolViolation("welcome without the region fd")
        }
        self.regionBytes = regionBytes
        self.staging = stagingMapping
        self.connection = connection
    }
}
