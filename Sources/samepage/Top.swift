import ArgumentParser
import SamepageOperator
import SamepageSystem

struct Top: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Watch your domain's statistics, their rates and its clients, refreshed.",
        discussion: """
            Each frame shows every statistic with its change per second since the previous frame \
            (pages_sharing growing at +500/s is 500 pages merged per second), then the clients \
            table of `samepage clients`. On a terminal the screen is cleared between frames; \
            otherwise frames follow each other, each starting with its "samepage top:" line. \
            Without -n or --once it runs until interrupted.

            Examples:
              samepage top
              samepage top --interval 0.5
              samepage top --once > snapshot.txt
              samepage top -n 2 --interval 1 > two-frames.txt
            """)

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Seconds between frames (more than 0, at most 3600).") var interval: Double = 2
    @Option(name: [.customShort("n"), .customLong("iterations")], help: ArgumentHelp("Frames to show, then exit.", valueName: "count"))
    var count: Int?
    @Flag(help: "Show one frame and exit (same as -n 1).") var once = false

    func validate() throws {
        guard interval.isFinite, interval > 0, interval <= 3600 else {
            throw ValidationError("--interval must be a number of seconds above 0 and at most 3600")
        }
        if let count, count < 1 { throw ValidationError("-n must be at least 1") }
        if once, let count, count != 1 { throw ValidationError("--once and -n \(count) disagree") }
    }

    func run() throws {
        let frames = once ? 1 : count
        let terminal = Syscall.isTerminal(1)
        let clock = ContinuousClock()
        let start = clock.now
        func seconds() -> Double {
            let elapsed = clock.now - start
            return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        }
        do {
            let client = try connection.connect()
            var previous: StatisticsSample?
            var shown = 0
            while frames.map({ shown < $0 }) ?? true {
                if shown > 0 { Syscall.sleep(seconds: interval) }
                let sample = StatisticsSample(statistics: try client.statistics(), time: seconds())
                let frame = TopFrame(socketPath: client.socketPath, interval: interval, now: Syscall.wallClockSeconds(),
                                     regionBytes: client.regionBytes, current: sample, previous: previous,
                                     clients: try client.clients())
                // Clear and home the cursor only on a terminal: in a pipe or a file the escape
                // codes would be noise, and frames stay apart by their first line.
                // Unbuffered, so that `samepage top | tee log` shows each frame when it is made.
                var out = UnbufferedOutput()
                print((terminal ? "\u{1B}[H\u{1B}[2J" : (shown > 0 ? "\n" : "")) + frame.render(), to: &out)
                previous = sample
                shown += 1
            }
        } catch {
            throw fail(error)
        }
    }
}
