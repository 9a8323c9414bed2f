@testable import SamepageClient
import SamepageCore
import Testing

/// ProcessMaps.MergeableCursor: the scanner's per-page "is this private writable memory?", which
/// remembers the mapping found last. It must answer what a search of the maps answers, for
/// addresses in order, out of order, in gaps and past the end.
struct MergeableCursorTests {
    static let maps = ProcessMaps(mappings: [
        MapsText.Mapping(start: 0x1000, end: 0x3000, readable: true, writable: true, isPrivate: true),
        MapsText.Mapping(start: 0x3000, end: 0x4000, readable: true, writable: false, isPrivate: true),
        MapsText.Mapping(start: 0x4000, end: 0x6000, readable: true, writable: true, isPrivate: false),
        MapsText.Mapping(start: 0x8000, end: 0x9000, readable: true, writable: true, isPrivate: true),
        MapsText.Mapping(start: 0x9000, end: 0xA000, readable: false, writable: false, isPrivate: true),
    ])

    static func searched(_ address: UInt) -> Bool {
        guard let mapping = maps.mapping(containing: address) else { return true }
        return mapping.readable && mapping.writable && mapping.isPrivate
    }

    @Test("pages in ascending order, across neighbouring mappings and a gap")
    func ascending() {
        var cursor = ProcessMaps.MergeableCursor(Self.maps)
        for address in stride(from: UInt(0), to: 0xC000, by: 0x1000) {
            let answer = cursor.isMergeable(address)
            #expect(answer == Self.searched(address), "address \(address)")
        }
    }

    @Test("pages out of order: the cursor falls back to a search")
    func outOfOrder() {
        var cursor = ProcessMaps.MergeableCursor(Self.maps)
        for address: UInt in [0x9000, 0x1000, 0x5000, 0x3000, 0x8000, 0x2000, 0x7000, 0x9000, 0x4000, 0x2FFF, 0x3000] {
            let answer = cursor.isMergeable(address)
            #expect(answer == Self.searched(address), "address \(address)")
        }
    }

    @Test("a span is all mergeable exactly when each of its pages is")
    func spans() {
        for from in stride(from: UInt(0), to: 0xC000, by: 0x1000) {
            for to in stride(from: from + 0x1000, through: 0xC000, by: 0x1000) {
                let pages = stride(from: from, to: to, by: 0x1000).allSatisfy(Self.searched)
                #expect(Self.maps.allMergeable(from: from, to: to) == pages, "[\(from), \(to))")
            }
        }
    }

    @Test("no mappings known: every page is a candidate")
    func empty() {
        var cursor = ProcessMaps.MergeableCursor(ProcessMaps())
        let answer = cursor.isMergeable(0x1000)
        #expect(answer)
    }
}
