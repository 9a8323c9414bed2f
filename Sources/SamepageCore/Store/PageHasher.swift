import CXXHash

/// XXH3-64 of one page, seeded per dedup domain: equal pages of two domains hash differently,
/// so not even the index could pair them. Calls libxxhash's dispatch entry point, which uses AVX2
/// when the CPU has it (the inline path would be compiled at -Os and run at half speed).
public struct PageHasher: Sendable {
    public let seed: UInt64
    /// The hash of the all-zero page under this seed: a page with this hash is compared with
    /// zeros, so zero detection costs nothing for other pages.
    public let zeroPageHash: UInt64

    public init(seed: UInt64) {
        self.seed = seed
        self.zeroPageHash = ZeroPage.pointer.withMemoryRebound(to: UInt8.self, capacity: Page.size) {
            XXH3_64bits_withSeed_dispatch($0, Page.size, seed)
        }
    }

    @inline(__always)
    public func hash(_ page: UnsafeRawPointer) -> UInt64 {
        XXH3_64bits_withSeed_dispatch(page, Page.size, seed)
    }

    @inline(__always)
    public func isZero(_ page: UnsafeRawPointer, hash: UInt64) -> Bool {
        hash == zeroPageHash && memcmpPage(page, ZeroPage.pointer)
    }
}

/// One page of zeros, for comparisons.
public enum ZeroPage {
    nonisolated(unsafe) public static let pointer: UnsafeRawPointer = {
        let p = UnsafeMutableRawPointer.allocate(byteCount: Page.size, alignment: Page.size)
        p.initializeMemory(as: UInt8.self, repeating: 0, count: Page.size)
        return UnsafeRawPointer(p)
    }()
}
