/// Deterministic pseudo-random page contents (SplitMix64) for benchmarks, probes and tests: the
/// same content number and seed always give the same 4 KiB, different ones different pages.
public enum PseudoRandomPages {
    /// Fills one page with content number `content` of `seed`.
    public static func fill(_ page: UnsafeMutableRawPointer, content: UInt64, seed: UInt64) {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 &+ content &* 0xD1B5_4A32_D192_ED03
        let words = page.bindMemory(to: UInt64.self, capacity: Page.size / 8)
        for i in 0..<Page.size / 8 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            words[i] = z ^ (z >> 31)
        }
    }

    /// Fills a buffer of whole pages, page i with content number i (so no two pages are equal).
    public static func fill(_ buffer: UnsafeMutableRawBufferPointer, seed: UInt64) {
        precondition(buffer.count % Page.size == 0)
        for page in 0..<buffer.count / Page.size {
            fill(buffer.baseAddress! + page * Page.size, content: UInt64(page), seed: seed)
        }
    }
}
