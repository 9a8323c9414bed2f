import Foundation
import SamepageClient
import SamepageCore
import SamepageSystem
import Testing

/// Whatever one client sends, it gets a clear error or is disconnected alone; the server and
/// every other client go on.
@Suite(.serialized)
struct BadInputTests {
    /// A well-behaved client with an object, checked after each attack.
    struct Bystander {
        let client: SamepageClient
        let id: ObjectID
        let bytes: [UInt8]

        init(_ server: ServerProcess) throws {
            client = try server.client()
            bytes = randomBytes(64 << 10, seed: 77)
            id = try client.put(bytes)
        }

        func check() throws {
            try client.ping()
            #expect(try client.get(id) == bytes, "another client's object is intact")
        }
    }

    @Test("garbage bytes: a failure reply, then that client alone is disconnected")
    func garbage() throws {
        let server = try ServerProcess(regionSize: "16M")
        defer { server.stop() }
        let bystander = try Bystander(server)
        let raw = try RawClient(socketPath: server.socket)
        try raw.sendRaw(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(try raw.receive().failureCode == .badRequest)
        #expect(raw.isClosedByServer())
        try bystander.check()
    }

    @Test("a frame header announcing 1 GiB is refused before anything is buffered")
    func oversizedFrame() throws {
        let server = try ServerProcess(regionSize: "16M")
        defer { server.stop() }
        let bystander = try Bystander(server)
        let raw = try RawClient(socketPath: server.socket)
        #expect(try raw.hello().kind == .welcome)
        var w = WireWriter()
        w.write(FrameHeader.magic)
        w.write(MessageKind.ping.rawValue)
        w.write(UInt32(1 << 30))
        w.write(UInt64(9))
        try raw.sendRaw(w.bytes)
        #expect(try raw.receive().failureCode == .badRequest)
        #expect(raw.isClosedByServer())
        try bystander.check()
    }

    @Test("a truncated message body and an unknown kind are protocol violations")
    func malformedMessages() throws {
        let server = try ServerProcess(regionSize: "16M")
        defer { server.stop() }
        let bystander = try Bystander(server)
        for frame in [FrameEncoder.encode(kind: MessageKind.putBegin.rawValue, requestID: 2, payload: [1, 2, 3]),
                      FrameEncoder.encode(kind: 0x7777, requestID: 2, payload: []),
                      FrameEncoder.encode(kind: MessageKind.welcome.rawValue, requestID: 2, payload: [])] {
            let raw = try RawClient(socketPath: server.socket)
            #expect(try raw.hello().kind == .welcome)
            try raw.sendRaw(frame)
            #expect(try raw.receive().failureCode == .badRequest)
            #expect(raw.isClosedByServer())
        }
        try bystander.check()
    }

    @Test("hello must come first, must carry a staging memfd, and it must be sealed against shrinking")
    func handshakeRules() throws {
        let server = try ServerProcess(regionSize: "16M")
        defer { server.stop() }
        let bystander = try Bystander(server)

        let early = try RawClient(socketPath: server.socket)
        #expect(try early.call(.ping).failureCode == .badRequest)
        #expect(early.isClosedByServer())

        let noFD = try RawClient(socketPath: server.socket)
        try noFD.send(.hello(version: Request.version, clientName: "no fd"))
        #expect(try noFD.receive().failureCode == .badStaging)
        #expect(noFD.isClosedByServer())

        let unsealed = try RawClient(socketPath: server.socket)
        #expect(try unsealed.hello(seals: []).failureCode == .badStaging)
        #expect(unsealed.isClosedByServer())

        let wrongVersion = try RawClient(socketPath: server.socket)
        try wrongVersion.send(.hello(version: 999, clientName: "future"))
        #expect(try wrongVersion.receive().failureCode == .unsupportedVersion)
        #expect(wrongVersion.isClosedByServer())
        try bystander.check()
    }

    @Test("a handle is valid only on the connection that received it")
    func foreignHandle() throws {
        let server = try ServerProcess(regionSize: "16M")
        defer { server.stop() }
        let bystander = try Bystander(server)
        let owner = try RawClient(socketPath: server.socket)
        let thief = try RawClient(socketPath: server.socket)
        #expect(try owner.hello().kind == .welcome)
        #expect(try thief.hello().kind == .welcome)
        let mapID = try owner.send(.map(bystander.id))
        _ = mapID
        guard case .mapped(let handle, _, _) = try owner.receive() else { throw TestFailure("map failed") }
        _ = try owner.receive() // the runs
        #expect(try thief.call(.unmap(handle: handle)).failureCode == .unknownHandle)
        #expect(try thief.call(.ping) == .pong, "a failed request does not end the connection")
        #expect(try owner.call(.unmap(handle: handle)) == .done)
        #expect(try owner.call(.unmap(handle: handle)).failureCode == .unknownHandle, "and only once")
        try bystander.check()
    }

    @Test("requests with bad fields fail alone and the connection goes on")
    func badFields() throws {
        let server = try ServerProcess(regionSize: "16M")
        defer { server.stop() }
        let bystander = try Bystander(server)
        let raw = try RawClient(socketPath: server.socket)
        #expect(try raw.hello(pages: 16).kind == .welcome)
        #expect(try raw.call(.putPages(upload: 5, stagingPage: 0, pageCount: 1)).failureCode == .unknownHandle)
        #expect(try raw.call(.putBegin(upload: 5, length: 8192)) == .done)
        #expect(try raw.call(.putBegin(upload: 5, length: 8192)).failureCode == .badRequest, "upload names are unique")
        #expect(try raw.call(.putPages(upload: 5, stagingPage: 15, pageCount: 2)).failureCode == .badRequest,
                "pages past the end of the staging memory")
        #expect(try raw.call(.putPages(upload: 5, stagingPage: 0, pageCount: 3)).failureCode == .badRequest,
                "more pages than the object has")
        #expect(try raw.call(.putCommit(upload: 5)).failureCode == .badRequest, "commit before all pages")
        #expect(try raw.call(.putPages(upload: 5, stagingPage: 0, pageCount: 2)) == .done)
        guard case .committed = try raw.call(.putCommit(upload: 5)) else { throw TestFailure("commit failed") }
        #expect(try raw.call(.map(ObjectID.random())).failureCode == .unknownObject)
        #expect(try raw.call(.delete(ObjectID.random())).failureCode == .unknownObject)
        #expect(try raw.call(.putBegin(upload: 6, length: UInt64.max)).failureCode == .badRequest)
        #expect(try raw.call(.hello(version: 1, clientName: "again")).failureCode == .badRequest)
        #expect(raw.isClosedByServer(), "a second hello is a protocol violation")
        try bystander.check()
    }

    @Test("a client that abandons an upload mid-way leaks nothing")
    func abandonedUpload() throws {
        let server = try ServerProcess(regionSize: "16M")
        defer { server.stop() }
        let bystander = try Bystander(server)
        let before = try server.statistics()["region_bytes_used"]!
        do {
            let raw = try RawClient(socketPath: server.socket)
            #expect(try raw.hello(pages: 16).kind == .welcome)
            let staging = raw.stagingBytes!
            for i in 0..<staging.count { staging[i] = UInt8(truncatingIfNeeded: i &* 7 &+ i >> 12) }
            #expect(try raw.call(.putBegin(upload: 1, length: 64 * 4096)) == .done)
            #expect(try raw.call(.putPages(upload: 1, stagingPage: 0, pageCount: 16)) == .done)
            #expect(try server.statistics()["region_bytes_used"]! == before + 16 * 4096)
        }
        let after = try server.waitForStatistics { $0["region_bytes_used"] == before }
        #expect(after["region_bytes_used"] == before)
        try bystander.check()
    }
}

/// A client that sends and never reads: the server stops reading it once its replies pile up
/// (8 MiB), so its memory stays bounded, and everyone else is served.
@Suite(.serialized)
struct SlowReaderTests {
    @Test("a client that stops reading its socket cannot make the server buffer without bound")
    func stopsReading() throws {
        let server = try ServerProcess(regionSize: "16M")
        defer { server.stop() }
        let bystander = try server.client(stagingBytes: 8192)
        let rssBefore = try server.statusKilobytes("VmRSS")
        let raw = try RawClient(socketPath: server.socket)
        #expect(try raw.hello().kind == .welcome)
        // Non-blocking sends of stats requests (each answered by ~350 bytes) until the socket
        // refuses more: the server has stopped reading this client.
        let flags = fcntl(raw.socket.rawValue, F_GETFL)
        _ = fcntl(raw.socket.rawValue, F_SETFL, flags | O_NONBLOCK)
        let frame = Request.stats.encode(requestID: 99)
        var sent = 0
        var refusedInARow = 0
        let deadline = Date().addingTimeInterval(20)
        while refusedInARow < 50 && Date() < deadline {
            let n = frame.withUnsafeBytes { send(raw.socket.rawValue, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n == frame.count {
                sent += 1
                refusedInARow = 0
            } else {
                refusedInARow += 1
                usleep(10_000)
            }
        }
        #expect(refusedInARow >= 50, "the server stopped reading (sent \(sent) requests)")
        try bystander.ping()
        _ = try bystander.statistics()
        let rssAfter = try server.statusKilobytes("VmRSS")
        #expect(rssAfter - rssBefore < 48 * 1024, "server memory grew by \(rssAfter - rssBefore) kB")
    }
}
