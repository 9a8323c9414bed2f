/// samepaged's settings, typed and checked: what the command line, the environment, the config
/// file and the defaults (OptionResolver) add up to. Every refusal names the key and the source
/// of the bad value.
public struct SamepagedSettings: Equatable, Sendable {
    /// nil: DefaultSocketPath's rule.
    public var socket: String?
    public var regionBytes: UInt64
    public var maxPageSharing: UInt32
    public var socketMode: UInt32
    public var allowUIDs: [UInt32]
    public var allowGIDs: [UInt32]
    /// Domain name to its uids.
    public var domains: [String: [UInt32]]
    public var limits: SessionLimits
    public var logLevel: String
    public var metricsListen: ListenAddress?
    /// Seconds a graceful shutdown may spend draining before the remaining clients are cut off.
    public var drainTimeoutSeconds: Int
    public var selfCheck: Bool
    /// Region segments sealed with F_SEAL_FUTURE_WRITE (docs/security.md), of `segmentBytes`.
    public var hardened: Bool
    public var segmentBytes: UInt64

    /// swift-log's level names, spelled out here so that this file needs no logging library.
    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    public init(_ options: [String: ResolvedOption]) throws(ConfigurationError) {
        let reader = Reader(options: options)
        socket = try reader.single("socket")
        let regionText = try reader.single("region-size") ?? ""
        guard let bytes = ByteSize.parse(regionText), bytes >= UInt64(Page.size) else {
            throw reader.error("region-size", "is not a size such as 512M or 4G")
        }
        // Page numbers from UInt32.max - 2 up have other meanings on the wire (MergeOutcome).
        guard bytes / UInt64(Page.size) < UInt64(UInt32.max) - 2 else { throw reader.error("region-size", "is larger than 16T") }
        regionBytes = bytes
        maxPageSharing = try reader.number("max-page-sharing", UInt32.self, atLeast: 2)
        guard let mode = try reader.single("socket-mode").flatMap({ UInt32($0, radix: 8) }), mode <= 0o777 else {
            throw reader.error("socket-mode", "is not an octal file mode such as 660")
        }
        socketMode = mode
        allowUIDs = try reader.numbers("allow-uid")
        allowGIDs = try reader.numbers("allow-gid")
        var domains: [String: [UInt32]] = [:]
        var seen: Set<UInt32> = []
        for text in reader.values("domain") {
            guard let parsed = AccessPolicy.parseDomain(text) else {
                throw reader.error("domain", "is not NAME=uid,uid,...", value: text)
            }
            for uid in parsed.uids where !seen.insert(uid).inserted {
                throw reader.error("domain", "puts uid \(uid) in two --domain groups", value: text)
            }
            domains[parsed.name, default: []] += parsed.uids
        }
        self.domains = domains
        limits = SessionLimits()
        limits.maxUploads = try reader.number("max-uploads", Int.self, atLeast: 1)
        limits.maxMappings = try reader.number("max-mappings", Int.self, atLeast: 1)
        limits.maxUnstableEntries = try reader.number("max-unstable", Int.self, atLeast: 1)
        limits.maxDomainObjects = try reader.number("max-objects", Int.self, atLeast: 1)
        limits.maxUploadPages = try reader.number("max-upload-pages", UInt64.self, atLeast: 1)
        hardened = try reader.flag("hardened")
        let segmentText = try reader.single("segment-size") ?? ""
        guard let segment = ByteSize.parse(segmentText), segment >= UInt64(Page.size), segment % UInt64(Page.size) == 0 else {
            throw reader.error("segment-size", "is not a whole number of 4K pages such as 64M")
        }
        guard bytes / segment < 1 << 20 else { throw reader.error("segment-size", "makes over a million segments") }
        segmentBytes = segment
        let level = try reader.single("log-level") ?? ""
        guard Self.logLevels.contains(level) else {
            throw reader.error("log-level", "is not one of \(Self.logLevels.joined(separator: ", "))")
        }
        logLevel = level
        if let text = try reader.single("metrics-listen") {
            guard let address = ListenAddress.parse(text) else {
                throw reader.error("metrics-listen", "is not HOST:PORT (numeric IPv4, e.g. 127.0.0.1:9464) or unix:/PATH")
            }
            metricsListen = address
        } else {
            metricsListen = nil
        }
        drainTimeoutSeconds = try reader.number("drain-timeout", Int.self, atLeast: 0)
        selfCheck = try reader.flag("self-check")
    }

    /// Reads one option's text values and words its complaints.
    private struct Reader {
        var options: [String: ResolvedOption]

        func values(_ key: String) -> [String] { options[key]?.values ?? [] }

        func error(_ key: String, _ problem: String, value: String? = nil) -> ConfigurationError {
            let option = options[key]
            let shown = value ?? option?.values.joined(separator: ",") ?? ""
            let source = option.map { " (from \($0.source))" } ?? ""
            // Named as the operator wrote it: `--domain` on the command line, `domain` elsewhere.
            let name = option?.source == .commandLine ? "--" + key : key
            return ConfigurationError(key: key, "\(name) '\(shown)'\(source) \(problem)")
        }

        func single(_ key: String) throws(ConfigurationError) -> String? {
            let values = values(key)
            guard values.count <= 1 else { throw error(key, "has \(values.count) values; it takes one") }
            return values.first
        }

        func number<N: FixedWidthInteger>(_ key: String, _ type: N.Type, atLeast minimum: N) throws(ConfigurationError) -> N {
            guard let text = try single(key), let value = N(text) else { throw error(key, "is not a whole number") }
            guard value >= minimum else { throw error(key, "must be at least \(minimum)") }
            return value
        }

        func numbers(_ key: String) throws(ConfigurationError) -> [UInt32] {
            var result: [UInt32] = []
            for text in values(key) {
                guard let value = UInt32(text) else { throw error(key, "is not a numeric id", value: text) }
                result.append(value)
            }
            return result
        }

        func flag(_ key: String) throws(ConfigurationError) -> Bool {
            switch try single(key)?.lowercased() {
            case "true", "yes", "on", "1": return true
            case "false", "no", "off", "0", nil: return false
            default: throw error(key, "is not true or false")
            }
        }
    }
}
