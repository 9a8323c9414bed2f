import SamepageCore
import Testing
@testable import SamepageOperator

private let stats = [
    Statistic(name: "pages_shared", value: 16384), Statistic(name: "pages_sharing", value: 0),
    Statistic(name: "general_profit", value: -4096), Statistic(name: "region_bytes_used", value: 64 << 20),
    Statistic(name: "objects", value: 2), Statistic(name: "clients", value: 3),
]

@Suite("stats, clients and top text")
struct OperatorTextTests {
    @Test func statisticsTableShowsRawValuesAndWhatTheyAmountTo() {
        let lines = StatisticsTable.render(stats, regionBytes: 1 << 30).split(separator: "\n").map(String.init)
        #expect(lines[0] == "STATISTIC             VALUE  AMOUNTS TO", "headers align with their column")
        #expect(lines[1] == "pages_shared          16384  64.0 MiB", "values right-aligned")
        #expect(lines[2] == "pages_sharing             0", "zero pages need no gloss")
        #expect(lines[3] == "general_profit        -4096  -4.0 KiB")
        #expect(lines[4] == "region_bytes_used  67108864  64.0 MiB of 1.0 GiB (6.3%)")
        #expect(lines[6] == "clients                   3")
        #expect(lines.count == 7)
    }

    @Test func statisticsJSONKeepsItsShape() {
        #expect(JSONText.statistics(Array(stats.prefix(2))) == "{\"pages_shared\": 16384, \"pages_sharing\": 0}")
        #expect(JSONText.statistics([]) == "{}")
    }

    @Test func jsonStringsAreEscaped() {
        #expect(JSONText.quoted("a\"b\\c\n\u{01}é") == "\"a\\\"b\\\\c\\n\\u0001é\"")
    }

    @Test func clientsJSONHasEveryField() {
        let list = ClientList(clients: [ClientInfo(pid: 7, uid: 1000, name: "w\"x", objectsMapped: 2, uploadsOpen: 1,
                                                   mergeablePages: 5, mergedPages: 4, requestsServed: 9,
                                                   connectedSince: 1_700_000_000, isCaller: true)], total: 3)
        #expect(JSONText.clients(list) == """
            {"total": 3, "clients": [{"pid": 7, "uid": 1000, "name": "w\\"x", "objects_mapped": 2, "uploads_open": 1, \
            "mergeable_pages": 5, "merged_pages": 4, "requests_served": 9, "connected_since": 1700000000, "self": true}]}
            """)
    }

    @Test func utcTimesAndAges() {
        #expect(TimeText.utc(0) == "1970-01-01 00:00:00Z")
        #expect(TimeText.utc(1_700_000_000) == "2023-11-14 22:13:20Z")
        #expect(TimeText.utc(951_782_400) == "2000-02-29 00:00:00Z", "a leap day")
        #expect(TimeText.utc(-1) == "1969-12-31 23:59:59Z")
        #expect(TimeText.age(-5) == "0s")
        #expect(TimeText.age(45) == "45s")
        #expect(TimeText.age(192) == "3m12s")
        #expect(TimeText.age(7500) == "2h05m")
        #expect(TimeText.age(3 * 86_400 + 4 * 3600 + 59) == "3d04h")
    }

    @Test func clientsTableMarksTheCallerAndSaysWhatIsNotShown() {
        let list = ClientList(clients: [
            ClientInfo(pid: 4242, uid: 1000, name: "writer", objectsMapped: 3, uploadsOpen: 1, mergeablePages: 100,
                       mergedPages: 50, requestsServed: 12, connectedSince: 1_700_000_000),
            ClientInfo(pid: 17, uid: 1000, name: "", requestsServed: 1, connectedSince: 1_700_000_190, isCaller: true),
        ], total: 5)
        let lines = ClientsTable.render(list, now: 1_700_000_192).split(separator: "\n").map(String.init)
        #expect(lines.count == 5)
        let first = lines[1].split(separator: " ").map(String.init)
        #expect(first == ["4242", "1000", "writer", "3", "1", "100", "50", "12", "2023-11-14", "22:13:20Z", "(3m12s", "ago)"])
        let second = lines[2].split(separator: " ").map(String.init)
        #expect(second.prefix(4) == ["*", "17", "1000", "-"])
        #expect(second.suffix(2) == ["(2s", "ago)"])
        #expect(lines[3] == "(3 more clients not shown)")
        #expect(lines[4] == "* this command's own connection")
    }

    @Test func ratesArePerSecondBetweenSamples() {
        let earlier = StatisticsSample(statistics: [Statistic(name: "pages_sharing", value: 100),
                                                    Statistic(name: "full_scans", value: 4)], time: 10)
        let later = StatisticsSample(statistics: [Statistic(name: "pages_sharing", value: 350),
                                                  Statistic(name: "full_scans", value: 3),
                                                  Statistic(name: "objects", value: 1)], time: 10.5)
        let rates = StatisticRates.perSecond(from: earlier, to: later)
        #expect(rates == ["pages_sharing": 500, "full_scans": -2], "objects was not in the earlier sample")
        #expect(StatisticRates.perSecond(from: later, to: earlier).isEmpty, "samples out of order")
        #expect(StatisticRates.perSecond(from: earlier, to: earlier).isEmpty, "no time passed")
        #expect(StatisticRates.format(500) == "+500.0/s")
        #expect(StatisticRates.format(-2.25) == "-2.3/s" || StatisticRates.format(-2.25) == "-2.2/s")
        #expect(StatisticRates.format(0) == "0/s")
    }

    @Test func topFrameHasStatisticsWithRatesThenClients() {
        let clients = ClientList(clients: [ClientInfo(pid: 9, uid: 0, name: "app", objectsMapped: 1, connectedSince: 100)])
        let first = StatisticsSample(statistics: [Statistic(name: "pages_sharing", value: 10)], time: 1)
        let second = StatisticsSample(statistics: [Statistic(name: "pages_sharing", value: 30)], time: 3)
        var frame = TopFrame(socketPath: "/s.sock", interval: 2, now: 160, regionBytes: 1 << 20,
                             current: first, previous: nil, clients: clients)
        let noRates = frame.render().split(separator: "\n").map(String.init)
        #expect(noRates[0] == "samepage top: /s.sock, 1970-01-01 00:02:40Z, every 2.0 s")
        #expect(noRates.contains { $0.split(separator: " ") == ["pages_sharing", "10", "-", "40.0", "KiB"] })
        frame.current = second
        frame.previous = first
        let lines = frame.render().split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.split(separator: " ") == ["pages_sharing", "30", "+10.0/s", "120.0", "KiB"] })
        let clientsAt = lines.firstIndex(of: "clients of this domain: 1")
        #expect(clientsAt.map { lines[$0 + 2].split(separator: " ").prefix(4) == ["9", "0", "app", "1"] } == true)
    }
}
