import SamepageCore

/// The statistics at one moment, for rates between two of them.
public struct StatisticsSample: Sendable, Equatable {
    public var statistics: [Statistic]
    /// Seconds on a monotonic clock (only differences matter).
    public var time: Double

    public init(statistics: [Statistic], time: Double) {
        self.statistics = statistics
        self.time = time
    }

    public func value(_ name: String) -> Int64? { statistics.first { $0.name == name }?.value }
}

/// Change per second between two samples: for a counter such as `pages_scanned` its rate, for a
/// level such as `pages_sharing` how fast it moves (pages merged per second when it grows).
public enum StatisticRates {
    /// Rates by statistic name; empty when the samples are not in time order. A statistic
    /// missing from the earlier sample (a server upgraded in between) has no rate.
    public static func perSecond(from earlier: StatisticsSample, to later: StatisticsSample) -> [String: Double] {
        let elapsed = later.time - earlier.time
        guard elapsed > 0, elapsed.isFinite else { return [:] }
        var rates: [String: Double] = [:]
        for stat in later.statistics {
            guard let before = earlier.value(stat.name) else { continue }
            rates[stat.name] = (Double(stat.value) - Double(before)) / elapsed
        }
        return rates
    }

    /// `+12.5/s`, `-3.0/s`, `0/s`.
    public static func format(_ rate: Double) -> String {
        if rate == 0 || !rate.isFinite { return "0/s" }
        return (rate > 0 ? "+" : "") + Decimal1.format(rate) + "/s"
    }
}
