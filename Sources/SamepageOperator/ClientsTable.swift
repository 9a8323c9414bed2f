import SamepageCore

/// `samepage clients` and the lower half of `samepage top`: one row per connected client of the
/// caller's domain. The caller's own connection is marked with `*`.
public enum ClientsTable {
    public static let headers = ["", "PID", "UID", "NAME", "MAPPED", "UPLOADS", "MERGEABLE", "MERGED", "REQUESTS", "CONNECTED"]

    /// `now` (seconds since the epoch) gives the age shown beside each connection time.
    public static func render(_ list: ClientList, now: Int64) -> String {
        var table = TextTable(headers: headers,
                              alignments: [.left, .right, .right, .left, .right, .right, .right, .right, .right, .left])
        for c in list.clients {
            table.append([c.isCaller ? "*" : "", String(c.pid), String(c.uid), c.name.isEmpty ? "-" : c.name,
                          String(c.objectsMapped), String(c.uploadsOpen), String(c.mergeablePages), String(c.mergedPages),
                          String(c.requestsServed),
                          "\(TimeText.utc(c.connectedSince)) (\(TimeText.age(now - c.connectedSince)) ago)"])
        }
        var text = table.render()
        if list.total > UInt32(list.clients.count) {
            text += "\n(\(list.total - UInt32(list.clients.count)) more clients not shown)"
        }
        if list.clients.contains(where: \.isCaller) {
            text += "\n* this command's own connection"
        }
        return text
    }
}
