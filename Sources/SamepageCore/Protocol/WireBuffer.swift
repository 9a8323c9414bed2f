/// Little-endian encoding of the protocol's fixed-width fields. Both ends run on the same host,
/// but a fixed byte order keeps the format a documented format rather than a memory dump.
public struct WireWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func write<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// `count` fixed-width values, the `i`th being `value(i)`: grown once and stored in place,
    /// where a write per value grew the array for each (scan requests and replies carry
    /// thousands of values).
    public mutating func write<T: FixedWidthInteger>(count: Int, _ value: (Int) -> T) {
        let size = MemoryLayout<T>.size
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: count * size))
        bytes.withUnsafeMutableBytes { raw in
            for i in 0..<count { raw.storeBytes(of: value(i).littleEndian, toByteOffset: start + i * size, as: T.self) }
        }
    }

    /// A string as a u16 length and its UTF-8 bytes (truncated to 65535 bytes).
    public mutating func write(_ string: String) {
        let utf8 = Array(string.utf8.prefix(Int(UInt16.max)))
        write(UInt16(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    public mutating func write(_ id: ObjectID) {
        write(id.high)
        write(id.low)
    }

    /// Overwrites a u32 written earlier (frame lengths are known only at the end).
    public mutating func patch(_ value: UInt32, at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { raw in
            for i in 0..<4 { bytes[offset + i] = raw[i] }
        }
    }
}

/// Reads what `WireWriter` wrote; every read is bounds-checked and a short buffer is an error,
/// never a trap, because the bytes come from another process.
public struct WireReader {
    private let bytes: ArraySlice<UInt8>
    private var offset: Int

    public init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.offset = bytes.startIndex
    }

    public var remaining: Int { bytes.endIndex - offset }

    public mutating func read<T: FixedWidthInteger>(_: T.Type = T.self) throws(ProtocolError) -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw .truncated }
        // One unaligned load, bounds checked above (a byte-by-byte copy checked every byte).
        let value = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset - bytes.startIndex, as: T.self) }
        offset += size
        return T(littleEndian: value)
    }

    public mutating func readString() throws(ProtocolError) -> String {
        let count = Int(try read(UInt16.self))
        guard remaining >= count else { throw .truncated }
        let slice = bytes[offset..<offset + count]
        offset += count
        return String(decoding: slice, as: UTF8.self)
    }

    public mutating func readObjectID() throws(ProtocolError) -> ObjectID {
        let high: UInt64 = try read()
        let low: UInt64 = try read()
        return ObjectID(high: high, low: low)
    }

    /// A message must use every byte of its payload: trailing bytes mean the peer speaks another
    /// format, and accepting them would hide the bug.
    public func expectEnd() throws(ProtocolError) {
        guard remaining == 0 else { throw .trailingBytes }
    }
}
