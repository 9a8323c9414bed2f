import Metrics
import SamepageCore

/// Turns a snapshot of the loop's statistics into swift-metrics gauges, on the metrics thread,
/// just before each scrape is rendered. Gauges with the same label and dimensions are the same
/// series in the registry, so recording again only updates the value.
enum SnapshotGauges {
    static let connectedClients = "samepage_connected_clients"
    static let regionCapacity = "samepage_region_bytes_capacity"
    static let budgetUsed = "samepage_region_budget_bytes_used"
    static let budgetLimit = "samepage_region_budget_bytes_limit"

    static func record(_ snapshot: ServerSnapshot) {
        Gauge(label: connectedClients).record(snapshot.connections)
        Gauge(label: budgetUsed).record(Int64(clamping: snapshot.budgetUsedBytes))
        Gauge(label: budgetLimit).record(Int64(clamping: snapshot.budgetLimitBytes))
        for domain in snapshot.domains {
            let dimensions = [("domain", domain.name)]
            for statistic in domain.statistics {
                Gauge(label: PrometheusNaming.metricName(forStatistic: statistic.name), dimensions: dimensions)
                    .record(statistic.value)
            }
            Gauge(label: regionCapacity, dimensions: dimensions).record(Int64(clamping: domain.regionCapacityBytes))
        }
    }
}
