/// The unit of everything Samepage stores: one 4 KiB page, as on x86-64 and arm64 Linux.
public enum Page {
    public static let size = 4096
    public static let shift = 12

    /// Pages needed to hold `bytes` bytes (the last one zero-padded). Never overflows: lengths
    /// come from clients, and `UInt64.max` is a length a client can send.
    @inlinable
    public static func count(forBytes bytes: UInt64) -> UInt64 {
        bytes >> UInt64(shift) + (bytes & UInt64(size - 1) == 0 ? 0 : 1)
    }
}

/// A region page number. 32 bits address 16 TiB of region, far past any machine this runs on,
/// and keep per-page metadata small (design target: at most 48 bytes a stored page).
public typealias PageNumber = UInt32

/// A run of `count` pages that a client maps with one `mmap`: `start` is a region page, or
/// `PageRun.zeroStart` for pages that are all zero and are never stored.
public struct PageRun: Hashable, Sendable {
    public static let zeroStart: PageNumber = .max

    public var start: PageNumber
    public var count: UInt32

    public init(start: PageNumber, count: UInt32) {
        self.start = start
        self.count = count
    }

    public var isZero: Bool { start == Self.zeroStart }
}
