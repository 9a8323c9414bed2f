/// The merge references one session holds, by region page: how many of the process's pages map
/// each region page.
///
/// Why not a PageMap: a process holds one reference per merged page, so the server kept 16 bytes
/// (an 8-byte slot at half load) per merged page of every process, the largest part of its
/// growth while processes held their merges (2 of ~5 MiB in `samepage bench --workload runs`,
/// where the kernel's rmap items are slab and in nobody's Pss). But most pages are held once, and
/// a process's merged pages cluster in the region (the store places a submission's new pages
/// together): a bit per page, in chunks of 4096 pages made when first needed, holds them in
/// little more than a bit each; the few pages held more than once (content repeated within the
/// process) keep their extra count in a PageMap.
///
/// Invariants (`_checkInvariants`): a chunk's population is the number of its set bits and never
/// 0 while it is in the directory; `count` is the sum of the populations; every page in `extra`
/// has its bit set.
struct MergeReferences: ~Copyable {
    static let chunkShift = 12
    static let wordsPerChunk = (1 << chunkShift) / 64

    /// By chunk number (page >> chunkShift): 0 where the session holds no page of the chunk,
    /// else the chunk's slot + 1 (its words are `words[slot * wordsPerChunk...]`).
    private var directory: [UInt32] = []
    private var words: [UInt64] = []
    /// Pages held per chunk slot.
    private var population: [UInt16] = []
    /// Chunk slots no chunk uses (their words are all 0).
    private var freeSlots: [UInt32] = []
    /// The count minus 1 of every page held more than once.
    private var extra = PageMap()
    /// Distinct pages held.
    private(set) var count = 0

    init() {}

    var memoryBytes: Int {
        directory.capacity * 4 + words.capacity * 8 + population.capacity * 2 + freeSlots.capacity * 4 + extra.memoryBytes
    }

    /// How many references the session holds on `page` (nil: none). Set to nil or a count.
    subscript(page: UInt32) -> UInt32? {
        get {
            guard let (word, bit) = location(page), words[word] & bit != 0 else { return nil }
            return 1 + (extra[page] ?? 0)
        }
        set {
            guard let value = newValue, value > 0 else {
                clear(page)
                return
            }
            set(page)
            extra[page] = value > 1 ? value - 1 : nil
        }
    }

    /// Adds `amount` references to `page`.
    mutating func add(_ amount: UInt32, to page: UInt32) {
        guard amount > 0 else { return }
        if set(page) {
            if amount > 1 { extra.add(amount - 1, to: page) }
        } else {
            extra.add(amount, to: page)
        }
    }

    /// Every (page, count), by page.
    func forEach(_ body: (UInt32, UInt32) throws -> Void) rethrows {
        for (chunk, entry) in directory.enumerated() where entry != 0 {
            let first = Int(entry - 1) * Self.wordsPerChunk
            for w in 0..<Self.wordsPerChunk {
                var bits = words[first + w]
                while bits != 0 {
                    let page = UInt32(chunk << Self.chunkShift + w * 64 + bits.trailingZeroBitCount)
                    try body(page, 1 + (extra[page] ?? 0))
                    bits &= bits - 1
                }
            }
        }
    }

    /// Every (page, count), by page.
    var sortedByKey: [(key: UInt32, value: UInt32)] {
        var pairs: [(key: UInt32, value: UInt32)] = []
        pairs.reserveCapacity(count)
        forEach { pairs.append(($0, $1)) }
        return pairs
    }

    /// The pairs as a Dictionary, for tests and reports.
    var dictionary: [UInt32: UInt32] {
        var result: [UInt32: UInt32] = [:]
        forEach { result[$0] = $1 }
        return result
    }

    mutating func removeAll() {
        directory = []
        words = []
        population = []
        freeSlots = []
        extra.removeAll()
        count = 0
    }

    /// Gives memory back once most of it holds nothing (a process that unmerged most of its
    /// memory): chunks in use are moved to the front, the rest freed.
    mutating func shrinkIfSparse() {
        extra.shrinkIfSparse()
        let slots = population.count
        guard slots > 16, (slots - freeSlots.count) * 4 <= slots else { return }
        var newWords: [UInt64] = []
        var newPopulation: [UInt16] = []
        newWords.reserveCapacity((slots - freeSlots.count) * Self.wordsPerChunk)
        for chunk in directory.indices where directory[chunk] != 0 {
            let slot = Int(directory[chunk] - 1)
            newWords += words[(slot * Self.wordsPerChunk)..<((slot + 1) * Self.wordsPerChunk)]
            newPopulation.append(population[slot])
            directory[chunk] = UInt32(newPopulation.count)
        }
        words = newWords
        population = newPopulation
        freeSlots = []
        while directory.last == 0 { directory.removeLast() }
    }

    func _checkInvariants() {
        #if DEBUG
        var total = 0
        var used = Set<Int>()
        for entry in directory where entry != 0 {
            let slot = Int(entry - 1)
            precondition(used.insert(slot).inserted, "two chunks share slot \(slot)")
            let bits = words[(slot * Self.wordsPerChunk)..<((slot + 1) * Self.wordsPerChunk)].reduce(0) { $0 + $1.nonzeroBitCount }
            precondition(bits == Int(population[slot]) && bits > 0, "slot \(slot): population \(population[slot]), \(bits) bits")
            total += bits
        }
        precondition(total == count, "count \(count), \(total) bits")
        for slot in freeSlots { precondition(!used.contains(Int(slot)) && population[Int(slot)] == 0) }
        extra.forEach { page, _ in precondition(self[page] != nil, "extra count for page \(page), not held") }
        extra._checkInvariants()
        #endif
    }

    // MARK: Bits

    /// The word and bit of `page`, if its chunk exists.
    private func location(_ page: UInt32) -> (word: Int, bit: UInt64)? {
        let chunk = Int(page >> UInt32(Self.chunkShift))
        guard chunk < directory.count, directory[chunk] != 0 else { return nil }
        let offset = Int(page) & ((1 << Self.chunkShift) - 1)
        return (Int(directory[chunk] - 1) * Self.wordsPerChunk + offset / 64, 1 << UInt64(offset % 64))
    }

    /// Sets `page`'s bit, making its chunk if needed; false if it was set already.
    @discardableResult
    private mutating func set(_ page: UInt32) -> Bool {
        let chunk = Int(page >> UInt32(Self.chunkShift))
        if chunk >= directory.count { directory += repeatElement(0, count: chunk + 1 - directory.count) }
        if directory[chunk] == 0 {
            let slot: Int
            if let free = freeSlots.popLast() {
                slot = Int(free)
            } else {
                slot = population.count
                population.append(0)
                words += repeatElement(0, count: Self.wordsPerChunk)
            }
            directory[chunk] = UInt32(slot + 1)
        }
        let slot = Int(directory[chunk] - 1)
        let offset = Int(page) & ((1 << Self.chunkShift) - 1)
        let word = slot * Self.wordsPerChunk + offset / 64, bit = UInt64(1) << UInt64(offset % 64)
        guard words[word] & bit == 0 else { return false }
        words[word] |= bit
        population[slot] += 1
        count += 1
        return true
    }

    /// Clears `page`'s bit and extra count; a chunk left empty gives its slot back.
    private mutating func clear(_ page: UInt32) {
        guard let (word, bit) = location(page), words[word] & bit != 0 else { return }
        words[word] &= ~bit
        extra[page] = nil
        count -= 1
        let chunk = Int(page >> UInt32(Self.chunkShift))
        let slot = Int(directory[chunk] - 1)
        population[slot] -= 1
        if population[slot] == 0 {
            directory[chunk] = 0
            freeSlots.append(UInt32(slot))
        }
    }
}
