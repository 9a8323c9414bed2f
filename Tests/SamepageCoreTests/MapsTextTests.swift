import Foundation
import Testing
@testable import SamepageCore

@Suite("MapsText")
struct MapsTextTests {
    private func parse(_ text: String) -> [MapsText.Mapping] {
        Array(text.utf8).withUnsafeBufferPointer { MapsText.parse($0) }
    }

    @Test func readsRangesAndPermissions() {
        let text = """
            55d0c0a00000-55d0c0a21000 r--p 00000000 fe:01 1234   /usr/bin/samepage
            7f1e2c000000-7f1e2c200000 rw-p 00000000 00:00 0
            7f1e2c200000-7f1e2c201000 rw-s 00000000 00:01 99     /memfd:samepage-region (deleted)
            7ffd4b7a1000-7ffd4b7c2000 ---p 00000000 00:00 0      [stack]
            ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]
            """
        let maps = parse(text)
        #expect(maps == [
            .init(start: 0x55d0_c0a0_0000, end: 0x55d0_c0a2_1000, readable: true, writable: false, isPrivate: true),
            .init(start: 0x7f1e_2c00_0000, end: 0x7f1e_2c20_0000, readable: true, writable: true, isPrivate: true),
            .init(start: 0x7f1e_2c20_0000, end: 0x7f1e_2c20_1000, readable: true, writable: true, isPrivate: false),
            .init(start: 0x7ffd_4b7a_1000, end: 0x7ffd_4b7c_2000, readable: false, writable: false, isPrivate: true),
            .init(start: 0xffff_ffff_ff60_0000, end: 0xffff_ffff_ff60_1000, readable: false, writable: false, isPrivate: true),
        ])
    }

    @Test func skipsLinesItCannotRead() {
        let text = "garbage line\n1000-2000 rw-p 0 0 0\n-3000 rw-p\n4000-zz rw-p\n5000-6000 r\n7000-8000 rw-p 0 0 0 x\n"
        #expect(parse(text) == [
            .init(start: 0x1000, end: 0x2000, readable: true, writable: true, isPrivate: true),
            .init(start: 0x7000, end: 0x8000, readable: true, writable: true, isPrivate: true),
        ])
    }

    @Test func emptyTextHasNoMappings() {
        #expect(parse("").isEmpty)
        #expect(parse("\n\n").isEmpty)
    }

    /// The real thing: this process's own maps contain the page of a fresh anonymous mapping.
    @Test func readsThisProcesssMaps() throws {
        let text = try String(contentsOfFile: "/proc/self/maps", encoding: .utf8)
        let maps = parse(text)
        #expect(maps.count == text.split(separator: "\n").count)
        #expect(maps.allSatisfy { $0.start < $0.end })
    }
}
