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

    // Almost every hash has one entry: that one lives in `first` (no array, no allocation per
    // entry); further entries with the same hash wait in `more`, oldest first.
    private var first: [UInt64: Entry] = [:]
    private var more: [UInt64: [Entry]] = [:]
    private(set) var count = 0

    mutating func insert(hash: UInt64, _ entry: Entry) {
        if first[hash] == nil {
            first[hash] = entry
        } else {
            more[hash, default: []].append(entry)
        }
        count += 1
    }

    /// Removes and returns an entry with this hash that is not `excluding` itself.
    mutating func takePartner(hash: UInt64, excluding entry: Entry) -> Entry? {
        guard let head = first[hash] else { return nil }
        if head != entry {
            promote(hash)
            count -= 1
            return head
        }
        guard var list = more[hash], let index = list.firstIndex(where: { $0 != entry }) else { return nil }
        let partner = list.remove(at: index)
        more[hash] = list.isEmpty ? nil : list
        count -= 1
        return partner
    }

    /// Whether an entry with this hash other than `entry` itself is waiting.
    func hasPartner(hash: UInt64, excluding entry: Entry) -> Bool {
        guard let head = first[hash] else { return false }
        return head != entry || (more[hash]?.contains { $0 != entry } ?? false)
    }

    /// Removes every entry of `session` filed under one of `hashes`.
    mutating func removeAll(of session: UInt64, hashes: Set<UInt64>) {
        for hash in hashes {
            if var list = more[hash] {
                let before = list.count
                list.removeAll { $0.session == session }
                count -= before - list.count
                more[hash] = list.isEmpty ? nil : list
            }
            while let head = first[hash], head.session == session {
                promote(hash)
                count -= 1
            }
        }
    }

    /// Drops the first entry of `hash`; the oldest of the others takes its place.
    private mutating func promote(_ hash: UInt64) {
        if var list = more[hash], !list.isEmpty {
            first[hash] = list.removeFirst()
            more[hash] = list.isEmpty ? nil : list
        } else {
            first[hash] = nil
        }
    }
}
