import SamepageCore

public struct ServerConfiguration: Sendable {
    /// Bytes of region memory the server may fill, across all domains.
    public var regionBytes: UInt64 = 4 << 30
    public var socketPath: String
    /// File mode of the socket: owner and group may connect.
    public var socketMode: UInt32 = 0o660
    public var maxPageSharing: UInt32 = 256
    /// Largest staging memfd a client may register.
    public var maxStagingBytes: UInt64 = 1 << 30
    /// Largest shared buffer a client may attach (address space of the server, not memory).
    public var maxBufferBytes: UInt64 = 1 << 36
    /// Replies queued for a client that does not read them; past this we stop reading its
    /// requests until it catches up, so it cannot make the server buffer without bound.
    public var maxQueuedReplyBytes = 8 << 20
    /// Per-client and per-domain caps.
    public var limits = SessionLimits()
    /// Hardened mode (design.md section 2): the region is made of memfd segments sealed with
    /// F_SEAL_FUTURE_WRITE, which even a client of the server's own uid cannot write; memory is
    /// given back a whole segment at a time instead of a page at a time.
    public var hardened = false
    /// Size of one segment in hardened mode.
    public var segmentBytes: UInt64 = 64 << 20
    /// Answer `verify` requests (a full check of the bookkeeping; tests use it).
    public var selfCheck = false

    /// Who may connect (SO_PEERCRED) and the dedup domains. Default: the server's own uid only.
    public var policy: AccessPolicy

    public init(socketPath: String, policy: AccessPolicy) {
        self.socketPath = socketPath
        self.policy = policy
    }
}
