import Metrics
import Prometheus

/// swift-metrics' global backend for samepaged: swift-prometheus, with latency buckets fit for
/// requests that take microseconds (the factory's defaults start at 5 ms).
public enum MetricsBootstrap {
    public static let requestDurationBuckets: [Duration] = [
        .microseconds(10), .microseconds(25), .microseconds(50), .microseconds(100), .microseconds(250),
        .microseconds(500), .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(100), .milliseconds(1000),
    ]

    /// Bootstraps swift-metrics once per process; returns the registry the endpoint renders.
    public static func bootstrapPrometheus() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [LoopMetrics.requestDuration: requestDurationBuckets]
        MetricsSystem.bootstrap(factory)
        return registry
    }
}
