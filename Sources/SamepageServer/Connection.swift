import CSamepageShim
import Glibc
import SamepageCore
import SamepageSystem

/// One client connection as the event loop sees it: its socket, the heap buffers that io_uring
/// reads and writes, the bytes waiting to be sent, and (after hello) its session.
final class Connection {
    static let receiveBufferSize = 64 * 1024

    let id: UInt32
    let socket: OwnedDescriptor
    let peer: PeerIdentity
    var decoder = FrameDecoder(maxPayload: FrameHeader.maxRequestPayload)
    var session: Session?
    var staging: MemoryMapping?
    /// Fds received and not yet claimed by their request, oldest first (the staging memfd rides
    /// with hello, a shared buffer's with attachBuffer). An fd arrives with its frame's first
    /// byte, possibly in the same read as earlier frames.
    var receivedDescriptors: [Int32] = []
    /// At most this many unclaimed fds: a client that sends more is misbehaving.
    static let maxReceivedDescriptors = 4
    /// Shared buffers the client attached, mapped read-only, by the client's name for them.
    var buffers: [UInt32: BufferMapping] = [:]

    func takeReceivedDescriptor() -> OwnedDescriptor? {
        receivedDescriptors.isEmpty ? nil : OwnedDescriptor(taking: receivedDescriptors.removeFirst())
    }

    /// Operations submitted and not yet completed: buffers may be freed only at zero.
    var inFlight = 0
    var receiveArmed = false
    var closing = false
    /// Set after a protocol violation, or at end of stream while draining: send what is queued,
    /// then close.
    var closeAfterFlush = false
    /// Its reply backlog has been logged once (a slow reader would otherwise fill the log).
    var backlogReported = false

    // Buffers the kernel uses while a receive or send is in flight.
    let receiveBuffer: UnsafeMutableRawPointer
    let receiveIov: UnsafeMutablePointer<iovec>
    let receiveMessage: UnsafeMutablePointer<msghdr>
    let receiveControl: UnsafeMutableRawPointer
    let receiveControlSize = sp_cmsg_space_one_fd() * 4
    let sendIov: UnsafeMutablePointer<iovec>
    let sendMessage: UnsafeMutablePointer<msghdr>
    let sendControl: UnsafeMutableRawPointer

    /// Encoded replies waiting to be sent, and the fds to pass, each with the offset of the frame
    /// it rides with. The fds are the connection's own (dups): closed once sent, or in deinit.
    var outbox: [UInt8] = []
    var outboxDescriptors: [(offset: Int, fd: Int32)] = []
    /// The bytes being sent (kept alive until the last send completes), how far it got, the fds
    /// still to pass with them, and the fd riding with the send in flight.
    var sending: [UInt8] = []
    var sendingOffset = 0
    var sendingDescriptors: [(offset: Int, fd: Int32)] = []
    var descriptorInFlight: Int32 = -1
    var sendInFlight = false

    /// The region of the client's domain, and the generation of each of its segments the client
    /// has been sent (a reply naming pages in a segment is preceded by that segment's fd).
    var region: (any ServedRegion)?
    var segmentGenerations: [UInt32: UInt32] = [:]
    /// `region.retirements` when this connection last looked for out-of-date segments.
    var retirementsSeen: UInt64 = 0

    init(id: UInt32, socket: consuming OwnedDescriptor, peer: PeerIdentity) {
        self.id = id
        self.socket = socket
        self.peer = peer
        receiveBuffer = .allocate(byteCount: Self.receiveBufferSize, alignment: 16)
        receiveIov = .allocate(capacity: 1)
        receiveMessage = .allocate(capacity: 1)
        receiveControl = .allocate(byteCount: receiveControlSize, alignment: 8)
        sendIov = .allocate(capacity: 1)
        sendMessage = .allocate(capacity: 1)
        sendControl = .allocate(byteCount: sp_cmsg_space_one_fd(), alignment: 8)
    }

    deinit {
        receiveBuffer.deallocate()
        receiveIov.deallocate()
        receiveMessage.deallocate()
        receiveControl.deallocate()
        sendIov.deallocate()
        sendMessage.deallocate()
        sendControl.deallocate()
        for pending in outboxDescriptors + sendingDescriptors { Syscall.close(pending.fd) }
        for fd in receivedDescriptors { Syscall.close(fd) }
        sentDescriptor()
    }

    /// Fills in the receive msghdr afresh (the kernel writes its lengths).
    func prepareReceive() {
        receiveIov.pointee = iovec(iov_base: receiveBuffer, iov_len: Self.receiveBufferSize)
        receiveMessage.pointee = msghdr()
        receiveMessage.pointee.msg_iov = receiveIov
        receiveMessage.pointee.msg_iovlen = 1
        receiveMessage.pointee.msg_control = receiveControl
        receiveMessage.pointee.msg_controllen = receiveControlSize
    }

    /// Moves the outbox into the send buffers; false when there is nothing to send. A send stops
    /// where the next fd's frame starts, so that each fd rides with its own frame's first byte.
    func prepareSend() -> Bool {
        if sendingOffset >= sending.count {
            guard !outbox.isEmpty else { return false }
            sending = outbox
            sendingOffset = 0
            outbox = []
            sendingDescriptors = outboxDescriptors
            outboxDescriptors = []
        }
        var end = sending.count
        var attach: Int32 = -1
        if let next = sendingDescriptors.first, next.offset <= sendingOffset {
            attach = next.fd
            sendingDescriptors.removeFirst()
        }
        if let next = sendingDescriptors.first { end = min(end, next.offset) }
        let remaining = end - sendingOffset
        sending.withUnsafeMutableBytes { raw in
            sendIov.pointee = iovec(iov_base: raw.baseAddress! + sendingOffset, iov_len: remaining)
        }
        sendMessage.pointee = msghdr()
        sendMessage.pointee.msg_iov = sendIov
        sendMessage.pointee.msg_iovlen = 1
        if attach >= 0 {
            sendMessage.pointee.msg_control = sendControl
            sp_cmsg_put_fd(sendMessage, attach)
            descriptorInFlight = attach
        }
        return true
    }

    /// The send that carried an fd completed (or the connection went): the kernel has its own
    /// reference by now, ours can go.
    func sentDescriptor() {
        if descriptorInFlight >= 0 { Syscall.close(descriptorInFlight) }
        descriptorInFlight = -1
    }

    func enqueue(_ reply: Reply, requestID: UInt64) {
        outbox.append(contentsOf: reply.encode(requestID: requestID))
    }

    /// Queues a reply with an fd (taken over by the connection) riding on its first byte.
    func enqueue(_ reply: Reply, requestID: UInt64, passing descriptor: consuming OwnedDescriptor) {
        outboxDescriptors.append((offset: outbox.count, fd: descriptor.release()))
        enqueue(reply, requestID: requestID)
    }

    var queuedBytes: Int { outbox.count + sending.count - sendingOffset }
}

/// A shared buffer's mapping (a class, so that a dictionary can own it).
final class BufferMapping {
    let mapping: MemoryMapping
    init(_ mapping: consuming MemoryMapping) { self.mapping = mapping }
}
