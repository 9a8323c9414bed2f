import Testing
@testable import SamepageOperator

@Suite("TextTable")
struct TextTableTests {
    @Test func alignsColumnsTwoSpacesApartWithoutTrailingSpaces() {
        var table = TextTable(headers: ["NAME", "VALUE", "NOTE"], alignments: [.left, .right, .left])
        table.append(["pages_shared", "16384", "64.0 MiB"])
        table.append(["clients", "2", ""])
        #expect(table.render() == """
            NAME          VALUE  NOTE
            pages_shared  16384  64.0 MiB
            clients           2
            """)
    }

    @Test func shortRowsArePaddedAndLongRowsCut() {
        var table = TextTable(headers: ["A", "B"], alignments: [.left, .left])
        table.append(["x"])
        table.append(["1", "2", "3"])
        #expect(table.rows == [["x", ""], ["1", "2"]])
        #expect(table.render() == "A  B\nx\n1  2")
    }
}
