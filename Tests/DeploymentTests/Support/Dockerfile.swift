import Foundation

/// A Dockerfile read well enough to check it without a container engine: its stages and, per
/// stage, the instructions that matter here. Pure: text in, values out.
struct Dockerfile {
    struct Instruction: Equatable {
        var keyword: String
        var arguments: String
    }

    struct Stage {
        var base: String
        var name: String?
        var instructions: [Instruction] = []

        func all(_ keyword: String) -> [String] {
            instructions.filter { $0.keyword == keyword }.map(\.arguments)
        }

        /// Packages named by `apt-get install` in this stage's RUN lines (options skipped).
        var aptPackages: [String] {
            var packages: [String] = []
            for run in all("RUN") {
                for command in run.split(whereSeparator: { "&;|".contains($0) }) {
                    let words = command.split(separator: " ").map(String.init)
                    guard let at = words.firstIndex(of: "install"), at > 0, words[at - 1] == "apt-get" else { continue }
                    packages += words[(at + 1)...].filter { !$0.hasPrefix("-") }
                }
            }
            return packages
        }

        /// `COPY --from=STAGE SOURCE DEST` lines: (stage, source, destination).
        var copiesFromStages: [(from: String, source: String, destination: String)] {
            all("COPY").compactMap { line in
                let words = line.split(separator: " ").map(String.init)
                guard let from = words.first(where: { $0.hasPrefix("--from=") }), words.count >= 3 else { return nil }
                let paths = words.filter { !$0.hasPrefix("--") }
                return (String(from.dropFirst("--from=".count)), paths[0], paths[paths.count - 1])
            }
        }

        /// The last ENTRYPOINT in exec form, as its words.
        var entrypoint: [String]? { all("ENTRYPOINT").last.flatMap(Dockerfile.execForm) }

        /// The command of the last HEALTHCHECK (`CMD [...]` after its options), as its words.
        var healthcheck: [String]? {
            guard let line = all("HEALTHCHECK").last, let cmd = line.range(of: "CMD ") else { return nil }
            return Dockerfile.execForm(String(line[cmd.upperBound...]))
        }
    }

    var arguments: [String: String] = [:]
    var stages: [Stage] = []

    init(_ text: String) {
        // Join continuation lines, drop comments and blank lines.
        var logical: [String] = []
        var pending = ""
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if pending.isEmpty && (line.isEmpty || line.hasPrefix("#")) { continue }
            if line.hasPrefix("#") { continue }
            if line.hasSuffix("\\") {
                pending += line.dropLast().trimmingCharacters(in: .whitespaces) + " "
            } else {
                logical.append(pending + line)
                pending = ""
            }
        }
        for line in logical {
            let keyword = String(line.prefix { $0 != " " }).uppercased()
            let rest = line.drop { $0 != " " }.trimmingCharacters(in: .whitespaces)
            switch keyword {
            case "ARG" where stages.isEmpty:
                let parts = rest.split(separator: "=", maxSplits: 1).map(String.init)
                arguments[parts[0]] = parts.count > 1 ? parts[1] : ""
            case "FROM":
                let words = rest.split(separator: " ").map(String.init)
                let name = words.count >= 3 && words[words.count - 2].uppercased() == "AS" ? words.last : nil
                stages.append(Stage(base: expand(words[0]), name: name))
            default:
                if !stages.isEmpty { stages[stages.count - 1].instructions.append(Instruction(keyword: keyword, arguments: rest)) }
            }
        }
    }

    func stage(named name: String) -> Stage? { stages.first { $0.name == name } }

    /// `${NAME}` replaced by the ARG defaults declared before the first FROM.
    func expand(_ text: String) -> String {
        var result = text
        for (name, value) in arguments { result = result.replacingOccurrences(of: "${\(name)}", with: value) }
        return result
    }

    /// `["a", "b"]` as ["a", "b"]; nil for the shell form.
    static func execForm(_ text: String) -> [String]? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard trimmed.hasPrefix("["), trimmed.hasSuffix("]") else { return nil }
        return trimmed.dropFirst().dropLast().split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        }
    }
}
