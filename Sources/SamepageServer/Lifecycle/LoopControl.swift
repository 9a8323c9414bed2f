import SamepageSystem
import Synchronization
import SystemPackage

/// Where the event loop is in its life; the health endpoint reports it.
public enum ServerPhase: Int, Sendable, CustomStringConvertible {
    case starting, serving, draining, stopped

    public var description: String {
        switch self {
        case .starting: "starting"
        case .serving: "serving"
        case .draining: "draining"
        case .stopped: "stopped"
        }
    }
}

/// How other threads steer the event loop, which sleeps in io_uring and owns everything else:
/// an eventfd whose read is armed in the ring (so a request is one more completion, and the
/// loop needs no timer to notice it) plus an atomic that says what was asked.
public final class LoopControl: Sendable {
    enum Request: Int {
        case none = 0
        /// Stop accepting, answer what was received, close, return.
        case drain = 1
        /// Return now (the drain took too long): connections are cut.
        case stopNow = 2
    }

    let wakeup: EventNotifier
    private let requested = Atomic<Int>(Request.none.rawValue)
    private let phaseValue = Atomic<Int>(ServerPhase.starting.rawValue)

    public init() throws(Errno) {
        wakeup = try EventNotifier()
    }

    /// Graceful shutdown: the loop stops accepting, drains and returns. Any thread, any time
    /// (also before the loop started: it drains at once when it starts).
    public func requestDrain() { raise(.drain) }

    /// Cancellation: the loop returns as soon as it wakes.
    public func requestStop() { raise(.stopNow) }

    private func raise(_ request: Request) {
        // Only ever escalates: a drain asked after a stop does not undo it.
        var current = requested.load(ordering: .acquiring)
        while current < request.rawValue {
            let (exchanged, original) = requested.compareExchange(expected: current, desired: request.rawValue, ordering: .acquiringAndReleasing)
            if exchanged { break }
            current = original
        }
        wakeup.signal()
    }

    var request: Request { Request(rawValue: requested.load(ordering: .acquiring)) ?? .none }

    public var phase: ServerPhase { ServerPhase(rawValue: phaseValue.load(ordering: .acquiring)) ?? .stopped }

    func enter(_ phase: ServerPhase) { phaseValue.store(phase.rawValue, ordering: .releasing) }
}
