/// The request line of an HTTP/1.x request, as the metrics endpoint needs it: method and path.
/// Headers are skipped (nothing here depends on them) but must end within the size bound.
public struct HTTPRequestHead: Equatable, Sendable {
    public var method: String
    /// The path without its query string.
    public var path: String

    public enum ParseResult: Equatable, Sendable {
        /// No blank line yet: read more (up to the bound).
        case incomplete
        case request(HTTPRequestHead)
        /// Not an HTTP/1.x request: answer 400.
        case malformed
    }

    /// Parses `bytes` received so far.
    public static func parse(_ bytes: some Collection<UInt8>) -> ParseResult {
        let data = Array(bytes)
        guard let end = headEnd(data) else {
            // A first line that already cannot be HTTP need not wait for more bytes.
            if let newline = data.firstIndex(of: 10), parseLine(data[..<newline]) == nil { return .malformed }
            return .incomplete
        }
        let lineEnd = data[..<end].firstIndex(of: 10) ?? end
        guard let head = parseLine(data[..<lineEnd]) else { return .malformed }
        return .request(head)
    }

    /// Index just past the blank line that ends the head ("\r\n\r\n" or, leniently, "\n\n").
    private static func headEnd(_ data: [UInt8]) -> Int? {
        var index = 0
        while index < data.count {
            if data[index] == 10 {
                if index + 1 < data.count, data[index + 1] == 10 { return index + 2 }
                if index + 2 < data.count, data[index + 1] == 13, data[index + 2] == 10 { return index + 3 }
            }
            index += 1
        }
        return nil
    }

    private static func parseLine(_ line: ArraySlice<UInt8>) -> HTTPRequestHead? {
        var bytes = line
        if bytes.last == 13 { bytes = bytes.dropLast() }
        guard bytes.allSatisfy({ $0 >= 32 && $0 < 127 }) else { return nil }
        let parts = String(decoding: bytes, as: UTF8.self).split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy(\.isUppercase),
              parts[1].hasPrefix("/"), parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0" else { return nil }
        let path = parts[1].split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
        return HTTPRequestHead(method: String(parts[0]), path: String(path))
    }
}
