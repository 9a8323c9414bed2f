import ArgumentParser
import Glibc
import Logging
import SamepageCore
import SamepageServer
import SamepageSystem
import ServiceLifecycle

/// Starts samepaged from checked settings: logging, metrics, the services, and the ServiceGroup
/// that owns SIGTERM and SIGINT.
enum Samepaged {
    static func serve(_ settings: SamepagedSettings) async throws {
        let level = Logger.Level(rawValue: settings.logLevel)!
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "samepaged")
        // A client that goes away mid-reply must cost an EPIPE, not the process. (The loop's
        // sends use MSG_NOSIGNAL already; this covers everything else.)
        Syscall.ignoreSignal(SIGPIPE)
        // Tables of 256 KiB and more (the unstable tree after a burst of candidates, a leaving
        // client's merge references) are given back to the kernel when freed, instead of staying
        // resident in the loop thread's arena (5.7 MiB in the runs benchmark, all of the
        // server's growth).
        Syscall.allocateLargeBlocksAsMappings(from: 256 << 10)

        let policy = AccessPolicy(serverUID: getuid(), allowedUIDs: Set(settings.allowUIDs),
                                  allowedGIDs: Set(settings.allowGIDs), domains: settings.domains)
        var configuration = ServerConfiguration(socketPath: settings.socket ?? DefaultSocketPath.resolve(), policy: policy)
        configuration.regionBytes = settings.regionBytes
        configuration.socketMode = settings.socketMode
        configuration.maxPageSharing = settings.maxPageSharing
        configuration.selfCheck = settings.selfCheck
        configuration.hardened = settings.hardened
        configuration.segmentBytes = settings.segmentBytes
        configuration.limits = settings.limits

        let control = try LoopControl()
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        var exchange: StatisticsExchange?
        if let address = settings.metricsListen {
            let registry = MetricsBootstrap.bootstrapPrometheus()
            let statistics = try StatisticsExchange()
            exchange = statistics
            let endpoint: MetricsEndpoint
            do {
                endpoint = try MetricsEndpoint(address: address, unixSocketMode: settings.socketMode, registry: registry,
                                               exchange: statistics, control: control, logger: logger)
            } catch {
                logger.critical("cannot start the metrics endpoint", metadata: ["address": "\(address)", "error": "\(error)"])
                throw ExitCode(1)
            }
            services.append(.init(service: MetricsService(endpoint: endpoint), serviceName: "metrics"))
        }
        // Last in the list: ServiceGroup shuts down in reverse order, so the loop drains first
        // while /healthz still answers (503).
        services.append(.init(service: LoopService(configuration: configuration, logger: logger, control: control,
                                                   statistics: exchange), serviceName: "event-loop"))
        var group = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        if settings.drainTimeoutSeconds > 0 {
            group.maximumGracefulShutdownDuration = .seconds(settings.drainTimeoutSeconds)
        }
        do {
            try await ServiceGroup(configuration: group).run()
        } catch {
            logger.critical("samepaged failed", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        logger.info("samepaged exiting")
    }
}
