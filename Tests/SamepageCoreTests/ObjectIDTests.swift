import Testing
@testable import SamepageCore

@Suite("ObjectID")
struct ObjectIDTests {
    @Test func descriptionIs32LowercaseHexDigits() {
        #expect(ObjectID(high: 0, low: 0).description == String(repeating: "0", count: 32))
        #expect(ObjectID(high: 0x0123_4567_89AB_CDEF, low: 0xFEDC_BA98_7654_3210).description
                == "0123456789abcdeffedcba9876543210")
        #expect(ObjectID(high: 1, low: 0xF).description == "0000000000000001000000000000000f")
        #expect(ObjectID(high: .max, low: .max).description == String(repeating: "f", count: 32))
    }

    @Test func parseRoundTrip() throws {
        var rng = SplitMix64(seed: 5)
        for _ in 0..<1000 {
            let id = ObjectID.random(using: &rng)
            let text = id.description
            #expect(text.utf8.count == 32)
            #expect(text.allSatisfy { "0123456789abcdef".contains($0) })
            #expect(ObjectID(text) == id)
        }
    }

    @Test func parseAcceptsUppercase() {
        #expect(ObjectID("0123456789ABCDEFFEDCBA9876543210")
                == ObjectID(high: 0x0123_4567_89AB_CDEF, low: 0xFEDC_BA98_7654_3210))
    }

    @Test(arguments: [
        "",
        "0",
        "0123456789abcdeffedcba987654321",   // 31 digits
        "0123456789abcdeffedcba98765432100", // 33 digits
        "0123456789abcdeffedcba987654321g",
        "0x23456789abcdeffedcba9876543210",
        " 123456789abcdeffedcba9876543210",
        "0123456789abcdef-edcba9876543210",
        "0123456789abcdeffedcba987654321é",  // 33 UTF-8 bytes
        "0123456789abcdeffedcba98765432é",   // 32 UTF-8 bytes, not hex
    ])
    func parseRefusesBadStrings(_ text: String) {
        #expect(ObjectID(text) == nil)
    }

    @Test func randomUsesTwoDraws() {
        var a = SplitMix64(seed: 11)
        var b = SplitMix64(seed: 11)
        let id = ObjectID.random(using: &a)
        #expect(id == ObjectID(high: b.next(), low: b.next()))
        #expect(ObjectID.random() != ObjectID.random())
    }
}
