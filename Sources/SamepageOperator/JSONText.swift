import SamepageCore

/// The JSON the operators' commands print with `--json`. Hand-written: the shapes are flat, and
/// the CLI stays free of Foundation.
public enum JSONText {
    /// `samepage stats --json`: one object whose keys are the statistic names, in the server's
    /// order (the shape scripts have relied on since the first release).
    public static func statistics(_ stats: [Statistic]) -> String {
        "{" + stats.map { "\(quoted($0.name)): \($0.value)" }.joined(separator: ", ") + "}"
    }

    /// `samepage clients --json`: `{"total": N, "clients": [{...}, ...]}`.
    public static func clients(_ list: ClientList) -> String {
        let entries = list.clients.map { c in
            "{\"pid\": \(c.pid), \"uid\": \(c.uid), \"name\": \(quoted(c.name)), \"objects_mapped\": \(c.objectsMapped), "
                + "\"uploads_open\": \(c.uploadsOpen), \"mergeable_pages\": \(c.mergeablePages), "
                + "\"merged_pages\": \(c.mergedPages), \"requests_served\": \(c.requestsServed), "
                + "\"connected_since\": \(c.connectedSince), \"self\": \(c.isCaller)}"
        }
        return "{\"total\": \(list.total), \"clients\": [" + entries.joined(separator: ", ") + "]}"
    }

    /// A JSON string literal: quotes, backslashes and control characters escaped.
    public static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
