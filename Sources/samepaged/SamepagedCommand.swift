import ArgumentParser
import Glibc
import Logging
import SamepageCore
import SamepageServer
import SamepageSystem
import ServiceLifecycle

@main
struct SamepagedCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "samepaged",
        abstract: "The Samepage server: a deduplicating shared-memory page store.",
        discussion: """
            Clients connect over a Unix socket and receive a read-only fd of the region. \
            Pages they submit are stored once per dedup domain (one per uid, or a --domain group) \
            and mapped copy-on-write.

            Every option can also come from the environment as SAMEPAGE_<OPTION> \
            (SAMEPAGE_REGION_SIZE=2G; lists comma-separated, SAMEPAGE_ALLOW_UID=1000,1001; domains \
            ;-separated) or from a config file of `option = value` lines (--config, SAMEPAGE_CONFIG). \
            The command line beats the environment, which beats the file, which beats the defaults. \
            SIGTERM or SIGINT drains: no new clients, replies to what was received, exit 0.

            Examples:
              samepaged                                   # default socket, 4G region
              samepaged --socket /tmp/sp.sock --region-size 512M
              SAMEPAGE_SOCKET=/tmp/sp.sock samepaged --log-level debug
              samepaged --config /etc/samepage/samepaged.conf --check-config
              samepaged --metrics-listen 127.0.0.1:9464   # Prometheus: /metrics and /healthz
              samepaged --socket-mode 666 --allow-uid 1000 --allow-uid 1001 --domain team=1000,1001
            """)

    // Options are read as text and checked by SamepagedSettings, whatever their source, so a
    // bad value gets the same message from the command line, the environment or the file.

    @Option(name: .long, help: "Socket path (default: $SAMEPAGE_SOCKET, else $XDG_RUNTIME_DIR/samepage/samepaged.sock, else /run/samepage/samepaged.sock for root, /tmp/samepage-$UID/samepaged.sock otherwise).")
    var socket: String?

    @Option(name: .long, help: "Region memory the server may fill, across all domains (e.g. 512M, 4G; default 4G). Sparse: only used pages cost memory.")
    var regionSize: String?

    @Option(name: .long, help: "Most owners one stored page takes before a copy starts a chain (KSM's max_page_sharing; default 256).")
    var maxPageSharing: String?

    @Option(name: .long, help: "File mode of the socket, octal (default 660); also of a unix: metrics socket.")
    var socketMode: String?

    @Option(name: .customLong("allow-uid"), help: "A uid that may connect besides the server's own (repeatable).")
    var allowUIDs: [String] = []

    @Option(name: .customLong("allow-gid"), help: "A gid whose members (by primary gid) may connect (repeatable).")
    var allowGIDs: [String] = []

    @Option(name: .customLong("domain"), help: "A dedup domain shared by several uids: NAME=uid,uid,... (repeatable). Other uids are a domain each.")
    var domains: [String] = []

    @Option(name: .long, help: "Uploads one client may have open at once (default \(SessionLimits().maxUploads)).")
    var maxUploads: String?

    @Option(name: .long, help: "Objects one client may have mapped at once (default \(SessionLimits().maxMappings)).")
    var maxMappings: String?

    @Option(name: .long, help: "Mergeable-memory candidates one client may leave waiting in the unstable tree (default \(SessionLimits().maxUnstableEntries)).")
    var maxUnstable: String?

    @Option(name: .long, help: "Objects one dedup domain may hold (default \(SessionLimits().maxDomainObjects)).")
    var maxObjects: String?

    @Option(name: .long, help: "Pages one client's open uploads may add up to (default \(SessionLimits().maxUploadPages), 16G of pages).")
    var maxUploadPages: String?

    @Flag(name: .long, help: "Seal the region against writes by anyone, clients of the server's own uid included (F_SEAL_FUTURE_WRITE); memory is then freed a whole segment at a time. See docs/security.md.")
    var hardened = false

    @Option(name: .long, help: "Size of one region segment in --hardened mode (default 64M): the unit in which freed memory goes back to the kernel.")
    var segmentSize: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical (default info).")
    var logLevel: String?

    @Option(name: .long, help: "Serve Prometheus metrics and /healthz at HOST:PORT (numeric IPv4; port 0 picks one and logs it) or unix:/PATH. Default: off.")
    var metricsListen: String?

    @Option(name: .long, help: "Seconds a graceful shutdown may spend draining clients before cutting them off (default 30; 0: no limit).")
    var drainTimeout: String?

    @Flag(name: .long, help: ArgumentHelp("Answer `samepage verify`: a full check of the bookkeeping (tests).", visibility: .hidden))
    var selfCheck = false

    @Option(name: .long, help: "A config file of `option = value` lines (default: $SAMEPAGE_CONFIG, else none).")
    var config: String?

    @Flag(name: .long, help: "Check the configuration (values, config file, socket directory), print the effective settings and where each came from, and exit: 0 if good, 1 if not.")
    var checkConfig = false

    /// The options given on the command line, by their catalog names.
    private var commandLineValues: [String: [String]] {
        var values: [String: [String]] = [:]
        let single: [(String, String?)] = [
            ("socket", socket), ("region-size", regionSize), ("max-page-sharing", maxPageSharing),
            ("socket-mode", socketMode), ("max-uploads", maxUploads), ("max-mappings", maxMappings),
            ("max-unstable", maxUnstable), ("max-objects", maxObjects), ("log-level", logLevel),
            ("metrics-listen", metricsListen), ("drain-timeout", drainTimeout),
            ("max-upload-pages", maxUploadPages), ("segment-size", segmentSize),
        ]
        for case let (name, value?) in single { values[name] = [value] }
        for (name, list) in [("allow-uid", allowUIDs), ("allow-gid", allowGIDs), ("domain", domains)] where !list.isEmpty {
            values[name] = list
        }
        if selfCheck { values["self-check"] = ["true"] }
        if hardened { values["hardened"] = ["true"] }
        return values
    }

    func run() async throws {
        let environment = ProcessEnvironment.current()
        let loaded: LoadedConfiguration
        do {
            loaded = try LoadedConfiguration.load(commandLine: commandLineValues, configPath: config, environment: environment)
        } catch {
            printError("samepaged: configuration error: \(error.message)")
            throw ExitCode(1)
        }
        if checkConfig {
            let problems = ConfigCheck.problems(loaded.settings)
            if let config = loaded.configPath { print("config file: \(config)") }
            for line in EffectiveConfigurationReport.lines(loaded.options, socketDefault: DefaultSocketPath.resolve()) {
                print(line)
            }
            for problem in problems { printError("samepaged: configuration error: \(problem)") }
            if !problems.isEmpty { throw ExitCode(1) }
            print("configuration OK")
            return
        }
        try await Samepaged.serve(loaded.settings)
    }
}

/// To stderr, unbuffered (stdout is for --check-config's report).
func printError(_ text: String) {
    let bytes = Array((text + "\n").utf8)
    _ = try? bytes.withUnsafeBytes { try Syscall.write(2, $0) }
}
