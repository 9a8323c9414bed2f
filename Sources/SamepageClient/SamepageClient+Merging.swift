import Glibc
import SamepageCore
import SamepageSystem
import SystemPackage

/// Mergeable memory: KSM's semantics for this process's own memory. Mark ranges mergeable; the
/// scanner (a thread, or `scan(fullScans:)`) finds pages equal to pages of other processes in
/// the same dedup domain, or of this one, and replaces them in place with copy-on-write mappings
/// of one stored copy.
///
///     let client = try SamepageClient()
///     let memory = try client.allocate(64 << 20)       // or any private anonymous memory
///     try client.advise(memory, length: 64 << 20, .mergeable)
///     try client.scan(fullScans: 2)                     // or let the scanner thread run
///     print(client.processStatistics().mergingPages)
///     try client.advise(memory, length: 64 << 20, .unmergeable)   // private copies again
extension SamepageClient {
    public enum MergeAdvice: Sendable {
        case mergeable
        case unmergeable
    }

    func mergeEngine() throws(SamepageError) -> MergeEngine {
        try engineCreation.withLock { () throws(SamepageError) in
            if let engine { return engine }
            let region = try makeRegionView()
            let created = MergeEngine(client: self, regionView: region.view, regionBytes: region.bytes, generation: region.generation)
            created.mergeAny = getenv(Self.memoryMergeVariable).map { String(cString: $0) == "1" } ?? false
            engine = created
            return created
        }
    }

    /// Like madvise(MADV_MERGEABLE / MADV_UNMERGEABLE) on page-aligned private anonymous memory.
    /// Unmergeable gives every merged page of the range a private copy and drops its references.
    public func advise(_ address: UnsafeMutableRawPointer, length: Int, _ advice: MergeAdvice) throws(SamepageError) {
        let start = UInt(bitPattern: address)
        guard start % UInt(Page.size) == 0, length > 0, length % Page.size == 0 else {
            throw .invalidArgument("address and length must be page aligned and non-zero")
        }
        let engine = try mergeEngine()
        switch advice {
        case .mergeable:
            engine.add(start: start, length: length)
            if engine.lock.withLock({ engine.runScanner }) { engine.startScanner() }
        case .unmergeable:
            try engine.remove(start: start, length: length)
        }
    }

    /// Runs `count` full scans of this process's mergeable memory now (tests and benchmarks use
    /// it the way KSM's tests wait for `full_scans`). Returns this process's figures as the last
    /// scan left them (what `processStatistics()` would say, without reading the page tables
    /// again).
    @discardableResult
    public func scan(fullScans count: Int) throws(SamepageError) -> ProcessMergeStatistics {
        try mergeEngine().scan(fullScans: count)
    }

    /// Sets a scanner parameter by its KSM name: `pages_to_scan`, `sleep_millisecs`,
    /// `use_zero_pages`, `smart_scan`, `advisor_target_scan_time`, `advisor_min_pages_to_scan`,
    /// `advisor_max_pages_to_scan`, `run` (0 stops the scanner thread, 1 starts it), and
    /// `max_page_sharing`, which is the dedup domain's and changes only while it stores no pages.
    /// Sets a parameter given as "name=value" (see MergeParameters.parse).
    public func setMergeParameter(_ assignment: String) throws(SamepageError) {
        let (name, value) = try MergeParameters.parse(assignment)
        try setMergeParameter(name, value)
    }

    public func setMergeParameter(_ name: String, _ value: UInt64) throws(SamepageError) {
        if name == "max_page_sharing" {
            try lock.withLock { () throws(SamepageError) in _ = try configure(name, value) }
            return
        }
        let engine = try mergeEngine()
        if name == "run" {
            guard value <= 1 else { throw .invalidArgument("run is 0 or 1") }
            engine.lock.withLock { engine.runScanner = value == 1 }
            if value == 1 { engine.startScanner() } else { engine.stopScanner() }
            return
        }
        let ok = engine.lock.withLock { engine.parameters.set(name, value) }
        guard ok else { throw .invalidArgument("unknown parameter or bad value: \(name)=\(value)") }
    }

    public var mergeParameters: MergeParameters {
        get { (try? mergeEngine().lock.withLock { engine!.parameters }) ?? MergeParameters() }
    }

    /// This process's figures (KSM's /proc/PID/ksm_stat).
    public func processStatistics() -> ProcessMergeStatistics {
        (try? mergeEngine().statistics()) ?? ProcessMergeStatistics()
    }

    // MARK: The process-wide switch and the allocator

    /// Like prctl(PR_SET_MEMORY_MERGE): on, every allocation made with `allocate` is mergeable
    /// (those made before too); off, all of them are unmerged.
    public func setMemoryMerge(_ on: Bool) throws(SamepageError) {
        let engine = try mergeEngine()
        // Like the kernel's flag, the switch survives exec: the environment carries it to the
        // next program, whose client starts with it on.
        if on { setenv(Self.memoryMergeVariable, "1", 1) } else { unsetenv(Self.memoryMergeVariable) }
        let allocations = engine.lock.withLock { () -> [(UInt, Int)] in
            engine.mergeAny = on
            return engine.allocations.map { ($0.key, $0.value) }
        }
        for (start, length) in allocations {
            try advise(UnsafeMutableRawPointer(bitPattern: start)!, length: length, on ? .mergeable : .unmergeable)
        }
    }

    static let memoryMergeVariable = "SAMEPAGE_MEMORY_MERGE"

    /// Like prctl(PR_GET_MEMORY_MERGE).
    public var memoryMerge: Bool {
        (try? mergeEngine().lock.withLock { engine!.mergeAny }) ?? false
    }

    /// Page-aligned private memory, zero-filled; mergeable when the process-wide switch is on.
    public func allocate(_ length: Int) throws(SamepageError) -> UnsafeMutableRawPointer {
        guard length > 0 else { throw .invalidArgument("length must be positive") }
        let rounded = (length + Page.size - 1) / Page.size * Page.size
        let address = try systemCall("cannot allocate \(rounded) bytes") { () throws(Errno) in
            try Syscall.mmap(nil, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        }
        let engine = try mergeEngine()
        let mergeAny = engine.lock.withLock { () -> Bool in
            engine.allocations[UInt(bitPattern: address)] = rounded
            return engine.mergeAny
        }
        if mergeAny { try advise(address, length: rounded, .mergeable) }
        return address
    }

    /// Frees memory from `allocate`: unmerged first (references dropped), then unmapped.
    public func free(_ address: UnsafeMutableRawPointer, length: Int) throws(SamepageError) {
        let engine = try mergeEngine()
        guard let rounded = engine.lock.withLock({ engine.allocations.removeValue(forKey: UInt(bitPattern: address)) }) else {
            throw .invalidArgument("\(address) was not allocated by this client")
        }
        _ = length
        try engine.remove(start: UInt(bitPattern: address), length: rounded)
        Syscall.munmap(address, rounded)
    }
}
