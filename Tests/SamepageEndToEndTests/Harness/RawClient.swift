import Glibc
import SamepageCore
import SamepageSystem
import SystemPackage

/// A client that speaks the wire protocol by hand, so tests can send what the library never
/// would: garbage, oversized frames, foreign handles, requests out of order.
final class RawClient {
    let socket: OwnedDescriptor
    private var decoder = FrameDecoder(maxPayload: FrameHeader.maxReplyPayload)
    private var nextID: UInt64 = 1
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
    var staging: MemoryMapping?
    /// The staging memory's bytes, once hello has mapped it.
    var stagingBytes: UnsafeMutableRawBufferPointer?
    /// `segment` frames received so far.
    private(set) var segmentFrames = 0

    init(socketPath: String) throws {
        socket = try UnixSocket.connect(path: socketPath)
        // A receive timeout, so a test that expects a reply that never comes fails, not hangs.
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(socket.rawValue, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { buffer.deallocate() }

    /// A proper hello with a sealed staging memfd of `pages` pages.
    func hello(pages: Int = 16, seals: MemfdSeals = [.shrink, .grow]) throws -> Reply {
        let fd = try Memfd.create(name: "raw-staging", size: UInt64(pages * 4096), seals: seals)
        let mapping = try MemoryMapping(fd: fd.rawValue, length: pages * 4096, writable: true, shared: true)
        stagingBytes = mapping.bytes
        staging = consume mapping
        let id = nextID
        nextID += 1
        let bytes = Request.hello(version: Request.version, clientName: "raw").encode(requestID: id)
        try bytes.withUnsafeBytes { try UnixSocket.send(socket.rawValue, $0, passing: fd.rawValue) }
        var region: OwnedDescriptor?
        return try receive(descriptor: &region)
    }

    func sendRaw(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try UnixSocket.sendAll(socket.rawValue, $0) }
    }

    @discardableResult
    func send(_ request: Request) throws -> UInt64 {
        let id = nextID
        nextID += 1
        try sendRaw(request.encode(requestID: id))
        return id
    }

    /// Sends a request with an fd riding on it, and returns the reply.
    func call(_ request: Request, passing descriptor: Int32) throws -> Reply {
        let id = nextID
        nextID += 1
        let bytes = request.encode(requestID: id)
        try bytes.withUnsafeBytes { try UnixSocket.send(socket.rawValue, $0, passing: descriptor) }
        return try receive()
    }

    func call(_ request: Request) throws -> Reply {
        try send(request)
        return try receive()
    }

    /// The next reply; throws `EndOfStream` when the server closed the connection.
    func receive() throws -> Reply {
        var unused: OwnedDescriptor?
        return try receive(descriptor: &unused)
    }

    /// `segment` frames (region fds the server pushes ahead of replies) are counted and skipped.
    func receive(descriptor: inout OwnedDescriptor?) throws -> Reply {
        while true {
            if let frame = try decoder.next() {
                let reply = try Reply.decode(frame)
                if case .segment = reply {
                    segmentFrames += 1
                    continue
                }
                return reply
            }
            let n = try UnixSocket.receive(socket.rawValue, into: buffer, descriptor: &descriptor)
            if n == 0 { throw EndOfStream() }
            decoder.append(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
    }

    /// True when the server has closed the connection (reads end of stream).
    func isClosedByServer() -> Bool {
        do {
            while true { _ = try receive() }
        } catch is EndOfStream {
            return true
        } catch {
            return false
        }
    }

    struct EndOfStream: Error {}
}

extension Reply {
    var failureCode: ErrorCode? {
        if case .failure(let code, _) = self { return code }
        return nil
    }
}
