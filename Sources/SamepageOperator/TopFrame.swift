import SamepageCore

/// One screen of `samepage top`: the domain's statistics with their rates since the previous
/// frame, then the clients table. Pure text; the command decides whether to clear the screen.
public struct TopFrame: Sendable {
    public var socketPath: String
    public var interval: Double
    public var now: Int64
    public var regionBytes: UInt64
    public var current: StatisticsSample
    /// The previous frame's sample; nil on the first frame, which has no rates yet.
    public var previous: StatisticsSample?
    public var clients: ClientList

    public init(socketPath: String, interval: Double, now: Int64, regionBytes: UInt64,
                current: StatisticsSample, previous: StatisticsSample?, clients: ClientList) {
        self.socketPath = socketPath
        self.interval = interval
        self.now = now
        self.regionBytes = regionBytes
        self.current = current
        self.previous = previous
        self.clients = clients
    }

    public func render() -> String {
        let rates = previous.map { StatisticRates.perSecond(from: $0, to: current) } ?? [:]
        var stats = TextTable(headers: ["STATISTIC", "VALUE", "RATE", "AMOUNTS TO"], alignments: [.left, .right, .right, .left])
        for stat in current.statistics {
            stats.append([stat.name, String(stat.value), rates[stat.name].map(StatisticRates.format) ?? "-",
                          StatisticsTable.amount(stat, regionBytes: regionBytes)])
        }
        return [
            "samepage top: \(socketPath), \(TimeText.utc(now)), every \(Decimal1.format(interval)) s",
            "",
            stats.render(),
            "",
            "clients of this domain: \(clients.total)",
            ClientsTable.render(clients, now: now),
        ].joined(separator: "\n")
    }
}
