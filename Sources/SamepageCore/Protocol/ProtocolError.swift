/// Violations of the wire format. Any of them ends the connection that sent it (and only that
/// one): after a framing error the byte stream can no longer be trusted.
public enum ProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    case badMagic(UInt16)
    case oversizedFrame(length: UInt32, limit: UInt32)
    case unknownKind(UInt16)
    case truncated
    case trailingBytes
    case badValue(String)

    public var description: String {
        switch self {
        case .badMagic(let m): "bad frame magic 0x\(String(m, radix: 16))"
        case .oversizedFrame(let length, let limit): "frame of \(length) bytes exceeds the limit of \(limit)"
        case .unknownKind(let k): "unknown message kind \(k)"
        case .truncated: "message shorter than its fields"
        case .trailingBytes: "message longer than its fields"
        case .badValue(let what): "invalid field: \(what)"
        }
    }
}
