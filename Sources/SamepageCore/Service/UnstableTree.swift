/// KSM's unstable tree: pages of mergeable memory that stayed unchanged for a whole scan and are
/// equal to no stored page yet. A second candidate with the same content pairs up with one of
/// them and the pair becomes a stored (stable) page.
///
/// The kernel keys its unstable tree by the pages' contents, which it can read in place. The
/// server cannot read another process's memory, so entries are keyed by the page's digest (the
/// 64-bit XXH3, seed 0, that the client computed or the server computed from the bytes sent). A hash match only proposes a pair: the new
/// stable page is a copy of the later candidate (bytes the server holds), and the earlier
/// candidate's owner merges with it only after its own memcmp against the region page. So, as
/// in KSM, equality is always decided by memcmp, never by the hash.
///
/// Entries belong to one client's scan round; when the client starts its next full scan its old
/// entries are dropped (KSM rebuilds the whole tree every full scan).
struct UnstableTree {
    struct Entry: Equatable {
        var session: UInt64
        var key: UInt64
    }

    private var byHash: [UInt64: [Entry]] = [:]
    private(set) var count = 0

    mutating func insert(hash: UInt64, _ entry: Entry) {
        byHash[hash, default: []].append(entry)
        count += 1
    }

    /// Removes and returns an entry with this hash that is not `excluding` itself.
    mutating func takePartner(hash: UInt64, excluding entry: Entry) -> Entry? {
        guard var list = byHash[hash], let index = list.firstIndex(where: { $0 != entry }) else { return nil }
        let partner = list.remove(at: index)
        byHash[hash] = list.isEmpty ? nil : list
        count -= 1
        return partner
    }

    /// Whether an entry with this hash other than `entry` itself is waiting.
    func hasPartner(hash: UInt64, excluding entry: Entry) -> Bool {
        byHash[hash]?.contains { $0 != entry } ?? false
    }

    /// Removes every entry of `session` filed under one of `hashes`.
    mutating func removeAll(of session: UInt64, hashes: Set<UInt64>) {
        for hash in hashes {
            guard var list = byHash[hash] else { continue }
            let before = list.count
            list.removeAll { $0.session == session }
            count -= before - list.count
            byHash[hash] = list.isEmpty ? nil : list
        }
    }
}
