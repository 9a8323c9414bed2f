import Glibc
import SamepageSystem

/// The per-process scanner thread: wakes every `sleep_millisecs` (or after the idle rest),
/// scans `pages_to_scan` pages. It holds its engine strongly (the engine drops the thread on
/// stop), and ends when the client is gone.
final class ScannerThread: @unchecked Sendable {
    private let engine: MergeEngine
    private let stateLock = Lock()
    private var running = true
    private var thread = pthread_t()
    /// Wakes the thread from its sleep when it is stopped, so that stopping does not wait out a
    /// sleep (up to a minute by `sleep_millisecs`); nil if no eventfd could be made (then the
    /// sleep is waited out).
    private let wakeup = try? EventNotifier()

    init(engine: MergeEngine) {
        self.engine = engine
        let context = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&thread, nil, { context in
            let me = Unmanaged<ScannerThread>.fromOpaque(context!).takeRetainedValue()
            me.loop()
            return nil
        }, context)
    }

    private func loop() {
        while stateLock.withLock({ running }) {
            guard let sleep = engine.backgroundStep() else { break }
            if sleep == 0 {
                sched_yield()
            } else if let wakeup {
                _ = wakeup.wait(milliseconds: Int32(sleep))
            } else {
                usleep(UInt32(sleep) * 1000)
            }
        }
    }

    /// Stops the thread and waits for it, unless called on the thread itself (the client's last
    /// reference can go during a step): then the thread ends after the step.
    func stop() {
        stateLock.withLock { running = false }
        wakeup?.signal()
        if pthread_equal(pthread_self(), thread) != 0 {
            pthread_detach(thread)
        } else {
            pthread_join(thread, nil)
        }
    }
}
