/// The secret that decides where a key's probe run starts in an `OpenTable`.
///
/// Keys come from clients more or less directly (digests they send, pages whose contents they
/// choose, the pages they merge with), and linear probing degrades to a scan when many keys
/// share a home bucket. Mixing the key with a random secret (a bijective 64-bit finaliser,
/// MurmurHash3's fmix64, after adding the secret) makes the buckets unpredictable to a client
/// that cannot see the table, at a few cycles a lookup instead of SipHash's few dozen.
struct TableSeed: Sendable {
    let secret: UInt64

    init() {
        var generator = SystemRandomNumberGenerator()
        secret = generator.next()
    }

    init(secret: UInt64) { self.secret = secret }

    @inline(__always) func mix(_ key: UInt64) -> UInt64 {
        var x = key &+ secret
        x ^= x >> 33
        x &*= 0xFF51_AFD7_ED55_8CCD
        x ^= x >> 33
        x &*= 0xC4CE_B9FE_1A85_EC53
        x ^= x >> 33
        return x
    }
}
