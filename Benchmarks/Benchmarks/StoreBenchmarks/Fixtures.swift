#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SamepageCore

/// A region held in ordinary memory, as the unit tests do: page-aligned, touched once at creation
/// so that no page fault lands inside a measurement, and zero-filled on `release` (the memfd
/// region reads as zeros after a hole punch).
final class MemoryBacking: RegionBacking {
    let base: UnsafeMutableRawPointer
    let pageCount: UInt32

    init(pageCount: Int) {
        precondition(pageCount > 0 && pageCount <= Int(UInt32.max))
        self.pageCount = UInt32(pageCount)
        base = .allocate(byteCount: pageCount * Page.size, alignment: Page.size)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: pageCount * Page.size)
    }

    deinit { base.deallocate() }

    func release(_ extent: ExtentAllocator.Extent) {
        (base + Int(extent.start) * Page.size)
            .initializeMemory(as: UInt8.self, repeating: 0, count: Int(extent.count) * Page.size)
    }
}

/// SplitMix64: fast, seedable, good enough to make every page distinct and non-zero.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// `count` pages of pseudo-random bytes, page-aligned: all distinct and none all-zero (the odds
/// against are 2^-32768 per pair).
final class RandomPages {
    let base: UnsafeMutableRawPointer
    let count: Int

    init(count: Int, seed: UInt64) {
        self.count = count
        base = .allocate(byteCount: count * Page.size, alignment: Page.size)
        var rng = SplitMix64(seed: seed)
        let words = base.bindMemory(to: UInt64.self, capacity: count * Page.size / 8)
        for i in 0..<(count * Page.size / 8) { words[i] = rng.next() }
    }

    deinit { base.deallocate() }

    var byteCount: Int { count * Page.size }
    var buffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: byteCount) }
    func page(_ i: Int) -> UnsafeRawPointer { UnsafeRawPointer(base + i * Page.size) }
}

/// One page copied by libc memcpy, as PageStore's copyPage does. Kept out of line so that the
/// optimizer cannot fuse the per-page loop into one large memcpy (which glibc would run with
/// non-temporal stores, a different thing from what the store does).
@inline(never)
func copyOnePage(to destination: UnsafeMutableRawPointer, from source: UnsafeRawPointer) {
    memcpy(destination, source, Page.size)
}

/// One page compared by libc memcmp, as PageStore's memcmpPage does; out of line for the same
/// reason as `copyOnePage`.
@inline(never)
func compareOnePage(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer) -> Bool {
    memcmpPage(a, b)
}

/// Holds a benchmark's fixture between its setup and teardown hooks, so that the large buffers
/// of one benchmark are freed before the next one starts.
final class FixtureBox<Fixture> {
    var value: Fixture?
    var fixture: Fixture {
        guard let value else { fatalError("benchmark ran without its setup") }
        return value
    }
}
