import Testing
@testable import SamepageCore

private let sampleID = ObjectID(high: 0x0123_4567_89AB_CDEF, low: 0xFEDC_BA98_7654_3210)

private let allRequests: [Request] = [
    .hello(version: Request.version, clientName: "samepage-cli"),
    .hello(version: .max, clientName: ""),
    .hello(version: 7, clientName: "héllo wörld 🚀"),
    .ping,
    .putBegin(upload: 1, length: 0),
    .putBegin(upload: .max, length: .max),
    .putPages(upload: 2, stagingPage: 3, pageCount: 4),
    .putPages(upload: .max, stagingPage: .max, pageCount: .max),
    .putCommit(upload: 5),
    .putAbort(upload: 6),
    .map(sampleID),
    .map(ObjectID(high: 0, low: 0)),
    .unmap(handle: 9),
    .delete(sampleID),
    .stats,
]

private let allReplies: [Reply] = [
    .welcome(version: 1, regionBytes: 1 << 40, pageSize: 4096),
    .pong,
    .done,
    .committed(sampleID),
    .mapped(handle: 3, length: 12345, runCount: 2),
    .runs([], more: false),
    .runs([PageRun(start: 0, count: 1), PageRun(start: PageRun.zeroStart, count: 7),
           PageRun(start: 100, count: .max)], more: true),
    .statistics([]),
    .statistics([Statistic(name: "pages_shared", value: 3), Statistic(name: "general_profit", value: -4096),
                 Statistic(name: "", value: .min), Statistic(name: "ß", value: .max)]),
    .failure(.badRequest, "no"),
    .failure(.unsupportedVersion, ""),
    .failure(.unknownObject, "no object"),
    .failure(.unknownHandle, "h"),
    .failure(.regionFull, "full"),
    .failure(.limitExceeded, "limit"),
    .failure(.notPermitted, "nope"),
    .failure(.badStaging, "staging"),
    .failure(.internalError, "bug"),
]

/// Decodes exactly one frame from `bytes`.
private func frame(_ bytes: [UInt8], limit: UInt32 = FrameHeader.maxReplyPayload) throws -> Frame {
    var d = FrameDecoder(maxPayload: limit)
    d.append(bytes)
    let f = try #require(try d.next())
    #expect(d.bufferedBytes == 0)
    return f
}

/// The frame with its payload replaced.
private func withPayload(_ f: Frame, _ payload: [UInt8]) -> Frame {
    Frame(header: FrameHeader(kind: f.header.kind, length: UInt32(payload.count), requestID: f.header.requestID),
          payload: ArraySlice(payload))
}

@Suite("Request and Reply codec")
struct MessageCodecTests {
    @Test(arguments: allRequests)
    func requestRoundTrip(_ request: Request) throws {
        let f = try frame(request.encode(requestID: 0xABCD_0000_1234), limit: FrameHeader.maxRequestPayload)
        #expect(f.header.kind == request.kind.rawValue)
        #expect(f.header.requestID == 0xABCD_0000_1234)
        #expect(Int(f.header.length) == f.payload.count)
        #expect(try Request.decode(f) == request)
    }

    @Test(arguments: allReplies)
    func replyRoundTrip(_ reply: Reply) throws {
        let f = try frame(reply.encode(requestID: 42))
        #expect(f.header.kind == reply.kind.rawValue)
        #expect(f.header.requestID == 42)
        #expect(try Reply.decode(f) == reply)
    }

    @Test func kindsMatchTheCases() {
        let requestKinds = allRequests.map(\.kind)
        #expect(Set(requestKinds.map(\.rawValue)) == Set(1...10))
        #expect(requestKinds.allSatisfy { !$0.isReply })
        let replyKinds = allReplies.map(\.kind)
        #expect(Set(replyKinds.map(\.rawValue)) == [0x8001, 0x8002, 0x8003, 0x8004, 0x8005, 0x8006, 0x8007, 0x80FF])
        #expect(replyKinds.allSatisfy { $0.isReply })
    }

    @Test func requestBytesAreLittleEndian() {
        let bytes = Request.putBegin(upload: 0x0A0B_0C0D, length: 0x0102_0304_0506_0708).encode(requestID: 0x11)
        #expect(bytes == [0x50, 0x53, 3, 0, 12, 0, 0, 0, 0x11, 0, 0, 0, 0, 0, 0, 0,
                          0x0D, 0x0C, 0x0B, 0x0A, 8, 7, 6, 5, 4, 3, 2, 1])
        let hello = Request.hello(version: 1, clientName: "ab").encode(requestID: 0)
        #expect(Array(hello[16...]) == [1, 0, 0, 0, 2, 0, UInt8(ascii: "a"), UInt8(ascii: "b")])
        let map = Request.map(sampleID).encode(requestID: 0)
        #expect(Array(map[16...]) == [0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01,
                                      0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE])
    }

    @Test func replyRunsBytes() {
        let bytes = Reply.runs([PageRun(start: 1, count: 2)], more: true).encode(requestID: 0)
        #expect(Array(bytes[16...]) == [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0])
    }

    @Test(arguments: allRequests.filter { $0.encode(requestID: 0).count > FrameHeader.size })
    func truncatedRequestPayloadThrows(_ request: Request) throws {
        let f = try frame(request.encode(requestID: 1), limit: FrameHeader.maxRequestPayload)
        for cut in 0..<f.payload.count {
            #expect(throws: ProtocolError.truncated, "cut at \(cut)") {
                try Request.decode(withPayload(f, Array(f.payload.prefix(cut))))
            }
        }
    }

    @Test(arguments: allRequests)
    func trailingBytesAfterARequestThrow(_ request: Request) throws {
        let f = try frame(request.encode(requestID: 1), limit: FrameHeader.maxRequestPayload)
        #expect(throws: ProtocolError.trailingBytes) {
            try Request.decode(withPayload(f, Array(f.payload) + [0]))
        }
    }

    @Test(arguments: allReplies.filter { $0.encode(requestID: 0).count > FrameHeader.size })
    func truncatedReplyPayloadThrows(_ reply: Reply) throws {
        let f = try frame(reply.encode(requestID: 1))
        for cut in 0..<f.payload.count {
            #expect(throws: ProtocolError.truncated, "cut at \(cut)") {
                try Reply.decode(withPayload(f, Array(f.payload.prefix(cut))))
            }
        }
    }

    @Test(arguments: allReplies)
    func trailingBytesAfterAReplyThrow(_ reply: Reply) throws {
        let f = try frame(reply.encode(requestID: 1))
        #expect(throws: ProtocolError.trailingBytes) {
            try Reply.decode(withPayload(f, Array(f.payload) + [1, 2, 3]))
        }
    }

    @Test func replyKindDecodedAsRequestIsUnknown() throws {
        for reply in allReplies {
            let f = try frame(reply.encode(requestID: 1))
            #expect(throws: ProtocolError.unknownKind(reply.kind.rawValue)) { try Request.decode(f) }
        }
    }

    @Test func requestKindDecodedAsReplyIsUnknown() throws {
        for request in allRequests {
            let f = try frame(request.encode(requestID: 1))
            #expect(throws: ProtocolError.unknownKind(request.kind.rawValue)) { try Reply.decode(f) }
        }
    }

    @Test func unknownKindsAreRefused() {
        // Every kind without a MessageKind, around the request and reply ranges.
        let kinds = Array(0...0x1FF) + Array(0x7F00...0x81FF) + Array(0xFF00...0xFFFF) as [UInt16]
        let unknown = kinds.filter { MessageKind(rawValue: $0) == nil }
        #expect(unknown.count > 1000)
        #expect(unknown.contains(0) && unknown.contains(0x8000) && unknown.contains(0xFFFF))
        for kind in unknown {
            let f = Frame(header: FrameHeader(kind: kind, length: 0, requestID: 1), payload: [])
            #expect(throws: ProtocolError.unknownKind(kind)) { try Request.decode(f) }
            #expect(throws: ProtocolError.unknownKind(kind)) { try Reply.decode(f) }
        }
    }

    @Test func runsCountLargerThanThePayloadIsTruncated() {
        var w = WireWriter()
        w.write(UInt32.max) // claims 4 billion runs
        w.write(UInt32(0))
        w.write(UInt32(1))
        w.write(UInt32(1))
        let f = Frame(header: FrameHeader(kind: MessageKind.runs.rawValue, length: UInt32(w.bytes.count), requestID: 1),
                      payload: ArraySlice(w.bytes))
        #expect(throws: ProtocolError.truncated) { try Reply.decode(f) }
    }

    @Test func nonZeroMoreFlagMeansMore() throws {
        var w = WireWriter()
        w.write(UInt32(0))
        w.write(UInt32(0xFF00))
        let f = Frame(header: FrameHeader(kind: MessageKind.runs.rawValue, length: 8, requestID: 1),
                      payload: ArraySlice(w.bytes))
        #expect(try Reply.decode(f) == .runs([], more: true))
    }

    @Test func unknownErrorCodeDecodesAsInternalError() throws {
        var w = WireWriter()
        w.write(UInt16(12345))
        w.write("strange")
        let f = Frame(header: FrameHeader(kind: MessageKind.failure.rawValue, length: UInt32(w.bytes.count), requestID: 1),
                      payload: ArraySlice(w.bytes))
        #expect(try Reply.decode(f) == .failure(.internalError, "strange"))
    }

    @Test func aFullRunsFrameFitsTheReplyLimit() throws {
        #expect(Reply.runsPerFrame == 131_071)
        let runs = (0..<Reply.runsPerFrame).map { PageRun(start: PageNumber($0 * 2), count: 1) }
        let bytes = Reply.runs(runs, more: true).encode(requestID: 1)
        #expect(bytes.count == FrameHeader.size + Int(FrameHeader.maxReplyPayload))
        let f = try frame(bytes, limit: FrameHeader.maxReplyPayload)
        #expect(try Reply.decode(f) == .runs(runs, more: true))
    }

    @Test func protocolErrorDescriptions() {
        #expect(ProtocolError.badMagic(0x1234).description == "bad frame magic 0x1234")
        #expect(ProtocolError.oversizedFrame(length: 10, limit: 5).description == "frame of 10 bytes exceeds the limit of 5")
        #expect(ProtocolError.unknownKind(77).description == "unknown message kind 77")
        #expect(ProtocolError.truncated.description == "message shorter than its fields")
        #expect(ProtocolError.trailingBytes.description == "message longer than its fields")
        #expect(ProtocolError.badValue("x").description == "invalid field: x")
    }
}
