import ArgumentParser
import SamepageOperator
import SamepageSystem

struct Clients: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the clients connected in your dedup domain.",
        discussion: """
            One row per connection: pid, uid, the name the client gave, objects it has mapped, \
            uploads it has open, pages of its memory under merge scanning (MERGEABLE) and merged \
            with the region (MERGED), requests served, and when it connected (UTC). This command's \
            own connection is marked with *. Clients of other dedup domains are never shown: the \
            server answers for the caller's domain only (docs/security.md).

            Examples:
              samepage clients
              samepage clients --json | jq '.clients[] | select(.objects_mapped > 0) | .pid'
            """)

    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Print {\"total\": N, \"clients\": [...]} with one object per client.") var json = false

    func run() throws {
        do {
            let list = try connection.connect().clients()
            print(json ? JSONText.clients(list) : ClientsTable.render(list, now: Syscall.wallClockSeconds()))
        } catch {
            throw fail(error)
        }
    }
}
