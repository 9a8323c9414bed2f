import Testing
@testable import SamepageCore

private let sampleID = ObjectID(high: 0x0123_4567_89AB_CDEF, low: 0xFEDC_BA98_7654_3210)

private let sampleScanReport: ScanReport = {
    var r = ScanReport()
    r.pagesScanned = 1
    r.fullScans = 2
    r.pagesSkipped = 3
    r.pagesVolatile = 4
    r.zeroPages = 5
    r.mergingPages = 6
    r.rmapItems = .max
    return r
}()

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
    .mergeScan(round: 1, flags: [], stagingPage: 0, keys: []),
    .mergeScan(round: 7, flags: .useZeroPages, stagingPage: 3, keys: [0x7F00_0000_1000, 0x7F00_0000_2000, 0]),
    .mergeScan(round: .max, flags: MergeFlags(rawValue: .max), stagingPage: .max, keys: [.max]),
    .mergeLookup(round: 1, flags: [], keys: [], digests: []),
    .attachBuffer(buffer: 3),
    .putBuffer(upload: 1, buffer: 3, firstPage: 7, pageCount: .max, digests: []),
    .putBuffer(upload: 1, buffer: 3, firstPage: 7, pageCount: 2, digests: [1, .max]),
    .detachBuffer(buffer: .max),
    .mergeLookup(round: 9, flags: .useZeroPages, keys: [0x7F00_0000_1000, 0], digests: [.max, 0x1234_5678_9ABC_DEF0]),
    .mergeLookup(round: 3, flags: [], keys: [0x1000], digests: [7], withdrawn: [MergeWithdrawal(key: 0x2000, digest: .max), MergeWithdrawal(key: 0, digest: 1)]),
    .mergeLookup(round: 4, flags: .stableOnly, keys: [], digests: [], withdrawn: [MergeWithdrawal(key: 0x3000, digest: 42)]),
    .mergeRelease(pages: []),
    .mergeRelease(pages: [0, 5, 5, .max - 2]),
    .scanReport(ScanReport()),
    .scanReport(sampleScanReport),
    .configure(name: "max_page_sharing", value: 2),
    .configure(name: "", value: .max),
    .clients,
]

private let allReplies: [Reply] = [
    .welcome(version: 1, regionBytes: 1 << 40, pageSize: 4096, segmentBytes: 64 << 20),
    .segment(index: 3, generation: 7, attached: true),
    .segment(index: 0, generation: 0, attached: false),
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
    .mergeResults([], hints: []),
    .mergeResults([.merge(0), .zero, .unstable, .merge(12345), .merge(.max - 2)], hints: []),
    .mergeResults([], hints: [MergeHint(key: 0x7F00_0000_1000, page: 4)]),
    .mergeResults([.unstable, .merge(9)],
                  hints: [MergeHint(key: 1, page: 9), MergeHint(key: .max, page: 0), MergeHint(key: 0, page: .max - 2)]),
    .clientList(ClientList(clients: [])),
    .clientList(ClientList(clients: [], total: 9000)),
    .clientList(ClientList(clients: [
        ClientInfo(pid: 4242, uid: 1000, name: "worker-α", objectsMapped: 3, uploadsOpen: 1, mergeablePages: 1 << 20,
                   mergedPages: 77, requestsServed: 12, connectedSince: 1_764_000_000, isCaller: true),
        ClientInfo(pid: .max, uid: .max, name: "", objectsMapped: .max, uploadsOpen: .max, mergeablePages: .max,
                   mergedPages: .max, requestsServed: .max, connectedSince: .min),
    ])),
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
        #expect(Set(requestKinds.map(\.rawValue)) == Set(1...14).union([16, 17, 18, 19, 20]))
        #expect(requestKinds.allSatisfy { !$0.isReply })
        let replyKinds = allReplies.map(\.kind)
        #expect(Set(replyKinds.map(\.rawValue)) == [0x8001, 0x8002, 0x8003, 0x8004, 0x8005, 0x8006, 0x8007, 0x8008, 0x8009, 0x800A, 0x80FF])
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

    // MARK: Mergeable memory messages

    @Test func mergeScanBytes() {
        let bytes = Request.mergeScan(round: 0x0102_0304, flags: .useZeroPages, stagingPage: 5,
                                      keys: [0x1122_3344_5566_7788, 9]).encode(requestID: 0)
        #expect(Array(bytes[2..<4]) == [11, 0]) // kind
        #expect(Array(bytes[4..<8]) == [32, 0, 0, 0]) // length
        #expect(Array(bytes[16...]) == [4, 3, 2, 1, 1, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0,
                                        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
                                        9, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test func mergeReleaseScanReportAndConfigureBytes() {
        let release = Request.mergeRelease(pages: [1, 0x0A0B_0C0D]).encode(requestID: 0)
        #expect(Array(release[2..<4]) == [12, 0])
        #expect(Array(release[16...]) == [2, 0, 0, 0, 1, 0, 0, 0, 0x0D, 0x0C, 0x0B, 0x0A])
        let report = Request.scanReport(sampleScanReport).encode(requestID: 0)
        #expect(Array(report[2..<4]) == [13, 0])
        #expect(report.count == FrameHeader.size + 7 * 8)
        // Field order: scanned, full scans, skipped, volatile, zero, merging, rmap items.
        let firstBytes: [UInt8] = (0..<6).map { (i: Int) -> UInt8 in report[16 + i * 8] }
        #expect(firstBytes == [1, 2, 3, 4, 5, 6])
        let rmapBytes: [UInt8] = Array(report[64...])
        #expect(rmapBytes == [UInt8](repeating: 0xFF, count: 8))
        let configure = Request.configure(name: "ab", value: 0x0102).encode(requestID: 0)
        #expect(Array(configure[2..<4]) == [14, 0])
        #expect(Array(configure[16...]) == [2, 0, UInt8(ascii: "a"), UInt8(ascii: "b"), 2, 1, 0, 0, 0, 0, 0, 0])
    }

    @Test func mergeResultsBytes() {
        let bytes = Reply.mergeResults([.merge(3), .zero, .unstable], hints: [MergeHint(key: 0x0102, page: 7)])
            .encode(requestID: 0)
        #expect(Array(bytes[2..<4]) == [0x08, 0x80])
        #expect(Array(bytes[16...]) == [3, 0, 0, 0, 3, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0xFF, 0xFF, 0xFF,
                                        1, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0])
    }

    @Test func mergeOutcomes() {
        #expect(MergeOutcome.merge(0).page == 0)
        #expect(MergeOutcome.merge(PageNumber.max - 3).page == PageNumber.max - 3)
        #expect(MergeOutcome.zero.page == nil)
        #expect(MergeOutcome.unstable.page == nil)
        #expect(MergeOutcome.needContent.page == nil)
        #expect(Set([MergeOutcome.zero, .unstable, .needContent].map(\.rawValue)).count == 3)
        #expect(MergeOutcome.needContent.description == "needContent")
        #expect(MergeOutcome.merge(17).description == "merge(17)")
        #expect(MergeOutcome.zero.description == "zero")
        #expect(MergeOutcome.unstable.description == "unstable")
    }

    private func requestFrame(_ kind: MessageKind, _ w: WireWriter) -> Frame {
        Frame(header: FrameHeader(kind: kind.rawValue, length: UInt32(w.bytes.count), requestID: 1),
              payload: ArraySlice(w.bytes))
    }

    @Test func mergeScanKeyCountLargerThanThePayloadIsTruncated() {
        for (claimed, present) in [(UInt32.max, 1), (3, 2), (1, 0), (UInt32(1) << 29, 4)] {
            var w = WireWriter()
            w.write(UInt32(1)) // round
            w.write(UInt32(0)) // flags
            w.write(UInt32(0)) // staging page
            w.write(claimed)
            for key in 0..<present { w.write(UInt64(key)) }
            #expect(throws: ProtocolError.truncated, "\(claimed) keys claimed, \(present) sent") {
                try Request.decode(requestFrame(.mergeScan, w))
            }
        }
        // Extra bytes that are not a whole key are still too few for one more key.
        var w = WireWriter()
        for v: UInt32 in [1, 0, 0, 2] { w.write(v) }
        w.write(UInt64(1))
        for _ in 0..<7 { w.write(UInt8(0)) }
        #expect(throws: ProtocolError.truncated) { try Request.decode(requestFrame(.mergeScan, w)) }
    }

    @Test func mergeScanKeyCountSmallerThanThePayloadLeavesTrailingBytes() {
        var w = WireWriter()
        for v: UInt32 in [1, 0, 0, 1] { w.write(v) }
        w.write(UInt64(1))
        w.write(UInt64(2))
        #expect(throws: ProtocolError.trailingBytes) { try Request.decode(requestFrame(.mergeScan, w)) }
    }

    @Test func mergeReleaseCountLargerThanThePayloadIsTruncated() {
        for (claimed, present) in [(UInt32.max, 1), (2, 1), (1, 0)] {
            var w = WireWriter()
            w.write(claimed)
            for page in 0..<present { w.write(UInt32(page)) }
            #expect(throws: ProtocolError.truncated, "\(claimed) pages claimed, \(present) sent") {
                try Request.decode(requestFrame(.mergeRelease, w))
            }
        }
    }

    @Test func mergeResultsCountsLargerThanThePayloadAreTruncated() {
        // Outcome count beyond the payload.
        var w = WireWriter()
        w.write(UInt32.max)
        w.write(UInt32(0))
        w.write(UInt32(0))
        #expect(throws: ProtocolError.truncated) { try Reply.decode(requestFrame(.mergeResults, w)) }
        // Hint count beyond the payload.
        w = WireWriter()
        w.write(UInt32(1))
        w.write(MergeOutcome.unstable.rawValue)
        w.write(UInt32.max)
        w.write(UInt64(1))
        w.write(UInt32(2))
        #expect(throws: ProtocolError.truncated) { try Reply.decode(requestFrame(.mergeResults, w)) }
        // Two hints claimed, one and a half sent.
        w = WireWriter()
        w.write(UInt32(0))
        w.write(UInt32(2))
        w.write(UInt64(1))
        w.write(UInt32(2))
        w.write(UInt64(3))
        #expect(throws: ProtocolError.truncated) { try Reply.decode(requestFrame(.mergeResults, w)) }
        // No hint count at all.
        w = WireWriter()
        w.write(UInt32(1))
        w.write(UInt32(5))
        #expect(throws: ProtocolError.truncated) { try Reply.decode(requestFrame(.mergeResults, w)) }
    }

    @Test func aFullMergeScanFitsTheRequestLimit() throws {
        let keys = (0..<Service.maxMergeBatch).map { UInt64($0) * 4096 + 0x7F00_0000_0000 }
        let request = Request.mergeScan(round: 3, flags: .useZeroPages, stagingPage: 0, keys: keys)
        let bytes = request.encode(requestID: 9)
        #expect(bytes.count == FrameHeader.size + 16 + 8 * Service.maxMergeBatch)
        #expect(bytes.count <= FrameHeader.size + Int(FrameHeader.maxRequestPayload))
        #expect(try Request.decode(frame(bytes, limit: FrameHeader.maxRequestPayload)) == request)
    }

    @Test func aFullMergeResultsFrameFitsTheReplyLimit() throws {
        let outcomes = (0..<Service.maxMergeBatch).map { MergeOutcome.merge(PageNumber($0)) }
        let hints = (0..<Service.maxHintsPerReply).map { MergeHint(key: UInt64($0), page: PageNumber($0)) }
        let reply = Reply.mergeResults(outcomes, hints: hints)
        let bytes = reply.encode(requestID: 9)
        #expect(bytes.count <= FrameHeader.size + Int(FrameHeader.maxReplyPayload))
        // One more hint would not fit.
        #expect(bytes.count + 12 > FrameHeader.size + Int(FrameHeader.maxReplyPayload))
        #expect(try Reply.decode(frame(bytes)) == reply)
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
