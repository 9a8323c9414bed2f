import Glibc
import SamepageCore
import SamepageSystem

/// The checks of `--check-config` that need the file system: that samepaged could create its
/// socket (and a unix: metrics socket) where the settings say. Read-only: nothing is created.
enum ConfigCheck {
    static func problems(_ settings: SamepagedSettings) -> [String] {
        var problems: [String] = []
        let socket = settings.socket ?? DefaultSocketPath.resolve()
        if let problem = socketProblem(socket, mayCreateDirectory: true) { problems.append("socket '\(socket)': \(problem)") }
        if case .unix(let path)? = settings.metricsListen,
           let problem = socketProblem(path, mayCreateDirectory: false) {
            problems.append("metrics-listen 'unix:\(path)': \(problem)")
        }
        return problems
    }

    /// Why a Unix socket could not be made at `path`, or nil. samepaged creates a missing
    /// socket directory (DefaultSocketPath.prepareDirectory), so then the nearest existing
    /// ancestor must be writable.
    static func socketProblem(_ path: String, mayCreateDirectory: Bool) -> String? {
        guard path.utf8.count < 108 else { return "longer than the 107 bytes a Unix socket path may have" }
        let directory = path.lastIndex(of: "/").map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        var existing = directory
        while (try? Syscall.fileType(existing)) == nil {
            guard mayCreateDirectory, let slash = existing.lastIndex(of: "/"), existing != "/" else {
                return "directory \(directory) does not exist"
            }
            existing = slash == existing.startIndex ? "/" : String(existing[..<slash])
        }
        guard (try? Syscall.fileType(existing)) == S_IFDIR else { return "\(existing) is not a directory" }
        if (try? Syscall.access(existing, W_OK | X_OK)) == nil {
            return existing == directory ? "directory \(directory) is not writable by this user"
                                         : "directory \(directory) is missing and \(existing) is not writable by this user"
        }
        if (try? UnixSocket.connect(path: path)) != nil { return "a server is already listening there" }
        return nil
    }
}
