import Glibc
import SystemPackage

/// Owns one mapping and unmaps it when it goes away.
public struct MemoryMapping: ~Copyable, @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let length: Int

    /// Maps `length` bytes of `fd` from `offset`; `shared` chooses MAP_SHARED over MAP_PRIVATE.
    public init(fd: Int32, length: Int, offset: UInt64 = 0, writable: Bool, shared: Bool, noReserve: Bool = false) throws(Errno) {
        var flags = shared ? MAP_SHARED : MAP_PRIVATE
        if noReserve { flags |= MAP_NORESERVE }
        let prot = writable ? (PROT_READ | PROT_WRITE) : PROT_READ
        base = try Syscall.mmap(nil, length, prot, flags, fd, offset)
        self.length = length
    }

    /// Anonymous private memory (zero-filled, copy-on-write from the kernel's zero page).
    public init(anonymousLength length: Int, writable: Bool) throws(Errno) {
        let prot = writable ? (PROT_READ | PROT_WRITE) : PROT_READ
        base = try Syscall.mmap(nil, length, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        self.length = length
    }

    /// Takes ownership of a mapping made elsewhere.
    public init(adopting base: UnsafeMutableRawPointer, length: Int) {
        self.base = base
        self.length = length
    }

    deinit { Syscall.munmap(base, length) }

    public var bytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: length) }

    /// Gives the mapping to the caller, who now must unmap it.
    public consuming func release() -> (UnsafeMutableRawPointer, Int) {
        let result = (base, length)
        discard self
        return result
    }
}
