import Testing

/// deploy/systemd/samepaged.service: the options it passes exist, and it runs unprivileged with
/// the socket in its runtime directory.
@Suite("systemd unit")
struct SystemdUnitTests {
    /// Key -> values (a key may repeat), across sections.
    func unit() throws -> [String: [String]] {
        var keys: [String: [String]] = [:]
        for line in try RepositoryFiles.text("deploy/systemd/samepaged.service").split(separator: "\n") {
            guard !line.hasPrefix("#"), !line.hasPrefix("["), let eq = line.firstIndex(of: "=") else { continue }
            keys[String(line[..<eq]), default: []].append(String(line[line.index(after: eq)...]))
        }
        return keys
    }

    @Test func execStartRunsSamepagedWithDocumentedOptions() throws {
        let keys = try unit()
        let exec = try #require(keys["ExecStart"]?.first).split(separator: " ").map(String.init)
        #expect(exec.first?.hasSuffix("/samepaged") == true)
        let options = try BuiltSamepaged.documentedOptions()
        for word in exec where word.hasPrefix("--") {
            #expect(options.contains(String(word.dropFirst(2))), "samepaged has no \(word)")
        }
        let socket = try #require(exec.firstIndex(of: "--socket").map { exec[$0 + 1] })
        #expect(keys["Environment"]?.contains("SAMEPAGE_SOCKET=\(socket)") == true, "the CLI finds the same socket")
        let runtimeDirectory = try #require(keys["RuntimeDirectory"]?.first)
        #expect(PodSpecs.directory(of: socket) == "/run/" + runtimeDirectory)
    }

    @Test func runsUnprivileged() throws {
        let keys = try unit()
        #expect(keys["User"]?.first == "samepage")
        #expect(keys["NoNewPrivileges"]?.first == "yes")
        #expect(keys["CapabilityBoundingSet"]?.first == "")
        #expect(keys["MemoryMax"] != nil, "the region is charged to the service's cgroup")
        #expect(keys["SystemCallFilter"] == nil, "a filter would have to allow io_uring")
    }
}
