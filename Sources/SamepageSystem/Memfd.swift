import CSamepageShim
import Glibc
import SystemPackage

/// Seals (fcntl F_ADD_SEALS) as a set.
public struct MemfdSeals: OptionSet, Sendable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let seal = MemfdSeals(rawValue: SP_F_SEAL_SEAL)
    public static let shrink = MemfdSeals(rawValue: SP_F_SEAL_SHRINK)
    public static let grow = MemfdSeals(rawValue: SP_F_SEAL_GROW)
    public static let write = MemfdSeals(rawValue: SP_F_SEAL_WRITE)
    public static let futureWrite = MemfdSeals(rawValue: SP_F_SEAL_FUTURE_WRITE)
}

public enum Memfd {
    /// A sparse memfd of `size` bytes with the given seals and file mode.
    public static func create(name: String, size: UInt64, seals: MemfdSeals, mode: mode_t? = nil) throws(Errno) -> OwnedDescriptor {
        let fd = OwnedDescriptor(taking: try Syscall.memfdCreate(name))
        try Syscall.ftruncate(fd.rawValue, size)
        if let mode { try Syscall.fchmod(fd.rawValue, mode) }
        if !seals.isEmpty { try Syscall.addSeals(fd.rawValue, seals.rawValue) }
        return fd
    }

    public static func seals(of fd: Int32) throws(Errno) -> MemfdSeals {
        MemfdSeals(rawValue: try Syscall.seals(fd))
    }
}
