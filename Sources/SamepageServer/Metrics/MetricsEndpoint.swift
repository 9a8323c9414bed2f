import Glibc
import Logging
import Prometheus
import SamepageCore
import SamepageSystem
import SystemPackage

/// The Prometheus endpoint: a tiny HTTP/1.1 responder on its own thread, so that nothing a
/// scraper (or anyone else who can connect) does can block or crash the io_uring loop. It
/// serves one connection at a time: a scrape is small and rare, and a peer gets 2 seconds to
/// send a request of at most 8 KiB before it is dropped. `GET /metrics` renders the registry
/// after refreshing the statistics gauges from the loop; `GET /healthz` says 200 "ok" while
/// the loop serves and 503 otherwise (starting, draining, stopped).
public final class MetricsEndpoint: Sendable {
    static let maxRequestBytes = 8192
    static let peerTimeoutMilliseconds = 2000

    private let listener: OwnedDescriptor
    private let stopNotifier: EventNotifier
    private let registry: PrometheusCollectorRegistry
    private let exchange: StatisticsExchange
    private let control: LoopControl
    private let logger: Logger
    /// Where it listens, the port the kernel picked included.
    public let boundAddress: ListenAddress

    /// Binds now, so that a bad address stops samepaged before it serves anyone.
    public init(address: ListenAddress, unixSocketMode: UInt32, registry: PrometheusCollectorRegistry,
                exchange: StatisticsExchange, control: LoopControl, logger: Logger) throws {
        switch address {
        case .tcp(let bytes, let port):
            listener = try TCPSocket.listen(address: bytes, port: port)
            boundAddress = .tcp(address: bytes, port: try Syscall.boundPort(listener.rawValue))
        case .unix(let path):
            listener = try UnixSocket.listen(path: path, mode: mode_t(unixSocketMode), backlog: 64)
            boundAddress = address
        }
        stopNotifier = try EventNotifier()
        self.registry = registry
        self.exchange = exchange
        self.control = control
        self.logger = logger
    }


    /// Serves until `stop()`; blocks the calling thread.
    public func serve() {
        logger.notice("metrics endpoint listening", metadata: ["address": "\(boundAddress)"])
        while true {
            var fds = [pollfd(fd: listener.rawValue, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: stopNotifier.rawValue, events: Int16(POLLIN), revents: 0)]
            guard (try? Syscall.poll(&fds, timeoutMilliseconds: -1)) != nil else { continue }
            if fds[1].revents != 0 { break }
            guard fds[0].revents != 0 else { continue }
            do {
                let peer = OwnedDescriptor(taking: try Syscall.accept(listener.rawValue))
                try? TCPSocket.setTimeouts(peer.rawValue, milliseconds: Self.peerTimeoutMilliseconds)
                answer(peer.rawValue)
            } catch {
                // EMFILE and friends: back off a little rather than spin (poll on nothing sleeps).
                logger.warning("metrics endpoint cannot accept", metadata: ["error": "\(error)"])
                var none: [pollfd] = []
                _ = try? Syscall.poll(&none, timeoutMilliseconds: 100)
            }
        }
        // Here, not in deinit: the thread that serves may still hold the endpoint when the
        // process exits, and the socket file must be gone by then.
        if case .unix(let path) = boundAddress { Syscall.unlink(path) }
        logger.info("metrics endpoint stopped")
    }

    public func stop() { stopNotifier.signal() }

    private func answer(_ fd: Int32) {
        let response: [UInt8]
        switch readHead(fd) {
        case .none: return  // the peer went away or was too slow: nothing to answer
        case .malformed?: response = HTTPResponse.encode(status: 400, body: Array("bad request\n".utf8))
        case .incomplete?: response = HTTPResponse.encode(status: 431, body: Array("request too large\n".utf8))
        case .request(let head)?: response = respond(to: head)
        }
        _ = try? response.withUnsafeBytes { try UnixSocket.sendAll(fd, $0) }
        lingeringClose(fd)
    }

    /// Closing a TCP socket with unread bytes in it sends a reset, which can destroy the
    /// response before the peer reads it (a 431 to an oversized request, say). So: end our side,
    /// then read and drop what the peer still sends, within the peer timeout and 64 KiB.
    private func lingeringClose(_ fd: Int32) {
        Syscall.shutdown(fd, reading: false, writing: true)
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 1)
        defer { scratch.deallocate() }
        var dropped = 0
        while dropped < 65536, let count = try? Syscall.recv(fd, scratch), count > 0 { dropped += count }
    }

    /// The request head, `.incomplete` when it does not fit in the bound, nil on timeout or EOF.
    private func readHead(_ fd: Int32) -> HTTPRequestHead.ParseResult? {
        var received: [UInt8] = []
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 1)
        defer { chunk.deallocate() }
        while received.count < Self.maxRequestBytes {
            guard let count = try? Syscall.recv(fd, chunk), count > 0 else { return nil }
            received += chunk.prefix(min(count, Self.maxRequestBytes - received.count))
            let result = HTTPRequestHead.parse(received)
            if result != .incomplete { return result }
        }
        return .incomplete
    }

    private func respond(to head: HTTPRequestHead) -> [UInt8] {
        switch MetricsRoute.route(head) {
        case .metrics:
            let (snapshot, fresh) = exchange.fetch(timeoutMilliseconds: 1000)
            if let snapshot { SnapshotGauges.record(snapshot) }
            if !fresh { logger.notice("metrics: the event loop did not answer in time; serving the last statistics") }
            return HTTPResponse.encode(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                                       body: registry.emitToBuffer())
        case .health:
            let phase = control.phase
            return phase == .serving
                ? HTTPResponse.encode(status: 200, body: Array("ok\n".utf8))
                : HTTPResponse.encode(status: 503, body: Array("\(phase)\n".utf8))
        case .notFound:
            return HTTPResponse.encode(status: 404, body: Array("not found\n".utf8))
        case .methodNotAllowed:
            return HTTPResponse.encode(status: 405, body: Array("only GET\n".utf8))
        }
    }
}
