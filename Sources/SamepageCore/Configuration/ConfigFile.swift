/// samepaged's config file: one `key = value` per line, the keys being the long option names
/// (`region-size = 4G`). Blank lines and lines whose first non-blank character is `#` are
/// ignored; a `#` elsewhere is part of the value (a socket path may hold one), so there are no
/// trailing comments. A repeatable option may appear on several lines. Values are taken as
/// written, trimmed of surrounding blanks; a value in double quotes keeps its inner blanks.
///
/// Chosen over JSON because operators edit it by hand and diff it, and because it reads like
/// the command line it mirrors.
public struct ConfigFile: Equatable, Sendable {
    public struct Entry: Equatable, Sendable {
        public var key: String
        public var value: String
        public var line: Int
    }

    /// Where the file was read from, for messages.
    public var path: String
    public var entries: [Entry]

    /// Parses the text of a config file. Syntax only: which keys exist is OptionResolver's
    /// business.
    public static func parse(_ text: String, path: String) throws(ConfigurationError) -> ConfigFile {
        var entries: [Entry] = []
        var number = 0
        // isNewline: "\r\n" is one Character in Swift, so splitting at "\n" would miss it.
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            number += 1
            let line = rawLine.trimmingBlanks()
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let equals = line.firstIndex(of: "=") else {
                throw ConfigurationError(key: nil, "\(path):\(number): expected `key = value`, found '\(line)'")
            }
            let key = line[..<equals].trimmingBlanks()
            var value = line[line.index(after: equals)...].trimmingBlanks()
            guard let first = key.first, first.isLetter, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
                throw ConfigurationError(key: key.isEmpty ? nil : key,
                                         "\(path):\(number): '\(key)' is not a key (keys are long option names such as region-size)")
            }
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                value = String(value.dropFirst().dropLast())
            }
            entries.append(Entry(key: key, value: value, line: number))
        }
        return ConfigFile(path: path, entries: entries)
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs and carriage returns (a file edited on Windows).
    func trimmingBlanks() -> String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        guard let first = firstIndex(where: { !blank($0) }) else { return "" }
        let last = lastIndex(where: { !blank($0) })!
        return String(self[first...last])
    }
}
