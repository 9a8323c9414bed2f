/// One samepaged option under the three names it has: `--region-size` on the command line,
/// `SAMEPAGE_REGION_SIZE` in the environment and `region-size` in a config file. Keeping the
/// names derived from one string means the three can never drift apart.
public struct OptionSpec: Sendable {
    /// The long option without its dashes; also the config file key.
    public let name: String
    /// May be given several times (`--allow-uid 1 --allow-uid 2`).
    public let repeatable: Bool
    /// Separates several values inside one environment variable or config line (repeatable
    /// options only). `--domain` values hold commas themselves, so they are separated by `;`.
    public let separators: Set<Character>
    /// The value when no source gives one, as text; empty when there is none (the socket's
    /// default depends on the process: DefaultSocketPath).
    public let defaultValues: [String]
    /// A flag: given without a value on the command line; `true`/`false` elsewhere.
    public let isFlag: Bool

    public var environmentVariable: String {
        "SAMEPAGE_" + String(name.uppercased().map { $0 == "-" ? "_" : $0 })
    }

    init(_ name: String, repeatable: Bool = false, separators: Set<Character> = [",", " "],
         default defaultValues: [String] = [], isFlag: Bool = false) {
        self.name = name
        self.repeatable = repeatable
        self.separators = separators
        self.defaultValues = defaultValues
        self.isFlag = isFlag
    }
}

/// Every option samepaged takes from the command line, the environment or a config file.
/// `--config` and `--check-config` are not here: they say where to look and what to do, and a
/// config file naming another config file would only be confusing.
public enum OptionCatalog {
    public static let all: [OptionSpec] = {
        let limits = SessionLimits()
        return [
            OptionSpec("socket"),
            OptionSpec("region-size", default: ["4G"]),
            OptionSpec("max-page-sharing", default: ["256"]),
            OptionSpec("socket-mode", default: ["660"]),
            OptionSpec("allow-uid", repeatable: true),
            OptionSpec("allow-gid", repeatable: true),
            OptionSpec("domain", repeatable: true, separators: [";", " "]),
            OptionSpec("max-uploads", default: ["\(limits.maxUploads)"]),
            OptionSpec("max-mappings", default: ["\(limits.maxMappings)"]),
            OptionSpec("max-unstable", default: ["\(limits.maxUnstableEntries)"]),
            OptionSpec("max-objects", default: ["\(limits.maxDomainObjects)"]),
            OptionSpec("max-upload-pages", default: ["\(limits.maxUploadPages)"]),
            OptionSpec("hardened", default: ["false"], isFlag: true),
            OptionSpec("segment-size", default: ["64M"]),
            OptionSpec("log-level", default: ["info"]),
            OptionSpec("metrics-listen"),
            OptionSpec("drain-timeout", default: ["30"]),
            OptionSpec("self-check", default: ["false"], isFlag: true),
        ]
    }()

    public static func spec(named name: String) -> OptionSpec? {
        all.first { $0.name == name }
    }
}
