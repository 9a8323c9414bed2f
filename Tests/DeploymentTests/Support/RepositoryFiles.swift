import Foundation

/// The repository's files and built binaries, for the deployment checks.
enum RepositoryFiles {
    /// The repository root: three levels above this file (Tests/DeploymentTests/Support).
    static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func text(_ relativePath: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(relativePath), encoding: .utf8)
    }

    /// Every .yaml and .yml file under a folder of the repository, sorted.
    static func yamlFiles(under folder: String) throws -> [String] {
        let names = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent(folder).path)
        return names.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted().map { folder + "/" + $0 }
    }

    /// The folder holding the built executables: next to the test bundle, or $SAMEPAGE_BIN_DIR.
    static let binaries: String? = {
        if let dir = ProcessInfo.processInfo.environment["SAMEPAGE_BIN_DIR"] { return dir }
        guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return nil }
        var url = URL(fileURLWithPath: exe).deletingLastPathComponent()
        for _ in 0..<4 {
            if FileManager.default.isExecutableFile(atPath: url.path + "/samepaged") { return url.path }
            url = url.deletingLastPathComponent()
        }
        return nil
    }()

    /// Runs a program and returns its standard output (standard error is discarded).
    static func output(_ path: String, _ arguments: [String]) throws -> (status: Int32, stdout: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
