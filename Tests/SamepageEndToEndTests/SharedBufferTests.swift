import Foundation
import Glibc
import SamepageClient
import SamepageCore
import SamepageSystem
import Testing

/// Objects written in place into a shared buffer and put without a copy through staging.
@Suite(.serialized)
struct SharedBufferTests {
    @Test("a buffer put reads back exactly, shares with ordinary puts, and can be rewritten after")
    func putFromBuffer() throws {
        let server = try ServerProcess(regionSize: "256M")
        defer { server.stop() }
        let client = try server.client()
        let bytes = randomBytes(40 << 20, seed: 90)   // more than one request's worth of pages
        let buffer = try client.makeBuffer(length: bytes.count + 4096)
        bytes.withUnsafeBytes { buffer.bytes.copyMemory(from: $0) }
        let id = try client.put(buffer, length: bytes.count)
        #expect(try client.get(id) == bytes)
        // The same bytes through staging: every page is shared with the buffer's object.
        let before = try server.statistics()
        let again = try client.put(bytes)
        let after = try server.statistics()
        #expect(after["pages_sharing"]! - before["pages_sharing"]! == Int64(bytes.count / 4096))
        #expect(after["region_bytes_used"] == before["region_bytes_used"])
        // The buffer is the client's again: rewriting it changes neither object.
        memset(buffer.bytes.baseAddress!, 0x5A, buffer.bytes.count)
        #expect(try client.get(id) == bytes && client.get(again) == bytes)
        // Put again (the attachment is reused) with other content and a length not a page multiple.
        let second = try client.put(buffer, length: 12_345)
        #expect(try client.get(second) == [UInt8](repeating: 0x5A, count: 12_345))
    }

    @Test("bad buffers and handles get clear errors; the connection and other clients go on")
    func badBuffers() throws {
        let server = try ServerProcess(regionSize: "64M")
        defer { server.stop() }
        let raw = try RawClient(socketPath: server.socket)
        #expect(try raw.hello().kind == .welcome)
        // No fd at all.
        #expect(try raw.call(.attachBuffer(buffer: 1)).failureCode == .badStaging)
        // Not a memfd.
        let pipeEnds = UnsafeMutablePointer<Int32>.allocate(capacity: 2)
        defer { pipeEnds.deallocate() }
        #expect(pipe(pipeEnds) == 0)
        #expect(try raw.call(.attachBuffer(buffer: 1), passing: pipeEnds[0]).failureCode == .badStaging)
        close(pipeEnds[0]); close(pipeEnds[1])
        // A memfd that could shrink under the server.
        let unsealed = try Memfd.create(name: "unsealed", size: 8192, seals: [])
        #expect(try raw.call(.attachBuffer(buffer: 1), passing: unsealed.rawValue).failureCode == .badStaging)
        // A good one, then misuse of it.
        let sealed = try Memfd.create(name: "sealed", size: 8192, seals: [.shrink])
        #expect(try raw.call(.attachBuffer(buffer: 1), passing: sealed.rawValue) == .done)
        #expect(try raw.call(.attachBuffer(buffer: 1), passing: sealed.rawValue).failureCode == .badRequest)
        #expect(try raw.call(.putBegin(upload: 1, length: 8192)) == .done)
        #expect(try raw.call(.putBuffer(upload: 1, buffer: 9, firstPage: 0, pageCount: 1, digests: [])).failureCode == .unknownHandle)
        #expect(try raw.call(.putBuffer(upload: 1, buffer: 1, firstPage: 1, pageCount: 2, digests: [])).failureCode == .badRequest)
        #expect(try raw.call(.putBuffer(upload: 1, buffer: 1, firstPage: 0, pageCount: 2, digests: [])) == .done)
        guard case .committed = try raw.call(.putCommit(upload: 1)) else { throw TestFailure("no commit") }
        #expect(try raw.call(.detachBuffer(buffer: 1)) == .done)
        #expect(try raw.call(.detachBuffer(buffer: 1)).failureCode == .unknownHandle)
        #expect(try raw.call(.ping) == .pong, "the connection goes on")
        // The limit on attached buffers.
        for name in UInt32(10)..<26 {
            #expect(try raw.call(.attachBuffer(buffer: name), passing: sealed.rawValue) == .done)
        }
        #expect(try raw.call(.attachBuffer(buffer: 26), passing: sealed.rawValue).failureCode == .limitExceeded)
        // Another client is not affected.
        let other = try server.client()
        let bytes = randomBytes(64 << 10, seed: 91)
        #expect(try other.get(try other.put(bytes)) == bytes)
    }
}
