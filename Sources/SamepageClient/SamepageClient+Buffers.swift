import SamepageCore
import SamepageSystem

// Shared buffers: objects written in place and put without a copy through staging.
//
//     let buffer = try client.makeBuffer(length: size)
//     produce(into: buffer.bytes)                 // the application writes its object here
//     let id = try client.put(buffer)             // the server reads the pages where they are
//
// Against a put of ordinary memory, this saves the copy into staging: for data the store
// already holds, that copy was half of the memory traffic of a put.
extension SamepageClient {
    /// Pages of a buffer sent per request (with their digests, 32 KiB of a request's 64): the
    /// requests of a put are all in flight at once.
    static let bufferPagesPerRequest = 4096

    /// A new shared buffer of `length` bytes (rounded up to whole pages), zero-filled.
    public func makeBuffer(length: Int) throws(SamepageError) -> SharedBuffer {
        guard length >= 0 else { throw .invalidArgument("a buffer of \(length) bytes") }
        let buffer = try SharedBuffer(length: length)
        buffer.client = self
        return buffer
    }

    /// Stores the first `length` bytes of `buffer` (all of it by default) as an object and
    /// returns its id. The buffer may be rewritten once this returns.
    public func put(_ buffer: SharedBuffer, length: Int? = nil) throws(SamepageError) -> ObjectID {
        let length = length ?? buffer.bytes.count
        guard length >= 0, length <= buffer.bytes.count else {
            throw .invalidArgument("\(length) bytes of a buffer of \(buffer.bytes.count)")
        }
        return try withConnectionLock { () throws(SamepageError) in
            try attachIfNeeded(buffer)
            let upload = takeUploadName()
            let pages = Int(Page.count(forBytes: UInt64(length)))
            var sent = [try send(.putBegin(upload: upload, length: UInt64(length)))]
            var first = 0
            while first < pages {
                let count = min(Self.bufferPagesPerRequest, pages - first)
                // The digests are computed here, on this process's core, while the server works
                // on the previous request: the server then finds stored pages by digest and only
                // compares them. (A partial last page is hashed by the server, which zero-fills it.)
                let base = UnsafeRawPointer(buffer.bytes.baseAddress!)
                let digests = (first..<(first + count)).map { PageStore.digest(base + $0 * Page.size) }
                sent.append(try send(.putBuffer(upload: upload, buffer: buffer.handle, firstPage: UInt32(first),
                                                pageCount: UInt32(count), digests: digests)))
                first += count
            }
            var failure: SamepageError?
            // More than one request in flight is bulk traffic: wait quietly (ClientConnection.reply).
            let quietly = sent.count > 2
            for id in sent {
                if case .failure(let code, let message) = try receive(id, quietly: quietly), failure == nil { failure = .server(code, message) }
            }
            if let failure {
                _ = try? receive(try send(.putAbort(upload: upload)))
                throw failure
            }
            let reply = try ClientConnection.check(try receive(try send(.putCommit(upload: upload))))
            guard case .committed(let id) = reply else { throw ClientConnection.unexpected(reply, "committed") }
            return id
        }
    }

    /// Lends the buffer to the server on the current connection, once per connection.
    private func attachIfNeeded(_ buffer: SharedBuffer) throws(SamepageError) {
        let generation = try currentGeneration()
        guard buffer.attachedGeneration != generation else { return }
        let handle = takeBufferName()
        let id = try send(.attachBuffer(buffer: handle), passing: buffer.descriptor.rawValue)
        _ = try ClientConnection.check(try receive(id))
        buffer.handle = handle
        buffer.attachedGeneration = generation
    }
}
