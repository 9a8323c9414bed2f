/// How Samepage's figures are named in Prometheus: `samepage_` and the KSM statistic name
/// (`samepage_pages_sharing`), request kinds in snake case as label values (`put_pages`). Pure
/// text rules, kept apart from the exporter so that they are tested without a socket.
public enum PrometheusNaming {
    public static let prefix = "samepage_"

    /// The metric for one of `Service.statistics(of:)`'s statistics.
    public static func metricName(forStatistic name: String) -> String {
        prefix + sanitized(name)
    }

    /// `putPages` → `put_pages`: a Swift case name as a label value.
    public static func snakeCase(_ name: String) -> String {
        var result = ""
        for character in name {
            if character.isUppercase {
                if !result.isEmpty { result.append("_") }
                result += character.lowercased()
            } else {
                result.append(character)
            }
        }
        return result
    }

    /// A valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`, anything else replaced by `_`.
    public static func sanitized(_ name: String) -> String {
        var result = ""
        for (index, scalar) in name.unicodeScalars.enumerated() {
            let isLetter = (scalar >= "a" && scalar <= "z") || (scalar >= "A" && scalar <= "Z") || scalar == "_" || scalar == ":"
            let isDigit = scalar >= "0" && scalar <= "9"
            result.unicodeScalars.append(isLetter || (isDigit && index > 0) ? scalar : "_")
        }
        return result.isEmpty ? "_" : result
    }

    /// One-line help for each statistic's metric (docs/statistics.md has the full meanings).
    public static func help(forStatistic name: String) -> String {
        switch name {
        case "pages_shared": "Stored pages with two or more users (KSM pages_shared)"
        case "pages_sharing": "Extra users of shared pages: pages saved (KSM pages_sharing)"
        case "pages_unshared": "Stored pages with one user plus unstable-tree candidates (KSM pages_unshared)"
        case "pages_volatile": "Mergeable pages that changed in their last full scan (KSM pages_volatile)"
        case "pages_scanned": "Pages the domain's scanners looked at, cumulative (KSM pages_scanned)"
        case "pages_skipped": "Pages skipped by smart scan or not mergeable (KSM pages_skipped)"
        case "full_scans": "Complete passes over the domain's mergeable memory (KSM full_scans)"
        case "stable_node_chains": "Contents stored more than once because of max_page_sharing (KSM stable_node_chains)"
        case "stable_node_dups": "Copies in stable node chains (KSM stable_node_dups)"
        case "ksm_zero_pages": "All-zero pages not stored (KSM ksm_zero_pages)"
        case "general_profit": "Bytes saved minus metadata bytes (KSM general_profit)"
        case "region_bytes_used": "Bytes of the domain's region holding content"
        case "objects": "Objects that can be looked up by id"
        case "clients": "Connected clients in the domain"
        default: "Samepage statistic \(name)"
        }
    }
}
