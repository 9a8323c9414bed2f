import Glibc
import SamepageCore

/// What /proc/self/maps says: the mappings' ranges and protections. The scanner reads it once a
/// full scan: it counts the process's mappings (for the VMA budget) and tells which pages are
/// readable and writable private memory (the only pages it merges).
struct ProcessMaps {
    typealias Mapping = MapsText.Mapping

    var mappings: [Mapping] = []

    static func read() -> ProcessMaps {
        var result = ProcessMaps()
        let fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return result }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = Glibc.read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        bytes.withUnsafeBufferPointer { result.mappings = MapsText.parse($0) }
        return result
    }

    /// The mapping that contains `address`.
    func mapping(containing address: UInt) -> Mapping? {
        index(containing: address).map { mappings[$0] }
    }

    func index(containing address: UInt) -> Int? {
        let index = firstIndex(endingAfter: address)
        guard index < mappings.count, mappings[index].start <= address else { return nil }
        return index
    }

    /// The first mapping that ends after `address` (binary search; the mappings are in order).
    private func firstIndex(endingAfter address: UInt) -> Int {
        var low = 0, high = mappings.count
        while low < high {
            let mid = (low + high) / 2
            if mappings[mid].end <= address { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// Whether every page of [from, to) lies in mergeable memory (`isMergeable`, or in no
    /// mapping known): one search and a walk over the mappings that cover it.
    func allMergeable(from: UInt, to: UInt) -> Bool {
        var index = firstIndex(endingAfter: from)
        while index < mappings.count && mappings[index].start < to {
            guard Self.isMergeable(mappings[index]) else { return false }
            index += 1
        }
        return true
    }

    /// Whether `address` lies in mergeable memory (`isMergeable`, or in no mapping the last
    /// read of the maps knew). For addresses looked up in ascending order: the mapping found
    /// last, and then the one after it, are tried before a binary search. A slice's pages lie in
    /// one mapping or in a few in a row, and a search per page was a third of the slice loop.
    struct MergeableCursor {
        let maps: ProcessMaps
        private var index = -1

        init(_ maps: ProcessMaps) { self.maps = maps }

        mutating func isMergeable(_ address: UInt) -> Bool {
            let mappings = maps.mappings
            if !(index >= 0 && mappings[index].start <= address && address < mappings[index].end) {
                if index + 1 < mappings.count, mappings[index + 1].start <= address, address < mappings[index + 1].end {
                    index += 1
                } else if let found = maps.index(containing: address) {
                    index = found
                } else {
                    return true
                }
            }
            return ProcessMaps.isMergeable(mappings[index])
        }
    }

    /// Readable, writable private memory: the only memory merged; anything else the
    /// application set up on purpose and is left alone.
    static func isMergeable(_ mapping: Mapping) -> Bool {
        mapping.readable && mapping.writable && mapping.isPrivate
    }

    /// The kernel's limit on mappings per process.
    static func maxMapCount() -> Int {
        let fd = open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 65530 }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = Glibc.read(fd, &buffer, buffer.count)
        guard n > 0 else { return 65530 }
        return Int(String(decoding: buffer[0..<n], as: UTF8.self).trimmingWhitespace) ?? 65530
    }
}

extension String {
    var trimmingWhitespace: String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s = s.dropFirst() }
        while let c = s.last, c.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}

extension MapsText.Mapping {
    var prot: Int32 {
        (readable ? PROT_READ : 0) | (writable ? PROT_WRITE : 0)
    }
}
