@testable import SamepageCore

/// SplitMix64: a tiny seeded generator, so that randomized tests replay exactly.
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

/// A region in plain memory. `release` zero-fills the pages (as a hole punch reads back) and
/// records what it was given, so that tests can see which extents the store returned.
final class MemoryBacking: RegionBacking {
    let base: UnsafeMutableRawPointer
    let pageCount: UInt32
    var released: [ExtentAllocator.Extent] = []
    private(set) var prepared: [ExtentAllocator.Extent] = []
    let segmentPages: UInt32
    /// Segments the store reported empty, in order.
    private(set) var emptied: [UInt32] = []

    init(pageCount: UInt32, segmentPages: UInt32? = nil) {
        self.pageCount = pageCount
        self.segmentPages = segmentPages ?? pageCount
        let bytes = max(1, Int(pageCount)) * Page.size
        base = .allocate(byteCount: bytes, alignment: Page.size)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
    }

    deinit { base.deallocate() }

    func release(_ extent: ExtentAllocator.Extent) {
        precondition(extent.count > 0 && extent.end <= UInt64(pageCount), "release outside the region")
        (base + Int(extent.start) * Page.size).initializeMemory(
            as: UInt8.self, repeating: 0, count: Int(extent.count) * Page.size)
        released.append(extent)
    }

    func prepare(_ extent: ExtentAllocator.Extent) {
        precondition(extent.count > 0 && extent.end <= UInt64(pageCount), "prepare outside the region")
        prepared.append(extent)
    }

    func segmentEmptied(_ segment: UInt32) { emptied.append(segment) }

    func page(_ n: PageNumber) -> UnsafeMutableRawPointer {
        precondition(n < pageCount)
        return base + Int(n) * Page.size
    }

    /// Pages handed to `release`, in total.
    var releasedPages: UInt32 { released.reduce(0) { $0 + $1.count } }
}

/// Page-aligned memory standing in for a client's staging memfd.
final class PageBuffer {
    let bytes: UnsafeMutableRawBufferPointer

    init(pages: Int) {
        bytes = .allocate(byteCount: max(1, pages) * Page.size, alignment: Page.size)
        bytes.initializeMemory(as: UInt8.self, repeating: 0)
    }

    deinit { bytes.deallocate() }

    var pageCount: Int { bytes.count / Page.size }
    var base: UnsafeMutableRawPointer { bytes.baseAddress! }
    func page(_ i: Int) -> UnsafeMutableRawPointer { base + i * Page.size }
    func fill(_ i: Int, id: UInt64) { Content.fill(page(i), id: id) }
}

/// Test page contents, numbered: content 0 is the zero page, every other number a distinct page
/// (its first word is the number) whose every word is non-trivial.
enum Content {
    static func word(_ id: UInt64, _ index: Int) -> UInt64 {
        if id == 0 { return 0 }
        if index == 0 { return id }
        var g = SplitMix64(seed: id &* 0x1_0000_0001 &+ UInt64(index))
        return g.next()
    }

    static func fill(_ page: UnsafeMutableRawPointer, id: UInt64) {
        for w in 0..<(Page.size / 8) {
            page.storeBytes(of: word(id, w), toByteOffset: w * 8, as: UInt64.self)
        }
    }

    /// Whether the page holds content `id`, with bytes from `validBytes` on zero.
    static func matches(_ page: UnsafeRawPointer, id: UInt64, validBytes: Int = Page.size) -> Bool {
        let expected = UnsafeMutableRawPointer.allocate(byteCount: Page.size, alignment: Page.size)
        defer { expected.deallocate() }
        fill(expected, id: id)
        (expected + validBytes).initializeMemory(as: UInt8.self, repeating: 0, count: Page.size - validBytes)
        return memcmpPage(page, expected)
    }

    static func isZero(_ page: UnsafeRawPointer) -> Bool { memcmpPage(page, ZeroPage.pointer) }
}

/// The pages of `runs`, one entry a page: nil for zero pages.
func expand(_ runs: [PageRun]) -> [PageNumber?] {
    var pages: [PageNumber?] = []
    for run in runs {
        for i in 0..<run.count { pages.append(run.isZero ? nil : run.start + i) }
    }
    return pages
}

func makeCounters(shared: Int64 = 0, sharing: Int64 = 0, unshared: Int64 = 0,
                  chains: Int64 = 0, dups: Int64 = 0, zero: Int64 = 0) -> StoreCounters {
    var c = StoreCounters()
    c.pagesShared = shared
    c.pagesSharing = sharing
    c.pagesUnshared = unshared
    c.stableNodeChains = chains
    c.stableNodeDups = dups
    c.zeroPages = zero
    return c
}

/// One connection: a session and the staging memory it reads pages from.
final class SessionClient {
    let session: Session
    let staging: PageBuffer

    init(_ session: Session, stagingPages: Int) {
        self.session = session
        staging = PageBuffer(pages: stagingPages)
        session.staging = UnsafeRawBufferPointer(staging.bytes)
    }
}

/// A service over in-memory regions, keeping the region it made for each domain.
class ServiceHarness {
    /// The regions the service created, by domain name (a class, for the factory closure).
    final class Registry { var made: [String: MemoryBacking] = [:] }

    let service: Service
    let registry: Registry
    let regionPages: UInt32

    init(regionPages: UInt32 = 64, maxPageSharing: UInt32 = 256) {
        self.regionPages = regionPages
        let registry = Registry()
        self.registry = registry
        service = Service(regionBytes: UInt64(regionPages) * UInt64(Page.size), maxPageSharing: maxPageSharing) { name in
            precondition(registry.made[name] == nil, "two regions for domain \(name)")
            let backing = MemoryBacking(pageCount: regionPages)
            registry.made[name] = backing
            return backing
        }
    }

    func client(uid: UInt32 = 1000, pid: Int32 = 100, stagingPages: Int = 32) throws -> SessionClient {
        SessionClient(try service.openSession(peer: PeerIdentity(pid: pid, uid: uid, gid: uid)), stagingPages: stagingPages)
    }

    func send(_ request: Request, _ client: SessionClient) -> [Reply] {
        service.handle(request, session: client.session)
    }

    func backing(_ client: SessionClient) -> MemoryBacking { registry.made[client.session.domain.name]! }
}

/// The digest (XXH3-64, seed 0) of the page `Content.fill` makes for `id`.
func digest(of id: UInt64) -> UInt64 {
    let buffer = PageBuffer(pages: 1)
    buffer.fill(0, id: id)
    return PageStore.digest(buffer.page(0))
}
