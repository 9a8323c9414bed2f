import Foundation
import Glibc
import SamepageCore
import SamepageSystem

/// A minimal HTTP client for the metrics endpoint: one request per connection, read to the end.
enum HTTPProbe {
    struct Reply {
        var status: Int
        var body: String
    }

    static func get(_ path: String, at address: ListenAddress) throws -> Reply {
        let text = try exchange(Array("GET \(path) HTTP/1.1\r\nHost: test\r\n\r\n".utf8), at: address)
        guard let statusLine = text.split(separator: "\r\n").first, let status = Int(statusLine.split(separator: " ")[1]),
              let bodyStart = text.range(of: "\r\n\r\n") else { throw TestFailure("not an HTTP reply: \(text)") }
        return Reply(status: status, body: String(text[bodyStart.upperBound...]))
    }

    /// Sends `bytes` as they are and returns everything the endpoint answers before closing.
    static func exchange(_ bytes: [UInt8], at address: ListenAddress) throws -> String {
        let socket = try connect(address)
        UnixSocket.setReceiveTimeout(socket.rawValue, seconds: 10)
        try bytes.withUnsafeBytes { try UnixSocket.sendAll(socket.rawValue, $0) }
        var received: [UInt8] = []
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 1)
        defer { buffer.deallocate() }
        while true {
            let count = try Syscall.recv(socket.rawValue, buffer)
            if count == 0 { break }
            received += buffer.prefix(count)
        }
        return String(decoding: received, as: UTF8.self)
    }

    static func connect(_ address: ListenAddress) throws -> OwnedDescriptor {
        switch address {
        case .tcp(let host, let port): return try TCPSocket.connect(address: host, port: port)
        case .unix(let path): return try UnixSocket.connect(path: path)
        }
    }

    /// A loopback port nobody listens on right now (the kernel's pick, released again).
    static func freePort() throws -> UInt16 {
        let probe = try TCPSocket.listen(address: [127, 0, 0, 1], port: 0)
        return try Syscall.boundPort(probe.rawValue)
    }
}

/// The samples of a Prometheus text exposition, by series (`name{labels}` as written).
struct PrometheusScrape {
    var samples: [String: Double] = [:]

    init(_ text: String) {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
    }

    /// The value of `name` in the one series that has it (fails if none or several).
    func only(_ name: String) throws -> Double {
        let matching = samples.filter { $0.key == name || $0.key.hasPrefix(name + "{") }
        guard matching.count == 1, let value = matching.first?.value else {
            throw TestFailure("\(matching.count) series of \(name)")
        }
        return value
    }
}
