import Glibc
import SamepageSystem

/// The per-process scanner thread: wakes every `sleep_millisecs`, scans `pages_to_scan` pages.
final class ScannerThread: @unchecked Sendable {
    private unowned let engine: MergeEngine
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
            engine.backgroundStep()
            let sleep = engine.lock.withLock { engine.parameters.sleepMilliseconds }
            if sleep > 0 { usleep(UInt32(sleep) * 1000) } else { sched_yield() }
        }
    }

    func stop() {
        stateLock.withLock { running = false }
        pthread_join(thread, nil)
    }
}
