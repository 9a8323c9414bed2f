import Testing
@testable import SamepageCore

@Suite("FrameDecoder")
struct FrameDecoderTests {
    private let limit = FrameHeader.maxRequestPayload

    /// All frames currently complete in the decoder.
    private func drain(_ decoder: inout FrameDecoder) throws(ProtocolError) -> [Frame] {
        var frames: [Frame] = []
        while let f = try decoder.next() { frames.append(f) }
        return frames
    }

    /// A header with arbitrary fields, for malformed input.
    private func header(magic: UInt16 = FrameHeader.magic, kind: UInt16, length: UInt32, requestID: UInt64) -> [UInt8] {
        var w = WireWriter()
        w.write(magic)
        w.write(kind)
        w.write(length)
        w.write(requestID)
        return w.bytes
    }

    private var sampleFrames: [[UInt8]] {
        [
            Request.ping.encode(requestID: 1),
            Request.hello(version: 1, clientName: "test client").encode(requestID: 2),
            Request.putPages(upload: 3, stagingPage: 4, pageCount: 5).encode(requestID: 3),
            FrameEncoder.encode(kind: 0x1234, requestID: .max, payload: Array(0..<200)),
            Request.stats.encode(requestID: 5),
        ]
    }

    @Test func encoderWritesTheDocumentedHeader() {
        let bytes = FrameEncoder.encode(kind: 0x0A0B, requestID: 0x0102_0304_0506_0708, payload: [0xEE, 0xFF])
        #expect(bytes == [0x50, 0x53, 0x0B, 0x0A, 0x02, 0x00, 0x00, 0x00,
                          0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0xEE, 0xFF])
    }

    @Test func oneFrameDecodes() throws {
        var d = FrameDecoder(maxPayload: limit)
        #expect(d.maxPayload == limit)
        d.append(FrameEncoder.encode(kind: 9, requestID: 77, payload: [1, 2, 3]))
        let frame = try #require(try d.next())
        #expect(frame.header == FrameHeader(kind: 9, length: 3, requestID: 77))
        #expect(Array(frame.payload) == [1, 2, 3])
        #expect(try d.next() == nil)
        #expect(d.bufferedBytes == 0)
    }

    @Test func emptyDecoderWantsBytes() throws {
        var d = FrameDecoder(maxPayload: limit)
        #expect(try d.next() == nil)
        d.append([])
        #expect(try d.next() == nil)
        #expect(d.bufferedBytes == 0)
    }

    @Test func framesSplitAtEveryByteBoundary() throws {
        let stream = sampleFrames.flatMap { $0 }
        var whole = FrameDecoder(maxPayload: limit)
        whole.append(stream)
        let expected = try drain(&whole)
        #expect(expected.count == sampleFrames.count)

        for cut in 0...stream.count {
            var d = FrameDecoder(maxPayload: limit)
            d.append(Array(stream[..<cut]))
            var frames = try drain(&d)
            let completeBefore = frames.count
            d.append(Array(stream[cut...]))
            frames += try drain(&d)
            #expect(frames == expected, "cut at \(cut)")
            #expect(d.bufferedBytes == 0)
            // Exactly the frames wholly inside the first piece came out of it.
            var ends: [Int] = []
            var end = 0
            for f in sampleFrames { end += f.count; ends.append(end) }
            #expect(completeBefore == ends.filter { $0 <= cut }.count, "cut at \(cut)")
        }
    }

    @Test func byteAtATime() throws {
        let stream = sampleFrames.flatMap { $0 }
        var d = FrameDecoder(maxPayload: limit)
        var frames: [Frame] = []
        for (i, byte) in stream.enumerated() {
            d.append([byte])
            frames += try drain(&d)
            #expect(d.bufferedBytes <= i + 1)
        }
        #expect(frames.map(\.header.requestID) == [1, 2, 3, .max, 5])
        #expect(frames[3].header.kind == 0x1234)
        #expect(Array(frames[3].payload) == Array(0..<200))
        #expect(d.bufferedBytes == 0)
    }

    @Test func bufferedBytesCountsThePartialFrame() throws {
        let frame = Request.putBegin(upload: 1, length: 2).encode(requestID: 1)
        var d = FrameDecoder(maxPayload: limit)
        d.append(Array(frame[..<20]))
        #expect(try d.next() == nil)
        #expect(d.bufferedBytes == 20)
        d.append(Array(frame[20...]) + Array(frame[..<3]))
        #expect(try d.next() != nil)
        #expect(d.bufferedBytes == 3)
    }

    @Test func manyFramesInOneAppend() throws {
        var stream: [UInt8] = []
        for i in 0..<500 as Range<UInt64> {
            stream += FrameEncoder.encode(kind: UInt16(i % 7), requestID: i, payload: Array(repeating: UInt8(i & 0xFF), count: Int(i % 13)))
        }
        var d = FrameDecoder(maxPayload: limit)
        d.append(stream)
        let frames = try drain(&d)
        #expect(frames.count == 500)
        for (i, f) in frames.enumerated() {
            #expect(f.header.requestID == UInt64(i))
            #expect(f.header.kind == UInt16(i % 7))
            #expect(f.payload.count == i % 13)
            #expect(f.payload.allSatisfy { $0 == UInt8(i & 0xFF) })
        }
        #expect(d.bufferedBytes == 0)
    }

    @Test func payloadIsIndependentOfLaterAppends() throws {
        var d = FrameDecoder(maxPayload: limit)
        d.append(FrameEncoder.encode(kind: 1, requestID: 1, payload: [1, 2, 3, 4]))
        let first = try #require(try d.next())
        d.append(FrameEncoder.encode(kind: 1, requestID: 2, payload: [9, 9, 9, 9]))
        _ = try d.next()
        #expect(Array(first.payload) == [1, 2, 3, 4])
        #expect(first.payload.startIndex == 0)
    }

    @Test func badMagicThrows() {
        var d = FrameDecoder(maxPayload: limit)
        d.append(header(magic: 0x1234, kind: 2, length: 0, requestID: 1))
        #expect(throws: ProtocolError.badMagic(0x1234)) { try d.next() }
    }

    @Test func badMagicWaitsForAWholeHeader() throws {
        var d = FrameDecoder(maxPayload: limit)
        d.append(Array(repeating: 0xAB, count: FrameHeader.size - 1))
        #expect(try d.next() == nil)
        d.append([0xAB])
        #expect(throws: ProtocolError.badMagic(0xABAB)) { try d.next() }
    }

    @Test func badMagicAfterAGoodFrame() throws {
        var d = FrameDecoder(maxPayload: limit)
        d.append(Request.ping.encode(requestID: 1) + header(magic: 0x5053, kind: 2, length: 0, requestID: 2))
        #expect(try d.next()?.header.requestID == 1)
        #expect(throws: ProtocolError.badMagic(0x5053)) { try d.next() }
    }

    @Test func oversizedLengthThrowsBeforeThePayloadArrives() {
        var d = FrameDecoder(maxPayload: limit)
        d.append(header(kind: 1, length: limit + 1, requestID: 1))
        #expect(d.bufferedBytes == FrameHeader.size)
        #expect(throws: ProtocolError.oversizedFrame(length: limit + 1, limit: limit)) { try d.next() }

        var huge = FrameDecoder(maxPayload: limit)
        huge.append(header(kind: 1, length: .max, requestID: 1))
        #expect(throws: ProtocolError.oversizedFrame(length: .max, limit: limit)) { try huge.next() }
    }

    @Test func lengthAtTheLimitIsAccepted() throws {
        var d = FrameDecoder(maxPayload: 100)
        d.append(header(kind: 1, length: 100, requestID: 1))
        #expect(try d.next() == nil)
        d.append(Array(repeating: 7, count: 99))
        #expect(try d.next() == nil)
        d.append([7])
        let frame = try #require(try d.next())
        #expect(frame.payload.count == 100)
    }

    @Test func garbageIsRefused() throws {
        var rng = SplitMix64(seed: 2024)
        for _ in 0..<2000 {
            let count = Int.random(in: FrameHeader.size...64, using: &rng)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if bytes[0] == 0x50 && bytes[1] == 0x53 { bytes[0] = 0 }
            let magic = UInt16(bytes[0]) | UInt16(bytes[1]) << 8
            var d = FrameDecoder(maxPayload: limit)
            d.append(bytes)
            #expect(throws: ProtocolError.badMagic(magic)) { try d.next() }
        }
    }

    @Test func garbageWithGoodMagicIsOversizedOrWaits() throws {
        var rng = SplitMix64(seed: 77)
        for _ in 0..<2000 {
            var bytes = (0..<FrameHeader.size).map { _ in UInt8.random(in: 0...255, using: &rng) }
            bytes[0] = 0x50
            bytes[1] = 0x53
            let length = UInt32(bytes[4]) | UInt32(bytes[5]) << 8 | UInt32(bytes[6]) << 16 | UInt32(bytes[7]) << 24
            var d = FrameDecoder(maxPayload: limit)
            d.append(bytes)
            if length > limit {
                #expect(throws: ProtocolError.oversizedFrame(length: length, limit: limit)) { try d.next() }
            } else {
                #expect(try d.next() == nil)
            }
        }
    }
}
