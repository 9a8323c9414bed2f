/// Every message on the socket is one frame:
///
///     offset size field
///     0      2    magic      0x5350 ("SP" little-endian)
///     2      2    kind       message kind (MessageKind)
///     4      4    length     payload bytes that follow the header
///     8      8    requestID  chosen by the client; the reply carries the same id
///
/// Page contents never travel in frames: they go through the staging memfd (requests) and the
/// region memfd (replies). Frames are small, so limits on their size cost nothing.
public struct FrameHeader: Equatable, Sendable {
    public static let size = 16
    public static let magic: UInt16 = 0x5350
    /// Requests are tiny (the largest is a handful of integers).
    public static let maxRequestPayload: UInt32 = 64 * 1024
    /// Replies carry run lists; larger lists are split across frames.
    public static let maxReplyPayload: UInt32 = 1 << 20

    public var kind: UInt16
    public var length: UInt32
    public var requestID: UInt64

    public init(kind: UInt16, length: UInt32, requestID: UInt64) {
        self.kind = kind
        self.length = length
        self.requestID = requestID
    }
}

/// One decoded frame: its header and payload bytes.
public struct Frame: Equatable, Sendable {
    public var header: FrameHeader
    public var payload: ArraySlice<UInt8>

    public init(header: FrameHeader, payload: ArraySlice<UInt8>) {
        self.header = header
        self.payload = payload
    }
}
