import SamepageCore

/// `samepage stats`: the domain's statistics with KSM's names, their raw values (exactly what
/// `--json` prints) and, where a number is pages or bytes, what it amounts to.
public enum StatisticsTable {
    /// `regionBytes` is the size of the caller's domain region (from the server's welcome).
    public static func render(_ stats: [Statistic], regionBytes: UInt64) -> String {
        var table = TextTable(headers: ["STATISTIC", "VALUE", "AMOUNTS TO"], alignments: [.left, .right, .left])
        for stat in stats {
            table.append([stat.name, String(stat.value), amount(stat, regionBytes: regionBytes)])
        }
        return table.render()
    }

    /// Pages of 4 KiB are shown as bytes, bytes in binary units; `region_bytes_used` as a share of
    /// the region. Counts of other things (objects, clients, scans) need no gloss.
    static func amount(_ stat: Statistic, regionBytes: UInt64) -> String {
        switch stat.name {
        case "pages_shared", "pages_sharing", "pages_unshared", "pages_volatile", "ksm_zero_pages":
            return stat.value > 0 ? ByteSize.format(UInt64(stat.value) * UInt64(Page.size)) : ""
        case "general_profit":
            let magnitude = ByteSize.format(stat.value.magnitude)
            return stat.value < 0 ? "-" + magnitude : magnitude
        case "region_bytes_used":
            guard stat.value >= 0, regionBytes > 0 else { return "" }
            let percent = Double(stat.value) / Double(regionBytes) * 100
            return "\(ByteSize.format(UInt64(stat.value))) of \(ByteSize.format(regionBytes)) (\(Decimal1.format(percent))%)"
        default:
            return ""
        }
    }
}

/// One decimal place, without Foundation's formatters.
enum Decimal1 {
    static func format(_ value: Double) -> String {
        guard value.isFinite else { return "-" }
        let tenths = Int64((value * 10).rounded())
        let sign = tenths < 0 ? "-" : ""
        return "\(sign)\(tenths.magnitude / 10).\(tenths.magnitude % 10)"
    }
}
