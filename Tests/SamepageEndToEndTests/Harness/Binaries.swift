import Foundation

/// Where the built executables are: next to the test bundle (that is where `swift build` puts
/// them), or `$SAMEPAGE_BIN_DIR`, or what `swift build --show-bin-path` says.
enum Binaries {
    static let directory: String = {
        if let dir = ProcessInfo.processInfo.environment["SAMEPAGE_BIN_DIR"] { return dir }
        var candidates: [String] = []
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            var url = URL(fileURLWithPath: exe).deletingLastPathComponent()
            // Inside Foo.xctest/... on some layouts: walk up until samepaged is found.
            for _ in 0..<4 {
                candidates.append(url.path)
                url = url.deletingLastPathComponent()
            }
        }
        for dir in candidates where FileManager.default.isExecutableFile(atPath: dir + "/samepaged") {
            return dir
        }
        let result = try! Command.run("/usr/bin/env", ["swift", "build", "--show-bin-path"])
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }()

    static var samepaged: String { directory + "/samepaged" }
    static var samepage: String { directory + "/samepage" }
    static var probe: String { directory + "/samepage-probe" }
    static var selftest: String { directory + "/samepage-ksm-selftest" }
}

/// A finished command.
struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
    var stdoutBytes: Data
}

enum Command {
    /// Runs a program to completion and captures its output.
    static func run(_ path: String, _ arguments: [String], environment: [String: String]? = nil) throws -> CommandResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let environment { process.environment = environment }
        // stdout through a pipe, stderr into a file: reading one pipe to its end cannot then
        // deadlock against a child blocked on the other.
        let out = Pipe()
        let errPath = FileManager.default.temporaryDirectory.appendingPathComponent("samepage-stderr-\(UUID().uuidString)").path
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: errPath) }
        let errFile = FileHandle(forWritingAtPath: errPath)!
        process.standardOutput = out
        process.standardError = errFile
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? errFile.close()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let errData = FileManager.default.contents(atPath: errPath) ?? Data()
        return CommandResult(status: process.terminationStatus,
                             stdout: String(decoding: outData, as: UTF8.self),
                             stderr: String(decoding: errData, as: UTF8.self),
                             stdoutBytes: outData)
    }

    /// `samepage ARGS --socket SOCKET`.
    static func samepage(_ arguments: [String], socket: String) throws -> CommandResult {
        try run(Binaries.samepage, arguments + ["--socket", socket])
    }
}

/// The number after `name=` in a probe's report line ("ok scans=3 merged=976").
func reportField(_ line: String, _ name: String) -> Int? {
    for part in line.split(whereSeparator: { $0 == " " || $0 == "\n" }) where part.hasPrefix(name + "=") {
        return Int(part.dropFirst(name.count + 1))
    }
    return nil
}
