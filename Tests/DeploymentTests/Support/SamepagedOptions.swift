/// What samepaged documents about its own configuration, read from its `--help` text.
enum SamepagedOptions {
    /// The long options (`--region-size` -> "region-size") in ArgumentParser's help output:
    /// the OPTIONS section lines that start with `--` or `-x, --`.
    static func longOptions(inHelp help: String) -> Set<String> {
        var options: Set<String> = []
        for line in help.split(separator: "\n") {
            var text = Substring(line.drop { $0 == " " })
            if text.hasPrefix("-"), !text.hasPrefix("--"), let comma = text.firstIndex(of: ",") {
                text = text[text.index(after: comma)...].drop { $0 == " " }
            }
            guard text.hasPrefix("--") else { continue }
            let name = text.dropFirst(2).prefix { $0.isLetter || $0.isNumber || $0 == "-" }
            if !name.isEmpty { options.insert(String(name)) }
        }
        return options
    }

    /// The environment variable that sets a long option: SAMEPAGE_ and the option's name in
    /// upper case with `_` for `-` (`region-size` -> SAMEPAGE_REGION_SIZE).
    static func environmentName(_ option: String) -> String {
        "SAMEPAGE_" + option.uppercased().map { $0 == "-" ? "_" : $0 }.map(String.init).joined()
    }

    /// The option an environment variable sets, if it is named like one.
    static func option(forEnvironmentName name: String) -> String? {
        guard name.hasPrefix("SAMEPAGE_"), name.count > "SAMEPAGE_".count else { return nil }
        return name.dropFirst("SAMEPAGE_".count).lowercased().map { $0 == "_" ? "-" : $0 }.map(String.init).joined()
    }
}
