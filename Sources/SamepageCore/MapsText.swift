/// The text of /proc/PID/maps, parsed: what a scanner needs to know of each mapping.
public enum MapsText {
    public struct Mapping: Equatable, Sendable {
        public var start: UInt
        public var end: UInt
        public var readable: Bool
        public var writable: Bool
        public var isPrivate: Bool

        public init(start: UInt, end: UInt, readable: Bool, writable: Bool, isPrivate: Bool) {
            self.start = start
            self.end = end
            self.readable = readable
            self.writable = writable
            self.isPrivate = isPrivate
        }
    }

    /// Parses the text of /proc/PID/maps. Byte by byte, with no strings or arrays per line: with
    /// one mapping per scattered merge (~29k lines), splitting lines into Swift strings cost
    /// more than the kernel took to write them.
    public static func parse(_ text: UnsafeBufferPointer<UInt8>) -> [Mapping] {
        var mappings: [Mapping] = []
        var i = 0
        let n = text.count
        func hex(until terminator: UInt8) -> UInt? {
            var value: UInt = 0
            var digits = 0
            while i < n && text[i] != terminator {
                let c = text[i]
                let digit: UInt
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt(c - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt(c - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt(c - UInt8(ascii: "A") + 10)
                default: return nil
                }
                guard digits < 16 else { return nil }
                value = value << 4 | digit
                digits += 1
                i += 1
            }
            guard i < n, digits > 0 else { return nil }
            i += 1 // the terminator
            return value
        }
        while i < n {
            let lineStart = i
            if let start = hex(until: UInt8(ascii: "-")), let end = hex(until: UInt8(ascii: " ")),
               i + 4 <= n, !(i..<(i + 4)).contains(where: { text[$0] == UInt8(ascii: "\n") }) {
                mappings.append(Mapping(start: start, end: end, readable: text[i] == UInt8(ascii: "r"),
                                        writable: text[i + 1] == UInt8(ascii: "w"),
                                        isPrivate: text[i + 3] == UInt8(ascii: "p")))
            }
            i = max(i, lineStart)
            while i < n && text[i] != UInt8(ascii: "\n") { i += 1 }
            i += 1
        }
        return mappings
    }
}
