import ArgumentParser
import SamepageOperator

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the statistics of your dedup domain (KSM's names; see docs/statistics.md).",
        discussion: """
            A table: each statistic, its value, and what pages and bytes amount to (region_bytes_used \
            as a share of your domain's region). --json prints the same values as one object whose \
            keys are the statistic names, for scripts.

            Examples:
              samepage stats
              samepage stats --json | jq .pages_sharing
            """)

    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Print one JSON object whose keys are the statistic names.") var json = false

    func run() throws {
        do {
            let client = try connection.connect()
            let stats = try client.statistics()
            print(json ? JSONText.statistics(stats) : StatisticsTable.render(stats, regionBytes: client.regionBytes))
        } catch {
            throw fail(error)
        }
    }
}
