import Testing
@testable import SamepageCore

private let validSizes: [(String, UInt64)] = [
    ("4096", 4096),
    ("0", 0),
    ("1", 1),
    ("512K", 512 << 10),
    ("512k", 512 << 10),
    ("512M", 512 << 20),
    ("4G", 4 << 30),
    ("1T", 1 << 40),
    ("4GiB", 4 << 30),
    ("4gib", 4 << 30),
    ("4gb", 4 << 30),
    ("4GB", 4 << 30),
    ("16KiB", 16 << 10),
    ("100B", 100),
    ("100b", 100),
    ("  8M\t", 8 << 20),
    ("18446744073709551615", .max),
    ("16777215T", 16_777_215 << 40),
    ("17179869183G", 17_179_869_183 << 30),
]

@Suite("ByteSize")
struct ByteSizeTests {
    @Test(arguments: validSizes)
    func parsesValidSizes(_ text: String, _ expected: UInt64) {
        #expect(ByteSize.parse(text) == expected)
    }

    @Test(arguments: [
        "", " ", "B", "K", "KiB", "GB", "iB",
        "-1", "1.5G", "4 G", "G4", "4X", "4KK", "4KBB", "4Q", "0x10", "four", "4 096",
        "18446744073709551616", // 2^64
        "16777216T",             // 2^64 bytes
        "17179869184G",          // 2^64 bytes
        "99999999999999999999999T",
    ])
    func refusesBadInputAndOverflow(_ text: String) {
        #expect(ByteSize.parse(text) == nil)
    }

    @Test func formatsForHumans() {
        #expect(ByteSize.format(0) == "0 B")
        #expect(ByteSize.format(1023) == "1023 B")
        #expect(ByteSize.format(1024) == "1.0 KiB")
        #expect(ByteSize.format(1536) == "1.5 KiB")
        #expect(ByteSize.format(512 << 20) == "512.0 MiB")
        #expect(ByteSize.format(3 << 30 + 1 << 29) == "3.5 GiB")
        #expect(ByteSize.format(2048 << 40) == "2048.0 TiB")
    }
}
