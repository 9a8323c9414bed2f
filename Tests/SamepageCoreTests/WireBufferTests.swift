import Testing
@testable import SamepageCore

@Suite("WireWriter and WireReader")
struct WireBufferTests {
    @Test func integersAreLittleEndian() {
        var w = WireWriter()
        w.write(UInt8(0xAA))
        w.write(UInt16(0x0102))
        w.write(UInt32(0x0304_0506))
        w.write(UInt64(0x0708_090A_0B0C_0D0E))
        w.write(Int64(-2))
        #expect(w.bytes == [0xAA, 0x02, 0x01, 0x06, 0x05, 0x04, 0x03,
                            0x0E, 0x0D, 0x0C, 0x0B, 0x0A, 0x09, 0x08, 0x07,
                            0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
    }

    @Test func readsBackWhatWasWritten() throws {
        var w = WireWriter()
        w.write(UInt16(0xBEEF))
        w.write("päge")
        w.write(ObjectID(high: 1, low: 2))
        w.write(Int64.min)
        var r = WireReader(ArraySlice(w.bytes))
        #expect(try r.read(UInt16.self) == 0xBEEF)
        #expect(try r.readString() == "päge")
        #expect(try r.readObjectID() == ObjectID(high: 1, low: 2))
        #expect(r.remaining == 8)
        #expect(try r.read(Int64.self) == .min)
        #expect(r.remaining == 0)
        try r.expectEnd()
        #expect(throws: ProtocolError.truncated) { try r.read(UInt8.self) }
    }

    @Test func readerHonoursSliceIndices() throws {
        let bytes: [UInt8] = [0xFF, 0xFF, 0x34, 0x12, 0xFF]
        var r = WireReader(bytes[2..<4])
        #expect(r.remaining == 2)
        #expect(try r.read(UInt16.self) == 0x1234)
        try r.expectEnd()
    }

    @Test func shortReadsThrowAndDoNotConsume() throws {
        var r = WireReader(ArraySlice([1, 2, 3]))
        #expect(throws: ProtocolError.truncated) { try r.read(UInt32.self) }
        #expect(r.remaining == 3)
        #expect(throws: ProtocolError.trailingBytes) { try r.expectEnd() }
        #expect(try r.read(UInt16.self) == 0x0201)
    }

    @Test func stringLongerThanItsBytesIsTruncated() {
        var w = WireWriter()
        w.write(UInt16(10))
        var r = WireReader(ArraySlice(w.bytes + Array("abc".utf8)))
        #expect(throws: ProtocolError.truncated) { try r.readString() }
    }

    @Test func overlongStringsAreCutAt65535Bytes() throws {
        var w = WireWriter()
        w.write(String(repeating: "x", count: 70_000))
        #expect(w.bytes.count == 2 + 65535)
        var r = WireReader(ArraySlice(w.bytes))
        #expect(try r.readString() == String(repeating: "x", count: 65535))
    }

    @Test func patchOverwritesAU32() {
        var w = WireWriter()
        w.write(UInt16(0xFFFF))
        w.write(UInt32(0))
        w.write(UInt8(9))
        w.patch(0xA1B2_C3D4, at: 2)
        #expect(w.bytes == [0xFF, 0xFF, 0xD4, 0xC3, 0xB2, 0xA1, 9])
    }
}
