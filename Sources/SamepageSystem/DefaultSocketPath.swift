import Glibc

/// Where client and server meet when no `--socket` is given:
///   1. `$SAMEPAGE_SOCKET`;
///   2. `$XDG_RUNTIME_DIR/samepage/samepaged.sock` (systemd's per-user runtime directory);
///   3. `/run/samepage/samepaged.sock` for root;
///   4. `/tmp/samepage-$UID/samepaged.sock` otherwise.
public enum DefaultSocketPath {
    public static var environmentVariable: String { "SAMEPAGE_SOCKET" }

    public static func resolve() -> String {
        if let path = env("SAMEPAGE_SOCKET"), !path.isEmpty { return path }
        if let runtime = env("XDG_RUNTIME_DIR"), !runtime.isEmpty { return runtime + "/samepage/samepaged.sock" }
        let uid = getuid()
        return uid == 0 ? "/run/samepage/samepaged.sock" : "/tmp/samepage-\(uid)/samepaged.sock"
    }

    private static func env(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    /// Creates the socket's directory (mode 0755 so that other uids can reach a socket whose own
    /// mode lets them in) if it is missing.
    public static func prepareDirectory(for socketPath: String) {
        guard let slash = socketPath.lastIndex(of: "/"), slash != socketPath.startIndex else { return }
        let directory = String(socketPath[..<slash])
        var path = ""
        for component in directory.split(separator: "/") {
            path += "/" + component
            _ = mkdir(path, 0o755)
        }
    }
}
