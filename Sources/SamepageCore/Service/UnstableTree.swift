/// KSM's unstable tree: pages of mergeable memory that stayed unchanged for a whole scan and are
/// equal to no stored page yet. A second candidate with the same content pairs up with one of
/// them and the pair becomes a stored (stable) page.
///
/// The kernel keys its unstable tree by the pages' contents, which it can read in place. The
/// server cannot read another process's memory, so entries are keyed by the page's digest (the
/// 64-bit XXH3, seed 0, that the client computed or the server computed from the bytes sent). A
/// hash match only proposes a pair: the new stable page is a copy of the later candidate (bytes
/// the server holds), and the earlier candidate's owner merges with it only after its own
/// memcmp against the region page. So, as in KSM, equality is always decided by memcmp, never
/// by the hash.
///
/// Entries belong to one client's scan round; when the client starts its next full scan its old
/// entries are dropped (KSM rebuilds the whole tree every full scan). The entries live in an
/// `OpenTable` keyed by digest, 24 bytes each; entries of one digest come oldest first. One
/// session files at most one entry per (key, digest), and a second key of the same session with
/// the same digest pairs with the first instead of being filed: a digest's probe run is at most
/// as long as there are sessions.
struct UnstableTree: ~Copyable {
    struct Entry: Equatable {
        var session: UInt64
        var key: UInt64
    }

    struct Slot: OpenTableSlot {
        var digest: UInt64
        /// The session + 1: 0 marks an empty slot.
        var storedSession: UInt64
        var key: UInt64
        static var empty: Slot { Slot(digest: 0, storedSession: 0, key: 0) }
        var isEmpty: Bool { storedSession == 0 }
        var tableKey: UInt64 { digest }
        var entry: Entry { Entry(session: storedSession &- 1, key: key) }
        init(digest: UInt64, storedSession: UInt64, key: UInt64) {
            self.digest = digest
            self.storedSession = storedSession
            self.key = key
        }
        init(digest: UInt64, _ entry: Entry) {
            self.init(digest: digest, storedSession: entry.session &+ 1, key: entry.key)
        }
    }

    private var table = OpenTable<Slot>()

    var count: Int { table.count }

    /// Files `entry` under `hash`; false (and nothing filed) if that very entry is filed there
    /// already. KSM files a page in its unstable tree once a scan; here a client could send the
    /// same page twice, and the copies would pile up in one probe run: every later insert and
    /// removal under that hash would walk it (a quadratic slowdown a client could aim).
    @discardableResult
    mutating func insert(hash: UInt64, _ entry: Entry) -> Bool {
        guard table.firstIndex(key: hash, where: { $0.entry == entry }) == nil else { return false }
        table.insert(Slot(digest: hash, entry))
        return true
    }

    @inline(__always) func prefetch(hash: UInt64) { table.prefetch(key: hash) }

    /// Removes and returns the oldest entry with this hash that is not `excluding` itself.
    mutating func takePartner(hash: UInt64, excluding entry: Entry) -> Entry? {
        guard let index = table.firstIndex(key: hash, where: { $0.entry != entry }) else { return nil }
        let partner = table[index].entry
        table.remove(at: index)
        return partner
    }

    /// Whether an entry with this hash other than `entry` itself is waiting.
    func hasPartner(hash: UInt64, excluding entry: Entry) -> Bool {
        table.firstIndex(key: hash, where: { $0.entry != entry }) != nil
    }

    /// Removes every entry of `session` filed under one of `hashes` (a hash may be listed more
    /// than once).
    mutating func removeAll(of session: UInt64, hashes: some Sequence<UInt64>) {
        let stored = session &+ 1
        for hash in hashes {
            while let index = table.firstIndex(key: hash, where: { $0.storedSession == stored }) {
                table.remove(at: index)
            }
        }
    }

    func _checkInvariants() { table._checkInvariants() }
}
