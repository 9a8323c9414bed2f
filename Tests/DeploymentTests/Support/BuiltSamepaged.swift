import Foundation

/// Facts read off the built samepaged: the options its --help documents and the shared
/// libraries ldd says it loads.
enum BuiltSamepaged {
    struct Missing: Error, CustomStringConvertible {
        var description: String
    }

    static func path(_ name: String = "samepaged") throws -> String {
        guard let dir = RepositoryFiles.binaries else { throw Missing(description: "no built \(name) next to the tests; run swift build") }
        return dir + "/" + name
    }

    /// Long options of `samepaged --help`.
    static func documentedOptions() throws -> Set<String> {
        let help = try RepositoryFiles.output(try path(), ["--help"])
        let options = SamepagedOptions.longOptions(inHelp: help.stdout)
        guard options.contains("socket") else { throw Missing(description: "samepaged --help lists no --socket: \(help.stdout)") }
        return options
    }

    /// The Debian packages providing the shared libraries `binary` loads, by ldd and dpkg.
    /// Libraries of the Swift toolchain (owned by no Debian package) are left out: the image
    /// links the Swift runtime statically.
    static func debianPackages(of binary: String) throws -> Set<String> {
        let ldd = try RepositoryFiles.output("/usr/bin/ldd", [try path(binary)])
        guard ldd.status == 0 else { throw Missing(description: "ldd failed on \(binary)") }
        var packages: Set<String> = []
        for line in ldd.stdout.split(separator: "\n") {
            guard let arrow = line.range(of: "=> ") else { continue }
            let library = String(line[arrow.upperBound...].prefix { $0 != " " })
            // The toolchain's libraries live outside the system's library folders: no dpkg owner.
            guard library.hasPrefix("/lib") || library.hasPrefix("/usr/lib") else { continue }
            if let package = try owner(of: library) { packages.insert(package) }
        }
        return packages
    }

    /// dpkg's owner of a file, trying the /usr path too (merged /usr: /lib is /usr/lib).
    private static func owner(of file: String) throws -> String? {
        let resolved = (try? FileManager.default.destinationOfSymbolicLink(atPath: file)).map {
            $0.hasPrefix("/") ? $0 : (file as NSString).deletingLastPathComponent + "/" + $0
        } ?? file
        for candidate in [file, resolved, "/usr" + file, "/usr" + resolved] {
            let result = try RepositoryFiles.output("/usr/bin/dpkg", ["-S", candidate])
            if result.status == 0, let name = result.stdout.split(separator: ":").first {
                return String(name)
            }
        }
        return nil
    }
}
