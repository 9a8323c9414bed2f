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
    /// An fd received with the bytes not yet decoded (the staging memfd rides with hello).
    var receivedDescriptor: OwnedDescriptor?

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

    /// Encoded replies waiting to be sent, and the fd to pass with the first of them.
    var outbox: [UInt8] = []
    var outboxDescriptor: Int32 = -1
    /// The bytes of the send in flight (kept alive until it completes) and how far it got.
    var sending: [UInt8] = []
    var sendingOffset = 0
    var sendInFlight = false

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

    /// Moves the outbox into the send buffers; false when there is nothing to send.
    func prepareSend() -> Bool {
        if sendingOffset >= sending.count {
            guard !outbox.isEmpty else { return false }
            sending = outbox
            sendingOffset = 0
            outbox = []
        }
        let remaining = sending.count - sendingOffset
        sending.withUnsafeMutableBytes { raw in
            sendIov.pointee = iovec(iov_base: raw.baseAddress! + sendingOffset, iov_len: remaining)
        }
        sendMessage.pointee = msghdr()
        sendMessage.pointee.msg_iov = sendIov
        sendMessage.pointee.msg_iovlen = 1
        if outboxDescriptor >= 0 && sendingOffset == 0 {
            sendMessage.pointee.msg_control = sendControl
            sp_cmsg_put_fd(sendMessage, outboxDescriptor)
            outboxDescriptor = -1
        }
        return true
    }

    func enqueue(_ reply: Reply, requestID: UInt64) {
        outbox.append(contentsOf: reply.encode(requestID: requestID))
    }

    var queuedBytes: Int { outbox.count + sending.count - sendingOffset }
}
