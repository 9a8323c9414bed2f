import Testing
@testable import SamepageCore

/// The `clients` request and its `clientList` reply: layout, bounds, and what a hostile peer's
/// bytes can and cannot make the decoder do.
@Suite("clients codec")
struct ClientListCodecTests {
    private func frame(_ kind: MessageKind, _ payload: [UInt8]) -> Frame {
        Frame(header: FrameHeader(kind: kind.rawValue, length: UInt32(payload.count), requestID: 1), payload: ArraySlice(payload))
    }

    @Test func requestIsKind16WithNoPayload() {
        let bytes = Request.clients.encode(requestID: 5)
        #expect(bytes.count == FrameHeader.size)
        #expect(Array(bytes[2..<4]) == [16, 0])
    }

    @Test func entryBytesAreLittleEndianInFieldOrder() {
        let info = ClientInfo(pid: 0x0102_0304, uid: 7, name: "ab", objectsMapped: 2, uploadsOpen: 1, mergeablePages: 3,
                              mergedPages: 4, requestsServed: 5, connectedSince: -1, isCaller: true)
        let bytes = Reply.clientList(ClientList(clients: [info], total: 3)).encode(requestID: 0)
        #expect(Array(bytes[2..<4]) == [0x0A, 0x80])
        #expect(Array(bytes[16...]) == [3, 0, 0, 0, 1, 0, 0, 0,                 // total, count
                                        4, 3, 2, 1, 7, 0, 0, 0, 2, 0, 0x61, 0x62, // pid, uid, name
                                        2, 0, 0, 0, 1, 0, 0, 0,                 // mapped, uploads
                                        3, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0,
                                        5, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                        1])
    }

    @Test func aCountThePayloadCannotHoldIsTruncatedBeforeAllocating() {
        var w = WireWriter()
        w.write(UInt32.max)
        w.write(UInt32.max) // four billion entries claimed, none sent
        #expect(throws: ProtocolError.truncated) { try Reply.decode(frame(.clientList, w.bytes)) }
    }

    @Test func moreEntriesThanTheTotalAreRefused() {
        var w = WireWriter()
        ClientList(clients: [ClientInfo(pid: 1, uid: 1, name: "x")], total: 1).encode(into: &w)
        var bytes = w.bytes
        bytes[0] = 0 // total 0, one entry
        #expect(throws: ProtocolError.badValue("1 clients listed of 0")) { try Reply.decode(frame(.clientList, bytes)) }
    }

    @Test func aCallerFlagOtherThanZeroOrOneIsRefused() {
        var w = WireWriter()
        ClientList(clients: [ClientInfo(pid: 1, uid: 1, name: "")]).encode(into: &w)
        var bytes = w.bytes
        bytes[bytes.count - 1] = 2
        #expect(throws: ProtocolError.badValue("caller flag 2")) { try Reply.decode(frame(.clientList, bytes)) }
    }

    @Test func arbitraryPayloadsNeverTrap() {
        // Every prefix and every single-byte corruption of a valid reply decodes or throws.
        let valid = Reply.clientList(ClientList(clients: [ClientInfo(pid: 9, uid: 9, name: "probe", isCaller: true),
                                                          ClientInfo(pid: 10, uid: 9, name: "")])).encode(requestID: 0)
        let payload = Array(valid[16...])
        for cut in 0...payload.count { _ = try? Reply.decode(frame(.clientList, Array(payload.prefix(cut)))) }
        for index in payload.indices {
            for value: UInt8 in [0, 1, 0x7F, 0xFF] {
                var bytes = payload
                bytes[index] = value
                _ = try? Reply.decode(frame(.clientList, bytes))
            }
        }
    }

    @Test func aFullListOfLongestNamesFitsOneReply() throws {
        let name = String(repeating: "n", count: ClientInfo.maxNameBytes)
        let info = ClientInfo(pid: 1, uid: 1, name: name, objectsMapped: .max, uploadsOpen: .max, mergeablePages: .max,
                              mergedPages: .max, requestsServed: .max, connectedSince: .max)
        let list = ClientList(clients: Array(repeating: info, count: ClientList.maxEntries), total: .max)
        let bytes = Reply.clientList(list).encode(requestID: 1)
        #expect(bytes.count <= FrameHeader.size + Int(FrameHeader.maxReplyPayload))
        #expect(ClientList.maxEntries > 8000)
    }

    @Test func namesAreMadePrintableAndBounded() {
        #expect(ClientInfo.printableName("worker-1") == "worker-1")
        #expect(ClientInfo.printableName("\u{1B}[2Jevil\u{07}\n\t") == "[2Jevil")
        #expect(ClientInfo.printableName("a\u{202E}b\u{200B}c") == "abc") // bidi override, zero-width space
        #expect(ClientInfo.printableName("héllo wörld") == "héllo wörld")
        let long = ClientInfo.printableName(String(repeating: "é", count: 100)) // 2 bytes each
        #expect(long.utf8.count == 64 && long.count == 32)
        let cut = ClientInfo.printableName(String(repeating: "a", count: 63) + "é")
        #expect(cut == String(repeating: "a", count: 63), "a character is never split")
    }
}
