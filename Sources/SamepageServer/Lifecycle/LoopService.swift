import Logging
import SamepageSystem
import ServiceLifecycle

/// samepaged's event loop as a swift-service-lifecycle `Service`.
///
/// The loop is synchronous and blocks in io_uring, so it runs on a thread of its own rather
/// than on the cooperative pool; `run()` waits for that thread. ServiceGroup owns SIGTERM and
/// SIGINT (its dispatch signal sources), and its graceful shutdown reaches the loop through
/// `LoopControl`'s eventfd, armed in the ring: the loop drains and returns, and so does `run()`.
/// The Server is made with `handleSignals: false`: its signalfd would need the signals blocked
/// in every thread, which would silence ServiceGroup's handlers; one owner, no race.
/// Cancellation (ServiceGroup's `maximumGracefulShutdownDuration` ran out) stops the loop at once.
public struct LoopService: Service {
    let configuration: ServerConfiguration
    let logger: Logger
    let control: LoopControl
    let statistics: StatisticsExchange?

    public init(configuration: ServerConfiguration, logger: Logger, control: LoopControl, statistics: StatisticsExchange?) {
        self.configuration = configuration
        self.logger = logger
        self.control = control
        self.statistics = statistics
    }

    public func run() async throws {
        let control = control
        let logger = logger
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await runOnLoopThread()
            } onGracefulShutdown: {
                logger.notice("graceful shutdown: draining the event loop")
                control.requestDrain()
            }
        } onCancel: {
            control.requestStop()
        }
    }

    private func runOnLoopThread() async throws {
        let (configuration, logger, control, statistics) = (self.configuration, self.logger, self.control, self.statistics)
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            do {
                try NamedThread.start(name: "samepaged-loop") {
                    do {
                        try Self.serve(configuration: configuration, logger: logger, control: control, statistics: statistics)
                        continuation.resume()
                    } catch {
                        continuation.resume(throwing: error)
                    }
                }
            } catch {
                continuation.resume(throwing: error)
            }
        }
    }

    /// Made and run on the loop thread (the Server is not Sendable); it is gone, and its socket
    /// file with it, before this returns.
    private static func serve(configuration: ServerConfiguration, logger: Logger, control: LoopControl,
                              statistics: StatisticsExchange?) throws {
        let server: Server
        do {
            server = try Server(configuration: configuration, logger: logger, handleSignals: false,
                                control: control, statistics: statistics)
        } catch {
            logger.critical("cannot start", metadata: ["socket": "\(configuration.socketPath)", "error": "\(error)"])
            throw error
        }
        try server.run()
    }
}
