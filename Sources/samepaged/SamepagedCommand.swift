import ArgumentParser
import Glibc
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
            Clients connect over a Unix socket and receive a read-only fd of the region. \
            Pages they submit are stored once per dedup domain (one per uid, or a --domain group) \
            and mapped copy-on-write.

            Examples:
              samepaged                                   # default socket, 4G region
              samepaged --socket /tmp/sp.sock --region-size 512M
              SAMEPAGE_SOCKET=/tmp/sp.sock samepaged --log-level debug
              samepaged --socket-mode 666 --allow-uid 1000 --allow-uid 1001 --domain team=1000,1001
            """)

    @Option(name: .long, help: "Socket path (default: $SAMEPAGE_SOCKET, else $XDG_RUNTIME_DIR/samepage/samepaged.sock, else /run/samepage/samepaged.sock for root, /tmp/samepage-$UID/samepaged.sock otherwise).")
    var socket: String?

    @Option(name: .long, help: "Region memory the server may fill, across all domains (e.g. 512M, 4G). Sparse: only used pages cost memory.")
    var regionSize: String = "4G"

    @Option(name: .long, help: "Most owners one stored page takes before a copy starts a chain (KSM's max_page_sharing).")
    var maxPageSharing: UInt32 = 256

    @Option(name: .long, help: "File mode of the socket, octal.")
    var socketMode: String = "660"

    @Option(name: .customLong("allow-uid"), help: "A uid that may connect besides the server's own (repeatable).")
    var allowUIDs: [UInt32] = []

    @Option(name: .customLong("allow-gid"), help: "A gid whose members (by primary gid) may connect (repeatable).")
    var allowGIDs: [UInt32] = []

    @Option(name: .customLong("domain"), help: "A dedup domain shared by several uids: NAME=uid,uid,... (repeatable). Other uids are a domain each.")
    var domains: [String] = []

    @Option(name: .long, help: "Uploads one client may have open at once.")
    var maxUploads: Int = SessionLimits().maxUploads

    @Option(name: .long, help: "Objects one client may have mapped at once.")
    var maxMappings: Int = SessionLimits().maxMappings

    @Option(name: .long, help: "Mergeable-memory candidates one client may leave waiting in one scan round.")
    var maxUnstable: Int = SessionLimits().maxUnstableEntries

    @Option(name: .long, help: "Objects one dedup domain may hold.")
    var maxObjects: Int = SessionLimits().maxDomainObjects

    @Option(name: .long, help: "Pages one client's open uploads may add up to (e.g. 16G of pages: 4194304).")
    var maxUploadPages: Int = Int(SessionLimits().maxUploadPages)

    @Flag(name: .long, help: "Seal the region against writes by anyone, clients of the server's own uid included (F_SEAL_FUTURE_WRITE); memory is then freed a whole segment at a time. See docs/security.md.")
    var hardened = false

    @Option(name: .long, help: "Size of one region segment in --hardened mode (e.g. 64M): the unit in which freed memory goes back to the kernel.")
    var segmentSize: String = "64M"

    @Flag(name: .long, help: ArgumentHelp("Answer `samepage verify`: a full check of the bookkeeping (tests).", visibility: .hidden))
    var selfCheck = false

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func validate() throws {
        guard let bytes = ByteSize.parse(regionSize), bytes >= UInt64(Page.size) else {
            throw ValidationError("--region-size '\(regionSize)' is not a size such as 512M or 4G")
        }
        guard bytes / UInt64(Page.size) < UInt64(UInt32.max) else {
            throw ValidationError("--region-size '\(regionSize)' is larger than 16T")
        }
        guard let segment = ByteSize.parse(segmentSize), segment >= UInt64(Page.size), segment % UInt64(Page.size) == 0 else {
            throw ValidationError("--segment-size '\(segmentSize)' is not a whole number of 4K pages such as 64M")
        }
        guard bytes / segment < 1 << 20 else { throw ValidationError("--segment-size '\(segmentSize)' makes over a million segments") }
        guard UInt32(socketMode, radix: 8) != nil else { throw ValidationError("--socket-mode '\(socketMode)' is not octal") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level '\(logLevel)' is not a level") }
        guard maxPageSharing >= 2 else { throw ValidationError("--max-page-sharing must be at least 2") }
        for (name, value) in [("--max-uploads", maxUploads), ("--max-mappings", maxMappings),
                              ("--max-unstable", maxUnstable), ("--max-objects", maxObjects),
                              ("--max-upload-pages", maxUploadPages)] where value < 1 {
            throw ValidationError("\(name) must be at least 1")
        }
        var seen: Set<UInt32> = []
        for domain in domains {
            guard let parsed = AccessPolicy.parseDomain(domain) else {
                throw ValidationError("--domain '\(domain)' is not NAME=uid,uid,...")
            }
            for uid in parsed.uids {
                guard seen.insert(uid).inserted else { throw ValidationError("uid \(uid) is in two --domain groups") }
            }
        }
    }

    func run() throws {
        let level = Logger.Level(rawValue: logLevel)!
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "samepaged")
        var groups: [String: [UInt32]] = [:]
        for domain in domains {
            let parsed = AccessPolicy.parseDomain(domain)!
            groups[parsed.name, default: []] += parsed.uids
        }
        let policy = AccessPolicy(serverUID: getuid(), allowedUIDs: Set(allowUIDs), allowedGIDs: Set(allowGIDs), domains: groups)
        var configuration = ServerConfiguration(socketPath: socket ?? DefaultSocketPath.resolve(), policy: policy)
        configuration.regionBytes = ByteSize.parse(regionSize)!
        configuration.socketMode = UInt32(socketMode, radix: 8)!
        configuration.maxPageSharing = maxPageSharing
        configuration.selfCheck = selfCheck
        configuration.hardened = hardened
        configuration.segmentBytes = ByteSize.parse(segmentSize)!
        configuration.limits.maxUploads = maxUploads
        configuration.limits.maxMappings = maxMappings
        configuration.limits.maxUnstableEntries = maxUnstable
        configuration.limits.maxDomainObjects = maxObjects
        configuration.limits.maxUploadPages = UInt64(maxUploadPages)
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
