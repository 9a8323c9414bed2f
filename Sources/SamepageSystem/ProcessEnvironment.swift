import Glibc
import SystemPackage

/// The process's environment and small text files, for configuration (the server reads these
/// once, at start, before any thread exists).
public enum ProcessEnvironment {
    /// Every variable of the environment, by name.
    public static func current() -> [String: String] {
        var result: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            entry += 1
        }
        return result
    }

    /// The whole of a file as UTF-8 text; at most `limit` bytes (a config file is small, and
    /// a wrong path pointing at something huge should fail, not exhaust memory).
    public static func readTextFile(_ path: String, limit: Int = 1 << 20) throws(Errno) -> String {
        let fd = OwnedDescriptor(taking: try Syscall.open(path, O_RDONLY))
        var bytes: [UInt8] = []
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 16384, alignment: 1)
        defer { chunk.deallocate() }
        while true {
            let count = try Syscall.read(fd.rawValue, chunk)
            if count == 0 { break }
            bytes += chunk.prefix(count)
            if bytes.count > limit { throw Errno.fileTooLarge }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
