import SamepageCore
import SamepageSystem
import Synchronization
import SystemPackage

/// The figures the metrics endpoint exports, as of one moment of the event loop.
public struct ServerSnapshot: Sendable {
    public struct DomainFigures: Sendable {
        public var name: String
        public var statistics: [Statistic]
        /// The size of the domain's region (every domain's region is `--region-size`; the page
        /// budget is shared).
        public var regionCapacityBytes: UInt64
    }

    public var domains: [DomainFigures]
    /// Open connections, those that have not said hello yet included.
    public var connections: Int
    public var budgetUsedBytes: UInt64
    public var budgetLimitBytes: UInt64
}

/// Hands statistics from the event loop to the metrics thread.
///
/// The statistics live in the loop thread's `Service`, which is not thread-safe. Rather than
/// have the loop publish after every batch of completions (work on the hot path, and figures
/// that go stale when the loop falls idle right after a rate-limited skip), the metrics thread
/// asks: it bumps `wanted` and signals an eventfd that the loop has armed in its ring; the loop
/// computes a snapshot on its own thread, stores it under the mutex and signals back. So the
/// loop pays only when someone scrapes, and a scrape sees exactly what `samepage stats` would
/// at that moment. A loop too busy to answer within the timeout gets the last snapshot served.
public final class StatisticsExchange: Sendable {
    private struct State {
        var wanted: UInt64 = 0
        var served: UInt64 = 0
        var snapshot: ServerSnapshot?
    }

    let requestNotifier: EventNotifier
    private let answerNotifier: EventNotifier
    private let state = Mutex(State())

    public init() throws(Errno) {
        requestNotifier = try EventNotifier()
        answerNotifier = try EventNotifier()
    }

    /// Metrics thread: a snapshot taken after this call, or the latest one if the loop does not
    /// answer within `timeoutMilliseconds` (nil if it never has). One caller at a time.
    public func fetch(timeoutMilliseconds: Int) -> (snapshot: ServerSnapshot?, fresh: Bool) {
        let ticket = state.withLock { state in
            state.wanted += 1
            return state.wanted
        }
        requestNotifier.signal()
        let deadline = ContinuousClock.now + .milliseconds(timeoutMilliseconds)
        while true {
            let (served, snapshot) = state.withLock { ($0.served, $0.snapshot) }
            if served >= ticket { return (snapshot, true) }
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return (snapshot, false) }
            _ = answerNotifier.wait(milliseconds: Int32(max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)))
        }
    }

    /// Loop thread: answers every request made before this call with a snapshot taken now.
    func answer(_ takeSnapshot: () -> ServerSnapshot) {
        let ticket = state.withLock { $0.wanted }
        let snapshot = takeSnapshot()
        state.withLock { state in
            state.served = max(state.served, ticket)
            state.snapshot = snapshot
        }
        answerNotifier.signal()
    }
}
