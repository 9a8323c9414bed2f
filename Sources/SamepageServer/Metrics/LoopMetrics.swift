import Metrics
import SamepageCore

/// The counters and the latency histogram the event loop records as things happen, through
/// swift-metrics. The handles are created once per label value and kept, so a request costs a
/// dictionary lookup and the handler's atomic update (swift-prometheus's handlers are
/// thread-safe; the metrics thread reads them while the loop writes). Without a metrics backend
/// (no `--metrics-listen`) swift-metrics hands out no-op handlers.
///
/// Used by the loop thread only.
final class LoopMetrics {
    static let requests = "samepage_requests_total"
    static let requestDuration = "samepage_request_duration_seconds"
    static let refusals = "samepage_refusals_total"
    static let limitHits = "samepage_limit_hits_total"
    static let connectionsAccepted = "samepage_connections_accepted_total"

    private var requestCounters: [MessageKind: Counter] = [:]
    private var requestTimers: [MessageKind: Metrics.Timer] = [:]
    private var refusalCounters: [RefusalReason: Counter] = [:]
    private var limitCounters: [String: Counter] = [:]
    private let accepted = Counter(label: LoopMetrics.connectionsAccepted)

    func requestHandled(_ kind: MessageKind, duration: Duration) {
        // The label is made once per kind, with the handle: formatting it per request (a
        // String(describing:) and a snake_case pass) was a tenth of a scan request's time.
        func label() -> String { PrometheusNaming.snakeCase(String(describing: kind)) }
        cached(&requestCounters, kind) { Counter(label: Self.requests, dimensions: [("kind", label())]) }.increment()
        cached(&requestTimers, kind) { Metrics.Timer(label: Self.requestDuration, dimensions: [("kind", label())]) }
            .recordNanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }

    func refused(_ reason: RefusalReason) {
        cached(&refusalCounters, reason) { Counter(label: Self.refusals, dimensions: [("reason", reason.rawValue)]) }.increment()
    }

    /// `limit`: a LimitKind's raw value, or one of the loop's own (`reply_backlog`,
    /// `file_descriptors`).
    func limitHit(_ limit: String) {
        cached(&limitCounters, limit) { Counter(label: Self.limitHits, dimensions: [("limit", limit)]) }.increment()
    }

    func connectionAccepted() { accepted.increment() }

    private func cached<Key: Hashable, Handle>(_ table: inout [Key: Handle], _ key: Key, _ make: () -> Handle) -> Handle {
        if let handle = table[key] { return handle }
        let handle = make()
        table[key] = handle
        return handle
    }
}

/// Why a client was turned away or cut off (the `reason` label of samepage_refusals_total).
enum RefusalReason: String {
    /// Its uid or gid may not connect.
    case notPermitted = "not_permitted"
    case unsupportedVersion = "unsupported_version"
    /// Its staging memfd was not acceptable.
    case badStaging = "bad_staging"
    /// Malformed frames, requests out of order.
    case protocolViolation = "protocol_violation"
    /// It connected while the server was draining.
    case draining
}
