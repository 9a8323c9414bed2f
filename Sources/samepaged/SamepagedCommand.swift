import ArgumentParser
import Logging
import SamepageCore
import SamepageServer
import SamepageSystem

@main
struct SamepagedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "samepaged",
        abstract: "The Samepage server: a deduplicating shared-memory page store.",
        discussion: """
            Clients connect over a Unix socket and receive a read-only fd of the region. Pages they
            submit are stored once per dedup domain (one per uid) and mapped copy-on-write.

            Examples:
              samepaged                                   # default socket, 4G region
              samepaged --socket /tmp/sp.sock --region-size 512M
              SAMEPAGE_SOCKET=/tmp/sp.sock samepaged --log-level debug
            """)

    @Option(name: .long, help: "Socket path (default: $SAMEPAGE_SOCKET, else $XDG_RUNTIME_DIR/samepage/samepaged.sock, else /run/samepage/samepaged.sock for root, /tmp/samepage-$UID/samepaged.sock otherwise).")
    var socket: String?

    @Option(name: .long, help: "Region memory the server may fill, across all domains (e.g. 512M, 4G). Sparse: only used pages cost memory.")
    var regionSize: String = "4G"

    @Option(name: .long, help: "Most owners one stored page takes before a copy starts a chain (KSM's max_page_sharing).")
    var maxPageSharing: UInt32 = 256

    @Option(name: .long, help: "File mode of the socket, octal.")
    var socketMode: String = "660"

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func validate() throws {
        guard let bytes = ByteSize.parse(regionSize), bytes >= UInt64(Page.size) else {
            throw ValidationError("--region-size '\(regionSize)' is not a size such as 512M or 4G")
        }
        guard bytes / UInt64(Page.size) < UInt64(UInt32.max) else {
            throw ValidationError("--region-size '\(regionSize)' is larger than 16T")
        }
        guard UInt32(socketMode, radix: 8) != nil else { throw ValidationError("--socket-mode '\(socketMode)' is not octal") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level '\(logLevel)' is not a level") }
        guard maxPageSharing >= 2 else { throw ValidationError("--max-page-sharing must be at least 2") }
    }

    func run() throws {
        let level = Logger.Level(rawValue: logLevel)!
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "samepaged")
        var configuration = ServerConfiguration(socketPath: socket ?? DefaultSocketPath.resolve())
        configuration.regionBytes = ByteSize.parse(regionSize)!
        configuration.socketMode = UInt32(socketMode, radix: 8)!
        configuration.maxPageSharing = maxPageSharing
        let server: Server
        do {
            server = try Server(configuration: configuration, logger: logger)
        } catch {
            logger.critical("cannot start", metadata: ["socket": "\(configuration.socketPath)", "error": "\(error)"])
            throw ExitCode(1)
        }
        try server.run()
    }
}
