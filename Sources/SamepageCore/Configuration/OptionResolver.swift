/// Where an option's effective value came from.
public enum OptionSource: Equatable, Sendable, CustomStringConvertible {
    case commandLine
    case environment(variable: String)
    case configFile(path: String, lines: [Int])
    case defaultValue

    public var description: String {
        switch self {
        case .commandLine: "command line"
        case .environment(let variable): "environment \(variable)"
        case .configFile(let path, let lines):
            "config file \(path) line\(lines.count == 1 ? "" : "s") \(lines.map(String.init).joined(separator: ", "))"
        case .defaultValue: "default"
        }
    }
}

/// One option's values (several for a repeatable option) and their source.
public struct ResolvedOption: Equatable, Sendable {
    public var values: [String]
    public var source: OptionSource
}

/// Applies the precedence command line > environment > config file > default, option by
/// option. For a repeatable option the highest source that names it wins whole: values are not
/// merged across sources, so `--allow-uid 5` on the command line replaces the file's list
/// rather than extending it (the same rule as for every other option, and easy to predict).
public enum OptionResolver {
    /// - Parameters:
    ///   - commandLine: values given as flags, by option name (flags as "true").
    ///   - environment: the process environment; only `SAMEPAGE_<OPTION>` variables are read,
    ///     and an empty one counts as unset.
    ///   - configFile: the parsed config file, if any.
    public static func resolve(commandLine: [String: [String]], environment: [String: String],
                               configFile: ConfigFile?) throws(ConfigurationError) -> [String: ResolvedOption] {
        for name in commandLine.keys where OptionCatalog.spec(named: name) == nil {
            throw ConfigurationError(key: name, "unknown option --\(name)")
        }
        var fromFile: [String: (values: [String], lines: [Int])] = [:]
        if let configFile {
            for entry in configFile.entries {
                guard let spec = OptionCatalog.spec(named: entry.key) else {
                    throw ConfigurationError(key: entry.key, "\(configFile.path):\(entry.line): unknown key '\(entry.key)'")
                }
                if let earlier = fromFile[entry.key], !spec.repeatable {
                    throw ConfigurationError(key: entry.key, "\(configFile.path):\(entry.line): '\(entry.key)' is already set on line "
                                             + "\(earlier.lines[0]) and may be given once")
                }
                fromFile[entry.key, default: ([], [])].values += split(entry.value, for: spec)
                fromFile[entry.key, default: ([], [])].lines.append(entry.line)
            }
        }
        var resolved: [String: ResolvedOption] = [:]
        for spec in OptionCatalog.all {
            if let values = commandLine[spec.name], !values.isEmpty {
                resolved[spec.name] = ResolvedOption(values: values.flatMap { split($0, for: spec) }, source: .commandLine)
            } else if let value = environment[spec.environmentVariable], !value.isEmpty {
                resolved[spec.name] = ResolvedOption(values: split(value, for: spec),
                                                     source: .environment(variable: spec.environmentVariable))
            } else if let file = fromFile[spec.name], let configFile {
                resolved[spec.name] = ResolvedOption(values: file.values, source: .configFile(path: configFile.path, lines: file.lines))
            } else {
                resolved[spec.name] = ResolvedOption(values: spec.defaultValues, source: .defaultValue)
            }
        }
        return resolved
    }

    /// A repeatable option's text split at its separators; anything else taken whole.
    static func split(_ text: String, for spec: OptionSpec) -> [String] {
        guard spec.repeatable else { return [text] }
        return text.split(whereSeparator: { spec.separators.contains($0) }).map(String.init)
    }
}
