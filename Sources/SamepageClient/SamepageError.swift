import SamepageCore
import SystemPackage

/// Everything a Samepage call can fail with.
public enum SamepageError: Error, Equatable, CustomStringConvertible {
    /// Nothing accepted a connection at this socket path.
    case serverNotRunning(socketPath: String, Errno)
    /// The server answered with an error; the connection is still usable.
    case server(ErrorCode, String)
    /// The server went away (or closed this connection after a protocol violation).
    case connectionLost(String)
    /// A system call on the client's side failed.
    case system(String, Errno)
    /// The server sent something this client does not understand.
    case protocolViolation(String)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .serverNotRunning(let path, let errno) where errno == .permissionDenied:
            "permission denied connecting to samepaged at \(path): the socket's mode (samepaged --socket-mode) or its directory does not let this user in"
        case .serverNotRunning(let path, let errno):
            "samepaged is not running at \(path) (\(errno)); start it with `samepaged --socket \(path)` or set SAMEPAGE_SOCKET"
        case .server(let code, let message): "\(code.name): \(message)"
        case .connectionLost(let why): "connection to samepaged lost: \(why)"
        case .system(let what, let errno): "\(what): \(errno)"
        case .protocolViolation(let what): "protocol violation: \(what)"
        case .invalidArgument(let what): "invalid argument: \(what)"
        }
    }

    /// The server's error code, if the server refused the request.
    public var serverCode: ErrorCode? {
        if case .server(let code, _) = self { return code }
        return nil
    }
}

extension ErrorCode {
    public var name: String {
        switch self {
        case .badRequest: "bad request"
        case .unsupportedVersion: "unsupported protocol version"
        case .unknownObject: "unknown object"
        case .unknownHandle: "unknown handle"
        case .regionFull: "region full"
        case .limitExceeded: "limit exceeded"
        case .notPermitted: "not permitted"
        case .badStaging: "bad staging memory"
        case .internalError: "internal error"
        }
    }
}
