import CXXHash

// The digest index: how mergeable memory finds a stable page without sending it.
//
// A merging client already hashes every page it scans (KSM's checksum, which tells volatile
// pages from stable ones). If that hash is the page's *digest* (64-bit XXH3, seed 0, the same
// function on both ends), the client can ask "is a page with this digest stored?" and send only
// 16 bytes per page instead of the page: the server answers with the page number, and the
// client compares its page with the region page itself (memcmp decides, as always) before it
// maps it. The server reads no byte of the candidate.
//
// Why a second index beside the stable tree: the tree is keyed by a hash seeded with a secret
// per domain, so that nobody can fill one tag with crafted collisions and make the server's
// lookups slow. A digest is public (anyone can compute it), so it lives in a `PageMap` whose
// buckets are a keyed mix of the digest (`TableSeed`): crafted collisions cannot be aimed. Digests are computed
// by the server from bytes it owns (the stored page), never taken from a client: a client that
// sends a false digest gets a page it will not match, or nothing.
//
// Only pages stored or shared by merges are filed (KSM's stable tree holds merged pages only);
// a page leaves the index when it leaves the store. The index keys on the low 32 bits of the
// digest (8 bytes an entry instead of 12: metadata stays under 48 bytes a page): one page per
// key, the first filed; another page whose digest shares those bits (a max_page_sharing copy,
// or one in four billion) is not proposed by digest but still reached with its bytes, through
// the tree. A page proposed for a digest it does not have only fails the client's compare.

extension PageStore {
    /// The digest of a page: XXH3-64 with seed 0, what clients compute.
    @inline(__always)
    public static func digest(_ page: UnsafeRawPointer) -> UInt64 {
        XXH3_64bits_withSeed_dispatch(page, Page.size, 0)
    }

    /// The digest of the all-zero page.
    public static let zeroDigest: UInt64 = digest(ZeroPage.pointer)

    static func key(_ digest: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: digest) }

    /// The stored page filed under `digest` that can take another owner, if any.
    func page(forDigest digest: UInt64) -> PageNumber? {
        guard let page = byDigest[Self.key(digest)], owners(of: page) > 0, owners(of: page) < maxPageSharing else { return nil }
        return page
    }

    /// Brings the index slot of `digest` into the cache ahead of `page(forDigest:)`.
    @inline(__always) func prefetch(digest: UInt64) { byDigest.prefetch(Self.key(digest)) }

    /// Files a stored page under its digest, unless the digest already names another page or
    /// the page is filed. `digest`, when given, is one the server computed from a copy of the
    /// page's bytes it owns; otherwise it is computed from the region page.
    func fileDigest(_ page: PageNumber, digest known: UInt64? = nil) {
        let word = Int(page) / 64, bit = UInt64(1) << UInt64(page % 64)
        if digestFiled.count <= word { digestFiled.append(contentsOf: repeatElement(0, count: word + 1 - digestFiled.count)) }
        guard digestFiled[word] & bit == 0 else { return }
        let digest = known ?? Self.digest(regionPage(page))
        if let other = byDigest[Self.key(digest)], owners(of: other) > 0 { return }
        byDigest[Self.key(digest)] = page
        digestFiled[word] |= bit
    }

    /// Takes a page leaving the store out of the index (its bytes are still intact here).
    func unfileDigest(_ page: PageNumber) {
        let word = Int(page) / 64, bit = UInt64(1) << UInt64(page % 64)
        guard word < digestFiled.count, digestFiled[word] & bit != 0 else { return }
        digestFiled[word] &= ~bit
        let digest = Self.digest(regionPage(page))
        if byDigest[Self.key(digest)] == page { byDigest[Self.key(digest)] = nil }
    }

    /// Bytes the index takes: an 8-byte slot per filed page at up to 4/5 load, and the bitmap.
    var digestIndexBytes: Int {
        byDigest.memoryBytes + digestFiled.capacity * 8
    }

    func _checkDigestIndex() {
        var filed = 0
        for (word, bits) in digestFiled.enumerated() where bits != 0 {
            for b in 0..<64 where bits & (UInt64(1) << UInt64(b)) != 0 {
                let page = PageNumber(word * 64 + b)
                precondition(owners(of: page) > 0, "free page \(page) filed by digest")
                precondition(byDigest[Self.key(Self.digest(regionPage(page)))] == page,
                             "page \(page) filed under a digest that is not its content's")
                filed += 1
            }
        }
        precondition(filed == byDigest.count, "\(byDigest.count) digests for \(filed) filed pages")
        byDigest._checkInvariants()
    }
}
