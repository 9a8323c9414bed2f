import ArgumentParser
import Glibc
import SamepageClient
import SamepageCore
import SamepageSystem

@main
struct SamepageCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "samepage",
        abstract: "Talk to samepaged: store objects, read them back, watch the statistics.",
        discussion: """
            Examples:
              id=$(samepage put model.bin)      # prints the object id
              samepage get "$id" -o copy.bin
              samepage stats                    # your domain's statistics, as a table
              samepage clients                  # who is connected in your domain
              samepage top                      # both, refreshed every 2 s
              samepage delete "$id"

            Shell completions: samepage --generate-completion-script bash|zsh|fish
            (scripts/install-completions installs them).
            """,
        subcommands: [Put.self, Get.self, Delete.self, Stats.self, Clients.self, Top.self, Ping.self,
                      Bench.self, BenchWorker.self, Verify.self])

    /// ArgumentParser exits with 64 (EX_USAGE) on bad input; every samepage failure is exit
    /// status 1 (README), so usage errors are reported the same way, with the same message.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            guard exitCode(for: error) == .validationFailure else { exit(withError: error) }
            var stderr = StandardError()
            print(fullMessage(for: error), to: &stderr)
            exit(withError: ExitCode(1))
        }
    }
}

/// The option every subcommand takes.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: "Socket path (default: $SAMEPAGE_SOCKET, then the server's default path).")
    var socket: String?

    func connect() throws -> SamepageClient {
        try SamepageClient(socketPath: socket ?? DefaultSocketPath.resolve(), name: "samepage-cli")
    }
}

/// Prints a failure the way every subcommand does: one line on stderr, exit status 1.
func fail(_ error: any Error) -> ExitCode {
    var stderr = StandardError()
    print("samepage: \(error)", to: &stderr)
    return ExitCode(1)
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        var bytes = Array(string.utf8)
        _ = Glibc.write(2, &bytes, bytes.count)
    }
}

/// Standard output without stdio's buffer.
struct UnbufferedOutput: TextOutputStream {
    mutating func write(_ string: String) {
        var bytes = Array(string.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.write(1, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }
            done += n
        }
    }
}

/// A failure described in words.
struct CLIError: Error, CustomStringConvertible {
    var description: String
}

func parseID(_ text: String) throws -> ObjectID {
    guard let id = ObjectID(text) else { throw ValidationError("'\(text)' is not an object id (32 hex digits)") }
    return id
}

struct Put: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Store a file as an object and print its id.",
        discussion: """
            The object outlives this command; remove it with `samepage delete ID`. Use - for stdin.

            Examples:
              id=$(samepage put model.bin)
              tar c data/ | samepage put -
            """)

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The file to store (- for standard input).") var file: String

    func run() throws {
        do {
            let client = try connection.connect()
            let id: ObjectID
            if file == "-" {
                var bytes: [UInt8] = []
                var chunk = [UInt8](repeating: 0, count: 1 << 16)
                while true {
                    let n = read(0, &chunk, chunk.count)
                    if n <= 0 { break }
                    bytes.append(contentsOf: chunk[0..<n])
                }
                id = try client.put(bytes)
            } else {
                let fd = open(file, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { throw ValidationError("cannot open \(file): \(String(cString: strerror(errno)))") }
                defer { close(fd) }
                var st = stat()
                fstat(fd, &st)
                id = try client.put(length: UInt64(st.st_size)) { offset, destination throws(SamepageError) in
                    var done = 0
                    while done < destination.count {
                        let n = pread(fd, destination.baseAddress! + done, destination.count - done, off_t(offset) + off_t(done))
                        if n < 0 && errno == EINTR { continue }
                        guard n > 0 else { throw .invalidArgument("\(file) changed size while being read") }
                        done += n
                    }
                }
            }
            print(id)
        } catch let error as ValidationError {
            throw error
        } catch {
            throw fail(error)
        }
    }
}

struct Get: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write an object's bytes to stdout or a file.",
        discussion: """
            Examples:
              samepage get "$id" -o copy.bin
              samepage get "$id" | sha256sum
            """)

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The object id that `samepage put` printed.") var id: String
    @Option(name: .shortAndLong, help: "Write to this file instead of stdout.") var output: String?

    func run() throws {
        let id = try parseID(id)
        do {
            let client = try connection.connect()
            let mapping = try client.map(id)
            let fd = output.map { open($0, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) } ?? 1
            guard fd >= 0 else { throw ValidationError("cannot create \(output!): \(String(cString: strerror(errno)))") }
            var done = 0
            while done < mapping.length {
                let n = write(fd, mapping.base + done, mapping.length - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw ValidationError("write failed: \(String(cString: strerror(errno)))") }
                done += n
            }
            if fd != 1 { close(fd) }
            try mapping.unmap()
        } catch let error as ValidationError {
            throw fail(CLIError(description: error.message))
        } catch {
            throw fail(error)
        }
    }
}

struct Delete: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete an object. Its pages go when the last mapping of it goes.",
        discussion: """
            Examples:
              samepage delete 0123456789abcdef0123456789abcdef
            """)

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The object id.") var id: String

    func run() throws {
        let id = try parseID(id)
        do {
            try connection.connect().delete(id)
        } catch {
            throw fail(error)
        }
    }
}

struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that samepaged answers; prints the round trip.",
        discussion: """
            Exit status 0 when the server answered, 1 otherwise: the container HEALTHCHECK and the
            Kubernetes readiness probe use it.

            Examples:
              samepage ping
              samepage ping --socket /run/samepage/samepaged.sock
            """)

    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        do {
            let client = try connection.connect()
            let clock = ContinuousClock()
            let elapsed = try clock.measure { try client.ping() }
            let micros = Double(elapsed.components.seconds) * 1e6 + Double(elapsed.components.attoseconds) / 1e12
            print("samepaged at \(client.socketPath): pong in \(Int(micros.rounded())) µs")
        } catch {
            throw fail(error)
        }
    }
}

extension String {
    func padding(to width: Int) -> String {
        self + String(repeating: " ", count: max(0, width - count))
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the server's bookkeeping for your domain (a server started with --self-check).",
        shouldDisplay: false)

    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        do {
            try connection.connect().verify()
            print("ok")
        } catch {
            throw fail(error)
        }
    }
}
