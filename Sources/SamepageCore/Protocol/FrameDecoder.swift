/// Cuts a byte stream into frames. Bytes arrive in whatever pieces the socket delivers: a frame
/// may be split anywhere, and one read may hold many frames. The decoder buffers the rest.
public struct FrameDecoder: Sendable {
    private var buffer: [UInt8] = []
    private var consumed = 0
    public let maxPayload: UInt32

    public init(maxPayload: UInt32) {
        self.maxPayload = maxPayload
    }

    /// Bytes received but not yet returned as a frame.
    public var bufferedBytes: Int { buffer.count - consumed }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        compact()
        buffer.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    /// The next complete frame, nil when more bytes are needed. A bad header throws before its
    /// payload is awaited, so a garbage length cannot make the peer's connection buffer grow.
    public mutating func next() throws(ProtocolError) -> Frame? {
        guard bufferedBytes >= FrameHeader.size else { return nil }
        var reader = WireReader(buffer[consumed..<consumed + FrameHeader.size])
        let magic: UInt16 = try reader.read()
        guard magic == FrameHeader.magic else { throw .badMagic(magic) }
        let kind: UInt16 = try reader.read()
        let length: UInt32 = try reader.read()
        let requestID: UInt64 = try reader.read()
        guard length <= maxPayload else { throw .oversizedFrame(length: length, limit: maxPayload) }
        let total = FrameHeader.size + Int(length)
        guard bufferedBytes >= total else { return nil }
        let payload = buffer[(consumed + FrameHeader.size)..<(consumed + total)]
        consumed += total
        return Frame(header: FrameHeader(kind: kind, length: length, requestID: requestID),
                     payload: ArraySlice(Array(payload)))
    }

    private mutating func compact() {
        if consumed > 0 {
            buffer.removeFirst(consumed)
            consumed = 0
        }
    }
}

/// Frames a payload with its header.
public enum FrameEncoder {
    public static func encode(kind: UInt16, requestID: UInt64, payload: [UInt8]) -> [UInt8] {
        var w = WireWriter(capacity: FrameHeader.size + payload.count)
        w.write(FrameHeader.magic)
        w.write(kind)
        w.write(UInt32(payload.count))
        w.write(requestID)
        var bytes = w.bytes
        bytes.append(contentsOf: payload)
        return bytes
    }
}
