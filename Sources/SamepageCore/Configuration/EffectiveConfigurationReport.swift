/// What `samepaged --check-config` prints: every option with its effective value and where it
/// came from, one per line, in the order of `--help`.
public enum EffectiveConfigurationReport {
    /// - Parameter socketDefault: the socket path the default rule gives in this process.
    public static func lines(_ options: [String: ResolvedOption], socketDefault: String) -> [String] {
        let width = OptionCatalog.all.map(\.name.count).max() ?? 0
        return OptionCatalog.all.map { spec in
            let option = options[spec.name] ?? ResolvedOption(values: [], source: .defaultValue)
            var value = option.values.joined(separator: spec.separators.contains(";") ? "; " : ", ")
            if value.isEmpty { value = spec.name == "socket" ? socketDefault : "(none)" }
            let padding = String(repeating: " ", count: width - spec.name.count)
            return "\(spec.name)\(padding) = \(value)    [\(option.source)]"
        }
    }
}
