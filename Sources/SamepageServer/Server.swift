import CSamepageShim
import Glibc
import Logging
import SamepageCore
import SamepageSystem
import SystemPackage

/// samepaged's event loop: one thread, one io_uring. It accepts connections (multishot accept),
/// receives requests (recvmsg, which also brings the staging memfd), hands decoded requests to
/// the I/O-free `Service`, and sends replies (sendmsg, which also carries the region fd).
///
/// A connection's misbehaviour ends that connection only: a malformed frame gets a failure reply
/// and a close; a failed request gets a failure reply; nothing a client sends can stop the loop.
///
/// Stopping is a drain: the socket file goes (new clients find no server), connections still
/// arriving are closed, each connection is shut down for reading so that the requests already
/// in its socket are read, answered and flushed, and then it is closed; `run()` returns when the
/// last one is gone. A drain starts on SIGINT/SIGTERM through the signalfd (`handleSignals`, for
/// embedders) or on `LoopControl.requestDrain()` (samepaged under ServiceGroup, which owns the
/// signals). `LoopControl.requestStop()`, or a second signal, cuts the drain short.
public final class Server {
    public let configuration: ServerConfiguration
    public let service: Service
    let logger: Logger
    private let ring: IoUring
    private let listener: OwnedDescriptor
    /// The signalfd for SIGINT/SIGTERM, -1 when signals are left alone. Closed in deinit.
    private let signalFD: Int32
    private let signalBuffer: UnsafeMutableRawPointer
    private let regions = RegionRegistry()
    private var connections: [UInt32: Connection] = [:]
    private var nextConnectionID: UInt32 = 1
    private var running = true
    private var draining = false
    private var socketFileRemoved = false
    /// Other threads' handles on the loop: stop requests, the phase, statistics on demand.
    private let control: LoopControl?
    private let statisticsExchange: StatisticsExchange?
    /// Where the eventfd reads of those two land (8 bytes each, heap: the kernel writes them).
    private let wakeupBuffer: UnsafeMutableRawPointer
    let metrics = LoopMetrics()

    private enum Operation: UInt64 {
        case accept = 1, receive, send, signal, acceptRetry, wakeup, statisticsRequest
    }

    /// Accepting is paused: the process is out of fds. It resumes when a connection closes (an fd
    /// came back) or after a short timer, so fd exhaustion costs no busy loop.
    private var acceptPaused = false
    /// A multishot accept is armed (the kernel ends it, without IORING_CQE_F_MORE, on error).
    private var acceptArmed = false

    private static func userData(_ op: Operation, _ connection: UInt32 = 0) -> UInt64 {
        UInt64(connection) << 8 | op.rawValue
    }

    /// Binds the socket and prepares the ring. `handleSignals` makes SIGINT/SIGTERM drain and
    /// stop `run()` through a signalfd (the process must not have started other threads yet);
    /// pass false when something else owns the signals, as samepaged's ServiceGroup does, and
    /// steer the loop with `control`. `statistics` answers the metrics thread's requests.
    public init(configuration: ServerConfiguration, logger: Logger, handleSignals: Bool = true,
                control: LoopControl? = nil, statistics: StatisticsExchange? = nil) throws {
        self.configuration = configuration
        self.logger = logger
        self.control = control
        self.statisticsExchange = statistics
        let regionBytes = configuration.regionBytes
        service = Service(regionBytes: regionBytes, maxPageSharing: configuration.maxPageSharing,
                          policy: configuration.policy) { [regions] name in
            let region: any ServedRegion = configuration.hardened
                ? try SegmentedRegion(name: name, bytes: regionBytes, segmentBytes: configuration.segmentBytes)
                : try MemfdRegion(name: name, bytes: regionBytes)
            regions.byDomain[name] = region
            return region
        }
        service.selfCheck = configuration.selfCheck
        service.limits = configuration.limits
        if configuration.hardened { try Self.checkFutureWriteSeal() }
        wakeupBuffer = .allocate(byteCount: 16, alignment: 8)
        ring = try IoUring(entries: 1024)
        DefaultSocketPath.prepareDirectory(for: configuration.socketPath)
        listener = try UnixSocket.listen(path: configuration.socketPath, mode: mode_t(configuration.socketMode))
        signalFD = handleSignals ? sp_termination_signalfd() : -1
        signalBuffer = .allocate(byteCount: sp_signalfd_siginfo_size(), alignment: 8)
        service.onLimitHit = { [logger, metrics] limit, session in
            logger.notice("client hit a limit", metadata: [
                "limit": "\(limit.rawValue)", "pid": "\(session.peer.pid)", "uid": "\(session.peer.uid)",
                "domain": "\(session.domain.name)",
            ])
            metrics.limitHit(limit.rawValue)
        }
    }

    deinit {
        signalBuffer.deallocate()
        wakeupBuffer.deallocate()
        if signalFD >= 0 { Syscall.close(signalFD) }
        removeSocketFile()
    }

    /// Once: after a drain started, the path may already belong to a new server.
    private func removeSocketFile() {
        guard !socketFileRemoved else { return }
        socketFileRemoved = true
        Syscall.unlink(configuration.socketPath)
    }

    /// Serves until a drain (SIGINT/SIGTERM, or `LoopControl`) has finished.
    public func run() throws {
        try ring.acceptMultishot(listener.rawValue, userData: Self.userData(.accept))
        acceptArmed = true
        if signalFD >= 0 { try armSignalRead() }
        if control != nil { try armWakeupRead() }
        if statisticsExchange != nil { try armStatisticsRead() }
        control?.enter(.serving)
        logger.info("samepaged listening", metadata: [
            "socket": "\(configuration.socketPath)",
            "region": "\(ByteSize.format(configuration.regionBytes))",
            "max_page_sharing": "\(configuration.maxPageSharing)",
            "allowed_uids": "\(configuration.policy.allowedUIDs.sorted())",
            "allowed_gids": "\(configuration.policy.allowedGIDs.sorted())",
        ])
        defer { control?.enter(.stopped) }
        while running {
            try ring.submitAndWait(1)
            while let completion = ring.popCompletion() {
                handle(completion)
            }
            if draining && connections.isEmpty { running = false }
        }
        if connections.isEmpty {
            logger.info("samepaged stopped: every client drained")
        } else {
            logger.warning("samepaged stopped before the drain finished: cutting clients off",
                           metadata: ["clients": "\(connections.count)"])
        }
        for connection in connections.values { Syscall.shutdown(connection.socket.rawValue) }
        removeSocketFile()
    }

    private func armSignalRead() throws {
        try ring.read(signalFD, UnsafeMutableRawBufferPointer(start: signalBuffer, count: sp_signalfd_siginfo_size()),
                      userData: Self.userData(.signal))
    }

    private func armWakeupRead() throws {
        guard let control else { return }
        try ring.read(control.wakeup.rawValue, UnsafeMutableRawBufferPointer(start: wakeupBuffer, count: 8),
                      userData: Self.userData(.wakeup))
    }

    private func armStatisticsRead() throws {
        guard let statisticsExchange else { return }
        try ring.read(statisticsExchange.requestNotifier.rawValue, UnsafeMutableRawBufferPointer(start: wakeupBuffer + 8, count: 8),
                      userData: Self.userData(.statisticsRequest))
    }

    private func handle(_ completion: IoUring.Completion) {
        let op = Operation(rawValue: completion.userData & 0xFF)
        let id = UInt32(truncatingIfNeeded: completion.userData >> 8)
        switch op {
        case .accept: accepted(completion)
        case .signal:
            let signal = sp_signalfd_signo(signalBuffer)
            if draining {
                logger.notice("second signal received: stopping now", metadata: ["signal": "\(signal)"])
                running = false
            } else {
                logger.notice("signal received: draining", metadata: ["signal": "\(signal)"])
                beginDrain()
                rearm(armSignalRead)
            }
        case .wakeup:
            switch control?.request {
            case .stopNow?:
                logger.notice("stop requested: stopping now", metadata: ["clients": "\(connections.count)"])
                running = false
            case .drain?:
                beginDrain()
                rearm(armWakeupRead)
            case .none?, nil:
                rearm(armWakeupRead)
            }
        case .statisticsRequest:
            statisticsExchange?.answer(snapshot)
            rearm(armStatisticsRead)
        case .acceptRetry:
            resumeAccepting()
        case .receive:
            guard let connection = connections[id] else { return }
            connection.inFlight -= 1
            connection.receiveArmed = false
            received(completion.result, on: connection)
        case .send:
            guard let connection = connections[id] else { return }
            connection.inFlight -= 1
            connection.sendInFlight = false
            connection.sentDescriptor()
            sent(completion.result, on: connection)
        case nil:
            logger.error("unexpected completion", metadata: ["user_data": "\(completion.userData)"])
        }
    }

    /// A read of a wake-up fd that cannot be queued again leaves that path deaf: say so loudly.
    private func rearm(_ arm: () throws -> Void) {
        do { try arm() } catch { logger.error("cannot queue a wake-up read", metadata: ["error": "\(error)"]) }
    }

    // MARK: Draining and statistics

    /// Stops taking new clients and lets the connected ones finish (see the type's comment).
    private func beginDrain() {
        guard !draining else { return }
        draining = true
        control?.enter(.draining)
        removeSocketFile()
        logger.notice("draining: no new clients; answering what connected clients already sent",
                      metadata: ["clients": "\(connections.count)"])
        // SHUT_RD on an AF_UNIX stream: reads return what is already queued, then end of
        // stream; the client's further sends fail with EPIPE. The armed receive wakes up.
        for connection in connections.values where !connection.closing {
            Syscall.shutdown(connection.socket.rawValue, reading: true, writing: false)
        }
    }

    /// What the metrics endpoint exports, taken on the loop thread (StatisticsExchange).
    private func snapshot() -> ServerSnapshot {
        let domains = service.allDomains.sorted { $0.name < $1.name }.map { domain in
            ServerSnapshot.DomainFigures(name: domain.name, statistics: service.statistics(of: domain),
                                         regionCapacityBytes: service.regionBytes)
        }
        return ServerSnapshot(domains: domains, connections: connections.count,
                              budgetUsedBytes: UInt64(service.budget.used) * UInt64(Page.size),
                              budgetLimitBytes: UInt64(service.budget.limit) * UInt64(Page.size))
    }

    // MARK: Accepting

    private func accepted(_ completion: IoUring.Completion) {
        if !completion.hasMore { acceptArmed = false }
        let error = completion.result < 0 ? Errno(rawValue: -completion.result) : nil
        if error == .tooManyOpenFiles || error == .tooManyOpenFilesInSystem {
            // Out of fds: the clients already connected go on; new ones wait in the backlog.
            if !acceptPaused {
                logger.warning("out of file descriptors: accepting paused until one is free",
                               metadata: ["connections": "\(connections.count)"])
                metrics.limitHit("file_descriptors")
                acceptPaused = true
                try? ring.timeout(milliseconds: 200, userData: Self.userData(.acceptRetry))
            }
            return
        }
        if !acceptArmed {
            // The multishot accept ended for another reason: arm it again.
            armAccept()
        }
        if let error {
            logger.warning("accept failed", metadata: ["errno": "\(error)"])
            return
        }
        let socket = OwnedDescriptor(taking: completion.result)
        if draining {
            // Connected before the socket file went: closed at once, it sees end of stream.
            metrics.refused(.draining)
            logger.info("client refused: draining", metadata: ["connections": "\(connections.count)"])
            return
        }
        metrics.connectionAccepted()
        guard let credentials = try? Syscall.peerCredentials(socket.rawValue) else { return }
        let peer = PeerIdentity(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid)
        let id = nextConnectionID
        nextConnectionID = nextConnectionID == UInt32.max >> 8 ? 1 : nextConnectionID + 1
        let connection = Connection(id: id, socket: socket, peer: peer)
        connections[id] = connection
        logger.debug("client connected", metadata: ["connection": "\(id)", "pid": "\(peer.pid)", "uid": "\(peer.uid)",
                                                    "gid": "\(peer.gid)", "clients": "\(connections.count)"])
        armReceive(connection)
    }

    private func resumeAccepting() {
        guard acceptPaused else { return }
        acceptPaused = false
        if !acceptArmed { armAccept() }
    }

    private func armAccept() {
        if (try? ring.acceptMultishot(listener.rawValue, userData: Self.userData(.accept))) != nil { acceptArmed = true }
    }

    // MARK: Receiving

    private func armReceive(_ connection: Connection) {
        guard !connection.receiveArmed, !connection.closing, !connection.closeAfterFlush else { return }
        connection.prepareReceive()
        do {
            try ring.receiveMessage(connection.socket.rawValue, connection.receiveMessage,
                                    userData: Self.userData(.receive, connection.id))
            connection.receiveArmed = true
            connection.inFlight += 1
        } catch {
            close(connection, reason: "cannot queue receive: \(error)")
        }
    }

    private func received(_ result: Int32, on connection: Connection) {
        if connection.closing { return finishClosing(connection) }
        if result == 0 && draining {
            // Everything the client sent before the drain has been read: send the rest, close.
            connection.closeAfterFlush = true
            return flush(connection)
        }
        guard result > 0 else {
            close(connection, reason: result == 0 ? "disconnected" : "receive failed: \(Errno(rawValue: -result))")
            return
        }
        let fd = sp_cmsg_take_fd(connection.receiveMessage)
        if fd >= 0 { connection.receivedDescriptors.append(fd) }
        if connection.receivedDescriptors.count > Connection.maxReceivedDescriptors {
            return violation("more than \(Connection.maxReceivedDescriptors) fds sent ahead of their requests", requestID: 0, on: connection)
        }
        connection.decoder.append(UnsafeRawBufferPointer(start: connection.receiveBuffer, count: Int(result)))
        do {
            while !connection.closeAfterFlush, let frame = try connection.decoder.next() {
                process(frame, on: connection)
            }
        } catch {
            violation(error.description, requestID: 0, on: connection)
        }
        flush(connection)
        resumeOrHoldReceiving(connection)
    }

    /// Reads on unless the client lets replies pile up (it is read again once it catches up).
    private func resumeOrHoldReceiving(_ connection: Connection) {
        if connection.queuedBytes <= configuration.maxQueuedReplyBytes {
            armReceive(connection)
        } else if !connection.receiveArmed && !connection.backlogReported {
            connection.backlogReported = true
            metrics.limitHit("reply_backlog")
            logger.notice("client not reading its replies: its requests wait", metadata: [
                "connection": "\(connection.id)", "pid": "\(connection.peer.pid)", "queued_bytes": "\(connection.queuedBytes)",
            ])
        }
    }

    private func process(_ frame: Frame, on connection: Connection) {
        let requestID = frame.header.requestID
        let request: Request
        do {
            request = try Request.decode(frame)
        } catch {
            return violation(error.description, requestID: requestID, on: connection)
        }
        guard let session = connection.session else {
            guard case .hello(let version, let name) = request else {
                return violation("the first message must be hello", requestID: requestID, on: connection)
            }
            return hello(version: version, name: name, requestID: requestID, on: connection)
        }
        if case .hello = request {
            return violation("hello sent twice", requestID: requestID, on: connection)
        }
        if case .attachBuffer(let buffer) = request {
            return connection.enqueue(attachBuffer(buffer, session: session, on: connection), requestID: requestID)
        }
        let started = ContinuousClock.now
        if case .detachBuffer(let buffer) = request { connection.buffers[buffer] = nil }
        for reply in service.handle(request, session: session) {
            sendSegments(for: reply, requestID: requestID, on: connection)
            connection.enqueue(reply, requestID: requestID)
        }
        metrics.requestHandled(request.kind, duration: ContinuousClock.now - started)
    }

    /// `--hardened` needs F_SEAL_FUTURE_WRITE (Linux 5.1): refuse to start without it rather
    /// than serve a region that is not what the flag promises.
    private static func checkFutureWriteSeal() throws {
        do {
            _ = try Memfd.create(name: "samepage-probe", size: UInt64(Page.size), seals: [.futureWrite])
        } catch {
            throw HardenedModeUnavailable(error: error)
        }
    }

    private func hello(version: UInt32, name: String, requestID: UInt64, on connection: Connection) {
        guard service.policy.permits(connection.peer) else {
            metrics.refused(.notPermitted)
            return violation("uid \(connection.peer.uid) (gid \(connection.peer.gid)) may not connect to this samepaged; "
                             + "start it with --allow-uid \(connection.peer.uid) or --allow-gid \(connection.peer.gid)",
                             requestID: requestID, on: connection, code: .notPermitted)
        }
        guard version == Request.version else {
            metrics.refused(.unsupportedVersion)
            return violation("protocol version \(version) is not supported (server speaks \(Request.version))",
                             requestID: requestID, on: connection, code: .unsupportedVersion)
        }
        guard let staging = connection.takeReceivedDescriptor() else {
            metrics.refused(.badStaging)
            return violation("hello must carry the staging memfd", requestID: requestID, on: connection, code: .badStaging)
        }
        do {
            let mapping = try mapStaging(staging)
            let session = try service.openSession(peer: connection.peer, clientName: name,
                                                  connectedSince: Syscall.wallClockSeconds())
            session.staging = UnsafeRawBufferPointer(mapping.bytes)
            connection.staging = consume mapping
            connection.session = session
            guard let region = regions.byDomain[session.domain.name] else {
                return violation("no region for domain \(session.domain.name)", requestID: requestID, on: connection, code: .internalError)
            }
            connection.region = region
            connection.retirementsSeen = region.retirements
            if region.segmentCount == 1 {
                // One segment: the client gets it now, and holds it for the whole connection.
                sendSegment(0, of: region, requestID: requestID, on: connection)
            }
            connection.enqueue(.welcome(version: Request.version, regionBytes: region.regionBytes,
                                        pageSize: UInt32(Page.size), segmentBytes: region.segmentBytes), requestID: requestID)
            logger.debug("client ready", metadata: ["connection": "\(connection.id)", "name": "\(name)",
                                                    "pid": "\(connection.peer.pid)", "domain": "\(session.domain.name)"])
        } catch let failure as StagingRefused {
            metrics.refused(.badStaging)
            violation(failure.message, requestID: requestID, on: connection, code: .badStaging)
        } catch {
            violation("cannot serve this client: \(error)", requestID: requestID, on: connection, code: .internalError)
        }
    }

    /// A protocol violation: tell the client why, then close its connection after the reply.
    private func violation(_ message: String, requestID: UInt64, on connection: Connection, code: ErrorCode = .badRequest) {
        if code == .badRequest { metrics.refused(.protocolViolation) }
        logger.notice("closing client after protocol violation",
                      metadata: ["connection": "\(connection.id)", "pid": "\(connection.peer.pid)", "reason": "\(message)"])
        connection.enqueue(.failure(code, message), requestID: requestID)
        connection.closeAfterFlush = true
    }

    // MARK: Sending

    private func flush(_ connection: Connection) {
        guard !connection.sendInFlight, !connection.closing else { return }
        guard connection.prepareSend() else {
            if connection.closeAfterFlush { close(connection, reason: "protocol violation") }
            return
        }
        do {
            try ring.sendMessage(connection.socket.rawValue, connection.sendMessage, userData: Self.userData(.send, connection.id))
            connection.sendInFlight = true
            connection.inFlight += 1
        } catch {
            close(connection, reason: "cannot queue send: \(error)")
        }
    }

    private func sent(_ result: Int32, on connection: Connection) {
        if connection.closing { return finishClosing(connection) }
        guard result >= 0 else {
            return close(connection, reason: "send failed: \(Errno(rawValue: -result))")
        }
        connection.sendingOffset += Int(result)
        flush(connection)
        resumeOrHoldReceiving(connection)
    }

    // MARK: Closing

    /// Starts closing: shutdown makes the kernel complete whatever is in flight; the buffers and
    /// the session go when the last completion is in.
    private func close(_ connection: Connection, reason: String) {
        guard !connection.closing else { return }
        connection.closing = true
        logger.debug("client gone", metadata: ["connection": "\(connection.id)", "pid": "\(connection.peer.pid)",
                                               "reason": "\(reason)", "clients": "\(connections.count - 1)"])
        Syscall.shutdown(connection.socket.rawValue)
        finishClosing(connection)
    }

    private func finishClosing(_ connection: Connection) {
        guard connection.inFlight == 0 else { return }
        if let session = connection.session {
            service.close(session)
            connection.session = nil
        }
        connection.staging = nil
        connections[connection.id] = nil
        resumeAccepting()
    }
}

/// The memfd behind each domain's region, by domain name: the service creates regions, the loop
/// hands out their read-only fds.
final class RegionRegistry {
    var byDomain: [String: any ServedRegion] = [:]
}

public struct HardenedModeUnavailable: Error, CustomStringConvertible {
    var error: Errno
    public var description: String {
        "--hardened needs memfd's F_SEAL_FUTURE_WRITE (Linux 5.1): \(error)"
    }
}
