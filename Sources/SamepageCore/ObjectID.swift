/// The name of a stored object: 128 random bits, never derived from content, so an id tells
/// nothing about what the object holds or whether anyone else stored the same bytes.
public struct ObjectID: Hashable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    public static func random<G: RandomNumberGenerator>(using generator: inout G) -> ObjectID {
        ObjectID(high: generator.next(), low: generator.next())
    }

    public static func random() -> ObjectID {
        var g = SystemRandomNumberGenerator()
        return random(using: &g)
    }

    /// 32 lowercase hex digits.
    public var description: String {
        hex(high) + hex(low)
    }

    /// Parses the 32 hex digits that `description` prints.
    public init?(_ text: String) {
        let utf8 = Array(text.utf8)
        guard utf8.count == 32,
              let high = Self.parseHex(utf8[0..<16]), let low = Self.parseHex(utf8[16..<32])
        else { return nil }
        self.init(high: high, low: low)
    }

    private static func parseHex(_ digits: ArraySlice<UInt8>) -> UInt64? {
        var value: UInt64 = 0
        for d in digits {
            let nibble: UInt8
            switch d {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = d - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = d - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = d - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt64(nibble)
        }
        return value
    }

    private func hex(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
