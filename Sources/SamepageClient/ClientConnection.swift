import Glibc
import SamepageCore
import SamepageSystem
import SystemPackage

/// The socket side of a client: sends requests, reads replies in order. Not thread-safe; the
/// public `SamepageClient` serialises callers.
struct ClientConnection: ~Copyable {
    let socket: OwnedDescriptor
    let socketPath: String
    private var decoder = FrameDecoder(maxPayload: FrameHeader.maxReplyPayload)
    private var nextRequestID: UInt64 = 1
    private var broken: String?
    /// True once the connection failed (the server went away, or closed it): the client then
    /// opens a new one on its next call.
    var isBroken: Bool { broken != nil }
    private let buffer: UnsafeMutableRawBufferPointer
    /// The region segments this connection holds (fds arrive in `segment` frames).
    let segments = SegmentTable()
    /// Fds received and not yet claimed by their `segment` frame, oldest first: an fd arrives with
    /// the first byte of its frame, possibly in the same read as earlier frames' bytes.
    private var receivedDescriptors: [Int32] = []

    init(socketPath: String) throws(SamepageError) {
        do {
            socket = try UnixSocket.connect(path: socketPath)
        } catch {
            throw .serverNotRunning(socketPath: socketPath, error)
        }
        self.socketPath = socketPath
        buffer = .allocate(byteCount: 64 * 1024, alignment: 16)
    }

    deinit {
        buffer.deallocate()
        for fd in receivedDescriptors { Syscall.close(fd) }
    }

    /// Sends a request (with an fd when given) and returns its id.
    mutating func send(_ request: Request, passing descriptor: Int32 = -1) throws(SamepageError) -> UInt64 {
        if let broken { throw .connectionLost(broken) }
        let id = nextRequestID
        nextRequestID += 1
        let bytes = request.encode(requestID: id)
        let fd = socket.rawValue
        let sent = bytes.withUnsafeBytes { raw in
            Result { () throws(Errno) in
                if descriptor >= 0 {
                    try UnixSocket.send(fd, raw, passing: descriptor)
                } else {
                    try UnixSocket.sendAll(fd, raw)
                }
            }
        }
        do {
            try sent.get()
        } catch {
            broken = "send failed: \(error)"
            throw .connectionLost(broken!)
        }
        return id
    }

    /// The next reply, which must answer `requestID` (replies come in request order). Failures
    /// are returned as `.failure`, not thrown: callers decide. `segment` frames on the way are
    /// applied to `segments`.
    ///
    /// `quietly` waits in poll(POLLIN) before reading. A reader blocked in recvmsg is also woken
    /// when the server reads the request (the kernel's unix_write_space wakes every sleeper on
    /// the socket, not only writers), finds nothing and sleeps again: two wake-ups per request,
    /// each a cross-CPU interrupt on this VM. For bulk traffic (scans, puts) that second wake-up
    /// was ~15% of the client's and the server's CPU (`samepage bench --workload runs`); poll
    /// filters it out. Single interactive requests keep the blocking read: its early wake-up
    /// has the client running again when the reply comes, which hides the wake-up latency
    /// (`samepage ping` 20 µs instead of 90-110 µs when waiting in poll).
    mutating func reply(to requestID: UInt64, quietly: Bool = false) throws(SamepageError) -> Reply {
        if let broken { throw .connectionLost(broken) }
        while true {
            do {
                if let frame = try decoder.next() {
                    guard frame.header.requestID == requestID else {
                        throw SamepageError.protocolViolation("reply for request \(frame.header.requestID), expected \(requestID)")
                    }
                    let reply = try Reply.decode(frame)
                    if case .segment(let index, let generation, let attached) = reply {
                        try apply(segment: index, generation: generation, attached: attached)
                        continue
                    }
                    return reply
                }
            } catch let error as ProtocolError {
                broken = error.description
                throw .protocolViolation(error.description)
            } catch let error as SamepageError {
                broken = error.description
                throw error
            } catch {
                throw .protocolViolation("\(error)")
            }
            let n: Int
            var descriptor: OwnedDescriptor?
            do {
                if quietly {
                    var fds = [pollfd(fd: socket.rawValue, events: Int16(POLLIN), revents: 0)]
                    _ = try? Syscall.poll(&fds, timeoutMilliseconds: -1)
                }
                n = try UnixSocket.receive(socket.rawValue, into: buffer, descriptor: &descriptor)
            } catch {
                broken = "receive failed: \(error)"
                throw .connectionLost(broken!)
            }
            if let fd = descriptor.take() { receivedDescriptors.append(fd.release()) }
            if n == 0 {
                broken = "the server closed the connection"
                throw .connectionLost(broken!)
            }
            decoder.append(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
    }

    private mutating func apply(segment index: UInt32, generation: UInt32, attached: Bool) throws(SamepageError) {
        guard attached else { return segments.drop(index, generation: generation) }
        guard !receivedDescriptors.isEmpty else { throw .protocolViolation("segment \(index) arrived without its fd") }
        let fd = OwnedDescriptor(taking: receivedDescriptors.removeFirst())
        try segments.install(index, generation: generation, descriptor: fd)
    }

    /// Sends a request and waits for its reply; a failure reply is thrown.
    mutating func call(_ request: Request, quietly: Bool = false) throws(SamepageError) -> Reply {
        let id = try send(request)
        return try Self.check(try reply(to: id, quietly: quietly))
    }

    static func check(_ reply: Reply) throws(SamepageError) -> Reply {
        if case .failure(let code, let message) = reply { throw .server(code, message) }
        return reply
    }

    static func unexpected(_ reply: Reply, _ wanted: String) -> SamepageError {
        .protocolViolation("expected \(wanted), got \(reply.kind)")
    }
}
