import Foundation
import Glibc
import SamepageClient
import SamepageCore

/// A real samepaged, started for one test on a socket of its own, stopped with SIGTERM.
final class ServerProcess: @unchecked Sendable {
    let socket: String
    let directory: String
    let process = Process()
    private let logPipe = Pipe()

    /// Starts a server; with `replacing`, on the socket of an earlier one (a restart).
    /// `openFiles` limits the server's file descriptors (RLIMIT_NOFILE, through prlimit).
    /// `environment` is added to the test's own (whose SAMEPAGE_* variables are left out).
    /// Without `standardArguments`, only `extraArguments` are passed, and the environment or a
    /// config file must name `directory/samepaged.sock` as the socket (`directory`: see
    /// `makeDirectory`).
    init(regionSize: String = "1G", extraArguments: [String] = [], replacing earlier: ServerProcess? = nil,
         openFiles: Int? = nil, directory given: String? = nil, environment: [String: String] = [:],
         standardArguments: Bool = true) throws {
        if let earlier {
            directory = earlier.directory
            socket = earlier.socket
        } else {
            directory = try given ?? Self.makeDirectory()
            socket = directory + "/samepaged.sock"
        }
        var inherited = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("SAMEPAGE_") }
        inherited.merge(environment) { $1 }
        process.environment = inherited
        let arguments = (standardArguments ? ["--socket", socket, "--region-size", regionSize, "--log-level", "warning"] : [])
            + extraArguments
        if let openFiles {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
            process.arguments = ["--nofile=\(openFiles):\(openFiles)", "--", Binaries.samepaged] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: Binaries.samepaged)
            process.arguments = arguments
        }
        process.standardError = logPipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(10)
        while (try? SamepageClient(socketPath: socket, stagingBytes: 8192)) == nil {
            guard process.isRunning, Date() < deadline else {
                throw TestFailure("samepaged did not start: \(log())")
            }
            usleep(10_000)
        }
    }

    var pid: Int32 { process.processIdentifier }

    /// A new directory for one server's socket and files.
    static func makeDirectory() throws -> String {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("samepage-test-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory
    }

    /// Sends SIGTERM and waits (at most `seconds`) for the exit: its status, or nil if the
    /// server was killed by a signal or did not exit in time.
    func terminateAndWait(seconds: Double = 10) -> Int32? {
        Glibc.kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        guard !process.isRunning else { return nil }
        return process.terminationReason == .exit ? process.terminationStatus : nil
    }

    func client(stagingBytes: Int = 8 << 20) throws -> SamepageClient {
        try SamepageClient(socketPath: socket, stagingBytes: stagingBytes)
    }

    /// The server's statistics as a dictionary, read by the CLI (`samepage stats --json`).
    func statistics() throws -> [String: Int64] {
        let result = try Command.samepage(["stats", "--json"], socket: socket)
        guard result.status == 0,
              let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        else { throw TestFailure("stats failed: \(result.stderr)") }
        return object.mapValues { ($0 as! NSNumber).int64Value }
    }

    /// `samepage clients --json`, parsed (as nobody with `asNobody`).
    func clients(asNobody: Bool = false) throws -> (total: Int, clients: [[String: Any]]) {
        let arguments = ["clients", "--json", "--socket", socket]
        let result = asNobody
            ? try Command.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", Binaries.samepage] + arguments)
            : try Command.run(Binaries.samepage, arguments)
        guard result.status == 0, let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any],
              let total = object["total"] as? Int, let clients = object["clients"] as? [[String: Any]]
        else { throw TestFailure("clients --json: \(result.status) \(result.stdout) \(result.stderr)") }
        return (total, clients)
    }

    /// Polls `condition` on the statistics until it holds or `seconds` pass.
    func waitForStatistics(seconds: Double = 10, _ condition: ([String: Int64]) -> Bool) throws -> [String: Int64] {
        let deadline = Date().addingTimeInterval(seconds)
        var stats = try statistics()
        while !condition(stats) && Date() < deadline {
            usleep(20_000)
            stats = try statistics()
        }
        return stats
    }

    /// Memory the server's region memfds hold (st_blocks of each file): what the region really
    /// takes, whether or not the server has its pages mapped (it maps new pages lazily).
    /// Each file counts once, however many fds the server has open on it (the region's own and
    /// the read-only one it hands to clients).
    func regionBytesAllocated() -> Int {
        var blocks: [UInt: Int] = [:]
        for fd in 0..<4096 {
            var target = [UInt8](repeating: 0, count: 256)
            let n = readlink("/proc/\(pid)/fd/\(fd)", &target, target.count - 1)
            guard n > 0, String(decoding: target[0..<n], as: UTF8.self).hasPrefix("/memfd:samepage-region-") else { continue }
            var st = stat()
            if stat("/proc/\(pid)/fd/\(fd)", &st) == 0 { blocks[UInt(st.st_ino)] = Int(st.st_blocks) }
        }
        return blocks.values.reduce(0, +) * 512
    }

    /// A field of /proc/PID/status in kB, such as RssShmem.
    func statusKilobytes(_ field: String) throws -> Int {
        let status = try readProcFile("/proc/\(pid)/status")
        for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])!
        }
        throw TestFailure("no \(field) in /proc/\(pid)/status")
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Kills the server with SIGKILL (no cleanup: the socket file stays behind).
    func kill() {
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func log() -> String {
        String(decoding: logPipe.fileHandleForReading.availableData, as: UTF8.self)
    }

    deinit { stop() }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Deterministic pseudo-random bytes, so failures reproduce.
func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    let pages = (count + 4095) / 4096
    var bytes = [UInt8](repeating: 0, count: pages * 4096)
    bytes.withUnsafeMutableBytes { PseudoRandomPages.fill($0, seed: seed) }
    return Array(bytes.prefix(count))
}

/// Writes bytes to a new file in `directory` and returns its path.
func writeFile(_ bytes: [UInt8], in directory: String, name: String) throws -> String {
    let path = directory + "/" + name
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
}

/// The whole of a /proc file (they report size 0, so read until the end).
func readProcFile(_ path: String) throws -> String {
    guard let handle = FileHandle(forReadingAtPath: path) else { throw TestFailure("cannot open \(path)") }
    defer { try? handle.close() }
    return String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
}
