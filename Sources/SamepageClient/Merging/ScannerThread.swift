import Glibc
import SamepageSystem

/// The per-process scanner thread: wakes every `sleep_millisecs`, scans `pages_to_scan` pages.
/// It holds its engine strongly (the engine drops the thread on stop), and ends when the client
/// is gone.
final class ScannerThread: @unchecked Sendable {
    private let engine: MergeEngine
    private let stateLock = Lock()
    private var running = true
    private var thread = pthread_t()

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
            guard engine.backgroundStep() else { break }
            let sleep = engine.lock.withLock { engine.parameters.sleepMilliseconds }
            if sleep > 0 { usleep(UInt32(sleep) * 1000) } else { sched_yield() }
        }
    }

    /// Stops the thread and waits for it, unless called on the thread itself (the client's last
    /// reference can go during a step): then the thread ends after the step.
    func stop() {
        stateLock.withLock { running = false }
        if pthread_equal(pthread_self(), thread) != 0 {
            pthread_detach(thread)
        } else {
            pthread_join(thread, nil)
        }
    }
}
