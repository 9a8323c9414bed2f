import Glibc
import SamepageSystem

/// What happens to clients across fork().
///
/// The kernel's KSM keeps merged pages shared in a forked child, and the child inherits
/// PR_SET_MEMORY_MERGE. Here the child inherits the process-wide switch and its mergeable ranges,
/// but not the parent's connection: its socket, staging memory and handles are the parent's, so
/// the child's first call opens a connection of its own. The child's merged pages are given
/// private copies at once (its ksm_merging_pages starts at 0, as the kernel's test expects):
/// the parent's references are the parent's, and a page the server frees when the parent lets
/// go must not change under the child. Object mappings made before fork stay mapped in the child
/// but are not pinned for it: the child maps what it needs again.
enum ForkHandlers {
    private static let registry = Registry()

    final class Registry: @unchecked Sendable {
        let lock = Lock()
        var clients: [Weak] = []
        var installed = false
        /// The clients whose locks are held across a fork.
        var held: [SamepageClient] = []
    }

    struct Weak {
        weak var client: SamepageClient?
    }

    static func register(_ client: SamepageClient) {
        registry.lock.withLock {
            registry.clients.removeAll { $0.client == nil }
            registry.clients.append(Weak(client: client))
            if !registry.installed {
                registry.installed = true
                pthread_atfork({ ForkHandlers.prepare() }, { ForkHandlers.parent() }, { ForkHandlers.child() })
            }
        }
    }

    /// Every lock a client's operations take, in the order they nest, so that fork() happens
    /// between operations and the child's copies of the locks are free.
    private static func locks(of client: SamepageClient) -> [Lock] {
        var locks = [client.engineCreation]
        if let engine = client.engine { locks.append(engine.lock) }
        locks += [client.stagingLock, client.lock]
        return locks
    }

    private static func prepare() {
        registry.lock.lock()
        registry.held = registry.clients.compactMap(\.client)
        for client in registry.held { locks(of: client).forEach { $0.lock() } }
    }

    private static func parent() {
        for client in registry.held { locks(of: client).reversed().forEach { $0.unlock() } }
        registry.held = []
        registry.lock.unlock()
    }

    private static func child() {
        for client in registry.held {
            locks(of: client).reversed().forEach { $0.unlock() }
            client.engine?.resetAfterFork()
            client.forgetConnectionAfterFork()
        }
        registry.held = []
        registry.lock.unlock()
    }
}
