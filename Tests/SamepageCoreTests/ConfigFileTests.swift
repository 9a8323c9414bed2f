import Testing
@testable import SamepageCore

/// samepaged's config file syntax (ConfigFile): `key = value` lines, whole-line comments.
@Suite("Config file")
struct ConfigFileTests {
    @Test func keysValuesCommentsAndBlankLines() throws {
        let text = """
            # samepaged.conf
            region-size = 2G

              socket-mode=666\r
            allow-uid = 1000
            allow-uid = 1001
            socket = /run/sp#1/samepaged.sock
            domain = "team=1000,1001"
            """
        let file = try ConfigFile.parse(text, path: "f.conf")
        #expect(file.entries.map(\.key) == ["region-size", "socket-mode", "allow-uid", "allow-uid", "socket", "domain"])
        #expect(file.entries.map(\.value) == ["2G", "666", "1000", "1001", "/run/sp#1/samepaged.sock", "team=1000,1001"])
        #expect(file.entries.map(\.line) == [2, 4, 5, 6, 7, 8])
    }

    @Test func emptyFileHasNoEntries() throws {
        #expect(try ConfigFile.parse("", path: "f").entries.isEmpty)
        #expect(try ConfigFile.parse("# only a comment\n\n", path: "f").entries.isEmpty)
    }

    @Test func aLineWithoutEqualsIsRefusedWithItsLineNumber() {
        #expect(throws: ConfigurationError.self) { try ConfigFile.parse("region-size 4G", path: "f.conf") }
        do {
            _ = try ConfigFile.parse("# ok\nregion-size 4G\n", path: "f.conf")
        } catch {
            #expect(error.message.contains("f.conf:2"), "\(error)")
        }
    }

    @Test func aKeyMustLookLikeAnOptionName() {
        for text in ["= 4G", "region size = 4G", "--region-size = 4G"] {
            #expect(throws: ConfigurationError.self, "\(text)") { try ConfigFile.parse(text, path: "f") }
        }
    }

    @Test func anEmptyValueIsKept() throws {
        let file = try ConfigFile.parse("metrics-listen =", path: "f")
        #expect(file.entries == [ConfigFile.Entry(key: "metrics-listen", value: "", line: 1)])
    }
}
