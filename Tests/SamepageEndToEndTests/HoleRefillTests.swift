import Foundation
import Glibc
@testable import SamepageClient
import SamepageCore
import SamepageSystem
import Testing

/// MergeEngine.refillHole: when the region cannot be mapped into a stretch unmapped for its
/// pieces, the process must get back what it had (the bytes the stretch compared equal to), as
/// private memory, in one mapping moved in whole. On a real memfd and real mappings.
struct HoleRefillTests {
    /// Scratch memory the kernel places in the hole itself (free address space: it did so when
    /// the hole was the highest gap that fitted) must not end up there, open and zero-filled.
    @Test("a hole is filled with private copies of the region pages, moved in as one mapping", arguments: 0..<8)
    func refillPutsBackPrivateCopies(round: Int) throws {
        let regionPages = 8
        let fd = try Syscall.memfdCreate("hole-refill-region")
        defer { close(fd) }
        try Syscall.ftruncate(fd, UInt64(regionPages * 4096))
        let writable = try Syscall.mmap(nil, regionPages * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        for page in 0..<regionPages { PseudoRandomPages.fill(writable + page * 4096, content: UInt64(page), seed: 5) }
        Syscall.munmap(writable, regionPages * 4096)
        let regionView = try Syscall.mmap(nil, regionPages * 4096, PROT_READ, MAP_SHARED, fd, 0)
        defer { Syscall.munmap(regionView, regionPages * 4096) }

        // Rounds differ in where the scratch memory can go: a free page before the hole or not.
        let memory = try Syscall.mmap(nil, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        defer { Syscall.munmap(memory, 16 * 4096) }
        memset(memory, 0x5A, 16 * 4096)
        if round % 2 == 1 { Syscall.munmap(memory + 3 * 4096, 4096) }
        try Syscall.unmap(memory + 4 * 4096, 4 * 4096)
        // In rounds 0-3 every gap the kernel would choose before the hole is taken for the call,
        // so that its scratch memory lands in the hole (top-down, the highest gap that fits is
        // chosen); in rounds 4-7 it goes wherever the kernel puts it.
        var taken: [UnsafeMutableRawPointer] = []
        defer { for p in taken { Syscall.munmap(p, 4 * 4096) } }
        let hole = UInt(bitPattern: memory + 4 * 4096)..<UInt(bitPattern: memory + 8 * 4096)
        while round < 4 && taken.count < 100_000 {
            let probe = try Syscall.mmap(nil, 4 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            if hole.overlaps(UInt(bitPattern: probe)..<(UInt(bitPattern: probe) + 4 * 4096)) {
                Syscall.munmap(probe, 4 * 4096)
                break
            }
            taken.append(probe)
        }
        let copied: [PageNumber] = [3, 1, 7, 0]
        MergeEngine.refillHole(at: memory + 4 * 4096, copying: copied, from: regionView)

        // The bytes are the region pages', in order; the neighbours are untouched.
        for (i, page) in copied.enumerated() {
            #expect(memcmp(memory + (4 + i) * 4096, regionView + Int(page) * 4096, 4096) == 0, "page \(4 + i)")
        }
        if round % 2 == 0 { #expect((memory + 3 * 4096).load(as: UInt8.self) == 0x5A) }
        #expect((memory + 8 * 4096).load(as: UInt8.self) == 0x5A)
        #expect(try mapsLines(covering: UInt(bitPattern: memory)..<UInt(bitPattern: memory + 16 * 4096))
            .filter { $0.contains("---p") }.isEmpty, "no inaccessible placeholder is left")
        // One private anonymous mapping, write-protected like the span it was made for.
        let start = UInt(bitPattern: memory + 4 * 4096)
        let lines = try mapsLines(covering: start..<(start + 4 * 4096))
        #expect(lines.count == 1, "\(lines)")
        #expect(lines.first?.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first == "r--p", "\(lines)")
        #expect(lines.first?.split(separator: " ", omittingEmptySubsequences: true).dropFirst(4).first == "0", "anonymous: \(lines)")
        // Opened again, a write stays in the process: the region keeps its bytes.
        try Syscall.mprotect(memory + 4 * 4096, 4 * 4096, PROT_READ | PROT_WRITE)
        memset(memory + 4 * 4096, 0xEE, 4096)
        let expected = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { expected.deallocate() }
        PseudoRandomPages.fill(expected, content: 3, seed: 5)
        #expect(memcmp(regionView + 3 * 4096, expected, 4096) == 0)
    }

    @Test("the last resort fills a hole in place, write-protected, through /proc/self/mem")
    func refillInPlaceWritesPastTheProtection() throws {
        let fd = try Syscall.memfdCreate("hole-refill-in-place")
        defer { close(fd) }
        try Syscall.ftruncate(fd, 4 * 4096)
        let writable = try Syscall.mmap(nil, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        for page in 0..<4 { PseudoRandomPages.fill(writable + page * 4096, content: UInt64(page), seed: 9) }
        Syscall.munmap(writable, 4 * 4096)
        let regionView = try Syscall.mmap(nil, 4 * 4096, PROT_READ, MAP_SHARED, fd, 0)
        defer { Syscall.munmap(regionView, 4 * 4096) }
        // The span as a merge leaves it: write-protected, with a hole of two pages in it.
        let memory = try Syscall.mmap(nil, 8 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        defer { Syscall.munmap(memory, 8 * 4096) }
        memset(memory, 0x5A, 8 * 4096)
        try Syscall.mprotect(memory, 8 * 4096, PROT_READ)
        try Syscall.unmap(memory + 3 * 4096, 2 * 4096)
        MergeEngine.refillInPlace(at: memory + 3 * 4096, copying: [2, 0], from: regionView)
        #expect(memcmp(memory + 3 * 4096, regionView + 2 * 4096, 4096) == 0)
        #expect(memcmp(memory + 4 * 4096, regionView, 4096) == 0)
        // Private, anonymous, write-protected like the rest of the span.
        let start = UInt(bitPattern: memory + 3 * 4096)
        let lines = try mapsLines(covering: start..<(start + 2 * 4096))
        #expect(lines.count == 1 && lines.first?.contains(" r--p 00000000 00:00 0") == true, "\(lines)")
    }

    /// The /proc/self/maps lines of the mappings that overlap `range`.
    private func mapsLines(covering range: Range<UInt>) throws -> [Substring] {
        let text = String(decoding: try FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/self/maps")).readToEnd() ?? Data(), as: UTF8.self)
        return text.split(separator: "\n").filter { line in
            let bounds = line.prefix { $0 != " " }.split(separator: "-").compactMap { UInt($0, radix: 16) }
            return bounds.count == 2 && bounds[0] < range.upperBound && bounds[1] > range.lowerBound
        }
    }
}
