import CSamepageShim
import Glibc
import SystemPackage

/// Starts a detached POSIX thread. For blocking loops (the io_uring loop, the metrics
/// responder) that must not occupy a thread of Swift's cooperative pool, which has only as many
/// threads as cores.
public enum NamedThread {
    /// Runs `body` on a new thread named `name` (its first 15 bytes show in /proc). `body` is
    /// `sending`: whatever it captures is handed to the new thread and used only there.
    public static func start(name: String, _ body: sending @escaping () -> Void) throws(Errno) {
        final class Context {
            let name: String
            let body: () -> Void
            init(name: String, body: @escaping () -> Void) {
                self.name = name
                self.body = body
            }
        }
        let context = Unmanaged.passRetained(Context(name: name, body: body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { raw in
            let context = Unmanaged<Context>.fromOpaque(raw!).takeRetainedValue()
            sp_set_thread_name(context.name)
            context.body()
            return nil
        }, context)
        guard result == 0 else {
            Unmanaged<Context>.fromOpaque(context).release()
            throw Errno(rawValue: result)
        }
        pthread_detach(thread)
    }
}
