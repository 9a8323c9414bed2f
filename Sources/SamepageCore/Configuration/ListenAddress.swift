/// Where the metrics endpoint listens: `HOST:PORT` (TCP, a numeric IPv4 address; port 0 picks
/// a free port, which the server logs) or `unix:PATH` (a Unix socket, for a sidecar that scrapes
/// through a shared volume).
public enum ListenAddress: Equatable, Sendable, CustomStringConvertible {
    case tcp(address: [UInt8], port: UInt16)
    case unix(path: String)

    public static func parse(_ text: String) -> ListenAddress? {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            // sun_path holds 108 bytes with the terminating zero.
            guard path.hasPrefix("/"), path.utf8.count < 108 else { return nil }
            return .unix(path: path)
        }
        guard let colon = text.lastIndex(of: ":"),
              let port = UInt16(text[text.index(after: colon)...]) else { return nil }
        let parts = text[..<colon].split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var address: [UInt8] = []
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy(\.isASCII), let byte = UInt8(part) else { return nil }
            address.append(byte)
        }
        return .tcp(address: address, port: port)
    }

    public var description: String {
        switch self {
        case .tcp(let address, let port): address.map(String.init).joined(separator: ".") + ":\(port)"
        case .unix(let path): "unix:" + path
        }
    }
}
