import SamepageCore
import SamepageSystem
import SystemPackage

// Memory a client lends the server: its staging memfd (with hello) and shared buffers
// (attachBuffer). Every fd a client sends is hostile: it is checked before it is mapped.
extension Server {
    struct StagingRefused: Error { var message: String }

    /// Maps a shared buffer's memfd (checked like staging memory: a memfd, sealed against
    /// shrinking, whole pages) and lends it to the service.
    func attachBuffer(_ buffer: UInt32, session: Session, on connection: Connection) -> Reply {
        guard let fd = connection.takeReceivedDescriptor() else {
            return .failure(.badStaging, "attachBuffer must carry a memfd")
        }
        let mapping: MemoryMapping
        do {
            mapping = try mapClientMemfd(fd, limit: configuration.maxBufferBytes, what: "buffer")
        } catch let failure as StagingRefused {
            metrics.refused(.badStaging)
            return .failure(.badStaging, failure.message)
        } catch {
            return .failure(.internalError, "cannot map the buffer: \(error)")
        }
        let reply = service.attach(buffer: buffer, bytes: UnsafeRawBufferPointer(mapping.bytes), session: session)
        if reply == .done { connection.buffers[buffer] = BufferMapping(mapping) }
        return reply
    }

    /// Every fd a client sends is hostile (design.md section 2): a staging memfd that could shrink
    /// would SIGBUS the server while it reads, so it must be sealed against shrinking, and its
    /// size must be whole pages within the limit.
    func mapStaging(_ fd: consuming OwnedDescriptor) throws -> MemoryMapping {
        try mapClientMemfd(fd, limit: configuration.maxStagingBytes, what: "staging")
    }

    /// Maps a memfd a client sent, read-only, after the checks every client fd needs.
    func mapClientMemfd(_ fd: consuming OwnedDescriptor, limit: UInt64, what: String) throws -> MemoryMapping {
        guard let seals = try? Memfd.seals(of: fd.rawValue) else {
            throw StagingRefused(message: "\(what) fd is not a memfd")
        }
        guard seals.contains(.shrink) else { throw StagingRefused(message: "\(what) memfd must be sealed with F_SEAL_SHRINK") }
        let size = try Syscall.fileSize(fd.rawValue)
        guard size > 0, size % UInt64(Page.size) == 0, size <= limit else {
            throw StagingRefused(message: "\(what) memfd of \(size) bytes: must be whole pages, at most \(limit)")
        }
        return try MemoryMapping(fd: fd.rawValue, length: Int(size), writable: false, shared: true)
    }
}
