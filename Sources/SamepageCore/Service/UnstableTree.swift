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
/// KSM rebuilds its tree every full scan, because its entries are pages nothing protects: by the
/// next scan any of them may have changed. Here each entry is withdrawn by its owner's scan that
/// sees the page changed (written, by the write tracker, or a new checksum) or gone, so an entry
/// stays filed while its page stays unchanged, across scan rounds, until a pair takes it or its
/// client leaves: a process at rest re-sends none of its unique pages (it sent them all again
/// every round before, a seventh of the `runs` benchmark's CPU), and its entries are waiting
/// for partners all the time rather than while the scan is passing. An entry whose page changed
/// before its scan withdrew it can only propose a pair, which memcmp refuses. The entries live in an
/// `OpenTable` keyed by digest, 24 bytes each; entries of one digest come oldest first. One
/// session files at most one entry per (key, digest), and a second key of the same session with
/// the same digest pairs with the first instead of being filed: a digest's probe run is at most
/// as long as there are sessions.
///
/// A pair is made in two steps: the lookup that finds a partner asks its client for the page's
/// bytes (`needContent`), and the bytes come in the client's next request. Meanwhile other
/// clients scanning the same content would be asked too, and each would copy a page the first
/// one's bytes make useless (half the copies in the `runs` benchmark, where processes scan the
/// same pages in step). So the tree also holds *promises*: the session asked for a digest's
/// bytes, until that session's next scan request (`withdrawPromises`). A lookup that finds a
/// partner but a promise of another session is filed as an entry instead, and the pair, once
/// made, hands the stored page to every entry of its digest (`takePartner` until none is left).
/// A promiser that goes quiet (a stopped process, a client that never sends) holds a pair up
/// for one scan round of the first client it held up: met again by that client in a later
/// round, the promise is dropped (`holdsUp`).
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

    /// A digest whose bytes a session was asked for: the session + 1 (0 marks an empty slot),
    /// and the first other session it held up (+ 1, 0 for none) with that session's scan round.
    struct Promise: OpenTableSlot {
        var digest: UInt64
        var storedSession: UInt64
        var heldUpSession: UInt64 = 0
        var heldUpRound: UInt32 = 0
        static var empty: Promise { Promise(digest: 0, storedSession: 0) }
        var isEmpty: Bool { storedSession == 0 }
        var tableKey: UInt64 { digest }
    }

    private var table = OpenTable<Slot>()
    private var promises = OpenTable<Promise>()

    /// Entries filed (promises not counted).
    var count: Int { table.count }
    var promiseCount: Int { promises.count }

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

    /// Removes the entry filed under `hash`, if it is there.
    mutating func remove(hash: UInt64, _ entry: Entry) {
        guard let index = table.firstIndex(key: hash, where: { $0.entry == entry }) else { return }
        table.remove(at: index)
    }

    /// Whether `session` has an entry filed under `hash`.
    func hasEntry(of session: UInt64, hash: UInt64) -> Bool {
        table.firstIndex(key: hash, where: { $0.storedSession == session &+ 1 }) != nil
    }

    /// The digests entries are filed under, by session (for verification: a walk of the table).
    func digestsBySession() -> [UInt64: [UInt64]] {
        var digests: [UInt64: [UInt64]] = [:]
        table.forEachSlot { digests[$0.entry.session, default: []].append($0.digest) }
        return digests
    }

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
    /// than once). A leaving client's entries go this way: the table shrinks when they leave it
    /// sparse (processes scanning in step file hundreds of thousands of entries for a moment).
    mutating func removeAll(of session: UInt64, hashes: some Sequence<UInt64>) {
        let stored = session &+ 1
        for hash in hashes {
            while let index = table.firstIndex(key: hash, where: { $0.storedSession == stored }) {
                table.remove(at: index)
            }
        }
        table.shrinkIfSparse()
    }

    /// Gives memory back after many entries left (see OpenTable.shrinkIfSparse).
    mutating func shrinkIfSparse() { table.shrinkIfSparse() }

    /// Whether a lookup of `session`, in its scan `round`, finds the bytes of `hash` promised by
    /// another session and must wait for them. The first session held up is remembered; if it
    /// meets the promise again in another round, the promiser went quiet: the promise is dropped
    /// and the lookup does not wait.
    mutating func holdsUp(hash: UInt64, session: UInt64, round: UInt32) -> Bool {
        guard let index = promises.firstIndex(key: hash) else { return false }
        var promise = promises[index]
        guard promise.storedSession != session &+ 1 else { return false }
        if promise.heldUpSession == 0 {
            promise.heldUpSession = session &+ 1
            promise.heldUpRound = round
            promises.replace(at: index, with: promise)
            return true
        }
        if promise.heldUpSession == session &+ 1 && promise.heldUpRound != round {
            promises.remove(at: index)
            return false
        }
        return true
    }

    /// Records that `session` was asked for the bytes of `hash` (once per digest: the first
    /// session asked keeps the promise).
    mutating func promise(hash: UInt64, by session: UInt64) {
        guard promises.firstIndex(key: hash) == nil else { return }
        promises.insert(Promise(digest: hash, storedSession: session &+ 1))
    }

    /// Drops the promises `session` made under `hashes`: its next request came, with the bytes or
    /// without them (a page that went away is not sent).
    mutating func withdrawPromises(of session: UInt64, hashes: some Sequence<UInt64>) {
        let stored = session &+ 1
        for hash in hashes {
            if let index = promises.firstIndex(key: hash, where: { $0.storedSession == stored }) { promises.remove(at: index) }
        }
        promises.shrinkIfSparse()
    }

    /// Bytes of memory the entries' and promises' tables take.
    var memoryBytes: Int { table.memoryBytes + promises.memoryBytes }

    func _checkInvariants() {
        table._checkInvariants()
        promises._checkInvariants()
    }
}
